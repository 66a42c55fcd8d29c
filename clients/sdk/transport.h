#pragma once
// What a Messenger needs from the network: the gateway's unary rpcs and its device stream, as
// interfaces, so that the SDK runs against a real gateway (GatewayClient, GatewayStream in
// gateway_client.h) or an in-process fake (tests/fakes/fake_transport.h).
//
// Errors are absl::Status with the gRPC code the gateway answered (RESOURCE_EXHAUSTED may carry
// a retry-after payload: RetryAfter in gateway_client.h). Implementations are thread-safe: a
// stream's reader thread logs in while the Messenger's thread calls the rpcs.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "padlock/v1/gateway.pb.h"

namespace padlock::client {

// Signs a login statement with the device's identity key (64-byte XEdDSA signature).
using LoginSigner = std::function<absl::StatusOr<std::string>(std::string_view statement)>;

// What TransportStream::Next hands out.
struct StreamEvent {
  enum class Kind {
    // A frame from the server (the first of every connection is `connected`). A frame's
    // `send_results` arrive as one `send_result` frame each, ahead of the frame's own content (a
    // frame that carried only outcomes is not handed out).
    kFrame,
    // The connection ended; the stream reconnects by itself after a backoff. `status` says why.
    kDisconnected,
    // The stream stopped for good (displaced, revoked, UNIMPLEMENTED, login refused, or Stop()).
    kStopped,
  };
  Kind kind = Kind::kFrame;
  padlock::v1::ServerFrame frame;
  absl::Status status;
};

// The device stream, kept open: it reconnects by itself after transport faults.
class TransportStream {
 public:
  virtual ~TransportStream() = default;
  // Sends one frame on the current connection. Unavailable when there is none (the caller resends
  // after the next `connected` frame). Safe from any thread.
  virtual absl::Status Write(const padlock::v1::ClientFrame& frame) = 0;
  // The next event, waiting up to `timeout`; nullopt on timeout. One consumer thread.
  virtual std::optional<StreamEvent> Next(absl::Duration timeout) = 0;
  // True between a `connected` frame and the end of that connection.
  virtual bool connected() const = 0;
  // Closes the stream (idempotent); no event is handed out afterwards but what was queued.
  virtual void Stop() = 0;
};

// The gateway's public rpcs (proto/padlock/v1/gateway.proto) as one device uses them.
class Transport {
 public:
  virtual ~Transport() = default;

  // The device this transport logs in as, and how it signs. Clears any token.
  virtual void SetDevice(const padlock::v1::DeviceAddress& device, LoginSigner signer) = 0;
  // Logs in now. FailedPrecondition when SetDevice was not called; UNAUTHENTICATED when the
  // server does not know the device or key.
  virtual absl::Status Login() = 0;

  // Needs no login.
  virtual absl::StatusOr<padlock::v1::RegisterResponse> Register(
      const padlock::v1::RegisterRequest& request) = 0;
  virtual absl::StatusOr<padlock::v1::PublishPreKeysResponse> PublishPreKeys(
      const padlock::v1::GatewayPublishPreKeysRequest& request) = 0;
  virtual absl::StatusOr<padlock::v1::ClaimBundlesResponse> ClaimBundles(const std::string& user_id,
                                                                         uint32_t device_id) = 0;
  virtual absl::StatusOr<padlock::v1::GetDeviceListResponse> GetDeviceList(
      const std::string& user_id) = 0;
  virtual absl::StatusOr<padlock::v1::PublishDeviceListResponse> PublishDeviceList(
      const padlock::v1::GatewayPublishDeviceListRequest& request) = 0;
  virtual absl::StatusOr<padlock::v1::DeleteAccountResponse> DeleteAccount() = 0;
  virtual absl::StatusOr<padlock::v1::ChangeIdentityResponse> ChangeIdentity(
      const padlock::v1::GatewayChangeIdentityRequest& request) = 0;

  // Starts the device stream of the device set with SetDevice (connecting in the background).
  // The transport must outlive the stream.
  virtual std::unique_ptr<TransportStream> OpenStream() = 0;
  // The address to name in "cannot reach ..." errors.
  virtual std::string target() const = 0;
};

}  // namespace padlock::client
