#include "tests/e2e/gateway/e2e_client.h"

#include <openssl/sha.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/identity.h"
#include "common/statement/signed_statement.h"
#include "services/common/runtime/status.h"
#include "services/key_directory/key_directory_service.h"

namespace padlock::e2e {

void Authorize(grpc::ClientContext& context, const std::string& token) {
  context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

std::string MessageId(const std::string& label) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(label.data()), label.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), 16);
}

AccountOps::AccountOps(std::shared_ptr<grpc::Channel> gateway)
    : stub_(pb::Gateway::NewStub(std::move(gateway))) {
  auto signal = client::SignalContext::Create();
  if (signal.ok()) signal_ = *std::move(signal);
}

absl::StatusOr<Account> AccountOps::Register(const std::string& user, bool login) {
  Account account;
  account.user = user;
  TestDevice primary = keys_.NewDevice(1, 20);
  key_directory::Registration r = keys_.MakeRegistration(user, primary);
  pb::RegisterRequest request;
  request.set_user_id(r.user_id);
  request.set_identity_key(r.identity_key);
  request.set_registration_id(r.registration_id);
  request.mutable_signed_prekey()->set_key_id(r.signed_prekey->key_id);
  request.mutable_signed_prekey()->set_public_key(r.signed_prekey->public_key);
  request.mutable_signed_prekey()->set_signature(r.signed_prekey->signature);
  for (const auto& k : r.one_time_prekeys) {
    auto* key = request.add_one_time_prekeys();
    key->set_key_id(k.key_id);
    key->set_public_key(k.public_key);
  }
  key_directory::ToProto(*r.device_list, request.mutable_device_list());
  request.set_registration_signature(r.registration_signature);
  pb::RegisterResponse response;
  grpc::ClientContext context;
  grpc::Status status = stub_->Register(&context, request, &response);
  if (!status.ok()) return runtime::FromGrpcStatus(status);
  account.devices.emplace(1, std::move(primary));
  if (!login) return account;
  absl::StatusOr<std::string> token = Login(account, 1);
  if (!token.ok()) return token.status();
  account.primary_token = *token;
  return account;
}

absl::StatusOr<std::string> AccountOps::Login(const Account& account, uint32_t device_id) {
  const TestDevice& device = account.devices.at(device_id);
  pb::GetChallengeRequest challenge_request;
  challenge_request.mutable_device()->set_user_id(account.user);
  challenge_request.mutable_device()->set_device_id(device_id);
  pb::GetChallengeResponse challenge;
  {
    grpc::ClientContext context;
    grpc::Status status = stub_->GetChallenge(&context, challenge_request, &challenge);
    if (!status.ok()) return runtime::FromGrpcStatus(status);
  }
  auto signature = client::Sign(*signal_, device.identity.private_key,
                                statement::EncodeLogin(account.user, device_id,
                                                       challenge.challenge(),
                                                       challenge.audience()));
  if (!signature.ok()) return signature.status();
  pb::LoginRequest request;
  *request.mutable_device() = challenge_request.device();
  request.set_challenge(challenge.challenge());
  request.set_signature(*signature);
  pb::LoginResponse response;
  grpc::ClientContext context;
  grpc::Status status = stub_->Login(&context, request, &response);
  if (!status.ok()) return runtime::FromGrpcStatus(status);
  return response.token();
}

absl::StatusOr<pb::GetChallengeResponse> AccountOps::Challenge(const std::string& user,
                                                               uint32_t device_id) {
  pb::GetChallengeRequest request;
  request.mutable_device()->set_user_id(user);
  request.mutable_device()->set_device_id(device_id);
  pb::GetChallengeResponse response;
  grpc::ClientContext context;
  grpc::Status status = stub_->GetChallenge(&context, request, &response);
  if (!status.ok()) return runtime::FromGrpcStatus(status);
  return response;
}

absl::StatusOr<std::string> AccountOps::Sign(const TestDevice& device, const std::string& bytes) {
  return client::Sign(*signal_, device.identity.private_key, bytes);
}

