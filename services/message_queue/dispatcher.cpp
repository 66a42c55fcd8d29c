#include "services/message_queue/dispatcher.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/statement/ids.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::message_queue {
namespace {

namespace v1 = padlock::v1;

constexpr uint32_t kMaxRegistrationId = 16380;

absl::StatusOr<DeviceKey> ToDevice(const v1::DeviceAddress& address, std::string_view field) {
  if (!statement::IsValidUserId(address.user_id())) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), ".user_id: not a user id (E.164 or [a-z0-9._-]{3,32})"));
  }
  if (address.device_id() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(field), ".device_id: required (not 0)"));
  }
  return DeviceKey{address.user_id(), address.device_id()};
}

bool IsValidType(v1::EnvelopeType type) {
  return type == v1::ENVELOPE_TYPE_MESSAGE || type == v1::ENVELOPE_TYPE_PREKEY_MESSAGE ||
         type == v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE ||
         type == v1::ENVELOPE_TYPE_SENDER_KEY_DISTRIBUTION;
}

uint64_t MsOfServerId(std::string_view id) {
  uint64_t ms = 0;
  (void)absl::SimpleAtoi(ToAbsl(id.substr(0, id.find('-'))), &ms);
  return ms;
}

void AddGap(v1::ReadInboxResponse* response, uint64_t first, uint64_t last) {
  if (first > last) return;
  if (response->gaps_size() > 0) {
    v1::Gap* previous = response->mutable_gaps(response->gaps_size() - 1);
    if (previous->last_sequence() + 1 == first) {
      previous->set_last_sequence(last);
      return;
    }
  }
  v1::Gap* gap = response->add_gaps();
  gap->set_first_sequence(first);
  gap->set_last_sequence(last);
  gap->set_reason(v1::Gap::REASON_EXPIRED);
}

// Adds the gap [first, last] less the sequences in `acked` (ascending) that the device acked one by
// one: it has those, so they are no gap.
void AddGapExcept(v1::ReadInboxResponse* response, uint64_t first, uint64_t last,
                  const std::vector<uint64_t>& acked) {
  uint64_t from = first;
  for (auto it = std::lower_bound(acked.begin(), acked.end(), first);
       it != acked.end() && *it <= last; ++it) {
    if (*it > from) AddGap(response, from, *it - 1);
    from = *it + 1;
  }
  if (from <= last) AddGap(response, from, last);
}

// How one send compares with the device lists: the first unknown user (if any), whether the
// sending device is on its account's list, and each user's missing, extra and stale devices.
struct ListCheck {
  std::string unknown;
  bool sender_listed = false;
  v1::Mismatch mismatch;
};

ListCheck CheckAgainstLists(const v1::Send& send,
                            const absl::flat_hash_map<std::string, DeviceListInfo>& lists) {
  const v1::OutgoingMessage& m = send.message();
  const std::string& sender_user = send.sender().user_id();
  // Addressed devices per user (the sender's account always takes part).
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint32_t, uint32_t>> addressed;
  std::vector<std::string> order = {sender_user};
  addressed[sender_user];
  for (const v1::Recipient& r : m.recipients()) {
    auto [it, inserted] = addressed.try_emplace(r.device().user_id());
    if (inserted) order.push_back(r.device().user_id());
    it->second[r.device().device_id()] = r.registration_id();
  }
  ListCheck check;
  for (const std::string& user : order) {
    auto list = lists.find(user);
    if (list == lists.end()) {
      check.unknown = user;
      break;
    }
    const auto& sent = addressed[user];
    v1::DeviceMismatch dm;
    absl::flat_hash_set<uint32_t> listed;
    for (const ListedDevice& d : list->second.devices) {
      if (user == sender_user && d.device_id == send.sender().device_id()) {
        check.sender_listed = true;
        continue;
      }
      listed.insert(d.device_id);
      auto s = sent.find(d.device_id);
      if (s == sent.end()) {
        dm.add_missing_device_ids(d.device_id);
      } else if (s->second != d.registration_id) {
        dm.add_stale_device_ids(d.device_id);
      }
    }
    std::vector<uint32_t> extra;
    for (const auto& [device, registration] : sent) {
      if (!listed.contains(device)) extra.push_back(device);
    }
    std::sort(extra.begin(), extra.end());
    for (uint32_t d : extra) dm.add_extra_device_ids(d);
    std::sort(dm.mutable_missing_device_ids()->begin(), dm.mutable_missing_device_ids()->end());
    std::sort(dm.mutable_stale_device_ids()->begin(), dm.mutable_stale_device_ids()->end());
    if (dm.missing_device_ids_size() + dm.extra_device_ids_size() + dm.stale_device_ids_size() >
        0) {
      dm.set_user_id(user);
      dm.set_device_list_version(list->second.version);
      *check.mismatch.add_users() = std::move(dm);
    }
  }
  return check;
}

}  // namespace

