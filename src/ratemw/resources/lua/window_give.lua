-- Give back window tokens, only inside the window they were taken in.
-- KEYS[1]: window hash. ARGV: window_us, n, window index of the take, caller_now_us.
-- Returns {returned, now_us}.
local window = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local taken_in = tonumber(ARGV[3])
if math.floor(now / window) ~= taken_in then
  return {0, now}
end
local h = redis.call('HMGET', KEYS[1], 'w', 'c')
if tonumber(h[1]) ~= taken_in or not h[2] then
  return {0, now}
end
local c = tonumber(h[2])
local returned = math.min(n, c)
redis.call('HSET', KEYS[1], 'c', num(c - returned))
redis.call('PEXPIRE', KEYS[1], ms(2 * window))
return {returned, now}
