#include "tests/fakes/fake_transport.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/statement/signature.h"

namespace padlock::testing {
namespace {

const padlock::v1::DeviceListEntry* Listed(const padlock::v1::SignedDeviceList& list,
                                           uint32_t device_id) {
  for (const padlock::v1::DeviceListEntry& e : list.list().devices()) {
    if (e.device_id() == device_id) return &e;
  }
  return nullptr;
}

}  // namespace

padlock::v1::DeviceAddress Address(const std::string& user, uint32_t device) {
  padlock::v1::DeviceAddress a;
  a.set_user_id(user);
  a.set_device_id(device);
  return a;
}

// ---- FakeDirectory ------------------------------------------------------------------------

void FakeDirectory::FailRpc(const std::string& method, absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (status.ok()) {
    failures_.erase(method);
  } else {
    failures_[method] = std::move(status);
  }
}

absl::Status FakeDirectory::Failure(const std::string& method) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = failures_.find(method);
  return it == failures_.end() ? absl::OkStatus() : it->second;
}

absl::StatusOr<padlock::v1::RegisterResponse> FakeDirectory::Register(
    const padlock::v1::RegisterRequest& r) {
  if (absl::Status s = Failure("Register"); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  if (accounts_.count(r.user_id()) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("user ", r.user_id(), " exists"));
  }
  Account& account = accounts_[r.user_id()];
  account.list = r.device_list();
  Device& device = account.devices[1];
  device.identity_key = r.identity_key();
  device.registration_id = r.registration_id();
  device.signed_prekey = r.signed_prekey();
  device.one_time_prekeys.assign(r.one_time_prekeys().begin(), r.one_time_prekeys().end());
  padlock::v1::RegisterResponse response;
  response.set_device_id(1);
  response.set_device_list_version(account.list.list().version());
  return response;
}

absl::StatusOr<padlock::v1::GetDeviceListResponse> FakeDirectory::GetDeviceList(
    const std::string& user_id) {
  if (absl::Status s = Failure("GetDeviceList"); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) return absl::NotFoundError(absl::StrCat("no user ", user_id));
  padlock::v1::GetDeviceListResponse response;
  *response.mutable_device_list() = it->second.list;
  return response;
}

absl::StatusOr<padlock::v1::ClaimBundlesResponse> FakeDirectory::ClaimBundles(
    const std::string& user_id, uint32_t device_id) {
  if (absl::Status s = Failure("ClaimBundles"); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) return absl::NotFoundError(absl::StrCat("no user ", user_id));
  padlock::v1::ClaimBundlesResponse response;
  *response.mutable_device_list() = it->second.list;
  for (auto& [id, device] : it->second.devices) {
    if (device_id != 0 && id != device_id) continue;
    if (Listed(it->second.list, id) == nullptr) continue;
    padlock::v1::PreKeyBundle* bundle = response.add_bundles();
    *bundle->mutable_device() = Address(user_id, id);
    bundle->set_registration_id(device.registration_id);
    bundle->set_identity_key(device.identity_key);
    *bundle->mutable_signed_prekey() = device.signed_prekey;
    if (!device.one_time_prekeys.empty()) {
      *bundle->mutable_one_time_prekey() = device.one_time_prekeys.front();
      device.one_time_prekeys.erase(device.one_time_prekeys.begin());
    }
  }
  if (response.bundles().empty()) return absl::NotFoundError("no such device");
  return response;
}

