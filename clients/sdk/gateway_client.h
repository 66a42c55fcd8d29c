#pragma once
// The client's connection to a Padlock gateway (proto/padlock/v1/gateway.proto): the unary rpcs
// with `authorization: Bearer <token>`, login by identity-key signature, and the device stream.
//
// Login: GetChallenge → sign statement::EncodeLogin(user, device, challenge, audience) with the
// identity key (through a LoginSigner, so the private key never enters this class) → Login →
// token. Authenticated calls log in on first use and once more when the server answers
// UNAUTHENTICATED (token expired, or older than the account's device list), then retry once.
//
// Errors are absl::Status with the gRPC code. RESOURCE_EXHAUSTED keeps the server's
// `retry-after-ms` (trailing metadata, or Refusal.retry_after_ms) as a status payload: read it
// with RetryAfter(). A gateway that cannot be reached is UNAVAILABLE "cannot reach gateway ...".
//
// Thread-safety: GatewayClient is thread-safe (the token is guarded). GatewayStream runs one
// reader thread; Write may be called from any thread (writes are serialized) and Next from one
// consumer thread. Both implement the SDK's transport interface (transport.h).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "clients/sdk/transport.h"
#include "padlock/v1/gateway.grpc.pb.h"

namespace padlock::client {

struct GatewayClientOptions {
  // "host:port".
  std::string target = {};
  // PEM file of the CA that signed the gateway's certificate; empty = plaintext gRPC.
  std::string ca_file = {};
  // Deadline of each unary call.
  absl::Duration call_timeout = absl::Seconds(10);
  // Reconnect backoff of the device stream (doubles up to max, with jitter).
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
};

// The status payload type URL that carries the retry-after delay in milliseconds (decimal).
inline constexpr std::string_view kRetryAfterPayload = "padlock/retry-after-ms";

// Converts a finished call's status; keeps `retry-after-ms` from `context`'s trailing metadata.
absl::Status FromGrpc(const grpc::Status& status, const grpc::ClientContext* context,
                      std::string_view what);
// A status with the given code and message that carries `retry_after` (RetryAfter reads it).
absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after);
// The server's requested wait for a RESOURCE_EXHAUSTED status; nullopt when it said none.
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

class GatewayClient final : public Transport {
 public:
  // InvalidArgument for an empty target; NotFound when the CA file cannot be read. Does not
  // connect (gRPC connects on the first call).
  static absl::StatusOr<std::unique_ptr<GatewayClient>> Create(GatewayClientOptions options);

  // The device this client logs in as, and how it signs. Clears any token.
  void SetDevice(const padlock::v1::DeviceAddress& device, LoginSigner signer) override;

  // Needs no token.
  absl::StatusOr<padlock::v1::RegisterResponse> Register(
      const padlock::v1::RegisterRequest& r) override;

  // Logs in now (replacing any token). FailedPrecondition when SetDevice was not called;
  // UNAUTHENTICATED "login failed" when the server does not know the device or key.
  absl::Status Login() override;
  // The current token, logging in when there is none or it expires within a minute.
  absl::StatusOr<std::string> Token();
  // Forgets `token` if it is the current one (the server refused it).
  void InvalidateToken(const std::string& token);

  absl::StatusOr<padlock::v1::PublishPreKeysResponse> PublishPreKeys(
      const padlock::v1::GatewayPublishPreKeysRequest& request) override;
  absl::StatusOr<padlock::v1::ClaimBundlesResponse> ClaimBundles(const std::string& user_id,
                                                                 uint32_t device_id) override;
  absl::StatusOr<padlock::v1::GetDeviceListResponse> GetDeviceList(
      const std::string& user_id) override;
  absl::StatusOr<padlock::v1::PublishDeviceListResponse> PublishDeviceList(
      const padlock::v1::GatewayPublishDeviceListRequest& request) override;
  absl::StatusOr<padlock::v1::DeleteAccountResponse> DeleteAccount() override;
  // Replaces this device's identity key (primary only; see Messenger::ChangeIdentity). The
  // token used is the old key's; afterwards SetDevice with the new key's signer.
  absl::StatusOr<padlock::v1::ChangeIdentityResponse> ChangeIdentity(
      const padlock::v1::GatewayChangeIdentityRequest& request) override;
  // A GatewayStream on this client.
  std::unique_ptr<TransportStream> OpenStream() override;
  std::string target() const override { return options_.target; }

  padlock::v1::Gateway::Stub& stub() { return *stub_; }
  const GatewayClientOptions& options() const { return options_; }

 private:
  GatewayClient(GatewayClientOptions options, std::shared_ptr<grpc::Channel> channel);
  void Prepare(grpc::ClientContext& context) const;
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> CallAuthed(const Request& request, Method method,
                                      std::string_view what);

  const GatewayClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<padlock::v1::Gateway::Stub> stub_;

  std::mutex mu_;
  padlock::v1::DeviceAddress device_ ABSL_GUARDED_BY(mu_);
  LoginSigner signer_ ABSL_GUARDED_BY(mu_);
  std::string token_ ABSL_GUARDED_BY(mu_);
  uint64_t token_expires_at_ms_ ABSL_GUARDED_BY(mu_) = 0;
  // Serializes logins so that concurrent callers do not spend several challenges.
  std::mutex login_mu_;
};

// The device stream Gateway.Connect, kept open: a reader thread reads frames into a queue and
// reconnects with exponential backoff after transport faults; an UNAUTHENTICATED end logs in
// again. `displaced` and `closing` REVOKED stop it for good; `closing` DRAIN reconnects at once.
// It asks for stream revision 2 and unpacks each frame's `send_results` (StreamEvent::kFrame).
class GatewayStream final : public TransportStream {
 public:
  // Starts connecting in the background. `client` must outlive the stream and have a device set.
  static std::unique_ptr<GatewayStream> Start(GatewayClient& client);
  ~GatewayStream();
  GatewayStream(const GatewayStream&) = delete;
  GatewayStream& operator=(const GatewayStream&) = delete;

  // Sends one frame on the current connection. Unavailable when there is none (the caller resends
  // after the next `connected` frame). Safe from any thread.
  absl::Status Write(const padlock::v1::ClientFrame& frame) override;
  // The next event, waiting up to `timeout`; nullopt on timeout.
  std::optional<StreamEvent> Next(absl::Duration timeout) override;
  // True between a `connected` frame and the end of that connection.
  bool connected() const override;
  // Closes the stream and joins the reader thread (idempotent).
  void Stop() override;

 private:
  explicit GatewayStream(GatewayClient& client);
  void Run();
  void Push(StreamEvent event);
  // Waits `d` or until Stop(); false when stopping.
  bool Sleep(absl::Duration d);

  GatewayClient& client_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<StreamEvent> events_ ABSL_GUARDED_BY(mu_);

  // Held while writing, and by the reader while it detaches a finished stream, so that no write
  // is in flight when Finish runs. Never taken while holding mu_ would wait on it.
  std::mutex write_mu_;
  grpc::ClientReaderWriter<padlock::v1::ClientFrame, padlock::v1::ServerFrame>* stream_
      ABSL_GUARDED_BY(write_mu_) = nullptr;
};

}  // namespace padlock::client
