-- KEYS: entries, meta. ARGV: now, entry_ttl, meta_ttl. Removes every expired entry of the user;
-- only the call that removes the last live one reports went_offline, so concurrent sweepers
-- never report one expiry twice. Returns {removed, went_offline, live, vis, seen}.
local now = tonumber(ARGV[1])
local live, removed, last = prune(KEYS[1], now)
local vis, seen = meta(KEYS[2])
local went = 0
if removed > 0 and live == 0 then
  went = 1
  seen = record_seen(KEYS[2], vis, last - tonumber(ARGV[2]), ARGV[3])
end
return {removed, went, live, vis, seen}