absl::StatusOr<padlock::v1::PublishPreKeysResponse> FakeDirectory::PublishPreKeys(
    const padlock::v1::DeviceAddress& device,
    const padlock::v1::GatewayPublishPreKeysRequest& request) {
  if (absl::Status s = Failure("PublishPreKeys"); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = accounts_.find(device.user_id());
  if (it == accounts_.end() || it->second.devices.count(device.device_id()) == 0) {
    return absl::UnauthenticatedError("unknown device");
  }
  Device& d = it->second.devices[device.device_id()];
  if (request.has_signed_prekey()) d.signed_prekey = request.signed_prekey();
  for (const padlock::v1::OneTimePreKey& k : request.one_time_prekeys()) {
    d.one_time_prekeys.push_back(k);
  }
  padlock::v1::PublishPreKeysResponse response;
  response.set_one_time_prekeys_remaining(static_cast<uint32_t>(d.one_time_prekeys.size()));
  return response;
}

absl::StatusOr<padlock::v1::PublishDeviceListResponse> FakeDirectory::PublishDeviceList(
    const padlock::v1::DeviceAddress& device,
    const padlock::v1::GatewayPublishDeviceListRequest& request) {
  if (absl::Status s = Failure("PublishDeviceList"); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = accounts_.find(device.user_id());
  if (it == accounts_.end()) return absl::UnauthenticatedError("unknown device");
  Account& account = it->second;
  if (request.device_list().list().version() <= account.list.list().version()) {
    return absl::FailedPreconditionError("device list version not newer");
  }
  account.list = request.device_list();
  for (const padlock::v1::NewDeviceKeys& keys : request.new_device_keys()) {
    const padlock::v1::DeviceListEntry* entry = Listed(account.list, keys.device_id());
    if (entry == nullptr) return absl::InvalidArgumentError("keys for an unlisted device");
    Device& d = account.devices[keys.device_id()];
    d.identity_key = entry->identity_key();
    d.registration_id = entry->registration_id();
    d.signed_prekey = keys.signed_prekey();
    d.one_time_prekeys.assign(keys.one_time_prekeys().begin(), keys.one_time_prekeys().end());
  }
  for (auto d = account.devices.begin(); d != account.devices.end();) {
    d = Listed(account.list, d->first) == nullptr ? account.devices.erase(d) : std::next(d);
  }
  padlock::v1::PublishDeviceListResponse response;
  response.set_device_list_version(account.list.list().version());
  return response;
}

absl::StatusOr<padlock::v1::ChangeIdentityResponse> FakeDirectory::ChangeIdentity(
    const padlock::v1::DeviceAddress& device,
    const padlock::v1::GatewayChangeIdentityRequest& request) {
  if (absl::Status s = Failure("ChangeIdentity"); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = accounts_.find(device.user_id());
  if (it == accounts_.end() || device.device_id() != 1) {
    return absl::PermissionDeniedError("only a primary changes identity");
  }
  Account& account = it->second;
  account.list = request.device_list();
  Device& d = account.devices[1];
  d.identity_key = request.new_identity_key();
  d.registration_id = request.new_registration_id();
  d.signed_prekey = request.new_signed_prekey();
  d.one_time_prekeys.assign(request.new_one_time_prekeys().begin(),
                            request.new_one_time_prekeys().end());
  padlock::v1::ChangeIdentityResponse response;
  response.set_device_list_version(account.list.list().version());
  return response;
}

absl::Status FakeDirectory::Login(const padlock::v1::DeviceAddress& device,
                                  const client::LoginSigner& signer) {
  if (absl::Status s = Failure("Login"); !s.ok()) return s;
  if (!signer) return absl::FailedPreconditionError("no device set");
  std::string identity_key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = accounts_.find(device.user_id());
    if (it == accounts_.end()) return absl::UnauthenticatedError("login failed");
    const padlock::v1::DeviceListEntry* entry = Listed(it->second.list, device.device_id());
    if (entry == nullptr) return absl::UnauthenticatedError("login failed");
    identity_key = entry->identity_key();
  }
  const std::string challenge =
      absl::StrCat("fake-login:", device.user_id(), ":", device.device_id());
  absl::StatusOr<std::string> signature = signer(challenge);
  if (!signature.ok()) return signature.status();
  if (!statement::VerifySignature(identity_key, challenge, *signature)) {
    return absl::UnauthenticatedError("login failed");
  }
  return absl::OkStatus();
}

// ---- Streams ------------------------------------------------------------------------------

void FakeStreamControl::Connect(uint64_t epoch) {
  padlock::v1::ServerFrame frame;
  frame.mutable_connected()->set_epoch(epoch);
  {
    std::lock_guard<std::mutex> lock(mu_);
    connected_ = true;
  }
  Push(std::move(frame));
}

void FakeStreamControl::Break(absl::Status why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    connected_ = false;
    events_.push_back(
        client::StreamEvent{client::StreamEvent::Kind::kDisconnected, {}, std::move(why)});
  }
  cv_.notify_all();
}

void FakeStreamControl::Push(padlock::v1::ServerFrame frame) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(
        client::StreamEvent{client::StreamEvent::Kind::kFrame, std::move(frame), absl::OkStatus()});
  }
  cv_.notify_all();
}

void FakeStreamControl::Accept(uint64_t request_id, uint64_t server_timestamp_ms) {
  padlock::v1::ServerFrame frame;
  frame.mutable_send_result()->set_request_id(request_id);
  frame.mutable_send_result()->mutable_accepted()->set_server_timestamp_ms(server_timestamp_ms);
  Push(std::move(frame));
}

void FakeStreamControl::Mismatch(uint64_t request_id, padlock::v1::Mismatch mismatch) {
  padlock::v1::ServerFrame frame;
  frame.mutable_send_result()->set_request_id(request_id);
  *frame.mutable_send_result()->mutable_mismatch() = std::move(mismatch);
  Push(std::move(frame));
}

std::vector<padlock::v1::ClientFrame> FakeStreamControl::written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return written_;
}

std::vector<padlock::v1::SendRequest> FakeStreamControl::sends() const {
  std::vector<padlock::v1::SendRequest> out;
  for (const padlock::v1::ClientFrame& f : written()) {
    if (f.has_send()) out.push_back(f.send());
  }
  return out;
}

bool FakeStreamControl::stopped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopped_;
}

absl::Status FakeStreamControl::Write(const padlock::v1::ClientFrame& frame) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!connected_ || stopped_) return absl::UnavailableError("not connected");
  written_.push_back(frame);
  return absl::OkStatus();
}

std::optional<client::StreamEvent> FakeStreamControl::Next(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), [&] { return !events_.empty(); });
  if (events_.empty()) return std::nullopt;
  client::StreamEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

