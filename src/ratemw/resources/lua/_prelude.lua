-- Shared prelude, prepended to every script by ratemw/store/_scripts.py (one copy).
-- `now` is the Redis clock in microseconds. Old servers refuse writes after TIME unless
-- effects replication is on; where TIME itself is refused, the caller's clock (always the
-- last ARGV) is used instead.
pcall(redis.replicate_commands)
local now
do
  local ok, t = pcall(redis.call, 'TIME')
  if ok then
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  else
    now = tonumber(ARGV[#ARGV])
  end
end

-- Lua's default number formatting keeps 14 digits, too few for microsecond timestamps.
local function num(x)
  return string.format('%.17g', x)
end

local function ms(us)
  return string.format('%.0f', math.ceil(us / 1000))
end

-- Sorted sets of deadlines live 1 s past their latest deadline.
local function expire_after_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', key, ms(math.max(tonumber(last[2]) - now, 0) + 1000000))
  end
end
