#include "services/message_queue/redis_device_directory.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "services/common/device_lists/device_list_summary.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::message_queue {

RedisDeviceDirectory::RedisDeviceDirectory(redis::RedisClient* redis, DeviceDirectory* fallback,
                                           prometheus::Registry* metrics)
    : redis_(redis), fallback_(fallback) {
  if (metrics != nullptr) {
    auto& family = prometheus::BuildCounter()
                       .Name("padlock_device_list_lookups_total")
                       .Help("Users whose device list a send check looked up, by where it came "
                             "from (redis: the summary; key_directory: a miss)")
                       .Register(*metrics);
    from_redis_ = &family.Add({{"source", "redis"}});
    from_key_directory_ = &family.Add({{"source", "key_directory"}});
  }
}

absl::StatusOr<absl::flat_hash_map<std::string, DeviceListInfo>>
RedisDeviceDirectory::GetDeviceLists(absl::Span<const std::string> user_ids) {
  absl::flat_hash_map<std::string, DeviceListInfo> out;
  if (user_ids.empty()) return out;
  std::vector<redis::Command> commands;
  commands.reserve(user_ids.size());
  for (const std::string& user : user_ids) {
    commands.push_back(redis::Command::Keyed(
        {"HGET", device_lists::SummaryKey(user), device_lists::kSummaryField}, 1,
        /*idempotent=*/true));
  }
  std::vector<absl::StatusOr<redis::RedisReply>> replies = redis_->ExecutePipeline(commands);
  std::vector<std::string> misses;
  for (size_t i = 0; i < user_ids.size(); ++i) {
    absl::StatusOr<redis::RedisReply>& reply = replies[i];
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return reply->ToStatus();
    std::optional<device_lists::Summary> summary;
    if (reply->is_string()) summary = device_lists::ParseSummary(reply->str());
    if (!summary) {
      misses.push_back(user_ids[i]);
      continue;
    }
    if (!summary->listed) continue;  // authoritative: no current list
    DeviceListInfo& info = out[user_ids[i]];
    info.version = summary->version;
    for (const device_lists::SummaryDevice& d : summary->devices) {
      info.devices.push_back({d.device_id, d.registration_id});
    }
  }
  runtime::Increment(from_redis_, static_cast<double>(user_ids.size() - misses.size()));
  if (misses.empty()) return out;
  runtime::Increment(from_key_directory_, static_cast<double>(misses.size()));
  auto fetched = fallback_->GetDeviceLists(misses);
  if (!fetched.ok()) return fetched.status();
  for (auto& [user, list] : *fetched) out[user] = std::move(list);
  return out;
}

}  // namespace padlock::message_queue
