-- KEYS: the device's challenge key. ARGV: the hex challenge. Deletes the key and returns the
-- audience only when the stored challenge is this one; nil otherwise (a wrong guess leaves the
-- device's real challenge in place).
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return string.sub(v, #ARGV[1] + 1)
end
return false
