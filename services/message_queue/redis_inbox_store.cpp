#include "services/message_queue/redis_inbox_store.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "padlock/v1/common.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::message_queue {
namespace {

using redis::RedisReply;

// Shared Lua helpers. Numbers in Redis Lua are doubles: exact below 2^53, which covers
// sequences, byte counts and millisecond times. Stream entries hold the fields
// s (sequence), x (expires_at_ms) and e (the envelope bytes); the meta hash holds
// bytes (sum of stored e sizes) and acked (highest sequence removed by a cumulative ack).
constexpr char kLuaHelpers[] = R"lua(
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
)lua";

// The enqueue of a batch of devices (one or many) in one call: on a cluster all of them in one
// hash slot, on a standalone Redis any devices. Per device, in call order, it does exactly what a
// call per device did: each device's appends see those before it in the same call.
// KEYS: per device i (0-based), at 6i + 1..6: inbox, sequence, channel, meta, dedupe bucket now,
//       dedupe bucket before.
// ARGV: retention_ms, max_entries, max_bytes, inline_wakeup_bytes, bucket number,
//       dedupe bucket ttl_ms, key ttl_ms, key ttl refresh interval ms, memory-pressure byte cap
//       ('' when Redis memory is not under pressure), '1' when Redis memory is above the
//       high-water mark ('' otherwise); then per device i at 10 + 5i + 1..5: envelope, dedupe key,
//       expires_at_ms, shared payload key ('' for 1:1), shared payload bytes for the wake-up (''
//       when too big).
// Returns one element per device, in order: {duplicate 0|1, sequence, entry id, subscribers,
// expired}, or an error reply (INBOX_FULL, INBOX_PRESSURE or MEMORY_FULL …, or a command's error)
// for that device alone. The memory refusals come after the dedupe look-up: a retry of a send
// already stored is answered with its placement whatever the memory.
// Each device runs under pcall, so an error stops only that device (as it stopped its own call
// before): the devices before and after it keep their outcomes, and what each reports is exactly
// what it wrote.
// About ten commands for a new entry: each bucket hash and the meta hash are read once (HMGET),
// the trim looks at the stream only when its head may have expired, the dedupe bucket gets its
// TTL when it is created, and the backstop TTLs of the inbox keys are pushed out at most once per
// refresh interval (meta field r: when they last were).
constexpr char kEnqueueBody[] = R"lua(
local retention, max_entries, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local inline_bytes, bucket = tonumber(ARGV[4]), ARGV[5]
local bucket_ttl, key_ttl, refresh_ms = ARGV[6], ARGV[7], tonumber(ARGV[8])
local pressure_cap, memory_full = tonumber(ARGV[9]), ARGV[10] == '1'
local bucket_before = string.format('%.0f', tonumber(bucket) - 1)
local function enqueue(inbox, sequence, channel, meta_key, now_key, before_key,
                       env, dedupe, expires, payload_key, shared)
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
    return {1, tonumber(seq), id, 0, 0}
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
  return {0, seq, id, subscribers, expired}
end
local results = {}
for i = 0, #KEYS / 6 - 1 do
  local k, a = 6 * i, 10 + 5 * i
  local ok, r = pcall(enqueue, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5],
                      KEYS[k + 6], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
                      ARGV[a + 5])
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
)lua";

// KEYS: inbox, sequence, meta. ARGV: start ('-' or '(' .. id), count, retention_ms.
// Returns {last sequence, acked sequence, depth, expired, entries,
//          sequences acked one by one above the floor (ascending)}.
constexpr char kReadBody[] = R"lua(
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
)lua";

// KEYS: inbox, meta. ARGV: up_to id or '', then individual ids.
// Returns {entries removed, shared payload keys of the removed entries (one per entry)}.
// The meta hash's `acked` is the floor: every sequence at or below it was acked (cumulatively or
// one by one), so reads never report it as a gap. Sequences acked one by one above the floor are
// remembered as fields a<sequence> (their number in `ia`) until the floor passes them: the floor
// moves over them as soon as everything below them is acked too, and a cumulative ack drops the
// ones it covers. An expired (trimmed) sequence stops the floor until a cumulative ack passes it.
constexpr char kAckBody[] = R"lua(
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
)lua";

// KEYS: channels::DeviceInboxKeys. Returns {entries removed, shared payload keys referred to}.
constexpr char kPurgeBody[] = R"lua(
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
)lua";

