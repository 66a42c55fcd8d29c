#include "services/presence/presence_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/statement/ids.h"
#include "services/common/runtime/status.h"
#include "services/common/runtime/status_macros.h"
#include "services/common/runtime/unary.h"

namespace padlock::presence {
namespace {

namespace v1 = padlock::v1;

absl::Status CheckUserId(const std::string& user_id, const std::string& field) {
  if (!statement::IsValidUserId(user_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": not a user id (E.164 or [a-z0-9._-]{3,32})"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceKey> ToDevice(const v1::DeviceAddress& address, const std::string& field) {
  if (absl::Status s = CheckUserId(address.user_id(), absl::StrCat(field, ".user_id")); !s.ok()) {
    return s;
  }
  if (address.device_id() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".device_id: required (not 0)"));
  }
  return DeviceKey{address.user_id(), address.device_id()};
}

absl::Status CheckGatewayId(const std::string& gateway_id) {
  if (gateway_id.empty() || gateway_id.size() > 128) {
    return absl::InvalidArgumentError("gateway_id: 1 to 128 characters required");
  }
  for (char c : gateway_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return absl::InvalidArgumentError("gateway_id: only [A-Za-z0-9._:-] allowed");
  }
  return absl::OkStatus();
}

absl::StatusOr<Visibility> ToVisibility(v1::PresenceVisibility visibility,
                                        const std::string& field) {
  switch (visibility) {
    case v1::PRESENCE_VISIBILITY_UNSPECIFIED:
      return Visibility::kUnspecified;
    case v1::PRESENCE_VISIBILITY_NOBODY:
      return Visibility::kNobody;
    case v1::PRESENCE_VISIBILITY_EVERYONE:
      return Visibility::kEveryone;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ": unknown value ",
                                                     static_cast<int>(visibility)));
  }
}

void ToProto(const PresenceView& view, v1::PresenceStatus* out) {
  out->set_user_id(view.user_id);
  out->set_online(view.online);
  out->set_last_seen_ms(static_cast<uint64_t>(view.last_seen_ms));
}

absl::StatusOr<std::vector<std::string>> ToUserIds(
    const google::protobuf::RepeatedPtrField<std::string>& ids, size_t max,
    absl::StatusCode over_code) {
  if (ids.size() > static_cast<int>(max)) {
    return absl::Status(over_code, absl::StrCat("user_ids: ", ids.size(), " entries, at most ",
                                                max));
  }
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (int i = 0; i < ids.size(); ++i) {
    if (absl::Status s = CheckUserId(ids[i], absl::StrCat("user_ids[", i, "]")); !s.ok()) {
      return s;
    }
    out.push_back(ids[i]);
  }
  return out;
}

}  // namespace

PresenceService::PresenceService(PresenceRegistry* registry, runtime::BoundedExecutor* executor,
                                 ServiceLimits limits)
    : registry_(registry), executor_(executor), limits_(limits) {}

grpc::ServerUnaryReactor* PresenceService::Reject(grpc::CallbackServerContext* context,
                                                  const absl::Status& status) {
  return runtime::FinishUnary(context, status);
}

template <typename Work>
grpc::ServerUnaryReactor* PresenceService::Offload(grpc::CallbackServerContext* context,
                                                   Work work) {
  return runtime::OffloadUnary(context, *executor_, "presence", std::move(work));
}

