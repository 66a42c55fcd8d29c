#pragma once
// The gRPC face of the presence service: validates requests (errors name the field), converts
// proto ↔ domain types, runs the logic and maps absl::Status to grpc::Status
// (services/common/runtime/status.h).
//
// Threading: the callback API, but every rpc that touches Redis runs on a BoundedExecutor —
// never on a gRPC callback thread, whose reactions must not block (STYLE.md). Validation runs
// inline; a full executor queue answers RESOURCE_EXHAUSTED at once.

#include <cstddef>

#include "padlock/v1/presence.grpc.pb.h"
#include "services/common/runtime/executor.h"
#include "services/presence/presence_registry.h"

namespace padlock::presence {

// Trailing metadata key carrying the retry delay (decimal ms) of a rate-limited Subscribe.
inline constexpr char kRetryAfterMetadata[] = "retry-after-ms";

struct ServiceLimits {
  // Most entries in one Heartbeat (a gateway's connections), Query or Locate request.
  size_t max_heartbeat_connections = 100'000;
  size_t max_query_users = 1000;
  // Subscribe requests listing more ids than this are refused before deduplication
  // (RESOURCE_EXHAUSTED, as the subscription limit).
  size_t max_subscribe_ids = 1000;
};

// padlock.v1.Presence. Thread-safe; `registry` and `executor` must outlive the server.
class PresenceService final : public padlock::v1::Presence::CallbackService {
 public:
  PresenceService(PresenceRegistry* registry, runtime::BoundedExecutor* executor,
                  ServiceLimits limits);

  grpc::ServerUnaryReactor* Connect(grpc::CallbackServerContext* context,
                                    const padlock::v1::ConnectRequest* request,
                                    padlock::v1::ConnectResponse* response) override;
  grpc::ServerUnaryReactor* Disconnect(grpc::CallbackServerContext* context,
                                       const padlock::v1::DisconnectRequest* request,
                                       padlock::v1::DisconnectResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const padlock::v1::HeartbeatRequest* request,
                                      padlock::v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* Subscribe(grpc::CallbackServerContext* context,
                                      const padlock::v1::SubscribeRequest* request,
                                      padlock::v1::SubscribeResponse* response) override;
  grpc::ServerUnaryReactor* SetVisibility(grpc::CallbackServerContext* context,
                                          const padlock::v1::SetVisibilityRequest* request,
                                          padlock::v1::SetVisibilityResponse* response) override;
  grpc::ServerUnaryReactor* Query(grpc::CallbackServerContext* context,
                                  const padlock::v1::QueryRequest* request,
                                  padlock::v1::QueryResponse* response) override;
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* context,
                                   const padlock::v1::LocateRequest* request,
                                   padlock::v1::LocateResponse* response) override;

 private:
  // Finishes at once with `status` (validation failures).
  static grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* context,
                                          const absl::Status& status);
  // Runs `work` (returning absl::Status) on the executor and finishes with its status.
  template <typename Work>
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context, Work work);

  PresenceRegistry* const registry_;
  runtime::BoundedExecutor* const executor_;
  const ServiceLimits limits_;
};

}  // namespace padlock::presence