bool IsServerId(std::string_view id) {
  const size_t dash = id.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == id.size() || dash > 20 ||
      id.size() - dash - 1 > 20) {
    return false;
  }
  for (size_t i = 0; i < id.size(); ++i) {
    if (i != dash && !absl::ascii_isdigit(static_cast<unsigned char>(id[i]))) return false;
  }
  return true;
}

Dispatcher::Dispatcher(DispatchOptions options, DeviceDirectory* directory, InboxStore* store,
                       runtime::Clock* clock, prometheus::Registry* metrics,
                       PushNotifier* notifier)
    : options_(options),
      dedupe_ids_(options_.dedupe_secret),
      directory_(directory),
      store_(store),
      clock_(clock),
      notifier_(notifier) {
  enqueued_ = runtime::MakeCounter(metrics, "padlock_envelopes_enqueued_total",
                          "Device envelopes accepted (stored or published online_only)");
  online_ = runtime::MakeCounter(metrics, "padlock_envelopes_published_online_total",
                        "Device envelopes whose wake-up reached a live subscriber");
  stored_ = runtime::MakeCounter(metrics, "padlock_envelopes_stored_total",
                        "Device envelopes appended to an inbox");
  acked_ = runtime::MakeCounter(metrics, "padlock_envelopes_acked_total",
                       "Inbox entries removed by acks");
  expired_ = runtime::MakeCounter(metrics, "padlock_envelopes_expired_total",
                         "Inbox entries removed by the retention time trim");
  retry_hits_ = runtime::MakeCounter(metrics, "padlock_enqueue_retry_hits_total",
                            "Device appends answered from the dedupe window (retries)");
  if (metrics != nullptr) {
    refused_ = &prometheus::BuildCounter()
                    .Name("padlock_envelopes_refused_total")
                    .Help("Sends refused, by reason")
                    .Register(*metrics);
    depth_ = &prometheus::BuildHistogram()
                  .Name("padlock_inbox_depth")
                  .Help("Inbox entries waiting, observed on each read")
                  .Register(*metrics)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0, 1, 10, 100, 1000, 10'000,
                                                                   100'000});
  }
}

void Dispatcher::Refuse(v1::SendOutcome* outcome, absl::StatusCode code, std::string_view reason,
                        std::string_view message) {
  v1::Refusal* refusal = outcome->mutable_refused();
  refusal->set_code(static_cast<int32_t>(code));
  refusal->set_message(std::string(message));
  if (refused_ != nullptr) refused_->Add({{"reason", std::string(reason)}}).Increment();
}

