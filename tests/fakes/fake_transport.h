#pragma once
// An in-process stand-in for the gateway, for SDK unit tests through the transport interface
// (clients/sdk/transport.h): no network, no servers.
//
// FakeDirectory plays the key-directory behind the gateway for several devices: accounts made by
// Register, linked devices added by PublishDeviceList, identity changes, bundles with one
// one-time prekey per claim. Like the real one it stores what it is given; it does not check
// list signatures (the SDK verifies every list it fetches) but a login must be signed by the key
// listed for the device. A test can make one rpc fail (FailRpc).
//
// FakeTransport is one device's transport over a FakeDirectory. Its streams do nothing by
// themselves: the test drives them through FakeStreamControl — connect, break, push server
// frames, read what the SDK wrote. Thread-safe.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/transport.h"
#include "padlock/v1/gateway.pb.h"

namespace padlock::testing {

class FakeDirectory {
 public:
  absl::StatusOr<padlock::v1::RegisterResponse> Register(const padlock::v1::RegisterRequest& r);
  absl::StatusOr<padlock::v1::GetDeviceListResponse> GetDeviceList(const std::string& user_id);
  // One bundle for `device_id` (every listed device when 0), each with one one-time prekey taken.
  absl::StatusOr<padlock::v1::ClaimBundlesResponse> ClaimBundles(const std::string& user_id,
                                                                 uint32_t device_id);
  absl::StatusOr<padlock::v1::PublishPreKeysResponse> PublishPreKeys(
      const padlock::v1::DeviceAddress& device,
      const padlock::v1::GatewayPublishPreKeysRequest& request);
  absl::StatusOr<padlock::v1::PublishDeviceListResponse> PublishDeviceList(
      const padlock::v1::DeviceAddress& device,
      const padlock::v1::GatewayPublishDeviceListRequest& request);
  absl::StatusOr<padlock::v1::ChangeIdentityResponse> ChangeIdentity(
      const padlock::v1::DeviceAddress& device,
      const padlock::v1::GatewayChangeIdentityRequest& request);
  // OK when `device` is listed and `signer` signs with its listed identity key; UNAUTHENTICATED
  // otherwise.
  absl::Status Login(const padlock::v1::DeviceAddress& device, const client::LoginSigner& signer);

  // Every later call of rpc `method` ("GetDeviceList", "ClaimBundles", ...) answers `status`
  // (OK: answers normally again).
  void FailRpc(const std::string& method, absl::Status status);
  // The failure set for `method`, or OK.
  absl::Status Failure(const std::string& method) const;

 private:
  struct Device {
    std::string identity_key;
    uint32_t registration_id = 0;
    padlock::v1::SignedPreKey signed_prekey;
    std::vector<padlock::v1::OneTimePreKey> one_time_prekeys;
  };
  struct Account {
    padlock::v1::SignedDeviceList list;
    std::map<uint32_t, Device> devices;
  };

  mutable std::mutex mu_;
  std::map<std::string, Account> accounts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> failures_ ABSL_GUARDED_BY(mu_);
};

// The test's handle on one opened stream.
class FakeStreamControl {
 public:
  // Marks the stream connected and queues a `connected` frame with `epoch`.
  void Connect(uint64_t epoch = 1);
  // Ends the connection: not connected, and a kDisconnected event with `why`.
  void Break(absl::Status why = absl::UnavailableError("connection reset"));
  // Queues a frame from the server.
  void Push(padlock::v1::ServerFrame frame);
  // Queues a send_result accepting request `request_id`.
  void Accept(uint64_t request_id, uint64_t server_timestamp_ms = 1);
  // Queues a send_result answering request `request_id` with `mismatch`.
  void Mismatch(uint64_t request_id, padlock::v1::Mismatch mismatch);

  // Every frame the SDK wrote, in order.
  std::vector<padlock::v1::ClientFrame> written() const;
  // The `send` frames among them.
  std::vector<padlock::v1::SendRequest> sends() const;
  bool stopped() const;

  // The SDK's side (the TransportStream the messenger holds forwards here).
  absl::Status Write(const padlock::v1::ClientFrame& frame);
  std::optional<client::StreamEvent> Next(absl::Duration timeout);
  bool connected() const;
  void Stop();

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<client::StreamEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<padlock::v1::ClientFrame> written_ ABSL_GUARDED_BY(mu_);
};

class FakeTransport final : public client::Transport {
 public:
  // `directory` must outlive the transport. With `auto_connect`, every opened stream connects at
  // once (epoch = number of streams opened so far).
  explicit FakeTransport(FakeDirectory& directory, bool auto_connect = true)
      : directory_(directory), auto_connect_(auto_connect) {}

  void SetDevice(const padlock::v1::DeviceAddress& device, client::LoginSigner signer) override;
  absl::Status Login() override;
  absl::StatusOr<padlock::v1::RegisterResponse> Register(
      const padlock::v1::RegisterRequest& request) override;
  absl::StatusOr<padlock::v1::PublishPreKeysResponse> PublishPreKeys(
      const padlock::v1::GatewayPublishPreKeysRequest& request) override;
  absl::StatusOr<padlock::v1::ClaimBundlesResponse> ClaimBundles(const std::string& user_id,
                                                                 uint32_t device_id) override;
  absl::StatusOr<padlock::v1::GetDeviceListResponse> GetDeviceList(
      const std::string& user_id) override;
  absl::StatusOr<padlock::v1::PublishDeviceListResponse> PublishDeviceList(
      const padlock::v1::GatewayPublishDeviceListRequest& request) override;
  absl::StatusOr<padlock::v1::DeleteAccountResponse> DeleteAccount() override;
  absl::StatusOr<padlock::v1::ChangeIdentityResponse> ChangeIdentity(
      const padlock::v1::GatewayChangeIdentityRequest& request) override;
  std::unique_ptr<client::TransportStream> OpenStream() override;
  std::string target() const override { return "fake-gateway"; }

  // The most recently opened stream (null before the first OpenStream).
  std::shared_ptr<FakeStreamControl> stream() const;
  // How many streams were opened.
  size_t streams_opened() const;

 private:
  padlock::v1::DeviceAddress device() const;

  FakeDirectory& directory_;
  const bool auto_connect_;
  mutable std::mutex mu_;
  padlock::v1::DeviceAddress device_ ABSL_GUARDED_BY(mu_);
  client::LoginSigner signer_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<FakeStreamControl>> streams_ ABSL_GUARDED_BY(mu_);
};

// The envelope the server would deliver to `recipient` for `send` from `sender` (the recipient's
// ciphertext, or the shared one with its header), with `server_id`.
std::optional<padlock::v1::Envelope> EnvelopeFor(const padlock::v1::SendRequest& send,
                                                 const padlock::v1::DeviceAddress& sender,
                                                 const padlock::v1::DeviceAddress& recipient,
                                                 const std::string& server_id);
// A `deliver` frame with `envelopes`.
padlock::v1::ServerFrame DeliverFrame(std::vector<padlock::v1::Envelope> envelopes);
padlock::v1::DeviceAddress Address(const std::string& user, uint32_t device);

}  // namespace padlock::testing
