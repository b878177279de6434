-- Release a slot. KEYS[1]: slot sorted set. ARGV: slot_id, caller_now_us.
-- Returns {released 0/1, now_us}.
local released = redis.call('ZREM', KEYS[1], ARGV[1])
expire_after_last(KEYS[1])
return {released, now}
