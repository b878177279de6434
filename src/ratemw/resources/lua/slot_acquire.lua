-- Concurrency slot acquire. KEYS[1]: sorted set, member = slot id, score = deadline µs.
-- ARGV: limit, slot_id, ttl_us, caller_now_us. Expired slots are dropped first, so crashed
-- holders free themselves; acquiring a slot already held only extends it (retry-safe).
-- Returns {acquired 0/1, slots held, now_us, wait_us until the earliest deadline if denied}.
local limit = tonumber(ARGV[1])
local slot = ARGV[2]
local ttl = tonumber(ARGV[3])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
local held = redis.call('ZSCORE', KEYS[1], slot)
local count = redis.call('ZCARD', KEYS[1])
local acquired, wait = 0, 0
if held or count < limit then
  redis.call('ZADD', KEYS[1], num(now + ttl), slot)
  acquired = 1
  if not held then count = count + 1 end
  expire_after_last(KEYS[1])
else
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then wait = math.max(tonumber(first[2]) - now, 0) else wait = -1 end
end
return {acquired, count, now, math.ceil(wait)}