grpc::ServerUnaryReactor* PresenceService::Connect(grpc::CallbackServerContext* context,
                                                   const v1::ConnectRequest* request,
                                                   v1::ConnectResponse* response) {
  absl::StatusOr<DeviceKey> device = ToDevice(request->device(), "device");
  if (!device.ok()) return Reject(context, device.status());
  if (absl::Status s = CheckGatewayId(request->gateway_id()); !s.ok()) return Reject(context, s);
  absl::StatusOr<Visibility> visibility = ToVisibility(request->visibility(), "visibility");
  if (!visibility.ok()) return Reject(context, visibility.status());
  return Offload(context, [this, device = *std::move(device), gateway = request->gateway_id(),
                           visibility = *visibility, response]() -> absl::Status {
    ASSIGN_OR_RETURN(uint64_t epoch, registry_->Connect(device, gateway, visibility));
    response->set_epoch(epoch);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PresenceService::Disconnect(grpc::CallbackServerContext* context,
                                                      const v1::DisconnectRequest* request,
                                                      v1::DisconnectResponse* response) {
  absl::StatusOr<DeviceKey> device = ToDevice(request->device(), "device");
  if (!device.ok()) return Reject(context, device.status());
  if (request->epoch() == 0) {
    return Reject(context, absl::InvalidArgumentError("epoch: required (not 0)"));
  }
  return Offload(context, [this, device = *std::move(device), epoch = request->epoch(),
                           response]() -> absl::Status {
    ASSIGN_OR_RETURN(bool was_current, registry_->Disconnect(device, epoch));
    response->set_was_current(was_current);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PresenceService::Heartbeat(grpc::CallbackServerContext* context,
                                                     const v1::HeartbeatRequest* request,
                                                     v1::HeartbeatResponse* response) {
  if (absl::Status s = CheckGatewayId(request->gateway_id()); !s.ok()) return Reject(context, s);
  if (static_cast<size_t>(request->connections_size()) > limits_.max_heartbeat_connections) {
    return Reject(context, absl::InvalidArgumentError(absl::StrCat(
                               "connections: at most ", limits_.max_heartbeat_connections)));
  }
  std::vector<Connection> connections;
  connections.reserve(request->connections_size());
  for (int i = 0; i < request->connections_size(); ++i) {
    const v1::DeviceConnection& c = request->connections(i);
    absl::StatusOr<DeviceKey> device =
        ToDevice(c.device(), absl::StrCat("connections[", i, "].device"));
    if (!device.ok()) return Reject(context, device.status());
    if (c.epoch() == 0) {
      return Reject(context, absl::InvalidArgumentError(
                                 absl::StrCat("connections[", i, "].epoch: required (not 0)")));
    }
    connections.push_back(Connection{*std::move(device), c.epoch()});
  }
  return Offload(context, [this, gateway = request->gateway_id(),
                           connections = std::move(connections), response]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<Connection> stale, registry_->Heartbeat(gateway, connections));
    for (const Connection& c : stale) {
      v1::DeviceConnection* out = response->add_stale();
      out->mutable_device()->set_user_id(c.device.user_id);
      out->mutable_device()->set_device_id(c.device.device_id);
      out->set_epoch(c.epoch);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PresenceService::Subscribe(grpc::CallbackServerContext* context,
                                                     const v1::SubscribeRequest* request,
                                                     v1::SubscribeResponse* response) {
  absl::StatusOr<DeviceKey> subscriber = ToDevice(request->subscriber(), "subscriber");
  if (!subscriber.ok()) return Reject(context, subscriber.status());
  absl::StatusOr<std::vector<std::string>> user_ids = ToUserIds(
      request->user_ids(), limits_.max_subscribe_ids, absl::StatusCode::kResourceExhausted);
  if (!user_ids.ok()) return Reject(context, user_ids.status());
  return Offload(context, [this, context, subscriber = *std::move(subscriber),
                           user_ids = *std::move(user_ids), response]() -> absl::Status {
    absl::StatusOr<std::vector<PresenceView>> views = registry_->Subscribe(subscriber, user_ids);
    if (!views.ok()) {
      if (auto retry = views.status().GetPayload(kRetryAfterPayload); retry.has_value()) {
        context->AddTrailingMetadata(kRetryAfterMetadata, std::string(*retry));
      }
      return views.status();
    }
    for (const PresenceView& view : *views) ToProto(view, response->add_current());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PresenceService::SetVisibility(
    grpc::CallbackServerContext* context, const v1::SetVisibilityRequest* request,
    v1::SetVisibilityResponse* /*response*/) {
  if (absl::Status s = CheckUserId(request->user_id(), "user_id"); !s.ok()) {
    return Reject(context, s);
  }
  absl::StatusOr<Visibility> visibility = ToVisibility(request->visibility(), "visibility");
  if (!visibility.ok()) return Reject(context, visibility.status());
  return Offload(context, [this, user_id = request->user_id(), visibility = *visibility] {
    return registry_->SetVisibility(user_id, visibility);
  });
}

grpc::ServerUnaryReactor* PresenceService::Query(grpc::CallbackServerContext* context,
                                                 const v1::QueryRequest* request,
                                                 v1::QueryResponse* response) {
  absl::StatusOr<DeviceKey> requester = ToDevice(request->requester(), "requester");
  if (!requester.ok()) return Reject(context, requester.status());
  absl::StatusOr<std::vector<std::string>> user_ids = ToUserIds(
      request->user_ids(), limits_.max_query_users, absl::StatusCode::kInvalidArgument);
  if (!user_ids.ok()) return Reject(context, user_ids.status());
  return Offload(context,
                 [this, user_ids = *std::move(user_ids), response]() -> absl::Status {
                   ASSIGN_OR_RETURN(std::vector<PresenceView> views, registry_->Query(user_ids));
                   for (const PresenceView& view : views) {
                     ToProto(view, response->add_statuses());
                   }
                   return absl::OkStatus();
                 });
}

grpc::ServerUnaryReactor* PresenceService::Locate(grpc::CallbackServerContext* context,
                                                  const v1::LocateRequest* request,
                                                  v1::LocateResponse* response) {
  if (static_cast<size_t>(request->devices_size()) > limits_.max_query_users) {
    return Reject(context, absl::InvalidArgumentError(
                               absl::StrCat("devices: at most ", limits_.max_query_users)));
  }
  std::vector<DeviceKey> devices;
  for (int i = 0; i < request->devices_size(); ++i) {
    absl::StatusOr<DeviceKey> device =
        ToDevice(request->devices(i), absl::StrCat("devices[", i, "]"));
    if (!device.ok()) return Reject(context, device.status());
    devices.push_back(*std::move(device));
  }
  return Offload(context, [this, devices = std::move(devices), response]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<Location> locations, registry_->Locate(devices));
    for (const Location& location : locations) {
      v1::DeviceLocation* out = response->add_locations();
      out->mutable_device()->set_user_id(location.device.user_id);
      out->mutable_device()->set_device_id(location.device.device_id);
      out->set_gateway_id(location.gateway_id);
      out->set_epoch(location.epoch);
      out->set_connected_at_ms(static_cast<uint64_t>(location.connected_at_ms));
    }
    return absl::OkStatus();
  });
}

}  // namespace padlock::presence
