-- Return unused GCRA tokens. KEYS[1]: TAT string (µs). ARGV: interval_us, n, caller_now_us.
-- Returns {returned, now_us}. Never credits past a full bucket; a missing key is full already.
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local stored = tonumber(redis.call('GET', KEYS[1]))
if not stored or stored <= now then
  return {0, now}
end
local tat = math.max(stored - n * interval, now)
-- tokens credited, rounded: a sliver of the debt may have refilled since the take
local returned = math.min(n, math.floor((stored - tat) / interval + 0.5))
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], num(tat), 'PX', ms(tat - now + 1000000))
end
return {returned, now}
