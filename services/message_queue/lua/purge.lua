-- KEYS: channels::DeviceInboxKeys. Returns {entries removed, shared payload keys referred to}.
local n = redis.call('XLEN', KEYS[1])
local refs = {}
local start = '-'
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1024)
  for _, e in ipairs(batch) do
    local p = field(e[2], 'p')
    if p then refs[#refs + 1] = p end
  end
  if #batch < 1024 then break end
  start = '(' .. batch[#batch][1]
end
redis.call('DEL', unpack(KEYS))
return {n, refs}
