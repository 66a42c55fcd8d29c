#include "bench/loadgen/accounts.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "common/statement/signed_statement.h"
#include "padlock/v1/gateway.grpc.pb.h"

namespace padlock::loadgen {
namespace {

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

void SetDeadline(grpc::ClientContext& context, int deadline_ms) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
}

// Runs fn(index, context) for index in [0, count) on `threads` threads; returns the first error.
template <typename Fn>
absl::Status ParallelFor(int count, int threads, Fn fn) {
  std::atomic<int> next{0};
  std::mutex mutex;
  absl::Status first = absl::OkStatus();
  std::vector<std::thread> workers;
  for (int t = 0; t < std::max(1, threads); ++t) {
    workers.emplace_back([&] {
      absl::StatusOr<std::unique_ptr<client::SignalContext>> signal = client::SignalContext::Create();
      if (!signal.ok()) {
        std::lock_guard<std::mutex> lock(mutex);
        if (first.ok()) first = signal.status();
        return;
      }
      for (int i = next++; i < count; i = next++) {
        absl::Status status = fn(i, **signal);
        if (!status.ok()) {
          std::lock_guard<std::mutex> lock(mutex);
          if (first.ok()) first = status;
          next = count;  // stop the others early
          return;
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  return first;
}

}  // namespace

std::shared_ptr<grpc::Channel> DedicatedChannel(
    const std::string& target, const std::shared_ptr<grpc::ChannelCredentials>& creds,
    int64_t unique_id, const std::string& tls_server_name) {
  grpc::ChannelArguments args;
  if (!tls_server_name.empty()) args.SetSslTargetNameOverride(tls_server_name);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Channels with identical arguments may still share a subchannel; a distinct argument per
  // device rules that out.
  args.SetString("padlock.loadgen.device", absl::StrCat(unique_id));
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  return grpc::CreateCustomChannel(target, creds, args);
}

absl::StatusOr<std::vector<DeviceAccount>> RegisterAccounts(const AccountOptions& options,
                                                           int count) {
  std::vector<DeviceAccount> accounts(static_cast<size_t>(count));
  // A handful of channels spread the set-up over connections (one would serialize on one socket).
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    stubs.push_back(v1::Gateway::NewStub(DedicatedChannel(options.target, options.credentials,
                                                          -1 - i, options.tls_server_name)));
  }
  std::atomic<int> stub_index{0};
  absl::Status status = ParallelFor(count, options.threads, [&](int i, client::SignalContext& signal)
                                                                -> absl::Status {
    DeviceAccount& a = accounts[static_cast<size_t>(i)];
    a.user_id = absl::StrCat(options.user_prefix, i);
    absl::StatusOr<client::IdentityKeyPair> identity = client::GenerateIdentityKeyPair(signal);
    if (!identity.ok()) return identity.status();
    absl::StatusOr<uint32_t> registration_id = client::GenerateRegistrationId(signal);
    if (!registration_id.ok()) return registration_id.status();
    absl::StatusOr<client::SignedPreKey> spk =
        client::GenerateSignedPreKey(signal, *identity, /*id=*/1, /*timestamp_ms=*/0);
    if (!spk.ok()) return spk.status();
    a.identity_public = identity->public_key;
    a.identity_private = identity->private_key;
    a.registration_id = *registration_id;

    v1::RegisterRequest request;
    request.set_user_id(a.user_id);
    request.set_identity_key(a.identity_public);
    request.set_registration_id(a.registration_id);
    request.mutable_signed_prekey()->set_key_id(spk->id);
    request.mutable_signed_prekey()->set_public_key(spk->public_key);
    request.mutable_signed_prekey()->set_signature(spk->signature);
    v1::DeviceList* list = request.mutable_device_list()->mutable_list();
    list->set_user_id(a.user_id);
    list->set_version(1);
    v1::DeviceListEntry* entry = list->add_devices();
    entry->set_device_id(1);
    entry->set_identity_key(a.identity_public);
    entry->set_registration_id(a.registration_id);
    absl::StatusOr<std::string> list_statement = statement::EncodeDeviceList(
        a.user_id, 1, {statement::DeviceListEntry{1, a.identity_public, a.registration_id}});
    if (!list_statement.ok()) return list_statement.status();
    absl::StatusOr<std::string> list_signature =
        client::Sign(signal, a.identity_private, *list_statement);
    if (!list_signature.ok()) return list_signature.status();
    request.mutable_device_list()->set_signature(*list_signature);
    absl::StatusOr<std::string> registration_signature = client::Sign(
        signal, a.identity_private,
        statement::EncodeRegistration(a.user_id, 1, a.identity_public, a.registration_id, spk->id,
                                      spk->public_key));
    if (!registration_signature.ok()) return registration_signature.status();
    request.set_registration_signature(*registration_signature);

    v1::RegisterResponse response;
    grpc::ClientContext context;
    SetDeadline(context, options.deadline_ms);
    auto& stub = stubs[static_cast<size_t>(stub_index++) % stubs.size()];
    return FromGrpc(stub->Register(&context, request, &response),
                    absl::StrCat("register ", a.user_id));
  });
  if (!status.ok()) return status;
  return accounts;
}

absl::Status LogIn(const AccountOptions& options, std::vector<DeviceAccount>& accounts) {
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    stubs.push_back(v1::Gateway::NewStub(DedicatedChannel(options.target, options.credentials,
                                                          -1000 - i, options.tls_server_name)));
  }
  std::atomic<int> stub_index{0};
  return ParallelFor(static_cast<int>(accounts.size()), options.threads,
                     [&](int i, client::SignalContext& signal) -> absl::Status {
    DeviceAccount& a = accounts[static_cast<size_t>(i)];
    auto& stub = stubs[static_cast<size_t>(stub_index++) % stubs.size()];
    v1::GetChallengeRequest challenge_request;
    challenge_request.mutable_device()->set_user_id(a.user_id);
    challenge_request.mutable_device()->set_device_id(a.device_id);
    v1::GetChallengeResponse challenge;
    {
      grpc::ClientContext context;
      SetDeadline(context, options.deadline_ms);
      absl::Status s = FromGrpc(stub->GetChallenge(&context, challenge_request, &challenge),
                                absl::StrCat("challenge for ", a.user_id));
      if (!s.ok()) return s;
    }
    absl::StatusOr<std::string> signature = client::Sign(
        signal, a.identity_private,
        statement::EncodeLogin(a.user_id, a.device_id, challenge.challenge(), challenge.audience()));
    if (!signature.ok()) return signature.status();
    v1::LoginRequest login;
    *login.mutable_device() = challenge_request.device();
    login.set_challenge(challenge.challenge());
    login.set_signature(*signature);
    v1::LoginResponse response;
    grpc::ClientContext context;
    SetDeadline(context, options.deadline_ms);
    absl::Status s = FromGrpc(stub->Login(&context, login, &response),
                              absl::StrCat("login ", a.user_id));
    if (!s.ok()) return s;
    a.token = response.token();
    return absl::OkStatus();
  });
}

absl::Status PublishOneTimePreKeys(const AccountOptions& options,
                                   const std::vector<DeviceAccount>& accounts, int count) {
  if (count <= 0) return absl::OkStatus();
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    stubs.push_back(v1::Gateway::NewStub(DedicatedChannel(options.target, options.credentials,
                                                          -2000 - i, options.tls_server_name)));
  }
  std::atomic<int> stub_index{0};
  return ParallelFor(static_cast<int>(accounts.size()), options.threads,
                     [&](int i, client::SignalContext& signal) -> absl::Status {
    const DeviceAccount& a = accounts[static_cast<size_t>(i)];
    absl::StatusOr<std::vector<client::PreKey>> keys =
        client::GeneratePreKeys(signal, /*start=*/1, static_cast<uint32_t>(count));
    if (!keys.ok()) return keys.status();
    v1::GatewayPublishPreKeysRequest request;
    for (const client::PreKey& key : *keys) {
      v1::OneTimePreKey* k = request.add_one_time_prekeys();
      k->set_key_id(key.id);
      k->set_public_key(key.public_key);
    }
    v1::PublishPreKeysResponse response;
    grpc::ClientContext context;
    SetDeadline(context, options.deadline_ms);
    context.AddMetadata("authorization", "Bearer " + a.token);
    auto& stub = stubs[static_cast<size_t>(stub_index++) % stubs.size()];
    return FromGrpc(stub->PublishPreKeys(&context, request, &response),
                    absl::StrCat("publish prekeys ", a.user_id));
  });
}

}  // namespace padlock::loadgen
