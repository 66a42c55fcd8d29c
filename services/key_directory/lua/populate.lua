-- Populate. KEYS: dl:{u}. ARGV: the token read before PostgreSQL ('' = the hash had no
-- generation), the summary, its TTL ms. Stores it only when the generation is unchanged, no
-- change is in flight (or the in-flight ones are past their deadline) and no summary is there.
-- Returns 1 when it stored it.
local h = redis.call('HMGET', KEYS[1], 'g', 'w', 'wu', 's')
if (h[1] or '') ~= ARGV[1] or h[4] then return 0 end
if live_writers(h[2], h[3], now_ms(redis.call('TIME'))) > 0 then return 0 end
redis.call('HSET', KEYS[1], 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
