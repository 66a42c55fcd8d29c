-- KEYS: entries, meta. ARGV: now, new expires_at, entries key ttl, gateway, meta_ttl, then device,
-- epoch pairs. Returns 1 (extended) or 0 (stale) per pair. A user online for longer than the
-- last-seen TTL keeps their visibility: live heartbeats renew it.
local now = tonumber(ARGV[1])
local out = {}
local any = false
for i = 6, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local ok = 0
  if cur then
    local es, xs, cs, g = parse(cur)
    if es == ARGV[i + 1] and g == ARGV[4] and tonumber(xs) > now then
      redis.call('HSET', KEYS[1], ARGV[i], es .. '|' .. ARGV[2] .. '|' .. cs .. '|' .. g)
      ok = 1
      any = true
    end
  end
  out[#out + 1] = ok
end
if any then
  extend(KEYS[1], tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return out
