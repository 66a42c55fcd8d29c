-- KEYS: payload key. ARGV: references to drop. Deletes the payload at zero. Returns 1 if deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], 'r', -tonumber(ARGV[1])) <= 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