bool FakeStreamControl::connected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return connected_ && !stopped_;
}

void FakeStreamControl::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  connected_ = false;
}

namespace {

// What the Messenger holds; the test keeps the shared control.
class FakeStream final : public client::TransportStream {
 public:
  explicit FakeStream(std::shared_ptr<FakeStreamControl> control) : c_(std::move(control)) {}
  ~FakeStream() override { c_->Stop(); }

  absl::Status Write(const padlock::v1::ClientFrame& frame) override { return c_->Write(frame); }
  std::optional<client::StreamEvent> Next(absl::Duration timeout) override {
    return c_->Next(timeout);
  }
  bool connected() const override { return c_->connected(); }
  void Stop() override { c_->Stop(); }

 private:
  std::shared_ptr<FakeStreamControl> c_;
};

}  // namespace

// ---- FakeTransport ------------------------------------------------------------------------

void FakeTransport::SetDevice(const padlock::v1::DeviceAddress& device,
                              client::LoginSigner signer) {
  std::lock_guard<std::mutex> lock(mu_);
  device_ = device;
  signer_ = std::move(signer);
}

padlock::v1::DeviceAddress FakeTransport::device() const {
  std::lock_guard<std::mutex> lock(mu_);
  return device_;
}

absl::Status FakeTransport::Login() {
  client::LoginSigner signer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    signer = signer_;
  }
  return directory_.Login(device(), signer);
}

absl::StatusOr<padlock::v1::RegisterResponse> FakeTransport::Register(
    const padlock::v1::RegisterRequest& request) {
  return directory_.Register(request);
}

absl::StatusOr<padlock::v1::PublishPreKeysResponse> FakeTransport::PublishPreKeys(
    const padlock::v1::GatewayPublishPreKeysRequest& request) {
  return directory_.PublishPreKeys(device(), request);
}

absl::StatusOr<padlock::v1::ClaimBundlesResponse> FakeTransport::ClaimBundles(
    const std::string& user_id, uint32_t device_id) {
  return directory_.ClaimBundles(user_id, device_id);
}

absl::StatusOr<padlock::v1::GetDeviceListResponse> FakeTransport::GetDeviceList(
    const std::string& user_id) {
  return directory_.GetDeviceList(user_id);
}

absl::StatusOr<padlock::v1::PublishDeviceListResponse> FakeTransport::PublishDeviceList(
    const padlock::v1::GatewayPublishDeviceListRequest& request) {
  return directory_.PublishDeviceList(device(), request);
}

absl::StatusOr<padlock::v1::DeleteAccountResponse> FakeTransport::DeleteAccount() {
  return absl::UnimplementedError("the fake gateway does not delete accounts");
}

absl::StatusOr<padlock::v1::ChangeIdentityResponse> FakeTransport::ChangeIdentity(
    const padlock::v1::GatewayChangeIdentityRequest& request) {
  return directory_.ChangeIdentity(device(), request);
}

std::unique_ptr<client::TransportStream> FakeTransport::OpenStream() {
  auto control = std::make_shared<FakeStreamControl>();
  size_t opened = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    streams_.push_back(control);
    opened = streams_.size();
  }
  if (auto_connect_) control->Connect(opened);
  return std::make_unique<FakeStream>(control);
}

std::shared_ptr<FakeStreamControl> FakeTransport::stream() const {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_.empty() ? nullptr : streams_.back();
}

size_t FakeTransport::streams_opened() const {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_.size();
}

// ---- Helpers ------------------------------------------------------------------------------

std::optional<padlock::v1::Envelope> EnvelopeFor(const padlock::v1::SendRequest& send,
                                                 const padlock::v1::DeviceAddress& sender,
                                                 const padlock::v1::DeviceAddress& recipient,
                                                 const std::string& server_id) {
  for (const padlock::v1::Recipient& r : send.message().recipients()) {
    if (r.device().user_id() != recipient.user_id() ||
        r.device().device_id() != recipient.device_id()) {
      continue;
    }
    padlock::v1::Envelope e;
    e.set_message_id(send.message().message_id());
    *e.mutable_sender() = sender;
    *e.mutable_recipient() = recipient;
    e.set_recipient_registration_id(r.registration_id());
    if (send.message().shared_ciphertext().empty()) {
      e.set_type(r.type());
      e.set_ciphertext(r.ciphertext());
    } else {
      e.set_type(send.message().shared_type());
      e.set_ciphertext(send.message().shared_ciphertext());
      e.set_recipient_header(r.header());
    }
    e.set_server_timestamp_ms(1);
    e.set_server_id(server_id);
    return e;
  }
  return std::nullopt;
}

padlock::v1::ServerFrame DeliverFrame(std::vector<padlock::v1::Envelope> envelopes) {
  padlock::v1::ServerFrame frame;
  for (padlock::v1::Envelope& e : envelopes)
    *frame.mutable_deliver()->add_envelopes() = std::move(e);
  return frame;
}

}  // namespace padlock::testing
