-- KEYS: entries, meta. ARGV: vis, now, meta_ttl. Returns {live, vis, seen}. A switch away from
-- everyone deletes last seen: switching back shows "unknown" until the user next goes offline.
redis.call('HSET', KEYS[2], 'vis', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local vis, seen = meta(KEYS[2])
if vis ~= 2 and seen ~= 0 then seen = record_seen(KEYS[2], vis, 0, 0) end
return {live_count(KEYS[1], tonumber(ARGV[2])), vis, seen}