absl::Status Dispatcher::ValidateSend(const v1::Send& send) const {
  absl::StatusOr<DeviceKey> sender = ToDevice(send.sender(), "sender");
  if (!sender.ok()) return sender.status();
  const v1::OutgoingMessage& m = send.message();
  if (m.message_id().size() != 16) {
    return absl::InvalidArgumentError("message.message_id: exactly 16 bytes required");
  }
  if (m.recipients_size() == 0) {
    return absl::InvalidArgumentError("message.recipients: at least one required");
  }
  if (static_cast<size_t>(m.recipients_size()) > options_.max_recipients_per_send) {
    return absl::InvalidArgumentError(
        absl::StrCat("message.recipients: at most ", options_.max_recipients_per_send));
  }
  const bool shared = !m.shared_ciphertext().empty();
  if (shared) {
    if (m.shared_ciphertext().size() > options_.max_shared_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("message.shared_ciphertext: at most ",
                                                     options_.max_shared_bytes, " bytes"));
    }
    if (!IsValidType(m.shared_type())) {
      return absl::InvalidArgumentError("message.shared_type: a Signal wire type required");
    }
  } else if (m.shared_type() != v1::ENVELOPE_TYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError("message.shared_type: only with shared_ciphertext");
  }
  absl::flat_hash_set<DeviceKey> seen;
  absl::flat_hash_set<std::string> users;
  for (int i = 0; i < m.recipients_size(); ++i) {
    const v1::Recipient& r = m.recipients(i);
    const std::string field = absl::StrCat("message.recipients[", i, "]");
    absl::StatusOr<DeviceKey> device = ToDevice(r.device(), absl::StrCat(field, ".device"));
    if (!device.ok()) return device.status();
    if (*device == *sender) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": the sending device itself"));
    }
    if (!seen.insert(*device).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": device listed twice"));
    }
    users.insert(device->user_id);
    if (r.registration_id() == 0 || r.registration_id() > kMaxRegistrationId) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".registration_id: 1..", kMaxRegistrationId, " required"));
    }
    if (shared) {
      if (!r.ciphertext().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".ciphertext: must be empty with a shared payload"));
      }
      if (r.header().size() > options_.max_header_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".header: at most ", options_.max_header_bytes, " bytes"));
      }
      continue;
    }
    if (!IsValidType(r.type())) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".type: a Signal wire type required"));
    }
    if (r.ciphertext().empty() || r.ciphertext().size() > options_.max_ciphertext_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".ciphertext: 1 to ", options_.max_ciphertext_bytes, " bytes required"));
    }
    if (!r.header().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".header: only with a shared payload"));
    }
  }
  if (users.size() > options_.max_users_per_send) {
    return absl::InvalidArgumentError(
        absl::StrCat("message.recipients: at most ", options_.max_users_per_send, " users"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::EnqueueResponse> Dispatcher::Enqueue(const v1::EnqueueRequest& request) {
  if (static_cast<size_t>(request.sends_size()) > options_.max_sends_per_request) {
    return absl::InvalidArgumentError(
        absl::StrCat("sends: at most ", options_.max_sends_per_request, " per request"));
  }
  absl::StatusOr<std::vector<AckRequest>> acks = ParseAcks(request.acks(), "acks");
  if (!acks.ok()) return acks.status();
  v1::EnqueueResponse response;
  const int n = request.sends_size();
  for (int i = 0; i < n; ++i) response.add_outcomes();

  // 1. Validate each send on its own; collect the users whose device lists are needed.
  std::vector<bool> pending(n, false);
  std::vector<std::string> users;
  absl::flat_hash_set<std::string> user_set;
  for (int i = 0; i < n; ++i) {
    const v1::Send& send = request.sends(i);
    if (absl::Status s = ValidateSend(send); !s.ok()) {
      Refuse(response.mutable_outcomes(i), s.code(), "invalid", ToStd(s.message()));
      continue;
    }
    pending[i] = true;
    if (user_set.insert(send.sender().user_id()).second) users.push_back(send.sender().user_id());
    for (const v1::Recipient& r : send.message().recipients()) {
      if (user_set.insert(r.device().user_id()).second) users.push_back(r.device().user_id());
    }
  }

  // 2. One directory look-up for the whole batch (in chunks of the directory's bound).
  absl::flat_hash_map<std::string, DeviceListInfo> lists;
  constexpr size_t kChunk = 1024;
  for (size_t start = 0; start < users.size(); start += kChunk) {
    const size_t len = std::min(kChunk, users.size() - start);
    auto chunk = directory_->GetDeviceLists(absl::MakeConstSpan(users).subspan(start, len));
    if (!chunk.ok()) return chunk.status();
    for (auto& [user, list] : *chunk) lists[user] = std::move(list);
  }

  // 3. Compare each send with the lists; build the appends of the sends that match.
  const int64_t now_ms = clock_->NowMs();
  const uint64_t retention_s = static_cast<uint64_t>(absl::ToInt64Seconds(options_.retention));
  std::vector<AppendRequest> appends;
  std::vector<std::pair<size_t, size_t>> ranges(n, {0, 0});  // [begin, end) in appends
  for (int i = 0; i < n; ++i) {
    if (!pending[i]) continue;
    const v1::Send& send = request.sends(i);
    const v1::OutgoingMessage& m = send.message();
    const std::string& sender_user = send.sender().user_id();
    // The lists are current (no cache anywhere: DeviceDirectory), so one comparison decides.
    ListCheck check = CheckAgainstLists(send, lists);
    if (!check.unknown.empty()) {
      Refuse(response.mutable_outcomes(i), absl::StatusCode::kNotFound, "unknown_user",
             absl::StrCat("unknown user ", check.unknown));
      continue;
    }
    if (!check.sender_listed) {
      Refuse(response.mutable_outcomes(i), absl::StatusCode::kPermissionDenied, "sender_not_listed",
             absl::StrCat("sender device ", sender_user, ":", send.sender().device_id(),
                          " is not on its account's current device list (unlinked?)"));
      continue;
    }
    if (check.mismatch.users_size() > 0) {
      *response.mutable_outcomes(i)->mutable_mismatch() = std::move(check.mismatch);
      if (refused_ != nullptr) refused_->Add({{"reason", "mismatch"}}).Increment();
      continue;
    }
    const uint64_t ttl_s = m.ttl_seconds() == 0 ? retention_s
                                                : std::min<uint64_t>(m.ttl_seconds(), retention_s);
    const uint64_t expires_at_ms = static_cast<uint64_t>(now_ms) + ttl_s * 1000;
    // Keyed ids, not "<sender>:<device>:<message id>": Redis must not say who wrote to whom.
    const std::string dedupe_key =
        dedupe_ids_.ForSend(sender_user, send.sender().device_id(), m.message_id());
    std::shared_ptr<const SharedPayload> shared;
    if (!m.shared_ciphertext().empty()) {
      shared = std::make_shared<const SharedPayload>(
          SharedPayload{absl::BytesToHexString(dedupe_key), m.shared_ciphertext(), expires_at_ms});
    }
    ranges[i].first = appends.size();
    for (const v1::Recipient& r : m.recipients()) {
      v1::Envelope envelope;
      envelope.set_message_id(m.message_id());
      *envelope.mutable_sender() = send.sender();
      *envelope.mutable_recipient() = r.device();
      envelope.set_recipient_registration_id(r.registration_id());
      if (shared != nullptr) {
        envelope.set_type(m.shared_type());
        envelope.set_recipient_header(r.header());
      } else {
        envelope.set_type(r.type());
        envelope.set_ciphertext(r.ciphertext());
      }
      envelope.set_online_only(m.online_only());
      if (!m.online_only()) envelope.set_expires_at_ms(expires_at_ms);
      AppendRequest append;
      append.device = DeviceKey{r.device().user_id(), r.device().device_id()};
      append.envelope = envelope.SerializeAsString();
      append.dedupe_key = dedupe_key;
      append.expires_at_ms = expires_at_ms;
      append.online_only = m.online_only();
      append.shared = shared;
      appends.push_back(std::move(append));
    }
    ranges[i].second = appends.size();
  }
  // 4. The carried acks and every append of the batch in one store call (one pipeline on
  // Redis), the acks first: they are the sending devices' own reads, older than these sends.
  // Requests keep their order per device, so sends of one sender device reach each inbox in
  // request order.
  InboxStore::AckAndAppendResults stored = store_->AckAndAppend(*acks, appends);
  if (request.acks_size() > 0) {
    v1::EnqueueAckResult* ack_result = response.mutable_ack_result();
    absl::StatusOr<std::vector<uint32_t>> removed = CountAcked(stored.acks);
    if (removed.ok()) {
      for (uint32_t k : *removed) ack_result->add_removed(k);
    } else {
      ack_result->set_code(static_cast<int32_t>(removed.status().code()));
      ack_result->set_message(std::string(removed.status().message()));
    }
  }
  if (appends.empty()) return response;
  std::vector<absl::StatusOr<AppendResult>>& results = stored.appends;
  // Devices to wake with a push: every stored append that reported push_due, also in a send
  // refused for another device (what was stored stays stored).
  std::vector<PushWakeRequest> wakes;
  for (int i = 0; i < n; ++i) {
    if (ranges[i].first == ranges[i].second) continue;
    const absl::Status* failure = nullptr;
    for (size_t k = ranges[i].first; k < ranges[i].second; ++k) {
      const absl::StatusOr<AppendResult>& result = results[k];
      if (!result.ok()) {
        if (failure == nullptr) failure = &result.status();
        continue;
      }
      if (result->duplicate) {
        runtime::Increment(retry_hits_);
        continue;
      }
      runtime::Increment(enqueued_);
      if (result->online) runtime::Increment(online_);
      if (!appends[k].online_only) runtime::Increment(stored_);
      runtime::Increment(expired_, static_cast<double>(result->expired));
      if (result->push_due) wakes.push_back({appends[k].device, now_ms});
    }
    if (failure != nullptr) {
      const bool exhausted = failure->code() == absl::StatusCode::kResourceExhausted;
      std::string reason = exhausted ? "inbox_full" : "unavailable";
      if (auto why = failure->GetPayload(kRefusalPayload); exhausted && why.has_value()) {
        reason = std::string(*why);
      }
      Refuse(response.mutable_outcomes(i), failure->code(), reason, ToStd(failure->message()));
      if (exhausted) {
        // The inbox's reader (or the memory it frees by reading) is what the sender waits for.
        response.mutable_outcomes(i)->mutable_refused()->set_retry_after_ms(static_cast<uint32_t>(
            std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.refused_retry_after))));
      }
      continue;
    }
    v1::Accepted* accepted = response.mutable_outcomes(i)->mutable_accepted();
    accepted->set_server_timestamp_ms(static_cast<uint64_t>(now_ms));
    for (size_t k = ranges[i].first; k < ranges[i].second; ++k) {
      v1::Placement* placement = accepted->add_placements();
      placement->mutable_device()->set_user_id(appends[k].device.user_id);
      placement->mutable_device()->set_device_id(appends[k].device.device_id);
      placement->set_server_id(results[k]->server_id);
      placement->set_sequence(results[k]->sequence);
      placement->set_online(results[k]->online);
    }
  }
  // Asynchronous: never on the send's critical path, never failing it.
  if (notifier_ != nullptr && !wakes.empty()) notifier_->Notify(std::move(wakes));
  return response;
}

absl::StatusOr<v1::ReadInboxResponse> Dispatcher::ReadInbox(const v1::ReadInboxRequest& request) {
  absl::StatusOr<DeviceKey> device = ToDevice(request.device(), "device");
  if (!device.ok()) return device.status();
  if (!request.after_server_id().empty() && !IsServerId(request.after_server_id())) {
    return absl::InvalidArgumentError("after_server_id: not a server id");
  }
  const uint32_t max_envelopes =
      request.max_envelopes() == 0
          ? options_.default_read_envelopes
          : std::min(request.max_envelopes(), options_.max_read_envelopes);
  const uint64_t max_bytes =
      request.max_bytes() == 0 ? options_.default_read_bytes : request.max_bytes();
  absl::StatusOr<InboxPage> page =
      store_->Read(*device, request.after_server_id(), max_envelopes);
  if (!page.ok()) return page.status();
  runtime::Increment(expired_, static_cast<double>(page->expired));
  if (depth_ != nullptr) depth_->Observe(static_cast<double>(page->depth));

  const uint64_t now_ms = static_cast<uint64_t>(clock_->NowMs());
  v1::ReadInboxResponse response;
  // Sequences at or below the ack floor, and those acked one by one, were delivered: never a gap.
  uint64_t previous = std::max(request.after_sequence(), page->acked_sequence);
  uint64_t bytes = 0;
  bool truncated = false;
  for (const StoredEntry& entry : page->entries) {
    const bool expired = entry.expires_at_ms != 0 && entry.expires_at_ms <= now_ms;
    if (!expired && response.envelopes_size() > 0 && bytes + entry.envelope.size() > max_bytes) {
      truncated = true;
      break;
    }
    if (entry.sequence > previous + 1) {
      AddGapExcept(&response, previous + 1, entry.sequence - 1, page->acked_individually);
    }
    previous = std::max(previous, entry.sequence);
    response.set_next_after_server_id(entry.server_id);
    response.set_next_after_sequence(entry.sequence);
    if (expired) {
      AddGap(&response, entry.sequence, entry.sequence);
      continue;
    }
    v1::Envelope* envelope = response.add_envelopes();
    if (!envelope->ParseFromString(entry.envelope)) {
      return absl::InternalError(absl::StrCat("inbox entry ", entry.server_id, ": unparsable"));
    }
    envelope->set_sequence(entry.sequence);
    envelope->set_server_id(entry.server_id);
    envelope->set_server_timestamp_ms(MsOfServerId(entry.server_id));
    bytes += entry.envelope.size();
  }
  const bool end = !truncated && page->entries.size() < max_envelopes;
  response.set_end_of_inbox(end);
  if (end && page->last_sequence > previous) {
    AddGapExcept(&response, previous + 1, page->last_sequence, page->acked_individually);
  }
  return response;
}

absl::StatusOr<std::vector<AckRequest>> Dispatcher::ParseAcks(
    const google::protobuf::RepeatedPtrField<v1::DeviceAck>& in, std::string_view field) const {
  std::vector<AckRequest> acks;
  acks.reserve(static_cast<size_t>(in.size()));
  size_t ids = 0;
  for (int i = 0; i < in.size(); ++i) {
    const v1::DeviceAck& a = in.Get(i);
    const std::string at = absl::StrCat(ToAbsl(field), "[", i, "]");
    absl::StatusOr<DeviceKey> device = ToDevice(a.device(), absl::StrCat(at, ".device"));
    if (!device.ok()) return device.status();
    if (!a.up_to_server_id().empty() && !IsServerId(a.up_to_server_id())) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".up_to_server_id: not a server id"));
    }
    AckRequest ack{*std::move(device), a.up_to_server_id(), {}};
    for (const std::string& id : a.server_ids()) {
      if (!IsServerId(id)) {
        return absl::InvalidArgumentError(absl::StrCat(at, ".server_ids: not a server id"));
      }
      ack.server_ids.push_back(id);
    }
    ids += ack.server_ids.size();
    acks.push_back(std::move(ack));
  }
  if (ids > options_.max_acked_ids) {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(field), ": at most ",
                                                   options_.max_acked_ids,
                                                   " individual server ids"));
  }
  return acks;
}