grpc::Status AccountOps::LoginWith(const std::string& user, uint32_t device_id,
                                   const std::string& challenge, const std::string& signature,
                                   pb::LoginResponse* response) {
  pb::LoginRequest request;
  request.mutable_device()->set_user_id(user);
  request.mutable_device()->set_device_id(device_id);
  request.set_challenge(challenge);
  request.set_signature(signature);
  grpc::ClientContext context;
  return stub_->Login(&context, request, response);
}

absl::Status AccountOps::Publish(Account& account, const std::vector<const TestDevice*>& devices,
                                 const TestDevice* added) {
  key_directory::DeviceList list =
      keys_.SignedList(account.user, account.list_version + 1, devices, account.devices.at(1));
  pb::GatewayPublishDeviceListRequest request;
  key_directory::ToProto(list, request.mutable_device_list());
  if (added != nullptr) {
    pb::NewDeviceKeys* keys = request.add_new_device_keys();
    keys->set_device_id(added->device_id);
    keys->mutable_signed_prekey()->set_key_id(added->signed_prekey.key_id);
    keys->mutable_signed_prekey()->set_public_key(added->signed_prekey.public_key);
    keys->mutable_signed_prekey()->set_signature(added->signed_prekey.signature);
    for (const auto& k : added->one_time_prekeys) {
      auto* key = keys->add_one_time_prekeys();
      key->set_key_id(k.key_id);
      key->set_public_key(k.public_key);
    }
  }
  pb::PublishDeviceListResponse response;
  grpc::ClientContext context;
  Authorize(context, account.primary_token);
  grpc::Status status = stub_->PublishDeviceList(&context, request, &response);
  if (!status.ok()) return runtime::FromGrpcStatus(status);
  account.list_version += 1;
  // The primary's token carries the old version now: log in again for the next change.
  absl::StatusOr<std::string> token = Login(account, 1);
  if (!token.ok()) return token.status();
  account.primary_token = *token;
  return absl::OkStatus();
}

absl::Status AccountOps::Link(Account& account, uint32_t device_id) {
  TestDevice device = keys_.NewDevice(device_id, 20, device_id * 1000);
  std::vector<const TestDevice*> devices;
  for (const auto& [id, d] : account.devices) devices.push_back(&d);
  devices.push_back(&device);
  absl::Status status = Publish(account, devices, &device);
  if (status.ok()) account.devices.emplace(device_id, std::move(device));
  return status;
}

absl::Status AccountOps::Unlink(Account& account, uint32_t device_id) {
  std::vector<const TestDevice*> devices;
  for (const auto& [id, d] : account.devices) {
    if (id != device_id) devices.push_back(&d);
  }
  absl::Status status = Publish(account, devices, nullptr);
  if (status.ok()) account.devices.erase(device_id);
  return status;
}

pb::OutgoingMessage OneToOne(const Account& from, uint32_t from_device, const Account& to,
                             const std::string& payload) {
  pb::OutgoingMessage message;
  message.set_message_id(MessageId(payload));
  auto add = [&](const Account& account, uint32_t id, const TestDevice& device) {
    pb::Recipient* r = message.add_recipients();
    r->mutable_device()->set_user_id(account.user);
    r->mutable_device()->set_device_id(id);
    r->set_registration_id(device.registration_id);
    r->set_type(pb::ENVELOPE_TYPE_MESSAGE);
    r->set_ciphertext(payload);
  };
  for (const auto& [id, device] : to.devices) add(to, id, device);
  for (const auto& [id, device] : from.devices) {
    if (id != from_device) add(from, id, device);
  }
  return message;
}

std::unique_ptr<DeviceConn> DeviceConn::Open(pb::Gateway::Stub& stub, const std::string& token,
                                             Options options) {
  std::unique_ptr<DeviceConn> conn(new DeviceConn());
  conn->options_ = options;
  Authorize(conn->context_, token);
  if (options.revision != 0) {
    conn->context_.AddMetadata("padlock-stream-revision", std::to_string(options.revision));
  }
  conn->stream_ = stub.Connect(&conn->context_);
  conn->reader_ = std::thread([c = conn.get()] { c->ReadLoop(); });
  return conn;
}

