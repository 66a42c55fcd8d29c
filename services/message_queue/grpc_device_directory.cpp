#include "services/message_queue/grpc_device_directory.h"

#include <grpcpp/client_context.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/runtime/status.h"

namespace padlock::message_queue {

namespace {
// Bounds the cache: past this many users it is simply cleared (entries live ≤ cache_ttl anyway).
constexpr size_t kMaxCachedUsers = 100'000;
}  // namespace

GrpcDeviceDirectory::GrpcDeviceDirectory(std::shared_ptr<grpc::ChannelInterface> channel,
                                         absl::Duration deadline, absl::Duration cache_ttl)
    : stub_(padlock::v1::KeyDirectory::NewStub(std::move(channel))),
      deadline_(deadline),
      cache_ttl_(cache_ttl) {}

absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>>
GrpcDeviceDirectory::GetDeviceLists(absl::Span<const std::string> user_ids) {
  return Fetch(user_ids, /*use_cache=*/true);
}

absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>>
GrpcDeviceDirectory::GetFreshDeviceLists(absl::Span<const std::string> user_ids) {
  return Fetch(user_ids, /*use_cache=*/false);
}

absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>> GrpcDeviceDirectory::Fetch(
    absl::Span<const std::string> user_ids, bool use_cache) {
  absl::flat_hash_map<std::string, DeviceListInfo> out;
  std::vector<std::string> missing;
  const absl::Time now = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& user : user_ids) {
      auto it = cache_.find(user);
      if (use_cache && cache_ttl_ > absl::ZeroDuration() && it != cache_.end() &&
          now - it->second.fetched < cache_ttl_) {
        if (it->second.known) out[user] = it->second.list;
      } else {
        missing.push_back(user);
      }
    }
  }
  if (missing.empty()) return out;

  padlock::v1::GetDeviceListsRequest request;
  for (const std::string& user : missing) request.add_user_ids(user);
  padlock::v1::GetDeviceListsResponse response;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(now + deadline_));
  grpc::Status status = stub_->GetDeviceLists(&context, request, &response);
  if (!status.ok()) {
    absl::Status s = runtime::FromGrpcStatus(status);
    return absl::Status(s.code(), absl::StrCat("key-directory GetDeviceLists: ", s.message()));
  }
  absl::flat_hash_map<std::string, DeviceListInfo> fetched;
  for (const padlock::v1::SignedDeviceList& signed_list : response.device_lists()) {
    const padlock::v1::DeviceList& list = signed_list.list();
    DeviceListInfo info;
    info.version = list.version();
    for (const padlock::v1::DeviceListEntry& d : list.devices()) {
      info.devices.push_back({d.device_id(), d.registration_id()});
    }
    fetched[list.user_id()] = std::move(info);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.size() > kMaxCachedUsers) cache_.clear();
  for (const std::string& user : missing) {
    auto it = fetched.find(user);
    Cached& cached = cache_[user];
    cached.fetched = now;
    cached.known = it != fetched.end();
    if (cached.known) {
      cached.list = it->second;
      out[user] = std::move(it->second);
    } else {
      cached.list = {};
    }
  }
  return out;
}

}  // namespace padlock::message_queue
