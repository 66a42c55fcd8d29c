-- BeginChange. KEYS: dl:{u}. ARGV: writer deadline ms, TTL ms. Returns the new generation.
-- In-flight changes past their deadline are forgotten (presumed dead).
local t = redis.call('TIME')
local now = now_ms(t)
local h = redis.call('HMGET', KEYS[1], 'g', 'w', 'wu')
local w = live_writers(h[2], h[3], now)
local wu = tonumber(h[3]) or 0
local deadline = now + tonumber(ARGV[1])
if deadline < wu then deadline = wu end
local g = bump(h[1], t)
redis.call('HDEL', KEYS[1], 's')
redis.call('HSET', KEYS[1], 'g', g, 'w', tostring(w + 1), 'wu', string.format('%d', deadline))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return g
