-- KEYS: sweep index shard. ARGV: max score, members... Removes the members scored ≤ max (a
-- member re-added since with a later expiry stays).
local max = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= max then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