// KEYS: payload key. ARGV: bytes, references to add, expire-at ms. A retry of the same send adds
// its references to the existing payload (its own duplicates are released afterwards).
constexpr char kPutPayloadBody[] = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'r', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'd', ARGV[1], 'r', ARGV[2])
end
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
)lua";

// KEYS: payload key. ARGV: references to drop. Deletes the payload at zero. Returns 1 if deleted.
constexpr char kReleasePayloadBody[] = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[1], 'r', -tonumber(ARGV[1])) <= 0 then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
)lua";

// KEYS: inbox, sequence, meta. Returns {depth, last sequence, bytes}.
constexpr char kInfoBody[] = R"lua(
return {redis.call('XLEN', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'),
        tonumber(redis.call('HGET', KEYS[3], 'bytes') or '0')}
)lua";

// Devices per enqueue call: a call blocks Redis for its whole run (about 20 µs per device).
constexpr size_t kMaxDevicesPerCall = 256;

// Payloads outlive their longest entry by this much (clock skew between service and Redis).
constexpr int64_t kPayloadMarginMs = 60'000;

std::string PayloadKey(const SharedPayload& payload) {
  return absl::StrCat("gp:{", payload.id, "}");
}

std::string MetaKey(const DeviceKey& d) {
  return absl::StrCat("qm:", channels::DeviceHashTag(d.user_id, d.device_id));
}
std::string DedupeKey(const DeviceKey& d, int64_t parity) {
  return absl::StrCat("qd", parity, ":", channels::DeviceHashTag(d.user_id, d.device_id));
}

absl::Status ReplyError(const RedisReply& reply, std::string_view what) {
  for (std::string_view code : {"INBOX_FULL", "INBOX_PRESSURE", "MEMORY_FULL"}) {
    if (reply.error_code() == code) {
      absl::Status refused = absl::ResourceExhaustedError(reply.str());
      refused.SetPayload(kRefusalPayload,
                         absl::Cord(code == "INBOX_FULL"       ? "inbox_full"
                                    : code == "INBOX_PRESSURE" ? "memory_pressure"
                                                               : "memory_full"));
      return refused;
    }
  }
  absl::Status s = reply.ToStatus();
  return absl::Status(s.code(), absl::StrCat(ToAbsl(what), ": ", s.message()));
}

absl::Status Malformed(std::string_view what) {
  return absl::InternalError(absl::StrCat(ToAbsl(what), ": unexpected reply from redis"));
}

uint64_t AsU64(const RedisReply& r) {
  if (r.is_integer()) return static_cast<uint64_t>(r.integer());
  uint64_t v = 0;
  if (r.is_string() && absl::SimpleAtoi(r.str(), &v)) return v;
  return 0;
}

// One device's element of the enqueue script's reply.
absl::StatusOr<AppendResult> ParseAppend(const RedisReply& reply) {
  if (reply.is_error()) return ReplyError(reply, "enqueue");
  const auto& e = reply.elements();
  if (!reply.is_array() || e.size() != 5 || !e[2].is_string()) return Malformed("enqueue");
  AppendResult result;
  result.duplicate = e[0].integer() == 1;
  result.sequence = AsU64(e[1]);
  result.server_id = e[2].str();
  result.online = e[3].integer() > 0;
  result.expired = e[4].integer();
  return result;
}

}  // namespace

RedisInboxStore::RedisInboxStore(redis::RedisClient* redis, InboxLimits limits,
                                 MemoryAdmission* admission, runtime::Clock* clock)
    : redis_(redis),
      admission_(admission),
      clock_(clock != nullptr ? clock : runtime::SystemClock::Get()),
      limits_(limits),
      enqueue_(absl::StrCat(kLuaHelpers, kEnqueueBody)),
      read_(absl::StrCat(kLuaHelpers, kReadBody)),
      ack_(absl::StrCat(kLuaHelpers, kAckBody)),
      purge_(absl::StrCat(kLuaHelpers, kPurgeBody)),
      info_(kInfoBody),
      put_payload_(kPutPayloadBody),
      release_payload_(kReleasePayloadBody) {}

void RedisInboxStore::ReleasePayloads(const absl::flat_hash_map<std::string, int64_t>& counts) {
  if (counts.empty()) return;
  std::vector<redis::Command> commands;
  for (const auto& [key, count] : counts) {
    commands.push_back(release_payload_.Call({key}, {absl::StrCat(count)}));
  }
  // A release that fails only keeps the payload until its own TTL: never a dangling reference.
  (void)redis_->ExecutePipeline(commands);
}