DeviceConn::~DeviceConn() {
  Cancel();
  if (reader_.joinable()) reader_.join();
}

void DeviceConn::Cancel() { context_.TryCancel(); }

void DeviceConn::ReadLoop() {
  pb::ServerFrame frame;
  while (stream_->Read(&frame)) {
    std::string ack_up_to;
    {
      std::lock_guard lock(mu_);
      if (frame.has_deliver()) {
        for (const pb::Envelope& e : frame.deliver().envelopes()) {
          envelopes_.push_back(e);
          if (!e.server_id().empty()) ack_up_to = e.server_id();
        }
      }
      frames_.push_back(frame);
    }
    changed_.notify_all();
    if (options_.auto_ack && !ack_up_to.empty()) {
      pb::ClientFrame ack;
      ack.mutable_ack()->set_up_to_server_id(ack_up_to);
      Write(ack);
    }
  }
  grpc::Status status = stream_->Finish();
  {
    std::lock_guard lock(mu_);
    ended_ = status;
  }
  changed_.notify_all();
}

bool DeviceConn::Write(const pb::ClientFrame& frame) {
  std::lock_guard lock(write_mu_);
  return stream_->Write(frame);
}

uint64_t DeviceConn::Send(const pb::OutgoingMessage& message) {
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = next_request_++;
  }
  pb::ClientFrame frame;
  frame.mutable_send()->set_request_id(id);
  *frame.mutable_send()->mutable_message() = message;
  Write(frame);
  return id;
}

std::optional<pb::ServerFrame> DeviceConn::WaitFrame(
    const std::function<bool(const pb::ServerFrame&)>& predicate, absl::Duration timeout) {
  std::unique_lock lock(mu_);
  std::optional<pb::ServerFrame> found;
  changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    for (const pb::ServerFrame& f : frames_) {
      if (predicate(f)) {
        found = f;
        return true;
      }
    }
    return ended_.has_value();
  });
  return found;
}

std::optional<pb::Connected> DeviceConn::WaitConnected(absl::Duration timeout) {
  auto frame = WaitFrame([](const pb::ServerFrame& f) { return f.has_connected(); }, timeout);
  if (!frame) return std::nullopt;
  return frame->connected();
}

bool DeviceConn::WaitQueueEmpty(absl::Duration timeout) {
  return WaitFrame([](const pb::ServerFrame& f) { return f.has_queue_empty(); }, timeout)
      .has_value();
}

std::optional<pb::SendResult> DeviceConn::Result(uint64_t request_id, absl::Duration timeout) {
  auto find = [request_id](const pb::ServerFrame& f) -> const pb::SendResult* {
    if (f.has_send_result() && f.send_result().request_id() == request_id) return &f.send_result();
    for (const pb::SendResult& r : f.send_results()) {
      if (r.request_id() == request_id) return &r;
    }
    return nullptr;
  };
  auto frame = WaitFrame([&](const pb::ServerFrame& f) { return find(f) != nullptr; }, timeout);
  if (!frame) return std::nullopt;
  return *find(*frame);
}

bool DeviceConn::WaitEnvelopes(size_t n, absl::Duration timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [&] { return envelopes_.size() >= n || ended_.has_value(); }) &&
         envelopes_.size() >= n;
}

std::optional<grpc::Status> DeviceConn::WaitEnded(absl::Duration timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return ended_.has_value(); });
  return ended_;
}

std::vector<pb::Envelope> DeviceConn::Envelopes() const {
  std::lock_guard lock(mu_);
  return envelopes_;
}

std::vector<pb::ServerFrame> DeviceConn::Frames() const {
  std::lock_guard lock(mu_);
  return frames_;
}

bool DeviceConn::ended() const {
  std::lock_guard lock(mu_);
  return ended_.has_value();
}

}  // namespace padlock::e2e
