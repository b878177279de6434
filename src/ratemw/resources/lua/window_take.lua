-- Sliding window counter take. KEYS[1]: hash {w = window index, c = count in window w,
-- p = count in window w - 1}. ARGV: window_us, limit, want, minimum, caller_now_us.
-- The estimate weights the previous window by the part of it still inside the sliding
-- window: p * (1 - elapsed fraction) + c. Returns {granted, wait_us (-1: never), now_us,
-- window index, window end µs}.
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local minimum = tonumber(ARGV[4])

local idx = math.floor(now / window)
local start = idx * window
local h = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w, c, p = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
if w ~= idx then
  if w == idx - 1 then p = c else p = 0 end
  c = 0
end

local frac = (now - start) / window
local available = math.max(math.floor(limit - p * (1 - frac) - c + 1e-9), 0)
local granted, wait = 0, 0
if available >= minimum then
  granted = math.min(want, available)
  if granted > 0 then
    redis.call('HSET', KEYS[1], 'w', num(idx), 'c', num(c + granted), 'p', num(p))
    redis.call('PEXPIRE', KEYS[1], ms(2 * window))
  end
elseif minimum > limit then
  wait = -1
elseif c + minimum <= limit and p > 0 then
  -- the previous window's weight decays enough later in this window
  wait = start + (1 - (limit - c - minimum) / p) * window - now
else
  -- only in the next window, where this window's count becomes the decaying one
  local f = 0
  if c > 0 then f = math.max(1 - (limit - minimum) / c, 0) end
  wait = start + window + f * window - now
end
return {granted, math.ceil(math.max(wait, -1)), now, idx, start + window}