std::vector<absl::StatusOr<AppendResult>> RedisInboxStore::Append(
    absl::Span<const AppendRequest> requests) {
  return AppendAfterAcks({}, requests, nullptr);
}

RedisInboxStore::AckAndAppendResults RedisInboxStore::AckAndAppend(
    absl::Span<const AckRequest> acks, absl::Span<const AppendRequest> appends) {
  AckAndAppendResults results;
  if (appends.empty()) {
    if (!acks.empty()) results.acks = Ack(acks);
    return results;
  }
  results.appends = AppendAfterAcks(acks, appends, &results.acks);
  return results;
}

std::vector<absl::StatusOr<AppendResult>> RedisInboxStore::AppendAfterAcks(
    absl::Span<const AckRequest> acks, absl::Span<const AppendRequest> requests,
    std::vector<absl::StatusOr<uint64_t>>* ack_results) {
  const int64_t now_ms = clock_->NowMs();
  const int64_t window_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(limits_.dedupe_window));
  const int64_t bucket = now_ms / window_ms;
  const std::string retention_ms = absl::StrCat(absl::ToInt64Milliseconds(limits_.retention));
  // Backstop only: appends push the keys' lifetime past the retention period, at most once per
  // refresh interval, so that a key always outlives its last append by retention + 23 h.
  const std::string key_ttl_ms =
      absl::StrCat(absl::ToInt64Milliseconds(limits_.retention + absl::Hours(24)));
  const std::string key_ttl_refresh_ms = absl::StrCat(absl::ToInt64Milliseconds(absl::Hours(1)));
  // A bucket hash gets its TTL once, when it is created (at or after its bucket's start): three
  // windows keep it past the end of the next bucket, which still looks it up, with a window of
  // margin for clock differences between message-queue replicas and Redis.
  const std::string bucket_ttl_ms = absl::StrCat(3 * window_ms);
  // Round 1: every shared payload, once, with as many references as requests refer to it —
  // before any append, so a reference never exists without its payload, and the count can only be
  // too high (released below or left to the payload's TTL), never too low.
  absl::flat_hash_map<const SharedPayload*, int64_t> refs;
  absl::flat_hash_map<const SharedPayload*, absl::Status> put_failed;
  for (const AppendRequest& r : requests) {
    if (r.shared != nullptr && !r.online_only) ++refs[r.shared.get()];
  }
  if (!refs.empty()) {
    std::vector<const SharedPayload*> order;
    std::vector<redis::Command> puts;
    for (const auto& [payload, count] : refs) {
      order.push_back(payload);
      puts.push_back(put_payload_.Call(
          {PayloadKey(*payload)},
          {payload->bytes, absl::StrCat(count),
           absl::StrCat(payload->expires_at_ms + kPayloadMarginMs)}));
    }
    // With a durability policy the payload must be on the replicas before any inbox refers to
    // it: a payload that is not confirmed refuses its appends (Unavailable, retry is safe).
    std::vector<absl::StatusOr<RedisReply>> replies =
        redis_->ExecutePipelineAndWait(puts, limits_.durability);
    for (size_t i = 0; i < replies.size(); ++i) {
      if (!replies[i].ok()) {
        put_failed[order[i]] = replies[i].status();
      } else if (replies[i]->is_error()) {
        put_failed[order[i]] = ReplyError(*replies[i], "store shared payload");
      }
    }
  }

  // Round 2: the appends, grouped into one enqueue call per cluster hash slot (every key of a
  // device carries its hash tag, so a call's keys share one slot) — on a standalone Redis, where
  // every key is on the one server, one call for all devices. Each call holds at most
  // kMaxDevicesPerCall devices, which bounds how long it blocks Redis; a slot's devices keep
  // their request order across its calls, and a pipeline keeps the order of the calls of one
  // node, so the appends to each device run in request order as before. With a durability policy,
  // the online_only publishes (which write nothing and need no replica) go in a pipeline of their
  // own, so that WAIT only judges writes.
  const bool wait = limits_.durability.replicas > 0;
  const bool cluster = redis_->options().mode == redis::RedisMode::kCluster;
  struct Call {
    size_t command = 0;  // index in `commands`
    std::vector<std::string> keys;
    std::vector<std::string> args;
    size_t devices = 0;
  };
  std::vector<Call> calls;
  absl::flat_hash_map<int, size_t> filling;  // slot → the call in `calls` that takes its devices
  // The acks lead the pipeline (commands [0, acks.size())): they run before the appends.
  std::vector<redis::Command> commands;
  commands.reserve(acks.size() + 1);
  for (const AckRequest& ack : acks) commands.push_back(AckCommand(ack));
  std::vector<redis::Command> publishes;
  // Per request: its call and its position in that call's reply (appends), or its publish.
  enum class Kind { kFailedPut, kAppend, kPublish, kSeparatePublish };
  struct Where {
    Kind kind = Kind::kFailedPut;
    size_t index = 0;     // call (kAppend) or command (publishes)
    size_t position = 0;  // kAppend: element of the call's reply
  };
  std::vector<Where> where(requests.size());
  const std::vector<std::string> common_args = {
      retention_ms, absl::StrCat(limits_.max_entries), absl::StrCat(limits_.max_bytes),
      absl::StrCat(limits_.inline_wakeup_bytes), absl::StrCat(bucket), bucket_ttl_ms, key_ttl_ms,
      key_ttl_refresh_ms, std::string(), std::string()};
  for (size_t i = 0; i < requests.size(); ++i) {
    const AppendRequest& r = requests[i];
    const DeviceKey& d = r.device;
    if (r.shared != nullptr && !r.online_only && put_failed.contains(r.shared.get())) continue;
    if (r.online_only) {
      padlock::v1::DeviceChannelEvent event;
      padlock::v1::Envelope* envelope = event.mutable_wakeup()->mutable_envelope();
      envelope->ParseFromString(r.envelope);  // built by our own logic: always parses
      if (r.shared != nullptr) envelope->set_ciphertext(r.shared->bytes);
      envelope->set_server_timestamp_ms(static_cast<uint64_t>(now_ms));
      std::vector<redis::Command>& to = wait ? publishes : commands;
      where[i] = {wait ? Kind::kSeparatePublish : Kind::kPublish, to.size(), 0};
      to.push_back(redis::Command::Keyed(
          {"SPUBLISH", channels::DeviceChannel(d.user_id, d.device_id), event.SerializeAsString()},
          1));
      continue;
    }
    std::string inbox = channels::InboxKey(d.user_id, d.device_id);
    const int slot = cluster ? redis::KeySlot(inbox) : 0;
    auto it = filling.find(slot);
    if (it == filling.end() || calls[it->second].devices == kMaxDevicesPerCall) {
      // A placeholder keeps the call's place in the pipeline; it is built once it is complete.
      calls.push_back(Call{commands.size(), {}, common_args, 0});
      commands.emplace_back();
      filling[slot] = calls.size() - 1;
      it = filling.find(slot);
    }
    Call& call = calls[it->second];
    where[i] = {Kind::kAppend, it->second, call.devices++};
    call.keys.insert(call.keys.end(),
                     {std::move(inbox), channels::SequenceKey(d.user_id, d.device_id),
                      channels::DeviceChannel(d.user_id, d.device_id), MetaKey(d),
                      DedupeKey(d, bucket % 2), DedupeKey(d, (bucket + 1) % 2)});
    call.args.insert(
        call.args.end(),
        {r.envelope, r.dedupe_key, absl::StrCat(r.expires_at_ms),
         r.shared == nullptr ? std::string() : PayloadKey(*r.shared),
         r.shared != nullptr &&
                 r.envelope.size() + r.shared->bytes.size() <= limits_.inline_wakeup_bytes
             ? r.shared->bytes
             : std::string()});
  }
  // Memory admission per call (all of a call's keys are on one master).
  std::vector<std::string> call_nodes(calls.size());
  if (admission_ != nullptr) {
    for (size_t c = 0; c < calls.size(); ++c) {
      absl::StatusOr<std::string> node = redis_->AddressForKey(calls[c].keys.front());
      if (!node.ok()) continue;  // the call itself will fail the same way
      call_nodes[c] = *std::move(node);
      switch (admission_->Level(call_nodes[c])) {
        case MemoryLevel::kNormal:
          break;
        case MemoryLevel::kPressure:
          calls[c].args[8] = absl::StrCat(admission_->options().pressure_inbox_bytes);
          break;
        case MemoryLevel::kFull:
          calls[c].args[9] = "1";
          break;
      }
    }
  }
  for (Call& call : calls) {
    commands[call.command] = enqueue_.Call(call.keys, call.args);
    // A short WAIT makes each stored or deduplicated device Unavailable, as it made its own call
    // before; a device refused (INBOX_FULL) wrote nothing and keeps its refusal.
    commands[call.command].wait_per_element = true;
  }
  std::vector<absl::StatusOr<RedisReply>> replies =
      redis_->ExecutePipelineAndWait(commands, limits_.durability);
  std::vector<absl::StatusOr<RedisReply>> publish_replies;
  if (!publishes.empty()) publish_replies = redis_->ExecutePipeline(publishes);
  std::vector<absl::StatusOr<AppendResult>> results;
  results.reserve(requests.size());
  // Round 3: references taken in round 1 that no new entry holds (failed or duplicate appends),
  // and those the acks released.
  absl::flat_hash_map<std::string, int64_t> unused;
  if (ack_results != nullptr) {
    ack_results->clear();
    for (size_t a = 0; a < acks.size(); ++a) ack_results->push_back(ParseAck(replies[a], &unused));
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    const AppendRequest& r = requests[i];
    const Where& at = where[i];
    if (at.kind == Kind::kFailedPut) {
      results.push_back(put_failed.at(r.shared.get()));
      continue;
    }
    if (at.kind == Kind::kAppend) {
      const Call& call = calls[at.index];
      const absl::StatusOr<RedisReply>& reply = replies[call.command];
      absl::StatusOr<AppendResult> result;
      if (!reply.ok()) {
        result = reply.status();  // the whole call's outcome: each device's
      } else if (reply->is_error()) {
        // Refused as a whole before it ran (each device's errors, UNCONFIRMED included, are
        // elements of the array).
        result = ReplyError(*reply, "enqueue");
      } else if (!reply->is_array() || reply->elements().size() != call.devices) {
        result = Malformed("enqueue");
      } else {
        result = ParseAppend(reply->elements()[at.position]);
      }
      if (admission_ != nullptr && result.ok() && !result->duplicate) {
        admission_->Charge(call_nodes[at.index], r.envelope.size());
      }
      // An unknown outcome (Unavailable, or a reply we cannot read) may have appended: keep its
      // reference (TTL bounds it).
      if (r.shared != nullptr &&
          ((result.ok() && result->duplicate) ||
           (!result.ok() && result.status().code() != absl::StatusCode::kUnavailable &&
            result.status().code() != absl::StatusCode::kInternal))) {
        ++unused[PayloadKey(*r.shared)];
      }
      results.push_back(std::move(result));
      continue;
    }
    const absl::StatusOr<RedisReply>& reply =
        at.kind == Kind::kPublish ? replies[at.index] : publish_replies[at.index];
    if (!reply.ok()) {
      results.push_back(reply.status());
    } else if (reply->is_error()) {
      results.push_back(ReplyError(*reply, "publish"));
    } else {
      AppendResult result;
      result.online = reply->integer() > 0;
      results.push_back(std::move(result));
    }
  }
  ReleasePayloads(unused);
  return results;
}

