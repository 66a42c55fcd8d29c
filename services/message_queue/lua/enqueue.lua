-- The enqueue of a batch of devices (one or many) in one call: on a cluster all of them in one
-- hash slot, on a standalone Redis any devices. Per device, in call order, it does exactly what a
-- call per device did: each device's appends see those before it in the same call.
-- KEYS: per device i (0-based), at 8i + 1..8: inbox, sequence, channel, meta, dedupe bucket now,
--       dedupe bucket before, push subscription, push coalescing mark.
-- ARGV: retention_ms, max_entries, max_bytes, inline_wakeup_bytes, bucket number,
--       dedupe bucket ttl_ms, key ttl_ms, key ttl refresh interval ms, memory-pressure byte cap
--       ('' when Redis memory is not under pressure), '1' when Redis memory is above the
--       high-water mark ('' otherwise), the push interval in ms ('' when no notifier is
--       configured: no push check); then per device i at 11 + 5i + 1..5: envelope, dedupe key,
--       expires_at_ms, shared payload key ('' for 1:1), shared payload bytes for the wake-up (''
--       when too big).
-- Returns one element per device, in order: {duplicate 0|1, sequence, entry id, subscribers,
-- expired, push_due 0|1}, or an error reply (INBOX_FULL, INBOX_PRESSURE or MEMORY_FULL …, or a command's error)
-- for that device alone. The memory refusals come after the dedupe look-up: a retry of a send
-- already stored is answered with its placement whatever the memory.
-- Each device runs under pcall, so an error stops only that device (as it stopped its own call
-- before): the devices before and after it keep their outcomes, and what each reports is exactly
-- what it wrote.
-- About ten commands for a new entry: each bucket hash and the meta hash are read once (HMGET),
-- the trim looks at the stream only when its head may have expired, the dedupe bucket gets its
-- TTL when it is created, and the backstop TTLs of the inbox keys are pushed out at most once per
-- refresh interval (meta field r: when they last were).
local retention, max_entries, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local inline_bytes, bucket = tonumber(ARGV[4]), ARGV[5]
local bucket_ttl, key_ttl, refresh_ms = ARGV[6], ARGV[7], tonumber(ARGV[8])
local pressure_cap, memory_full = tonumber(ARGV[9]), ARGV[10] == '1'
local push_interval = ARGV[11]
local bucket_before = string.format('%.0f', tonumber(bucket) - 1)
local function enqueue(inbox, sequence, channel, meta_key, now_key, before_key, push_key,
                       mark_key, env, dedupe, expires, payload_key, shared)
  local cur = redis.call('HMGET', now_key, '_b', dedupe)
  local hit = false
  local hit_bucket = now_key
  if cur[1] == bucket then hit = cur[2] end
  if not hit then
    local before = redis.call('HMGET', before_key, '_b', dedupe)
    if before[1] == bucket_before then
      hit = before[2]
      hit_bucket = before_key
    end
  end
  if hit then
    -- Written back unchanged: a write, replicated after the first append, so that a WAIT on this
    -- connection (the durability policy) also covers that append before the retry is answered.
    redis.call('HSET', hit_bucket, dedupe, hit)
    local seq, id = string.match(hit, '^(%d+) (.+)$')
    return {1, tonumber(seq), id, 0, 0, 0}
  end
  local now = now_ms()
  local meta = redis.call('HMGET', meta_key, 'bytes', 'h', 'r')
  local expired, freed, head = trim(inbox, meta_key, retention, now, meta[2])
  if redis.call('XLEN', inbox) >= max_entries then
    return redis.error_reply('INBOX_FULL inbox at its entry cap')
  end
  local bytes = tonumber(meta[1] or '0') - freed
  if bytes + #env > max_bytes then
    return redis.error_reply('INBOX_FULL inbox at its byte cap')
  end
  if memory_full then
    return redis.error_reply('MEMORY_FULL server storage is nearly full: new messages wait')
  end
  if pressure_cap and bytes + #env > pressure_cap then
    return redis.error_reply('INBOX_PRESSURE recipient has too much unread while server ' ..
                             'storage is under pressure')
  end
  local seq = redis.call('INCR', sequence)
  local id
  if payload_key == '' then
    id = redis.call('XADD', inbox, '*', 's', seq, 'x', expires, 'e', env)
  else
    id = redis.call('XADD', inbox, '*', 's', seq, 'x', expires, 'e', env, 'p', payload_key)
  end
  local ms = tonumber(string.match(id, '^(%d+)-'))
  local set = {'bytes', bytes + #env}
  if not head then  -- the stream was empty: this entry is the oldest
    set[#set + 1] = 'h'
    set[#set + 1] = string.format('%.0f', ms)
  end
  local refresh = (not meta[3]) or now - tonumber(meta[3]) >= refresh_ms
  if refresh then
    set[#set + 1] = 'r'
    set[#set + 1] = string.format('%.0f', now)
  end
  redis.call('HSET', meta_key, unpack(set))
  if cur[1] ~= bucket then
    redis.call('DEL', now_key)
    redis.call('HSET', now_key, '_b', bucket, dedupe, seq .. ' ' .. id)
    redis.call('PEXPIRE', now_key, bucket_ttl)
  else
    redis.call('HSET', now_key, dedupe, seq .. ' ' .. id)
  end
  if refresh then
    redis.call('PEXPIRE', inbox, key_ttl)
    redis.call('PEXPIRE', sequence, key_ttl)
    redis.call('PEXPIRE', meta_key, key_ttl)
  end
  -- DeviceChannelEvent{wakeup: InboxWakeup{sequence, envelope?}} in protobuf wire format; the
  -- envelope gets server_timestamp_ms (8), sequence (9) and server_id (10) appended, which
  -- protobuf parsing merges into the stored bytes.
  local wake = '\8' .. varint(seq)
  if #env + #shared <= inline_bytes and (payload_key == '' or shared ~= '') then
    local full = env
    if shared ~= '' then full = full .. '\50' .. varint(#shared) .. shared end
    full = full .. '\64' .. varint(ms) .. '\72' .. varint(seq) .. '\82' .. varint(#id) .. id
    wake = wake .. '\18' .. varint(#full) .. full
  end
  local subscribers = redis.call('SPUBLISH', channel, '\10' .. varint(#wake) .. wake)
  -- No gateway holds the device: it may sleep. A push is due when it has a subscription and no
  -- push went out within the interval (the mark's NX), so a burst of messages wakes it once.
  local push_due = 0
  if subscribers == 0 and push_interval ~= '' and redis.call('EXISTS', push_key) == 1 and
      redis.call('SET', mark_key, '1', 'NX', 'PX', push_interval) then
    push_due = 1
  end
  return {0, seq, id, subscribers, expired, push_due}
end
local results = {}
for i = 0, #KEYS / 8 - 1 do
  local k, a = 8 * i, 11 + 5 * i
  local ok, r = pcall(enqueue, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
                      KEYS[k + 6], KEYS[k + 7], KEYS[k + 8], ARGV[a + 1], ARGV[a + 2],
                      ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
  -- A failed redis.call raises its error reply: "WRONGTYPE …" as a string (Redis 7.0), or a table
  -- {err = …}; the reply keeps its code. Anything else is a Lua error.
  if not ok and not (type(r) == 'table' and r.err) then
    r = tostring(r)
    if not string.match(r, '^[A-Z][A-Z_]+ ') then r = 'ERR enqueue: ' .. r end
    r = redis.error_reply(r)
  end
  results[#results + 1] = r
end
return results
