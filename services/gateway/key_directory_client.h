#pragma once
// The gateway's client of the key-directory: the login's identity look-up (IdentitySource) and
// the stub the relays call. Every call carries the configured deadline. Thread-safe.

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "padlock/v1/key_directory.grpc.pb.h"
#include "services/gateway/authenticator.h"

namespace padlock::gateway {

class KeyDirectoryClient final : public IdentitySource {
 public:
  KeyDirectoryClient(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline);

  // KeyDirectory.GetIdentityKey; its status code passes through (NotFound for an unknown,
  // unlinked or banned device; DeadlineExceeded / Unavailable when the key-directory is slow or
  // down).
  absl::StatusOr<IdentityInfo> GetIdentityKey(const DeviceRef& device) override;

  padlock::v1::KeyDirectory::Stub& stub() { return *stub_; }
  // Sets the deadline (now + the configured one) on a fresh context.
  void Prepare(grpc::ClientContext& context) const;

 private:
  std::unique_ptr<padlock::v1::KeyDirectory::Stub> stub_;
  const absl::Duration deadline_;
};

}  // namespace padlock::gateway
