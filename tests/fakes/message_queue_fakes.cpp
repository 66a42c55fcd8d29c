#include "tests/fakes/message_queue_fakes.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "padlock/v1/common.pb.h"

namespace padlock::message_queue {
namespace {

std::pair<int64_t, uint64_t> ParseId(std::string_view id) {
  const size_t dash = id.find('-');
  int64_t ms = 0;
  uint64_t n = 0;
  (void)absl::SimpleAtoi(absl::string_view(id.data(), dash), &ms);
  (void)absl::SimpleAtoi(absl::string_view(id.data() + dash + 1, id.size() - dash - 1), &n);
  return {ms, n};
}

}  // namespace

void FakeDeviceDirectory::Set(const std::string& user, uint64_t version,
                              const std::vector<std::pair<uint32_t, uint32_t>>& devices) {
  std::lock_guard<std::mutex> lock(mu_);
  DeviceListInfo& info = lists_[user];
  info.version = version;
  info.devices.clear();
  for (const auto& [id, registration] : devices) info.devices.push_back({id, registration});
}

void FakeDeviceDirectory::Remove(const std::string& user) {
  std::lock_guard<std::mutex> lock(mu_);
  lists_.erase(user);
}

void FakeDeviceDirectory::FailWith(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  failure_ = std::move(status);
}

int FakeDeviceDirectory::users_asked() {
  std::lock_guard<std::mutex> lock(mu_);
  return users_asked_;
}

int FakeDeviceDirectory::calls() {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>>
FakeDeviceDirectory::GetDeviceLists(absl::Span<const std::string> user_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  users_asked_ += static_cast<int>(user_ids.size());
  if (!failure_.ok()) return failure_;
  absl::flat_hash_map<std::string, DeviceListInfo> out;
  for (const std::string& user : user_ids) {
    auto it = lists_.find(user);
    if (it != lists_.end()) out[user] = it->second;
  }
  return out;
}

int64_t InMemoryInboxStore::Trim(Inbox& inbox, int64_t now_ms) {
  const int64_t min_ms = now_ms - absl::ToInt64Milliseconds(limits_.retention);
  int64_t removed = 0;
  for (auto it = inbox.entries.begin(); it != inbox.entries.end() && it->first.first < min_ms;) {
    inbox.bytes -= it->second.stored.envelope.size();
    it = inbox.entries.erase(it);
    ++removed;
  }
  return removed;
}

void InMemoryInboxStore::Release(const std::string& payload) {
  if (payload.empty()) return;
  auto it = payloads_.find(payload);
  if (it != payloads_.end() && --it->second.second <= 0) payloads_.erase(it);
}

size_t InMemoryInboxStore::payload_count() {
  std::lock_guard<std::mutex> lock(mu_);
  return payloads_.size();
}

std::vector<absl::StatusOr<AppendResult>> InMemoryInboxStore::Append(
    absl::Span<const AppendRequest> requests) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<absl::StatusOr<AppendResult>> results;
  const int64_t now_ms = clock_->NowMs();
  const int64_t window_ms = absl::ToInt64Milliseconds(limits_.dedupe_window);
  if (failure_.ok()) {
    for (const AppendRequest& r : requests) {
      if (r.shared == nullptr || r.online_only) continue;
      auto& [bytes, references] = payloads_[r.shared->id];
      bytes = r.shared->bytes;
      ++references;
    }
  }
  for (const AppendRequest& r : requests) {
    if (!failure_.ok()) {
      results.push_back(failure_);
      continue;
    }
    const std::string payload =
        r.shared != nullptr && !r.online_only ? r.shared->id : std::string();
    const bool online = std::find(online_.begin(), online_.end(), r.device) != online_.end();
    if (r.online_only) {
      published_.push_back({r.device, 0});
      results.push_back(AppendResult{0, "", online, false, 0});
      continue;
    }
    Inbox& inbox = inboxes_[r.device];
    auto hit = inbox.dedupe.find(r.dedupe_key);
    if (hit != inbox.dedupe.end() && now_ms - std::get<0>(hit->second) < window_ms) {
      results.push_back(
          AppendResult{std::get<1>(hit->second), std::get<2>(hit->second), false, true, 0});
      Release(payload);
      continue;
    }
    const int64_t expired = Trim(inbox, now_ms);
    if (inbox.entries.size() >= limits_.max_entries ||
        inbox.bytes + r.envelope.size() > limits_.max_bytes) {
      results.push_back(absl::ResourceExhaustedError("INBOX_FULL inbox at its cap"));
      Release(payload);
      continue;
    }
    uint64_t n = 0;
    int64_t ms = std::max(now_ms, inbox.last_ms);
    if (ms == inbox.last_ms) n = inbox.last_n + 1;
    inbox.last_ms = ms;
    inbox.last_n = n;
    StoredEntry entry{absl::StrCat(ms, "-", n), ++inbox.sequence, r.expires_at_ms, r.envelope};
    inbox.bytes += r.envelope.size();
    inbox.dedupe[r.dedupe_key] = {now_ms, entry.sequence, entry.server_id};
    published_.push_back({r.device, entry.sequence});
    results.push_back(AppendResult{entry.sequence, entry.server_id, online, false, expired});
    inbox.entries[{ms, n}] = Item{std::move(entry), payload};
  }
  return results;
}

absl::StatusOr<InboxPage> InMemoryInboxStore::Read(const DeviceKey& device,
                                                   std::string_view after_server_id,
                                                   uint32_t max_entries) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  Inbox& inbox = inboxes_[device];
  InboxPage page;
  page.expired = Trim(inbox, clock_->NowMs());
  auto it = inbox.entries.begin();
  if (!after_server_id.empty()) it = inbox.entries.upper_bound(ParseId(after_server_id));
  for (; it != inbox.entries.end() && page.entries.size() < max_entries; ++it) {
    StoredEntry entry = it->second.stored;
    if (!it->second.payload.empty()) {
      auto payload = payloads_.find(it->second.payload);
      if (payload == payloads_.end()) {
        entry.expires_at_ms = 1;
      } else {
        padlock::v1::Envelope envelope;
        envelope.ParseFromString(entry.envelope);
        envelope.set_ciphertext(payload->second.first);
        entry.envelope = envelope.SerializeAsString();
      }
    }
    page.entries.push_back(std::move(entry));
  }
  page.last_sequence = inbox.sequence;
  page.acked_sequence = inbox.acked;
  page.acked_individually.assign(inbox.one_by_one.begin(), inbox.one_by_one.end());
  page.depth = inbox.entries.size();
  return page;
}

