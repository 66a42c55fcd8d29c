-- KEYS: bucket. ARGV: now, burst, refill_ms. Returns {allowed, retry_after_ms}. The bucket holds
-- integer credit in ms (one change costs refill_ms; capacity burst × refill_ms), so no
-- floating-point rounding reaches the retry delay.
local now = tonumber(ARGV[1])
local refill = tonumber(ARGV[3])
local cap = tonumber(ARGV[2]) * refill
local t = redis.call('HMGET', KEYS[1], 'credit', 'ts')
local credit = tonumber(t[1] or '') or cap
local ts = tonumber(t[2] or '') or now
if now > ts then
  credit = math.min(cap, credit + (now - ts))
  ts = now
end
local allowed, retry = 0, 0
if credit >= refill then
  credit = credit - refill
  allowed = 1
else
  retry = refill - credit
end
redis.call('HSET', KEYS[1], 'credit', string.format('%d', credit), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], cap)
return {allowed, retry}
