-- KEYS: epoch, entries, meta. ARGV: device, gateway, vis (0 = keep), now, expires_at,
-- entries key ttl, meta_ttl. The INCR and the entry are written in one script, so two racing connects of a
-- device end with the entry holding the higher epoch, on any replica.
local now = tonumber(ARGV[4])
local live = prune(KEYS[2], now)
local displaced = 0
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then displaced = tonumber((parse(prev))) or 0 end
local epoch = redis.call('INCR', KEYS[1])
-- The counter has a TTL; should it have lapsed under a still-live entry, stay above that entry.
if epoch <= displaced then
  epoch = displaced + 1
  redis.call('SET', KEYS[1], epoch)
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('HSET', KEYS[2], ARGV[1], epoch .. '|' .. ARGV[5] .. '|' .. ARGV[4] .. '|' .. ARGV[2])
extend(KEYS[2], tonumber(ARGV[6]))
local prev_vis = meta(KEYS[3])
if ARGV[3] ~= '0' then redis.call('HSET', KEYS[3], 'vis', ARGV[3]) end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
local vis, seen = meta(KEYS[3])
-- Also clears a last seen stored before it was kept for visibility everyone only.
if vis ~= 2 and seen ~= 0 then seen = record_seen(KEYS[3], vis, 0, 0) end
local came = 0
if live == 0 then came = 1 end
return {epoch, displaced, came, prev_vis, vis, seen}
