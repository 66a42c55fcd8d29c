-- KEYS: watch set. ARGV: ttl, users... Returns the previous members.
local old = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  for i = 2, #ARGV, 500 do
    redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return old
