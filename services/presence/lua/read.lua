-- KEYS: entries, meta. ARGV: now. Returns {live, vis, seen}. Read-only.
local vis, seen = meta(KEYS[2])
return {live_count(KEYS[1], tonumber(ARGV[1])), vis, seen}
