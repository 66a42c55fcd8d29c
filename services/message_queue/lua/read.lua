-- KEYS: inbox, sequence, meta. ARGV: start ('-' or '(' .. id), count, retention_ms.
-- Returns {last sequence, acked sequence, depth, expired, entries,
--          sequences acked one by one above the floor (ascending)}.
local expired = trim(KEYS[1], KEYS[3], tonumber(ARGV[3]), now_ms(),
                     redis.call('HGET', KEYS[3], 'h'))
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local acked = tonumber(redis.call('HGET', KEYS[3], 'acked') or '0')
local one_by_one = {}
if tonumber(redis.call('HGET', KEYS[3], 'ia') or '0') > 0 then
  for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
    local s = string.match(f, '^a(%d+)$')
    if s then one_by_one[#one_by_one + 1] = tonumber(s) end
  end
  table.sort(one_by_one)
end
return {last, acked, redis.call('XLEN', KEYS[1]), expired, entries, one_by_one}
