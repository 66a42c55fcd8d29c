// Messenger: linking a second device. The new device makes its keys and shows a link code; the
// primary checks it and publishes the next signed device list with the new device (and its signed
// prekey); the new device finds its device id by logging in, then uploads its one-time prekeys.
// The server never vouches for a device: every client verifies the primary's signature over the
// list before encrypting to it.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/messenger.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"

namespace padlock::client {
namespace {

constexpr std::string_view kLinkMagic = "PLK1";
// Device ids a new device tries when it looks for the one the primary gave it.
constexpr uint32_t kMaxLinkedDeviceId = 16;

// The device id CompleteLink tries on its `attempt`-th login (from 0): the primary gives the next
// id above the listed ones, so 2 (an account's first linked device) is by far the likeliest: it
// every other attempt, ids 3..16 in turn in between: 2, 3, 2, 4, 2, 5, ... A login reveals
// nothing about ids that are not ours (every failure is "login failed"), so each id costs one
// attempt; trying all 15 every second would trip the login limit.
uint32_t CandidateDeviceId(uint64_t attempt) {
  if (attempt % 2 == 0) return 2;
  return 3 + static_cast<uint32_t>((attempt / 2) % (kMaxLinkedDeviceId - 2));
}

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}
bool GetU32(std::string_view& in, uint32_t& v) {
  if (in.size() < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  in.remove_prefix(4);
  return true;
}
void PutBytes(std::string& out, std::string_view b) {
  PutU32(out, static_cast<uint32_t>(b.size()));
  out.append(b);
}
bool GetBytes(std::string_view& in, std::string& out) {
  uint32_t len = 0;
  if (!GetU32(in, len) || in.size() < len) return false;
  out = std::string(in.substr(0, len));
  in.remove_prefix(len);
  return true;
}

std::string EncodeLinkCode(const LinkCodeContents& c) {
  std::string raw(kLinkMagic);
  PutBytes(raw, c.user_id);
  PutBytes(raw, c.identity_key);
  PutU32(raw, c.registration_id);
  PutU32(raw, c.signed_prekey_id);
  PutBytes(raw, c.signed_prekey_public);
  PutBytes(raw, c.signed_prekey_signature);
  std::string out;
  absl::WebSafeBase64Escape(raw, &out);
  return out;
}

}  // namespace

absl::StatusOr<LinkCodeContents> ParseLinkCode(const std::string& code) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(code, &raw)) {
    return absl::InvalidArgumentError("link code is not base64url");
  }
  std::string_view in(raw);
  if (in.substr(0, kLinkMagic.size()) != kLinkMagic) {
    return absl::InvalidArgumentError("not a Padlock link code");
  }
  in.remove_prefix(kLinkMagic.size());
  LinkCodeContents c;
  if (!GetBytes(in, c.user_id) || !GetBytes(in, c.identity_key) ||
      !GetU32(in, c.registration_id) || !GetU32(in, c.signed_prekey_id) ||
      !GetBytes(in, c.signed_prekey_public) || !GetBytes(in, c.signed_prekey_signature) ||
      !in.empty()) {
    return absl::InvalidArgumentError("link code is truncated or malformed");
  }
  return c;
}

absl::StatusOr<std::string> Messenger::CreateLinkRequest(const std::string& user_id) {
  if (core_.account.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("this folder is already registered as ", core_.account->user_id));
  }
  const std::string code_path = core_.options.home + "/link-code";
  if (pending_link_.has_value()) {
    FILE* f = std::fopen(code_path.c_str(), "r");
    if (f != nullptr) {
      char buf[1024];
      const size_t n = std::fread(buf, 1, sizeof buf, f);
      std::fclose(f);
      return std::string(buf, n);
    }
  }
  absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(*core_.context);
  if (!identity.ok()) return identity.status();
  absl::StatusOr<uint32_t> registration_id = GenerateRegistrationId(*core_.context);
  if (!registration_id.ok()) return registration_id.status();
  absl::StatusOr<SignedPreKey> signed_prekey =
      GenerateSignedPreKey(*core_.context, *identity, 1,
                           static_cast<uint64_t>(absl::ToUnixMillis(ClockNow())));
  if (!signed_prekey.ok()) return signed_prekey.status();
  const AccountRecord pending{user_id, 0, 1, signed_prekey->id};
  absl::Status saved = core_.store->InTransaction([&]() -> absl::Status {
    if (absl::Status s = core_.store->SaveLocalIdentity(*identity, *registration_id); !s.ok())
      return s;
    if (absl::Status s = core_.store->StoreSignedPreKey(signed_prekey->id, signed_prekey->record);
        !s.ok()) {
      return s;
    }
    return core_.store->SaveAccount(pending);
  });
  if (!saved.ok()) return saved;
  pending_link_ = pending;
  const std::string code =
      EncodeLinkCode({user_id, identity->public_key, *registration_id, signed_prekey->id,
                      signed_prekey->public_key, signed_prekey->signature});
  if (FILE* f = std::fopen(code_path.c_str(), "w"); f != nullptr) {
    std::fwrite(code.data(), 1, code.size(), f);
    std::fclose(f);
  }
  return code;
}

