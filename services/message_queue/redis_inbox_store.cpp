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
#include "services/message_queue/lua_scripts.h"

namespace padlock::message_queue {
namespace {

using redis::RedisReply;

// Devices per enqueue call: a call blocks Redis for its whole run (about 20 µs per device).
constexpr size_t kMaxDevicesPerCall = 256;

// Payloads outlive their longest entry by this much (clock skew between service and Redis).
constexpr int64_t kPayloadMarginMs = 60'000;

std::string PayloadKey(const SharedPayload& payload) {
  return absl::StrCat("gp:{", payload.id, "}");
}

std::string MetaKey(const DeviceKey& d) { return channels::InboxMetaKey(d.user_id, d.device_id); }
std::string DedupeKey(const DeviceKey& d, int64_t parity) {
  return channels::InboxDedupeKey(d.user_id, d.device_id, parity);
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
  if (!reply.is_array() || e.size() != 6 || !e[2].is_string()) return Malformed("enqueue");
  AppendResult result;
  result.duplicate = e[0].integer() == 1;
  result.sequence = AsU64(e[1]);
  result.server_id = e[2].str();
  result.online = e[3].integer() > 0;
  result.expired = e[4].integer();
  result.push_due = e[5].integer() == 1;
  return result;
}

}  // namespace

RedisInboxStore::RedisInboxStore(redis::RedisClient* redis, InboxLimits limits,
                                 MemoryAdmission* admission, runtime::Clock* clock)
    : redis_(redis),
      admission_(admission),
      clock_(clock != nullptr ? clock : runtime::SystemClock::Get()),
      limits_(limits),
      enqueue_(absl::StrCat(lua::kHelpers, lua::kEnqueue)),
      read_(absl::StrCat(lua::kHelpers, lua::kRead)),
      ack_(absl::StrCat(lua::kHelpers, lua::kAck)),
      purge_(absl::StrCat(lua::kHelpers, lua::kPurge)),
      info_(lua::kInfo),
      put_payload_(lua::kPutPayload),
      release_payload_(lua::kReleasePayload) {}

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
      key_ttl_refresh_ms, std::string(), std::string(),
      limits_.push_interval > absl::ZeroDuration()
          ? absl::StrCat(std::max<int64_t>(1, absl::ToInt64Milliseconds(limits_.push_interval)))
          : std::string()};
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
                      DedupeKey(d, bucket % 2), DedupeKey(d, (bucket + 1) % 2),
                      channels::PushSubscriptionKey(d.user_id, d.device_id),
                      channels::PushCoalesceKey(d.user_id, d.device_id)});
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
