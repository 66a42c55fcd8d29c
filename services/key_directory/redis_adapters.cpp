#include "services/key_directory/redis_adapters.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "padlock/v1/common.pb.h"
#include "services/common/channels/device_channel.h"
#include "services/common/device_lists/device_list_summary.h"
#include "services/key_directory/lua_scripts.h"

namespace padlock::key_directory {
namespace {

std::string Ms(absl::Duration d) { return absl::StrCat(absl::ToInt64Milliseconds(d)); }

}  // namespace

RedisInviteStore::RedisInviteStore(redis::RedisClient* redis)
    : redis_(redis), consume_(lua::kConsume) {}

std::string RedisInviteStore::Key(const std::string& token) {
  return absl::StrCat("invite:{", token, "}");
}

absl::Status RedisInviteStore::Create(const std::string& token, const std::string& for_user_id,
                                      absl::Duration ttl) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(redis::Command::Keyed(
      {"SET", Key(token), for_user_id, "PX", absl::StrCat(absl::ToInt64Milliseconds(ttl)), "NX"},
      1, /*idempotent=*/true));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (reply->is_nil()) return absl::AlreadyExistsError("invite token collision");
  return absl::OkStatus();
}

absl::StatusOr<InviteStore::Invite> RedisInviteStore::Consume(const std::string& token) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(consume_.Call({Key(token)}, {}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_array() || reply->elements().size() != 2) {
    return absl::NotFoundError("invite unknown, used or expired");
  }
  return Invite{reply->elements()[0].str(),
                absl::Milliseconds(std::max<int64_t>(1, reply->elements()[1].integer()))};
}

absl::Status RedisInviteStore::Restore(const std::string& token, const Invite& invite) {
  return Create(token, invite.for_user_id, invite.ttl_left);
}

RedisDeviceListSummaries::RedisDeviceListSummaries(redis::RedisClient* redis, Options options)
    : redis_(redis),
      options_(options),
      begin_(absl::StrCat(lua::kSummaryPrelude, lua::kBegin)),
      end_(absl::StrCat(lua::kSummaryPrelude, lua::kEnd)),
      populate_(absl::StrCat(lua::kSummaryPrelude, lua::kPopulate)) {}

std::string RedisDeviceListSummaries::TtlMs(const device_lists::Summary& summary) const {
  return Ms(summary.listed ? options_.listed_ttl : options_.unlisted_ttl);
}

absl::StatusOr<std::string> RedisDeviceListSummaries::BeginChange(const std::string& user_id) {
  absl::StatusOr<redis::RedisReply> reply =
      redis_->Execute(begin_.Call({device_lists::SummaryKey(user_id)},
                                  {Ms(options_.writer_deadline), Ms(options_.unlisted_ttl)}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  if (!reply->is_string()) return absl::InternalError("begin change: unexpected reply");
  return reply->str();
}

absl::Status RedisDeviceListSummaries::EndChange(
    const std::string& user_id, const std::string& token,
    const std::optional<device_lists::Summary>& after) {
  absl::StatusOr<redis::RedisReply> reply = redis_->Execute(end_.Call(
      {device_lists::SummaryKey(user_id)},
      {token, after ? device_lists::EncodeSummary(*after) : std::string(),
       after ? TtlMs(*after) : Ms(options_.unlisted_ttl), Ms(options_.unlisted_ttl)}));
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) return reply->ToStatus();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> RedisDeviceListSummaries::PopulateTokens(
    const std::vector<std::string>& user_ids) {
  std::vector<redis::Command> commands;
  commands.reserve(user_ids.size());
  for (const std::string& user : user_ids) {
    commands.push_back(redis::Command::Keyed(
        {"HGET", device_lists::SummaryKey(user), device_lists::kGenerationField}, 1,
        /*idempotent=*/true));
  }
  std::vector<std::string> tokens;
  tokens.reserve(user_ids.size());
  for (absl::StatusOr<redis::RedisReply>& reply : redis_->ExecutePipeline(commands)) {
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return reply->ToStatus();
    tokens.push_back(reply->is_string() ? reply->str() : std::string());
  }
  return tokens;
}

absl::StatusOr<int> RedisDeviceListSummaries::Populate(
    const std::vector<std::string>& user_ids, const std::vector<std::string>& tokens,
    const std::vector<device_lists::Summary>& summaries) {
  if (tokens.size() != user_ids.size() || summaries.size() != user_ids.size()) {
    return absl::InvalidArgumentError("populate: one token and one summary per user");
  }
  std::vector<redis::Command> commands;
  commands.reserve(user_ids.size());
  for (size_t i = 0; i < user_ids.size(); ++i) {
    redis::Command command =
        populate_.Call({device_lists::SummaryKey(user_ids[i])},
                       {tokens[i], device_lists::EncodeSummary(summaries[i]),
                        TtlMs(summaries[i])});
    command.idempotent = true;  // stores only into an empty field: a resend stores nothing more
    commands.push_back(std::move(command));
  }
  int stored = 0;
  absl::Status first_error;
  for (absl::StatusOr<redis::RedisReply>& reply : redis_->ExecutePipeline(commands)) {
    absl::Status s = !reply.ok() ? reply.status()
                     : reply->is_error() ? reply->ToStatus()
                                         : absl::OkStatus();
    if (!s.ok()) {
      if (first_error.ok()) first_error = s;
      continue;
    }
    if (reply->is_integer() && reply->integer() == 1) ++stored;
  }
  if (!first_error.ok()) return first_error;
  return stored;
}

RedisDeviceEventPublisher::RedisDeviceEventPublisher(redis::RedisClient* redis) : redis_(redis) {}

absl::Status RedisDeviceEventPublisher::DeviceRevoked(const std::string& user_id,
                                                      uint32_t device_id) {
  padlock::v1::DeviceChannelEvent event;
  event.set_revoked(true);
  absl::Status published =
      channels::PublishDeviceEvent(*redis_, user_id, device_id, event).status();
  // Every inbox key, the push subscription and its coalescing mark share the device's hash tag:
  // one DEL on one shard. (A banned account's devices lose their subscriptions too; they register
  // again.)
  std::vector<std::string> del = {"DEL"};
  for (std::string& key : channels::DeviceInboxKeys(user_id, device_id)) {
    del.push_back(std::move(key));
  }
  del.push_back(channels::PushSubscriptionKey(user_id, device_id));
  del.push_back(channels::PushCoalesceKey(user_id, device_id));
  absl::StatusOr<redis::RedisReply> deleted =
      redis_->Execute(redis::Command::Keyed(std::move(del), 1, /*idempotent=*/true));
  if (!published.ok()) return published;
  if (!deleted.ok()) return deleted.status();
  if (deleted->is_error()) return deleted->ToStatus();
  return absl::OkStatus();
}

absl::Status RedisDeviceEventPublisher::PreKeysLow(const std::string& user_id, uint32_t device_id,
                                                   uint32_t remaining) {
  padlock::v1::DeviceChannelEvent event;
  event.set_prekeys_remaining(remaining);
  return channels::PublishDeviceEvent(*redis_, user_id, device_id, event).status();
}

}  // namespace padlock::key_directory
