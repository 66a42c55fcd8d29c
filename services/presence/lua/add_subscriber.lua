-- KEYS: subscribers, entries, meta. ARGV: member, expires_at, now, ttl. Returns {live, vis, seen}.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
extend(KEYS[1], tonumber(ARGV[4]))
local vis, seen = meta(KEYS[3])
return {live_count(KEYS[2], tonumber(ARGV[3])), vis, seen}
