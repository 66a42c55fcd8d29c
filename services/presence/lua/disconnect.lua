-- KEYS: entries, meta. ARGV: device, epoch, now, entry_ttl, meta_ttl.
-- Returns {was_current, went_offline, live, vis, seen, removed expires_at}.
local now = tonumber(ARGV[3])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local vis, seen = meta(KEYS[2])
if not cur then return {0, 0, live_count(KEYS[1], now), vis, seen, 0} end
local es, xs = parse(cur)
if es ~= ARGV[2] then return {0, 0, live_count(KEYS[1], now), vis, seen, 0} end
redis.call('HDEL', KEYS[1], ARGV[1])
local x = tonumber(xs)
local live = prune(KEYS[1], now)
local went = 0
if live == 0 then
  went = 1
  seen = now
  -- An entry that had already expired was last vouched for at its last heartbeat.
  if x <= now then seen = x - tonumber(ARGV[4]) end
  seen = record_seen(KEYS[2], vis, seen, ARGV[5])
end
return {1, went, live, vis, seen, x}
