-- EndChange. KEYS: dl:{u}. ARGV: the token from BeginChange, the summary ('' = none), its TTL ms,
-- the TTL ms without one. Stores the summary only when the generation is still the token (no
-- change began or ended since) and no other change is in flight; otherwise leaves none. Returns 1
-- when it stored one.
local t = redis.call('TIME')
local now = now_ms(t)
local h = redis.call('HMGET', KEYS[1], 'g', 'w', 'wu')
local w = live_writers(h[2], h[3], now)
if w > 0 then w = w - 1 end
local sole = h[1] == ARGV[1] and w == 0
redis.call('HSET', KEYS[1], 'g', bump(h[1], t), 'w', tostring(w))
if sole and ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 's', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
redis.call('HDEL', KEYS[1], 's')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