std::vector<absl::StatusOr<uint64_t>> InMemoryInboxStore::Ack(
    absl::Span<const AckRequest> requests) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<absl::StatusOr<uint64_t>> results;
  for (const AckRequest& r : requests) {
    if (!failure_.ok()) {
      results.push_back(failure_);
      continue;
    }
    Inbox& inbox = inboxes_[r.device];
    uint64_t removed = 0;
    if (!r.up_to_server_id.empty()) {
      const auto end = inbox.entries.upper_bound(ParseId(r.up_to_server_id));
      for (auto it = inbox.entries.begin(); it != end;) {
        inbox.acked = std::max(inbox.acked, it->second.stored.sequence);
        inbox.bytes -= it->second.stored.envelope.size();
        Release(it->second.payload);
        it = inbox.entries.erase(it);
        ++removed;
      }
      inbox.one_by_one.erase(inbox.one_by_one.begin(),
                             inbox.one_by_one.upper_bound(inbox.acked));
    }
    for (const std::string& id : r.server_ids) {
      auto it = inbox.entries.find(ParseId(id));
      if (it == inbox.entries.end()) continue;
      if (it->second.stored.sequence > inbox.acked) {
        inbox.one_by_one.insert(it->second.stored.sequence);
      }
      inbox.bytes -= it->second.stored.envelope.size();
      Release(it->second.payload);
      inbox.entries.erase(it);
      ++removed;
    }
    // The floor moves over sequences acked one by one right above it.
    while (!inbox.one_by_one.empty() && *inbox.one_by_one.begin() == inbox.acked + 1) {
      inbox.one_by_one.erase(inbox.one_by_one.begin());
      ++inbox.acked;
    }
    results.push_back(removed);
  }
  return results;
}

absl::StatusOr<uint64_t> InMemoryInboxStore::Purge(const DeviceKey& device) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  auto it = inboxes_.find(device);
  if (it == inboxes_.end()) return 0;
  const uint64_t n = it->second.entries.size();
  for (const auto& [id, item] : it->second.entries) Release(item.payload);
  inboxes_.erase(it);
  return n;
}

absl::StatusOr<InboxInfo> InMemoryInboxStore::Info(const DeviceKey& device) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  auto it = inboxes_.find(device);
  if (it == inboxes_.end()) return InboxInfo{};
  return InboxInfo{it->second.entries.size(), it->second.sequence, it->second.bytes};
}

std::vector<std::pair<DeviceKey, uint64_t>> InMemoryInboxStore::published() {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

void InMemoryInboxStore::SetOnline(const DeviceKey& device) {
  std::lock_guard<std::mutex> lock(mu_);
  online_.push_back(device);
}

void InMemoryInboxStore::FailWith(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  failure_ = std::move(status);
}

}  // namespace padlock::message_queue