absl::StatusOr<InboxPage> RedisInboxStore::Read(const DeviceKey& device,
                                                std::string_view after_server_id,
                                                uint32_t max_entries) {
  const DeviceKey& d = device;
  absl::StatusOr<RedisReply> reply = redis_->Execute(read_.Call(
      {channels::InboxKey(d.user_id, d.device_id), channels::SequenceKey(d.user_id, d.device_id),
       MetaKey(d)},
      {after_server_id.empty() ? std::string("-") : absl::StrCat("(", ToAbsl(after_server_id)),
       absl::StrCat(max_entries), absl::StrCat(absl::ToInt64Milliseconds(limits_.retention))}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return ReplyError(*reply, "read inbox");
  const auto& e = reply->elements();
  if (!reply->is_array() || e.size() != 6) return Malformed("read inbox");
  InboxPage page;
  std::vector<std::string> payload_keys;
  std::vector<size_t> shared_index;
  page.last_sequence = AsU64(e[0]);
  page.acked_sequence = AsU64(e[1]);
  page.depth = AsU64(e[2]);
  page.expired = e[3].integer();
  for (const RedisReply& sequence : e[5].elements()) {
    page.acked_individually.push_back(AsU64(sequence));
  }
  for (const RedisReply& entry : e[4].elements()) {
    if (entry.elements().size() != 2) return Malformed("read inbox entry");
    StoredEntry out;
    out.server_id = entry.elements()[0].str();
    const auto& fields = entry.elements()[1].elements();
    for (size_t i = 0; i + 1 < fields.size(); i += 2) {
      const std::string& name = fields[i].str();
      if (name == "s") {
        out.sequence = AsU64(fields[i + 1]);
      } else if (name == "x") {
        out.expires_at_ms = AsU64(fields[i + 1]);
      } else if (name == "e") {
        out.envelope = fields[i + 1].str();
      } else if (name == "p") {
        payload_keys.push_back(fields[i + 1].str());
        shared_index.push_back(page.entries.size());
      }
    }
    page.entries.push_back(std::move(out));
  }
  if (payload_keys.empty()) return page;
  // Shared payloads live in slots of their own: one more pipelined round.
  std::vector<redis::Command> gets;
  for (const std::string& key : payload_keys) {
    gets.push_back(redis::Command::Keyed({"HGET", key, "d"}, 1, /*idempotent=*/true));
  }
  std::vector<absl::StatusOr<RedisReply>> payloads = redis_->ExecutePipeline(gets);
  for (size_t k = 0; k < payloads.size(); ++k) {
    if (!payloads[k].ok()) return payloads[k].status();
    if (payloads[k]->is_error()) return ReplyError(*payloads[k], "read shared payload");
    StoredEntry& entry = page.entries[shared_index[k]];
    if (!payloads[k]->is_string()) {
      entry.expires_at_ms = 1;  // the payload expired: so did the entry
      continue;
    }
    padlock::v1::Envelope envelope;
    if (!envelope.ParseFromString(entry.envelope)) return Malformed("inbox entry");
    envelope.set_ciphertext(payloads[k]->str());
    entry.envelope = envelope.SerializeAsString();
  }
  return page;
}

redis::Command RedisInboxStore::AckCommand(const AckRequest& r) const {
  std::vector<std::string> args = {r.up_to_server_id};
  args.insert(args.end(), r.server_ids.begin(), r.server_ids.end());
  redis::Command command =
      ack_.Call({channels::InboxKey(r.device.user_id, r.device.device_id), MetaKey(r.device)},
                args);
  command.idempotent = true;  // an ack repeated removes nothing more
  return command;
}

absl::StatusOr<uint64_t> RedisInboxStore::ParseAck(
    const absl::StatusOr<RedisReply>& reply,
    absl::flat_hash_map<std::string, int64_t>* released) {
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return ReplyError(*reply, "ack");
  if (!reply->is_array() || reply->elements().size() != 2) return Malformed("ack");
  for (const RedisReply& key : reply->elements()[1].elements()) ++(*released)[key.str()];
  return AsU64(reply->elements()[0]);
}

std::vector<absl::StatusOr<uint64_t>> RedisInboxStore::Ack(absl::Span<const AckRequest> requests) {
  std::vector<redis::Command> commands;
  commands.reserve(requests.size());
  for (const AckRequest& r : requests) commands.push_back(AckCommand(r));
  std::vector<absl::StatusOr<RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<absl::StatusOr<uint64_t>> results;
  results.reserve(replies.size());
  absl::flat_hash_map<std::string, int64_t> released;
  for (const absl::StatusOr<RedisReply>& reply : replies) {
    results.push_back(ParseAck(reply, &released));
  }
  ReleasePayloads(released);
  return results;
}

absl::StatusOr<uint64_t> RedisInboxStore::Purge(const DeviceKey& device) {
  redis::Command command =
      purge_.Call(channels::DeviceInboxKeys(device.user_id, device.device_id), {});
  command.idempotent = true;
  absl::StatusOr<RedisReply> reply = redis_->Execute(command);
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return ReplyError(*reply, "purge inbox");
  if (!reply->is_array() || reply->elements().size() != 2) return Malformed("purge inbox");
  absl::flat_hash_map<std::string, int64_t> released;
  for (const RedisReply& key : reply->elements()[1].elements()) ++released[key.str()];
  ReleasePayloads(released);
  return AsU64(reply->elements()[0]);
}

absl::StatusOr<InboxInfo> RedisInboxStore::Info(const DeviceKey& device) {
  const DeviceKey& d = device;
  redis::Command command = info_.Call(
      {channels::InboxKey(d.user_id, d.device_id), channels::SequenceKey(d.user_id, d.device_id),
       MetaKey(d)},
      {});
  command.idempotent = true;
  absl::StatusOr<RedisReply> reply = redis_->Execute(command);
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return ReplyError(*reply, "inbox info");
  const auto& e = reply->elements();
  if (!reply->is_array() || e.size() != 3) return Malformed("inbox info");
  return InboxInfo{AsU64(e[0]), AsU64(e[1]), AsU64(e[2])};
}

}  // namespace padlock::message_queue