absl::StatusOr<std::vector<uint32_t>> Dispatcher::ApplyAcks(absl::Span<const AckRequest> acks) {
  if (acks.empty()) return std::vector<uint32_t>();
  return CountAcked(store_->Ack(acks));
}

absl::StatusOr<std::vector<uint32_t>> Dispatcher::CountAcked(
    const std::vector<absl::StatusOr<uint64_t>>& results) {
  std::vector<uint32_t> removed;
  removed.reserve(results.size());
  for (const absl::StatusOr<uint64_t>& result : results) {
    if (!result.ok()) return result.status();
    runtime::Increment(acked_, static_cast<double>(*result));
    removed.push_back(static_cast<uint32_t>(*result));
  }
  return removed;
}

absl::StatusOr<v1::AckResponse> Dispatcher::Ack(const v1::AckRequest& request) {
  absl::StatusOr<std::vector<AckRequest>> acks = ParseAcks(request.acks(), "acks");
  if (!acks.ok()) return acks.status();
  absl::StatusOr<std::vector<uint32_t>> removed = ApplyAcks(*acks);
  if (!removed.ok()) return removed.status();
  v1::AckResponse response;
  for (uint32_t n : *removed) response.add_removed(n);
  return response;
}

absl::StatusOr<uint64_t> Dispatcher::Purge(const v1::DeviceAddress& address) {
  absl::StatusOr<DeviceKey> device = ToDevice(address, "device");
  if (!device.ok()) return device.status();
  return store_->Purge(*device);
}

absl::StatusOr<InboxInfo> Dispatcher::Info(const v1::DeviceAddress& address) {
  absl::StatusOr<DeviceKey> device = ToDevice(address, "device");
  if (!device.ok()) return device.status();
  return store_->Info(*device);
}

}  // namespace padlock::message_queue
