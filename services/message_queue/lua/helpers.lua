-- Shared Lua helpers. Numbers in Redis Lua are doubles: exact below 2^53, which covers
-- sequences, byte counts and millisecond times. Stream entries hold the fields
-- s (sequence), x (expires_at_ms) and e (the envelope bytes); the meta hash holds
-- bytes (sum of stored e sizes) and acked (highest sequence removed by a cumulative ack).
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
local function field(f, name)
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end
local function after(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%.0f', tonumber(n) + 1)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Removes entries older than now - retention (at most 1024 per call; the rest go next time),
-- keeping the byte count right. Returns how many entries and bytes were removed, and h after it.
-- Amortised: the meta field h is a lower bound of the oldest entry's id time (ms). Appends only
-- add newer entries and acks only remove entries, so the bound stays true without being touched;
-- the stream is looked at only once h itself is older than the retention, and then h is moved up
-- to the real head (absent h, as for inboxes written before it existed: look, then set it).
local function trim(inbox, meta, retention, now, h)
  local minid = now - retention
  if minid <= 0 or (h and tonumber(h) >= minid) then return 0, 0, h end
  local old = redis.call('XRANGE', inbox, '-', '(' .. string.format('%.0f', minid) .. '-0',
                         'COUNT', 1024)
  local bytes = 0
  if #old > 0 then
    for _, e in ipairs(old) do bytes = bytes + #(field(e[2], 'e') or '') end
    redis.call('XTRIM', inbox, 'MINID', after(old[#old][1]))
    redis.call('HINCRBY', meta, 'bytes', -bytes)
  end
  local head = redis.call('XRANGE', inbox, '-', '+', 'COUNT', 1)
  h = false
  if #head == 1 then
    h = string.match(head[1][1], '^(%d+)-')
    redis.call('HSET', meta, 'h', h)
  else
    redis.call('HDEL', meta, 'h')  -- the next append sets it
  end
  return #old, bytes, h
end
