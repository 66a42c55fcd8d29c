-- KEYS: payload key. ARGV: bytes, references to add, expire-at ms. A retry of the same send adds
-- its references to the existing payload (its own duplicates are released afterwards).
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'r', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'd', ARGV[1], 'r', ARGV[2])
end
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
