-- GCRA take (LEASES.md §5). KEYS[1]: string holding the theoretical arrival time (TAT, µs).
-- ARGV: interval_us, tolerance_us (burst * interval), want, minimum,
--       mode (0 normal, 1 reserve, 2 force), horizon_us, reserve_want, caller_now_us.
-- A reservation books up to reserve_want tokens (due over time, so it may exceed want).
-- Returns {granted, wait_us, now_us, remaining}. A denial grants 0 and waits until `minimum`
-- tokens exist (-1: never, minimum > burst); a reservation waits until its last token is due.
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local minimum = tonumber(ARGV[4])
local mode = tonumber(ARGV[5])
local horizon = tonumber(ARGV[6])
local reserve_want = tonumber(ARGV[7])

local stored = tonumber(redis.call('GET', KEYS[1]))
local tat = math.max(stored or now, now)  -- a missing key is a full bucket
local granted, wait = 0, 0

-- whole tokens conforming at now + extra; the epsilon absorbs float rounding
local function fits(extra)
  return math.max(math.floor((now + extra + tolerance - tat) / interval + 1e-9), 0)
end

if mode == 2 then
  -- outage debt: debit regardless, but never more than one burst into debt
  granted = want
  tat = math.min(tat + want * interval, math.max(tat, now + 2 * tolerance))
else
  local available = fits(0)
  if available >= minimum then
    granted = math.min(want, available)
    tat = tat + granted * interval
  elseif mode == 1 and math.min(reserve_want, fits(horizon)) >= minimum then
    granted = math.min(reserve_want, fits(horizon))
    tat = tat + granted * interval
    wait = math.max(tat - tolerance - now, 0)  -- when the last booked token falls due
  elseif minimum * interval > tolerance * (1 + 1e-12) then
    wait = -1
  else
    wait = math.max(tat + minimum * interval - tolerance - now, 0)
  end
end

if granted > 0 then
  -- expire once the bucket would be full again, plus 1 s
  redis.call('SET', KEYS[1], num(tat), 'PX', ms(tat - now + 1000000))
end
return {granted, math.ceil(wait), now, fits(0)}
