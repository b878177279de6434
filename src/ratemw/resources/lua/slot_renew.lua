-- Extend a held slot. KEYS[1]: slot sorted set. ARGV: slot_id, ttl_us, caller_now_us.
-- A slot whose deadline passed is reaped, never re-created. Returns {renewed 0/1, now_us}.
local slot = ARGV[1]
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
if not redis.call('ZSCORE', KEYS[1], slot) then
  return {0, now}
end
redis.call('ZADD', KEYS[1], 'XX', num(now + ttl), slot)
expire_after_last(KEYS[1])
return {1, now}
