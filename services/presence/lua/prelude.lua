-- Shared Lua helpers. An entry is "epoch|expires_at_ms|connected_at_ms|gateway_id"; parse()
-- returns its fields as strings (numbers are kept as decimal text so that Lua's doubles never
-- reformat them).
local function parse(v)
  return string.match(v, '^(%d+)|(%d+)|(%d+)|(.*)$')
end
local function live_count(key, now)
  local all = redis.call('HGETALL', key)
  local n = 0
  for i = 2, #all, 2 do
    local _, xs = parse(all[i])
    if xs and tonumber(xs) > now then n = n + 1 end
  end
  return n
end
local function prune(key, now)
  local all = redis.call('HGETALL', key)
  local n, removed, last = 0, 0, 0
  for i = 1, #all, 2 do
    local _, xs = parse(all[i + 1])
    local x = tonumber(xs or '0')
    if x > now then
      n = n + 1
    else
      redis.call('HDEL', key, all[i])
      removed = removed + 1
      if x > last then last = x end
    end
  end
  return n, removed, last
end
local function meta(key)
  local m = redis.call('HMGET', key, 'vis', 'seen')
  return tonumber(m[1] or '1') or 1, tonumber(m[2] or '0') or 0
end
-- Last seen is kept only while someone may see it (visibility everyone = 2; docs/PRIVACY.md):
-- records it when the user goes offline, or drops any earlier value. Returns what is kept.
local function record_seen(key, vis, seen, ttl)
  if vis ~= 2 then
    redis.call('HDEL', key, 'seen')
    return 0
  end
  redis.call('HSET', key, 'seen', seen)
  redis.call('PEXPIRE', key, ttl)
  return seen
end
local function extend(key, ttl)
  local p = redis.call('PTTL', key)
  if p == -1 or (p >= 0 and p < ttl) then redis.call('PEXPIRE', key, ttl) end
end
