-- Process registry. KEYS[1]: sorted set, member = process id, score = last heartbeat µs.
-- ARGV: process_id, liveness_us, caller_now_us. Drops processes silent for longer than
-- the liveness window. Returns {live processes (P), now_us}; with KEYS[2] (a counter in
-- the same hash tag, the operations' version of bans and brownout) also its value, so
-- that the heartbeat is the operations' version check too (docs/global.md).
local liveness = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], num(now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. num(now - liveness))
redis.call('PEXPIRE', KEYS[1], ms(2 * liveness))
if KEYS[2] then
  return {redis.call('ZCARD', KEYS[1]), now, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
return {redis.call('ZCARD', KEYS[1]), now}
