-- KEYS: inbox, meta. ARGV: up_to id or '', then individual ids.
-- Returns {entries removed, shared payload keys of the removed entries (one per entry)}.
-- The meta hash's `acked` is the floor: every sequence at or below it was acked (cumulatively or
-- one by one), so reads never report it as a gap. Sequences acked one by one above the floor are
-- remembered as fields a<sequence> (their number in `ia`) until the floor passes them: the floor
-- moves over them as soon as everything below them is acked too, and a cumulative ack drops the
-- ones it covers. An expired (trimmed) sequence stops the floor until a cumulative ack passes it.
local removed, bytes, max_seq = 0, 0, 0
local refs = {}
local meta = redis.call('HMGET', KEYS[2], 'acked', 'ia', 'bytes')
local floor = tonumber(meta[1] or '0')
local remembered = tonumber(meta[2] or '0')
local was_remembered = remembered
local raised = false
if ARGV[1] ~= '' then
  while true do
    local old = redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', 1024)
    if #old == 0 then break end
    for _, e in ipairs(old) do
      bytes = bytes + #(field(e[2], 'e') or '')
      local s = tonumber(field(e[2], 's') or '0')
      if s > max_seq then max_seq = s end
      local p = field(e[2], 'p')
      if p then refs[#refs + 1] = p end
    end
    removed = removed + redis.call('XTRIM', KEYS[1], 'MINID', after(old[#old][1]))
    if #old < 1024 then break end
  end
  if max_seq > floor then
    floor = max_seq
    raised = true
  end
end
for i = 2, #ARGV do
  local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #e == 1 then
    bytes = bytes + #(field(e[1][2], 'e') or '')
    local p = field(e[1][2], 'p')
    if p then refs[#refs + 1] = p end
    local s = tonumber(field(e[1][2], 's') or '0')
    if s > floor then
      remembered = remembered +
          redis.call('HSET', KEYS[2], 'a' .. string.format('%.0f', s), 1)
    end
    removed = removed + redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
if raised and remembered > 0 then
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local s = string.match(f, '^a(%d+)$')
    if s and tonumber(s) <= floor then
      redis.call('HDEL', KEYS[2], f)
      remembered = remembered - 1
    end
  end
end
while remembered > 0 and
    redis.call('HDEL', KEYS[2], 'a' .. string.format('%.0f', floor + 1)) == 1 do
  floor = floor + 1
  remembered = remembered - 1
  raised = true
end
-- The floor and the byte count in one write (nothing else in this script changes bytes).
local set = {}
if raised then
  set[#set + 1] = 'acked'
  set[#set + 1] = string.format('%.0f', floor)
end
if bytes > 0 then
  set[#set + 1] = 'bytes'
  set[#set + 1] = string.format('%.0f', tonumber(meta[3] or '0') - bytes)
end
if #set > 0 then redis.call('HSET', KEYS[2], unpack(set)) end
if remembered ~= was_remembered then
  if remembered > 0 then
    redis.call('HSET', KEYS[2], 'ia', remembered)
  else
    redis.call('HDEL', KEYS[2], 'ia')
  end
end
return {removed, refs}
