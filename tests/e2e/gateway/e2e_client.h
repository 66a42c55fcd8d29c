#pragma once
// Test clients for the end-to-end tests: accounts with real libsignal keys registered through the
// public gateway, login by signed challenge, and a device stream (Gateway.Connect) driven by a
// reader thread that records every server frame. Payloads are opaque test ciphertexts: these
// tests are about the backend's delivery guarantees, the client SDK's tests do the real Signal
// encryption.
#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/sdk/crypto_provider.h"
#include "padlock/v1/gateway.grpc.pb.h"
#include "tests/unit/key_directory/test_identities.h"

namespace padlock::e2e {

namespace pb = padlock::v1;
using key_directory::testing::TestDevice;

struct Account {
  std::string user;
  std::map<uint32_t, TestDevice> devices;  // by device id; 1 = primary
  uint64_t list_version = 1;
  std::string primary_token;  // a token of device 1 (for device-list changes)
};

// Registration, login and device-list changes through one gateway. Not thread-safe.
class AccountOps {
 public:
  explicit AccountOps(std::shared_ptr<grpc::Channel> gateway);
  pb::Gateway::Stub& stub() { return *stub_; }

  // Registers `user` (primary device 1) and, when `login`, logs it in (primary_token).
  absl::StatusOr<Account> Register(const std::string& user, bool login = true);
  // GetChallenge → sign padlock-login-v1 → Login.
  absl::StatusOr<std::string> Login(const Account& account, uint32_t device_id);
  // The pieces of a login, for tests that tamper with them.
  absl::StatusOr<pb::GetChallengeResponse> Challenge(const std::string& user, uint32_t device_id);
  absl::StatusOr<std::string> Sign(const TestDevice& device, const std::string& bytes);
  grpc::Status LoginWith(const std::string& user, uint32_t device_id, const std::string& challenge,
                         const std::string& signature, pb::LoginResponse* response);
  // Publishes version+1 with a new device `device_id` (keys and prekeys uploaded).
  absl::Status Link(Account& account, uint32_t device_id);
  // Publishes version+1 without `device_id`.
  absl::Status Unlink(Account& account, uint32_t device_id);

 private:
  absl::Status Publish(Account& account, const std::vector<const TestDevice*>& devices,
                       const TestDevice* added);

  std::unique_ptr<pb::Gateway::Stub> stub_;
  key_directory::testing::TestKeys keys_;
  std::unique_ptr<client::SignalContext> signal_;
};

void Authorize(grpc::ClientContext& context, const std::string& token);

// 16 bytes derived from `label` (unique per test message).
std::string MessageId(const std::string& label);

// A 1:1 send from (from, from_device) to every device of `to` and every other device of `from`,
// each with the opaque ciphertext `payload`.
pb::OutgoingMessage OneToOne(const Account& from, uint32_t from_device, const Account& to,
                             const std::string& payload);

// One device stream. A reader thread records every frame; by default it acknowledges each
// Deliver frame cumulatively right away (as a client does after storing).
class DeviceConn {
 public:
  struct Options {
    bool auto_ack = true;
    // Sent as `padlock-stream-revision` metadata when non-zero (0: none, i.e. revision 1).
    uint32_t revision = 0;
  };
  static std::unique_ptr<DeviceConn> Open(pb::Gateway::Stub& stub, const std::string& token,
                                          Options options);
  static std::unique_ptr<DeviceConn> Open(pb::Gateway::Stub& stub, const std::string& token) {
    return Open(stub, token, Options{});
  }
  ~DeviceConn();

  // Waits for the `connected` frame; nullopt when the stream ended first or on timeout.
  std::optional<pb::Connected> WaitConnected(absl::Duration timeout = absl::Seconds(20));
  // Waits for `queue_empty`.
  bool WaitQueueEmpty(absl::Duration timeout = absl::Seconds(20));
  // Sends a message with a fresh request id; returns the id.
  uint64_t Send(const pb::OutgoingMessage& message);
  bool Write(const pb::ClientFrame& frame);
  // The SendResult for `request_id` (nullopt on timeout), from a `send_result` frame or a
  // frame's `send_results` (revision 2).
  std::optional<pb::SendResult> Result(uint64_t request_id,
                                       absl::Duration timeout = absl::Seconds(20));
  // Waits until at least `n` envelopes arrived.
  bool WaitEnvelopes(size_t n, absl::Duration timeout = absl::Seconds(30));
  // Waits for a frame matching `predicate`.
  std::optional<pb::ServerFrame> WaitFrame(
      const std::function<bool(const pb::ServerFrame&)>& predicate,
      absl::Duration timeout = absl::Seconds(20));
  // Waits until the stream has ended; its status.
  std::optional<grpc::Status> WaitEnded(absl::Duration timeout = absl::Seconds(20));

  std::vector<pb::Envelope> Envelopes() const;
  std::vector<pb::ServerFrame> Frames() const;
  bool ended() const;
  // Cancels the call (a client that goes away).
  void Cancel();

 private:
  DeviceConn() = default;
  void ReadLoop();

  Options options_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::ClientFrame, pb::ServerFrame>> stream_;
  std::thread reader_;
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<pb::ServerFrame> frames_;
  std::vector<pb::Envelope> envelopes_;
  std::optional<grpc::Status> ended_;
  uint64_t next_request_ = 1;
};

}  // namespace padlock::e2e