absl::StatusOr<uint32_t> Messenger::ApproveLink(const std::string& code) {
  if (!core_.account.has_value()) return core_.RequireAccount();
  if (core_.account->device_id != 1) {
    return absl::FailedPreconditionError("only the primary device (device 1) can link devices");
  }
  absl::StatusOr<LinkCodeContents> link = ParseLinkCode(code);
  if (!link.ok()) return link.status();
  if (link->user_id != core_.account->user_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("the code is for account ", link->user_id, ", not ", core_.account->user_id));
  }
  if (!statement::VerifySignedPreKey(link->identity_key, link->signed_prekey_public,
                                     link->signed_prekey_signature)) {
    return absl::InvalidArgumentError("the code's signed prekey does not verify");
  }
  absl::StatusOr<padlock::v1::SignedDeviceList> current = RefreshDeviceList(core_.account->user_id);
  if (!current.ok()) return current.status();
  uint32_t next_id = 1;
  for (const padlock::v1::DeviceListEntry& e : current->list().devices()) {
    if (e.identity_key() == link->identity_key) return e.device_id();  // approved before
    next_id = std::max(next_id, e.device_id() + 1);
  }
  padlock::v1::SignedDeviceList next;
  next.mutable_list()->set_user_id(core_.account->user_id);
  next.mutable_list()->set_version(current->list().version() + 1);
  for (const padlock::v1::DeviceListEntry& e : current->list().devices()) {
    *next.mutable_list()->add_devices() = e;
  }
  padlock::v1::DeviceListEntry* added = next.mutable_list()->add_devices();
  added->set_device_id(next_id);
  added->set_identity_key(link->identity_key);
  added->set_registration_id(link->registration_id);
  absl::StatusOr<IdentityKeyPair> identity = core_.store->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  if (absl::Status s = SignDeviceList(*core_.context, identity->private_key, next); !s.ok())
    return s;

  padlock::v1::GatewayPublishDeviceListRequest request;
  *request.mutable_device_list() = next;
  padlock::v1::NewDeviceKeys* keys = request.add_new_device_keys();
  keys->set_device_id(next_id);
  keys->mutable_signed_prekey()->set_key_id(link->signed_prekey_id);
  keys->mutable_signed_prekey()->set_public_key(link->signed_prekey_public);
  keys->mutable_signed_prekey()->set_signature(link->signed_prekey_signature);
  absl::StatusOr<padlock::v1::PublishDeviceListResponse> published =
      core_.transport->PublishDeviceList(request);
  if (!published.ok()) return published.status();
  if (absl::Status s = core_.store->SaveVerifiedDeviceList(
          core_.account->user_id, {next.list().version(), next.SerializeAsString()});
      !s.ok()) {
    return s;
  }
  return next_id;
}

absl::Status Messenger::CompleteLink(absl::Duration timeout) {
  if (core_.account.has_value()) return absl::OkStatus();
  if (!pending_link_.has_value()) {
    return absl::FailedPreconditionError("no link request in this folder: run `padlock link`");
  }
  absl::StatusOr<IdentityKeyPair> identity = core_.store->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  SignalContext* context = core_.context.get();
  const std::string private_key = identity->private_key;
  const absl::Time deadline = ClockNow() + timeout;
  for (uint64_t attempt = 0;; ++attempt) {
    // Logging in succeeds only as the device id whose listed key is ours.
    const uint32_t id = CandidateDeviceId(attempt);
    padlock::v1::DeviceAddress address;
    address.set_user_id(pending_link_->user_id);
    address.set_device_id(id);
    core_.transport->SetDevice(address, [context, private_key](std::string_view statement) {
      return Sign(*context, private_key, statement);
    });
    absl::Status login = core_.transport->Login();
    if (login.ok()) {
      AccountRecord account = *pending_link_;
      account.device_id = id;
      if (absl::Status s = core_.store->SetAccountDevice(id); !s.ok()) return s;
      core_.account = account;
      pending_link_.reset();
      if (absl::Status s = Start(); !s.ok()) return s;
      absl::StatusOr<padlock::v1::SignedDeviceList> list = RefreshDeviceList(account.user_id);
      if (!list.ok()) return list.status();
      const padlock::v1::DeviceListEntry* self = FindDevice(list->list(), id);
      if (self == nullptr || self->identity_key() != identity->public_key) {
        return absl::DataLossError("the signed device list does not hold this device's key");
      }
      absl::StatusOr<uint32_t> uploaded = ReplenishPreKeys(core_.options.prekey_batch);
      if (!uploaded.ok()) return uploaded.status();
      std::remove((core_.options.home + "/link-code").c_str());
      return absl::OkStatus();
    }
    absl::Duration pause = core_.options.link_poll_interval;
    if (absl::IsResourceExhausted(login)) {
      // The address's login or challenge budget is spent (other clients behind the same
      // address, or an earlier run): wait as told instead of giving up.
      pause = std::max(pause, RetryAfter(login).value_or(pause));
    } else if (!absl::IsUnauthenticated(login)) {
      return login;
    }
    const absl::Time now = ClockNow();
    if (now >= deadline) {
      return absl::DeadlineExceededError("the primary device has not approved the link yet");
    }
    absl::SleepFor(std::min(pause, deadline - now));
  }
}

}  // namespace padlock::client
