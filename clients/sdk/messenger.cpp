#include "clients/sdk/messenger.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/sdk/device_list.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/safety_number.h"
#include "services/common/statement/signed_statement.h"

namespace padlock::client {
namespace {

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return out;
}

bool IsOneToOne(padlock::v1::EnvelopeType type) {
  return type == padlock::v1::ENVELOPE_TYPE_MESSAGE ||
         type == padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE;
}

void RemoveRecipient(padlock::v1::OutgoingMessage& message, const std::string& user,
                     uint32_t device) {
  auto* recipients = message.mutable_recipients();
  for (int i = recipients->size() - 1; i >= 0; --i) {
    const padlock::v1::DeviceAddress& d = recipients->Get(i).device();
    if (d.user_id() == user && d.device_id() == device) recipients->DeleteSubrange(i, 1);
  }
}

bool HasRecipient(const padlock::v1::OutgoingMessage& message, const std::string& user,
                  uint32_t device) {
  for (const padlock::v1::Recipient& r : message.recipients()) {
    if (r.device().user_id() == user && r.device().device_id() == device) return true;
  }
  return false;
}

// Marks a "security code changed" status: "<user>\0<device>,<device>,...".
constexpr char kIdentityChangedPayload[] = "padlock/identity-changed";

// Envelopes from unaccepted keys kept unacknowledged per connection: well under the gateway's
// unacknowledged window (PADLOCK_MAX_UNACKED, 256), so that they never stall other deliveries.
// Beyond it they are reported (kRejected) and dropped.
constexpr size_t kMaxHeldIncoming = 64;

// FailedPrecondition "security code changed" naming `user`'s `devices`, with the payload above so
// that callers hold messages instead of failing them.
absl::Status IdentityChangedError(const std::string& user, const std::vector<uint32_t>& devices) {
  std::string names;
  std::string payload = user;
  payload.push_back('\0');
  for (uint32_t d : devices) {
    absl::StrAppend(&names, names.empty() ? "" : ", ", d);
    absl::StrAppend(&payload, d, ",");
  }
  absl::Status status = absl::FailedPreconditionError(absl::StrCat(
      "security code changed: ", user, "'s device ", names,
      " has a new identity key; messages to ", user,
      " are held until you accept it (compare safety numbers, then accept the new identity)"));
  status.SetPayload(kIdentityChangedPayload, absl::Cord(payload));
  return status;
}

// The user and devices of an IdentityChangedError; nullopt for any other status.
std::optional<std::pair<std::string, std::vector<uint32_t>>> IdentityChanged(
    const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kIdentityChangedPayload);
  if (!payload.has_value()) return std::nullopt;
  const std::string raw(*payload);
  const size_t nul = raw.find('\0');
  if (nul == std::string::npos) return std::nullopt;
  std::vector<uint32_t> devices;
  for (absl::string_view part : absl::StrSplit(raw.substr(nul + 1), ',', absl::SkipEmpty())) {
    uint32_t d = 0;
    if (absl::SimpleAtoi(part, &d)) devices.push_back(d);
  }
  return std::make_pair(raw.substr(0, nul), std::move(devices));
}

}  // namespace

std::string EncodeTextBody(std::string_view to_user, std::string_view text) {
  std::string out;
  out.push_back(static_cast<char>((to_user.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(to_user.size() & 0xff));
  out.append(to_user);
  out.append(text);
  return out;
}

absl::StatusOr<std::pair<std::string, std::string>> DecodeTextBody(std::string_view body) {
  if (body.size() < 2) return absl::DataLossError("text body too short");
  const size_t len = (static_cast<uint8_t>(body[0]) << 8) | static_cast<uint8_t>(body[1]);
  if (body.size() < 2 + len) return absl::DataLossError("text body: bad recipient length");
  return std::make_pair(std::string(body.substr(2, len)), std::string(body.substr(2 + len)));
}

std::string EncodeReceiptBody(MessageStatus status, const std::vector<std::string>& message_ids) {
  std::string out(1, static_cast<char>(status));
  for (const std::string& id : message_ids) out.append(id);
  return out;
}

namespace {

// The bytes of an "unsupported" receipt before its message ids (status, version, count, kinds),
// or 0 when `body` is too short to hold them.
size_t UnsupportedReceiptPrefix(std::string_view body) {
  if (body.size() < 3) return 0;
  const size_t prefix = 3 + static_cast<uint8_t>(body[2]);
  return body.size() < prefix ? 0 : prefix;
}

}  // namespace

absl::StatusOr<std::pair<MessageStatus, std::vector<std::string>>> DecodeReceiptBody(
    std::string_view body) {
  if (body.empty()) return absl::DataLossError("receipt body is empty");
  const int status = static_cast<uint8_t>(body[0]);
  size_t first_id = 1;
  if (status == static_cast<int>(MessageStatus::kUnsupported)) {
    first_id = UnsupportedReceiptPrefix(body);
    if (first_id == 0) return absl::DataLossError("unsupported receipt: bad capabilities");
  } else if (status != static_cast<int>(MessageStatus::kDelivered) &&
             status != static_cast<int>(MessageStatus::kRead)) {
    return absl::DataLossError("receipt body has an unknown status");
  }
  if ((body.size() - first_id) % 16 != 0) {
    return absl::DataLossError("receipt body has a bad length");
  }
  std::vector<std::string> ids;
  for (size_t i = first_id; i < body.size(); i += 16) ids.emplace_back(body.substr(i, 16));
  return std::make_pair(static_cast<MessageStatus>(status), std::move(ids));
}

ContentCapabilities MessengerCapabilities() {
  return ContentCapabilities{
      kContentFormatVersion,
      {static_cast<uint8_t>(ContentKind::kText), static_cast<uint8_t>(ContentKind::kReceipt),
       static_cast<uint8_t>(ContentKind::kTyping),
       static_cast<uint8_t>(ContentKind::kGroupKeyDistribution),
       static_cast<uint8_t>(ContentKind::kGroupUpdate), static_cast<uint8_t>(ContentKind::kStory)}};
}

std::string EncodeUnsupportedReceiptBody(const ContentCapabilities& capabilities,
                                         const std::vector<std::string>& message_ids) {
  std::string out;
  out.push_back(static_cast<char>(MessageStatus::kUnsupported));
  out.push_back(static_cast<char>(capabilities.format_version));
  out.push_back(static_cast<char>(capabilities.kinds.size()));
  for (uint8_t kind : capabilities.kinds) out.push_back(static_cast<char>(kind));
  for (const std::string& id : message_ids) out.append(id);
  return out;
}

absl::StatusOr<ContentCapabilities> DecodeUnsupportedReceiptCapabilities(std::string_view body) {
  if (body.empty() || static_cast<uint8_t>(body[0]) !=
                          static_cast<uint8_t>(MessageStatus::kUnsupported)) {
    return absl::DataLossError("not an unsupported receipt");
  }
  const size_t prefix = UnsupportedReceiptPrefix(body);
  if (prefix == 0) return absl::DataLossError("unsupported receipt: bad capabilities");
  ContentCapabilities out{static_cast<uint8_t>(body[1]), {}};
  for (size_t i = 3; i < prefix; ++i) out.kinds.push_back(static_cast<uint8_t>(body[i]));
  return out;
}

namespace {

// True when this Messenger handles `content` (format and kind in MessengerCapabilities).
bool CanShow(const Content& content) {
  const ContentCapabilities mine = MessengerCapabilities();
  return content.format_version == mine.format_version &&
         std::find(mine.kinds.begin(), mine.kinds.end(), static_cast<uint8_t>(content.kind)) !=
             mine.kinds.end();
}

// Fills the receiver's event for content it cannot show.
void MarkUnsupported(const Content& content, MessengerEvent& event) {
  event.kind = MessengerEvent::Kind::kUnsupportedContent;
  event.detail = absl::StrCat("content kind ", static_cast<int>(content.kind), " in format ",
                              static_cast<int>(content.format_version),
                              " is not supported by this app");
}

std::string DescribeCapabilities(const ContentCapabilities& c) {
  std::string kinds;
  for (uint8_t k : c.kinds) absl::StrAppend(&kinds, kinds.empty() ? "" : ",", k);
  return absl::StrCat("its app reads content format ", c.format_version, ", kinds ", kinds);
}

}  // namespace

Messenger::Messenger(MessengerOptions options) : options_(std::move(options)) {}

Messenger::~Messenger() { Disconnect(); }

absl::StatusOr<std::unique_ptr<Messenger>> Messenger::Open(MessengerOptions options) {
  if (options.home.empty()) return absl::InvalidArgumentError("no home folder given");
  if (::mkdir(options.home.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("create ", options.home, ": ", std::strerror(errno)));
  }
  std::unique_ptr<Messenger> m(new Messenger(options));
  absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
  if (!context.ok()) return context.status();
  m->context_ = *std::move(context);
  absl::StatusOr<std::unique_ptr<LocalStore>> store =
      LocalStore::Open(options.home + "/padlock.db", options.passphrase);
  if (!store.ok()) return store.status();
  m->store_ = *std::move(store);
  absl::StatusOr<std::unique_ptr<GatewayClient>> gateway = GatewayClient::Create(options.gateway);
  if (!gateway.ok()) return gateway.status();
  m->gateway_ = *std::move(gateway);
  absl::StatusOr<AccountRecord> account = m->store_->LoadAccount();
  if (account.ok() && account->device_id == 0) {
    m->pending_link_ = *account;
  } else if (account.ok()) {
    m->account_ = *account;
    if (absl::Status status = m->Start(); !status.ok()) return status;
  } else if (!absl::IsNotFound(account.status())) {
    return account.status();
  }
  return m;
}

absl::Status Messenger::Start() {
  absl::StatusOr<IdentityKeyPair> identity = store_->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  absl::StatusOr<std::unique_ptr<DeviceCrypto>> crypto = DeviceCrypto::Create(
      *context_, *store_,
      RemoteAddress{account_->user_id, static_cast<int32_t>(account_->device_id)});
  if (!crypto.ok()) return crypto.status();
  crypto_ = *std::move(crypto);
  padlock::v1::DeviceAddress self;
  self.set_user_id(account_->user_id);
  self.set_device_id(account_->device_id);
  // The signer holds its own copy of the private key: the stream's thread logs in with it while
  // this thread uses the (single-threaded) store.
  SignalContext* context = context_.get();
  gateway_->SetDevice(self, [context, key = identity->private_key](std::string_view statement) {
    return Sign(*context, key, statement);
  });
  return absl::OkStatus();
}

absl::StatusOr<AccountRecord> Messenger::account() const {
  if (!account_.has_value()) {
    return absl::FailedPreconditionError("this folder holds no account: run `padlock register`");
  }
  return *account_;
}

absl::Status Messenger::Register(const std::string& user_id, const std::string& invite_token) {
  if (account_.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("this folder is already registered as ", account_->user_id));
  }
  if (pending_link_.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this folder is being linked to ", pending_link_->user_id, ": finish `padlock link`"));
  }
  // A folder whose earlier registration failed keeps its identity: reuse it.
  IdentityKeyPair identity;
  uint32_t registration_id = 0;
  absl::StatusOr<IdentityKeyPair> loaded = store_->LoadLocalIdentity();
  if (loaded.ok()) {
    identity = *loaded;
    absl::StatusOr<uint32_t> id = store_->LoadRegistrationId();
    if (!id.ok()) return id.status();
    registration_id = *id;
  } else if (absl::IsNotFound(loaded.status())) {
    absl::StatusOr<IdentityKeyPair> fresh = GenerateIdentityKeyPair(*context_);
    if (!fresh.ok()) return fresh.status();
    absl::StatusOr<uint32_t> id = GenerateRegistrationId(*context_);
    if (!id.ok()) return id.status();
    identity = *fresh;
    registration_id = *id;
    if (absl::Status s = store_->SaveLocalIdentity(identity, registration_id); !s.ok()) return s;
  } else {
    return loaded.status();
  }
  constexpr uint32_t kSignedPreKeyId = 1;
  absl::StatusOr<SignedPreKey> signed_prekey =
      GenerateSignedPreKey(*context_, identity, kSignedPreKeyId,
                           static_cast<uint64_t>(absl::ToUnixMillis(ClockNow())));
  if (!signed_prekey.ok()) return signed_prekey.status();
  absl::StatusOr<std::vector<PreKey>> prekeys =
      GeneratePreKeys(*context_, 1, options_.prekey_batch);
  if (!prekeys.ok()) return prekeys.status();
  absl::Status stored = store_->InTransaction([&]() -> absl::Status {
    if (absl::Status s = store_->StoreSignedPreKey(signed_prekey->id, signed_prekey->record);
        !s.ok()) {
      return s;
    }
    for (const PreKey& key : *prekeys) {
      if (absl::Status s = store_->StorePreKey(key.id, key.record); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!stored.ok()) return stored;

  padlock::v1::RegisterRequest request;
  request.set_user_id(user_id);
  request.set_identity_key(identity.public_key);
  request.set_registration_id(registration_id);
  padlock::v1::SignedPreKey* spk = request.mutable_signed_prekey();
  spk->set_key_id(signed_prekey->id);
  spk->set_public_key(signed_prekey->public_key);
  spk->set_signature(signed_prekey->signature);
  for (const PreKey& key : *prekeys) {
    padlock::v1::OneTimePreKey* otk = request.add_one_time_prekeys();
    otk->set_key_id(key.id);
    otk->set_public_key(key.public_key);
  }
  padlock::v1::SignedDeviceList* list = request.mutable_device_list();
  list->mutable_list()->set_user_id(user_id);
  list->mutable_list()->set_version(1);
  padlock::v1::DeviceListEntry* entry = list->mutable_list()->add_devices();
  entry->set_device_id(1);
  entry->set_identity_key(identity.public_key);
  entry->set_registration_id(registration_id);
  if (absl::Status s = SignDeviceList(*context_, identity.private_key, *list); !s.ok()) return s;
  absl::StatusOr<std::string> registration_signature =
      Sign(*context_, identity.private_key,
           statement::EncodeRegistration(user_id, 1, identity.public_key, registration_id,
                                         signed_prekey->id, signed_prekey->public_key));
  if (!registration_signature.ok()) return registration_signature.status();
  request.set_registration_signature(*registration_signature);
  request.set_invite_token(invite_token);

  absl::StatusOr<padlock::v1::RegisterResponse> response = gateway_->Register(request);
  if (!response.ok()) return response.status();

  AccountRecord account{user_id, response->device_id() == 0 ? 1 : response->device_id(),
                        options_.prekey_batch + 1, signed_prekey->id};
  absl::Status saved = store_->InTransaction([&]() -> absl::Status {
    if (absl::Status s = store_->SaveAccount(account); !s.ok()) return s;
    if (absl::Status s = store_->AcceptRemoteIdentity({user_id, 1}, identity.public_key);
        !s.ok()) {
      return s;
    }
    return store_->SaveVerifiedDeviceList(user_id, {1, list->SerializeAsString()});
  });
  if (!saved.ok()) return saved;
  account_ = account;
  return Start();
}

absl::Status Messenger::Connect(absl::Duration timeout) {
  if (!account_.has_value()) return account().status();
  if (stream_ != nullptr && stream_->connected()) return absl::OkStatus();
  Disconnect();
  stream_ = DeviceStream::Start(*gateway_);
  absl::Status last = absl::UnavailableError("no answer");
  bool up = false;
  std::vector<MessengerEvent> events = Pump(timeout, [&](const MessengerEvent& e) {
    if (e.kind == MessengerEvent::Kind::kConnected) up = true;
    if (e.kind == MessengerEvent::Kind::kDisconnected) last = absl::UnavailableError(e.detail);
    if (e.kind == MessengerEvent::Kind::kStopped) {
      last = absl::FailedPreconditionError(e.detail);
      return true;
    }
    return up;
  });
  if (up) return absl::OkStatus();
  for (const MessengerEvent& e : events) {
    if (e.kind == MessengerEvent::Kind::kStopped) return last;
  }
  stream_->Stop();
  return absl::UnavailableError(absl::StrCat("cannot reach gateway ", options_.gateway.target,
                                             ": ", last.message()));
}

void Messenger::Disconnect() {
  if (stream_ != nullptr) stream_->Stop();
  stream_.reset();
  in_flight_.clear();
  held_incoming_.clear();  // never acknowledged: the server delivers them again
}

bool Messenger::connected() const { return stream_ != nullptr && stream_->connected(); }

absl::StatusOr<padlock::v1::SignedDeviceList> Messenger::RefreshDeviceList(
    const std::string& user_id) {
  absl::StatusOr<padlock::v1::GetDeviceListResponse> response = gateway_->GetDeviceList(user_id);
  if (!response.ok()) {
    if (absl::IsNotFound(response.status())) {
      return absl::NotFoundError(absl::StrCat("user ", user_id, " is unknown"));
    }
    return response.status();
  }
  const padlock::v1::SignedDeviceList& list = response->device_list();
  absl::StatusOr<std::optional<VerifiedDeviceList>> stored =
      store_->LoadVerifiedDeviceList(user_id);
  if (!stored.ok()) return stored.status();
  std::optional<padlock::v1::SignedDeviceList> seen;
  if (stored->has_value()) {
    padlock::v1::SignedDeviceList parsed;
    if (!parsed.ParseFromString((*stored)->signed_list)) {
      return absl::DataLossError(absl::StrCat("stored device list of ", user_id, " is corrupt"));
    }
    seen = std::move(parsed);
  }
  absl::StatusOr<std::optional<std::string>> trusted =
      store_->LoadRemoteIdentity({user_id, 1});
  if (!trusted.ok()) return trusted.status();
  // The primary's signature and the version first; then every device's key against the one
  // trusted for it (the primary's pinned at first contact, the others' at their first session):
  // a changed key holds messages until the user accepts it, whoever signed the list.
  if (absl::Status s = VerifyDeviceList(user_id, list, std::nullopt, seen); !s.ok()) {
    if (absl::IsDataLoss(s)) {
      return absl::DataLossError(absl::StrCat(
          s.message(), " — the server lists devices or keys that ", user_id,
          "'s primary did not sign; refusing to encrypt to them"));
    }
    return s;
  }
  std::vector<uint32_t> changed;
  for (const padlock::v1::DeviceListEntry& entry : list.list().devices()) {
    absl::StatusOr<std::optional<std::string>> known =
        store_->LoadRemoteIdentity({user_id, static_cast<int32_t>(entry.device_id())});
    if (!known.ok()) return known.status();
    if (known->has_value() && **known != entry.identity_key()) changed.push_back(entry.device_id());
  }
  if (!changed.empty()) return IdentityChangedError(user_id, changed);
  absl::Status saved = store_->InTransaction([&]() -> absl::Status {
    if (!trusted->has_value()) {
      const padlock::v1::DeviceListEntry* primary = FindDevice(list.list(), 1);
      if (absl::Status s = store_->AcceptRemoteIdentity({user_id, 1}, primary->identity_key());
          !s.ok()) {
        return s;
      }
    }
    if (!seen.has_value() || list.list().version() > seen->list().version()) {
      return store_->SaveVerifiedDeviceList(user_id,
                                            {list.list().version(), list.SerializeAsString()});
    }
    return absl::OkStatus();
  });
  if (!saved.ok()) return saved;
  return list;
}

absl::StatusOr<padlock::v1::SignedDeviceList> Messenger::CachedDeviceList(
    const std::string& user_id) {
  absl::StatusOr<std::optional<VerifiedDeviceList>> stored =
      store_->LoadVerifiedDeviceList(user_id);
  if (!stored.ok()) return stored.status();
  if (stored->has_value()) {
    padlock::v1::SignedDeviceList parsed;
    if (parsed.ParseFromString((*stored)->signed_list)) return parsed;
  }
  return RefreshDeviceList(user_id);
}

absl::Status Messenger::EnsureSession(const padlock::v1::DeviceListEntry& entry,
                                      const std::string& user) {
  const RemoteAddress address{user, static_cast<int32_t>(entry.device_id())};
  absl::StatusOr<bool> has = store_->ContainsSession(address);
  if (!has.ok()) return has.status();
  if (*has) return absl::OkStatus();
  absl::StatusOr<padlock::v1::ClaimBundlesResponse> claimed =
      gateway_->ClaimBundles(user, entry.device_id());
  if (!claimed.ok()) return claimed.status();
  for (const padlock::v1::PreKeyBundle& bundle : claimed->bundles()) {
    if (bundle.device().device_id() != entry.device_id()) continue;
    // Encrypt only to keys the primary signed for: a device the server adds on its own (a row
    // not on the signed list) or a swapped key never gets a session.
    if (bundle.identity_key() != entry.identity_key()) {
      return absl::DataLossError(absl::StrCat("bundle of ", user, ":", entry.device_id(),
                                              " does not match its signed device list"));
    }
    return crypto_->ProcessPreKeyBundle(bundle);
  }
  return absl::NotFoundError(absl::StrCat("no bundle for ", user, ":", entry.device_id()));
}

absl::Status Messenger::AddRecipients(const padlock::v1::SignedDeviceList& list,
                                      const Content& content,
                                      padlock::v1::OutgoingMessage& message) {
  const std::string& user = list.list().user_id();
  for (const padlock::v1::DeviceListEntry& entry : list.list().devices()) {
    if (user == account_->user_id && entry.device_id() == account_->device_id) continue;
    if (HasRecipient(message, user, entry.device_id())) continue;
    if (absl::Status s = EnsureSession(entry, user); !s.ok()) return s;
    absl::StatusOr<Ciphertext> ciphertext =
        crypto_->Encrypt({user, static_cast<int32_t>(entry.device_id())}, content);
    if (!ciphertext.ok()) return ciphertext.status();
    padlock::v1::Recipient* r = message.add_recipients();
    r->mutable_device()->set_user_id(user);
    r->mutable_device()->set_device_id(entry.device_id());
    r->set_registration_id(entry.registration_id());
    r->set_type(ciphertext->type);
    r->set_ciphertext(std::move(ciphertext->bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Messenger::Compose(const std::string& peer, ContentKind kind,
                                               const std::string& body, bool keep_in_history,
                                               const std::string& history_text) {
  if (!account_.has_value()) return account().status();
  // A user whose identity changed gets nothing now: the entry is queued without their devices and
  // held; AcceptIdentity addresses it to the keys the user accepted.
  auto list_of = [&](const std::string& user) -> absl::StatusOr<
                                                  std::optional<padlock::v1::SignedDeviceList>> {
    if (held_.count(user) > 0) return std::nullopt;
    absl::StatusOr<padlock::v1::SignedDeviceList> list = CachedDeviceList(user);
    if (list.ok()) return std::optional<padlock::v1::SignedDeviceList>(*std::move(list));
    if (HoldForIdentityChange(list.status())) return std::nullopt;
    return list.status();
  };
  absl::StatusOr<std::optional<padlock::v1::SignedDeviceList>> peer_list = list_of(peer);
  if (!peer_list.ok()) return peer_list.status();
  absl::StatusOr<std::optional<padlock::v1::SignedDeviceList>> own_list =
      list_of(account_->user_id);
  if (!own_list.ok()) return own_list.status();
  const bool held = !peer_list->has_value() || !own_list->has_value();
  // Refuse what the server would refuse once padded and encrypted, before any session work
  // (docs/PROTOCOL.md "Limits"): the same check EncodeContent makes, with the same message.
  if (body.size() > kMaxContentBodySize) {
    return EncodeContent(Content{kind, body}).status();
  }
  absl::StatusOr<std::string> message_id = RandomBytes(16);
  if (!message_id.ok()) return message_id.status();
  const Content content{kind, body};
  padlock::v1::OutgoingMessage message;
  message.set_message_id(*message_id);
  // Sessions, ratchet steps, the outbox entry and the history row commit together: a crash
  // leaves either nothing or a complete entry that goes out later with these exact bytes.
  absl::Status status = store_->InTransaction([&]() -> absl::Status {
    if (peer_list->has_value()) {
      if (absl::Status s = AddRecipients(**peer_list, content, message); !s.ok()) return s;
    }
    if (peer != account_->user_id && own_list->has_value()) {
      if (absl::Status s = AddRecipients(**own_list, content, message); !s.ok()) return s;
    }
    if (message.recipients().empty() && !held) {
      return absl::InvalidArgumentError(absl::StrCat("no device of ", peer, " to send to"));
    }
    const int64_t now = absl::ToUnixMillis(ClockNow());
    if (absl::Status s = store_->AddOutbox(OutboxEntry{*message_id, peer,
                                                       static_cast<uint8_t>(kind), body,
                                                       message.SerializeAsString(), now});
        !s.ok()) {
      return s;
    }
    if (!keep_in_history) return absl::OkStatus();
    return store_->AddMessage(HistoryMessage{*message_id, peer, account_->user_id,
                                             account_->device_id, static_cast<uint8_t>(kind),
                                             history_text, now, now, true,
                                             MessageStatus::kPending});
  });
  if (!status.ok()) return status;
  return *message_id;
}

absl::StatusOr<std::string> Messenger::ComposeText(const std::string& peer,
                                                   const std::string& text) {
  return Compose(peer, ContentKind::kText, EncodeTextBody(peer, text), true, text);
}

absl::StatusOr<std::string> Messenger::SendText(const std::string& peer, const std::string& text,
                                                absl::Duration timeout) {
  absl::StatusOr<std::string> id = ComposeText(peer, text);
  if (!id.ok()) return id.status();
  return AwaitSent(*id, timeout);
}

absl::StatusOr<std::string> Messenger::AwaitSent(const std::string& id, absl::Duration timeout) {
  (void)FlushOutbox();
  absl::Status outcome = absl::DeadlineExceededError(
      "not yet accepted by the server; it stays queued and is sent on the next connection");
  Pump(timeout, [&](const MessengerEvent& e) {
    if (e.kind == MessengerEvent::Kind::kIdentityChanged) {
      // Held until the user accepts: no point waiting for the server.
      absl::StatusOr<std::vector<OutboxEntry>> outbox = store_->ListOutbox();
      if (!outbox.ok()) return false;
      for (const OutboxEntry& entry : *outbox) {
        if (entry.message_id == id && EntryHeld(entry)) {
          outcome = absl::FailedPreconditionError(
              absl::StrCat("held until the new identity is accepted: ", e.detail));
          return true;
        }
      }
      return false;
    }
    if (e.message_id != id) return false;
    if (e.kind == MessengerEvent::Kind::kSent) {
      outcome = absl::OkStatus();
      return true;
    }
    if (e.kind == MessengerEvent::Kind::kSendFailed) {
      outcome = absl::FailedPreconditionError(e.detail);
      return true;
    }
    return false;
  });
  if (!outcome.ok()) return outcome;
  return id;
}

absl::Status Messenger::SendTyping(const std::string& peer, bool typing) {
  if (!account_.has_value()) return account().status();
  if (!connected()) return absl::UnavailableError("not connected");
  absl::StatusOr<padlock::v1::SignedDeviceList> peer_list = CachedDeviceList(peer);
  if (!peer_list.ok()) return peer_list.status();
  absl::StatusOr<std::string> message_id = RandomBytes(16);
  if (!message_id.ok()) return message_id.status();
  padlock::v1::ClientFrame frame;
  frame.mutable_send()->set_request_id(next_request_id_++);
  padlock::v1::OutgoingMessage* message = frame.mutable_send()->mutable_message();
  message->set_message_id(*message_id);
  message->set_online_only(true);
  absl::Status status = store_->InTransaction([&]() -> absl::Status {
    return AddRecipients(*peer_list, Content{ContentKind::kTyping, typing ? "1" : "0"}, *message);
  });
  if (!status.ok()) return status;
  // Fire and forget: its SendResult matches no outbox entry and is ignored.
  return stream_->Write(frame);
}

absl::StatusOr<size_t> Messenger::MarkRead(const std::string& peer) {
  if (!account_.has_value()) return account().status();
  absl::StatusOr<std::vector<HistoryMessage>> messages = store_->ListMessages(peer);
  if (!messages.ok()) return messages.status();
  std::vector<std::string> ids;
  for (const HistoryMessage& m : *messages) {
    if (!m.outgoing && m.sender_user_id == peer && m.status < MessageStatus::kRead) {
      ids.push_back(m.message_id);
    }
  }
  if (ids.empty()) return 0;
  absl::Status status = store_->InTransaction([&]() -> absl::Status {
    for (const std::string& id : ids) {
      if (absl::Status s = store_->RaiseMessageStatus(id, MessageStatus::kRead); !s.ok()) return s;
    }
    return Compose(peer, ContentKind::kReceipt, EncodeReceiptBody(MessageStatus::kRead, ids),
                   false, "")
        .status();
  });
  if (!status.ok()) return status;
  (void)FlushOutbox();
  return ids.size();
}

absl::StatusOr<size_t> Messenger::OutboxSize() {
  absl::StatusOr<std::vector<OutboxEntry>> entries = store_->ListOutbox();
  if (!entries.ok()) return entries.status();
  return entries->size();
}

absl::Status Messenger::SendEntry(const OutboxEntry& entry) {
  if (stream_ == nullptr || !stream_->connected()) return absl::UnavailableError("not connected");
  padlock::v1::ClientFrame frame;
  const uint64_t request_id = next_request_id_++;
  frame.mutable_send()->set_request_id(request_id);
  if (!frame.mutable_send()->mutable_message()->ParseFromString(entry.payload)) {
    return absl::DataLossError("outbox entry does not parse");
  }
  if (absl::Status s = stream_->Write(frame); !s.ok()) return s;
  in_flight_[request_id] = Pending{entry.message_id};
  return absl::OkStatus();
}

absl::Status Messenger::FlushOutbox() {
  if (stream_ == nullptr || !stream_->connected()) return absl::OkStatus();
  absl::StatusOr<std::vector<OutboxEntry>> entries = store_->ListOutbox();
  if (!entries.ok()) return entries.status();
  std::set<std::string> waiting;
  for (const auto& [request_id, pending] : in_flight_) waiting.insert(pending.message_id);
  const absl::Time now = ClockNow();
  for (const OutboxEntry& entry : *entries) {
    if (waiting.count(entry.message_id) > 0) continue;
    if (EntryHeld(entry)) continue;  // not sent until the user accepts the new identity
    auto due = retry_at_.find(entry.message_id);
    if (due != retry_at_.end()) {
      if (due->second > now) continue;
      retry_at_.erase(due);
    }
    if (absl::Status s = SendEntry(entry); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Messenger::Ack(const std::vector<std::string>& server_ids) {
  if (server_ids.empty() || stream_ == nullptr) return absl::OkStatus();
  padlock::v1::ClientFrame frame;
  for (const std::string& id : server_ids) frame.mutable_ack()->add_server_ids(id);
  return stream_->Write(frame);
}

absl::Status Messenger::FixMismatch(const std::string& message_id,
                                    const padlock::v1::Mismatch& mismatch) {
  absl::StatusOr<std::vector<OutboxEntry>> entries = store_->ListOutbox();
  if (!entries.ok()) return entries.status();
  auto entry = std::find_if(entries->begin(), entries->end(),
                            [&](const OutboxEntry& e) { return e.message_id == message_id; });
  if (entry == entries->end()) return absl::NotFoundError("message no longer queued");
  padlock::v1::OutgoingMessage message;
  if (!message.ParseFromString(entry->payload)) {
    return absl::DataLossError("outbox entry does not parse");
  }
  if (!message.shared_ciphertext().empty()) return FixGroupMismatch(*entry, message, mismatch);
  const Content content{static_cast<ContentKind>(entry->content_kind), entry->body};
  return store_->InTransaction([&]() -> absl::Status {
    for (const padlock::v1::DeviceMismatch& user : mismatch.users()) {
      // Extra devices left the list and stale ones were reinstalled: their sessions are dead.
      for (uint32_t d : user.extra_device_ids()) {
        RemoveRecipient(message, user.user_id(), d);
        if (absl::Status s = store_->DeleteSession({user.user_id(), static_cast<int32_t>(d)});
            !s.ok()) {
          return s;
        }
      }
      for (uint32_t d : user.stale_device_ids()) {
        RemoveRecipient(message, user.user_id(), d);
        if (absl::Status s = store_->DeleteSession({user.user_id(), static_cast<int32_t>(d)});
            !s.ok()) {
          return s;
        }
      }
      absl::StatusOr<padlock::v1::SignedDeviceList> list = RefreshDeviceList(user.user_id());
      if (!list.ok()) return list.status();
      if (list->list().version() < user.device_list_version()) {
        return absl::UnavailableError("device list not yet at the version the server checked");
      }
      // Devices no longer on the verified list get nothing, whatever the server said.
      for (int i = message.recipients_size() - 1; i >= 0; --i) {
        const padlock::v1::DeviceAddress& d = message.recipients(i).device();
        if (d.user_id() == user.user_id() && FindDevice(list->list(), d.device_id()) == nullptr) {
          message.mutable_recipients()->DeleteSubrange(i, 1);
        }
      }
      if (absl::Status s = AddRecipients(*list, content, message); !s.ok()) return s;
    }
    return store_->UpdateOutboxPayload(message_id, message.SerializeAsString());
  });
}

void Messenger::HandleSendResult(const padlock::v1::SendResult& result,
                                 std::vector<MessengerEvent>& out) {
  auto it = in_flight_.find(result.request_id());
  if (it == in_flight_.end()) return;
  const std::string message_id = it->second.message_id;
  in_flight_.erase(it);
  auto fail = [&](std::string detail) {
    (void)store_->RemoveOutbox(message_id);
    (void)store_->RaiseMessageStatus(message_id, MessageStatus::kFailed);
    MessengerEvent e{.kind = MessengerEvent::Kind::kSendFailed};
    e.message_id = message_id;
    e.detail = std::move(detail);
    out.push_back(std::move(e));
  };
  switch (result.outcome_case()) {
    case padlock::v1::SendResult::kAccepted: {
      (void)store_->RemoveOutbox(message_id);
      (void)store_->RaiseMessageStatus(message_id, MessageStatus::kSent);
      mismatch_retries_.erase(message_id);
      MessengerEvent e{.kind = MessengerEvent::Kind::kSent};
      e.message_id = message_id;
      e.sent_at_ms = result.accepted().server_timestamp_ms();
      out.push_back(std::move(e));
      return;
    }
    case padlock::v1::SendResult::kMismatch: {
      if (++mismatch_retries_[message_id] > 5) {
        fail("the recipient's devices keep changing; gave up");
        return;
      }
      absl::Status fixed = FixMismatch(message_id, result.mismatch());
      if (HoldForIdentityChange(fixed)) {
        // The entry stays queued as it was (the transaction rolled back) and is not sent again
        // until the user accepts: nothing goes to the new key before that.
        mismatch_retries_.erase(message_id);
        return;
      }
      if (absl::IsUnavailable(fixed) || absl::IsResourceExhausted(fixed)) {
        retry_at_[message_id] = ClockNow() + RetryAfter(fixed).value_or(absl::Seconds(1));
        return;
      }
      if (!fixed.ok()) {
        fail(absl::StrCat("cannot re-address the message: ", fixed.message()));
        return;
      }
      absl::StatusOr<std::vector<OutboxEntry>> entries = store_->ListOutbox();
      if (!entries.ok()) return;
      for (const OutboxEntry& entry : *entries) {
        if (entry.message_id == message_id) (void)SendEntry(entry);
      }
      return;
    }
    case padlock::v1::SendResult::kRefused: {
      const padlock::v1::Refusal& refusal = result.refused();
      if (refusal.code() == static_cast<int>(absl::StatusCode::kResourceExhausted) ||
          refusal.code() == static_cast<int>(absl::StatusCode::kUnavailable)) {
        retry_at_[message_id] =
            ClockNow() + absl::Milliseconds(refusal.retry_after_ms() > 0
                                                 ? refusal.retry_after_ms()
                                                 : 1000);
        return;
      }
      fail(absl::StrCat("refused (code ", refusal.code(), "): ", refusal.message()));
      return;
    }
    default:
      return;
  }
}

void Messenger::HandleDeliver(const padlock::v1::Deliver& deliver,
                              std::vector<MessengerEvent>& out) {
  std::vector<std::string> acks;
  std::map<std::string, std::vector<std::string>> receipts;  // peer → message ids
  std::map<std::string, std::vector<std::string>> unsupported;  // peer → message ids
  for (const padlock::v1::Envelope& envelope : deliver.envelopes()) {
    if (options_.on_envelope) options_.on_envelope(envelope);
    const RemoteAddress sender{envelope.sender().user_id(),
                               static_cast<int32_t>(envelope.sender().device_id())};
    absl::StatusOr<bool> seen = store_->WasReceived(sender, envelope.message_id());
    if (!seen.ok()) continue;  // local store trouble: leave it in the inbox for later
    if (*seen) {
      acks.push_back(envelope.server_id());
      continue;
    }
    MessengerEvent event{.kind = MessengerEvent::Kind::kRejected};
    event.peer = sender.user_id;
    event.peer_device = static_cast<uint32_t>(sender.device_id);
    event.message_id = envelope.message_id();
    event.sent_at_ms = envelope.server_timestamp_ms();
    event.sequence = envelope.sequence();
    const bool group_message = envelope.type() == padlock::v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE;
    if (!IsOneToOne(envelope.type()) && !group_message) {
      event.detail = "unexpected envelope type";
      out.push_back(std::move(event));
      acks.push_back(envelope.server_id());
      continue;
    }
    // Decrypt (a savepoint inside), record the id and store the text in one transaction, then ack.
    bool report = true;
    absl::Status status = store_->InTransaction([&]() -> absl::Status {
      if (group_message) return DecryptGroupMessage(envelope, event);
      absl::StatusOr<Content> content =
          crypto_->Decrypt(sender, Ciphertext{envelope.type(), envelope.ciphertext()});
      if (!content.ok()) return content.status();
      absl::StatusOr<bool> fresh = store_->MarkReceived(sender, envelope.message_id());
      if (!fresh.ok()) return fresh.status();
      if (!CanShow(*content)) {
        // Not dropped silently: reported here, acked, and the sender is told (below).
        MarkUnsupported(*content, event);
        return absl::OkStatus();
      }
      switch (content->kind) {
        case ContentKind::kText: {
          absl::StatusOr<std::pair<std::string, std::string>> text =
              DecodeTextBody(content->body);
          if (!text.ok()) return text.status();
          const bool own = sender.user_id == account_->user_id;
          event.kind = MessengerEvent::Kind::kMessage;
          event.outgoing = own;
          event.conversation = own ? text->first : sender.user_id;
          event.text = text->second;
          return store_->AddMessage(HistoryMessage{
              envelope.message_id(), event.conversation, sender.user_id,
              static_cast<uint32_t>(sender.device_id), static_cast<uint8_t>(ContentKind::kText),
              text->second, static_cast<int64_t>(envelope.server_timestamp_ms()),
              absl::ToUnixMillis(ClockNow()), own,
              own ? MessageStatus::kSent : MessageStatus::kDelivered});
        }
        case ContentKind::kReceipt: {
          absl::StatusOr<std::pair<MessageStatus, std::vector<std::string>>> receipt =
              DecodeReceiptBody(content->body);
          if (!receipt.ok()) return receipt.status();
          event.kind = MessengerEvent::Kind::kReceipt;
          event.receipt_status = receipt->first;
          event.message_ids = receipt->second;
          if (receipt->first == MessageStatus::kUnsupported) {
            absl::StatusOr<ContentCapabilities> capabilities =
                DecodeUnsupportedReceiptCapabilities(content->body);
            if (!capabilities.ok()) return capabilities.status();
            event.kind = MessengerEvent::Kind::kUnsupported;
            event.detail = DescribeCapabilities(*capabilities);
          }
          for (const std::string& id : receipt->second) {
            if (absl::Status s = store_->RaiseMessageStatus(id, receipt->first); !s.ok()) {
              return s;
            }
          }
          return absl::OkStatus();
        }
        case ContentKind::kTyping:
          event.kind = MessengerEvent::Kind::kTyping;
          event.text = content->body == "1" ? "1" : "0";
          return absl::OkStatus();
        case ContentKind::kGroupUpdate:
          return ApplyGroupUpdate(sender, content->body, event);
        case ContentKind::kGroupKeyDistribution:
          report = false;  // plumbing, not news
          return ApplyGroupKey(sender, content->body);
        case ContentKind::kStory: return ApplyStory(sender, envelope, content->body, event);
        default:  // CanShow said yes to every kind it lists
          MarkUnsupported(*content, event);
          return absl::OkStatus();
      }
    });
    if (status.ok()) {
      acks.push_back(envelope.server_id());
      if (event.kind == MessengerEvent::Kind::kMessage && sender.user_id != account_->user_id &&
          !group_message) {
        receipts[sender.user_id].push_back(envelope.message_id());
      }
      // Online-only envelopes (no server id: typing-like signals) get no answer: a kind a newer
      // client sends that way is not worth a stored receipt. Nor do this account's own devices.
      if (event.kind == MessengerEvent::Kind::kUnsupportedContent &&
          sender.user_id != account_->user_id && !envelope.server_id().empty()) {
        unsupported[sender.user_id].push_back(envelope.message_id());
      }
      if (report) out.push_back(std::move(event));
    } else if (absl::IsAlreadyExists(status)) {
      acks.push_back(envelope.server_id());  // a replayed ciphertext: already handled
    } else if (absl::IsDataLoss(status) || absl::IsInvalidArgument(status) ||
               absl::IsFailedPrecondition(status)) {
      if (absl::IsFailedPrecondition(status) &&
          absl::StrContains(status.message(), "untrusted identity") &&
          held_incoming_.size() < kMaxHeldIncoming) {
        // From a key the user has not accepted (the sender changed identity): not read, not
        // dropped. It stays unacknowledged (the server redelivers it on a later connection)
        // and is decrypted here once the user accepts the new key (AcceptIdentity).
        (void)HoldForIdentityChange(
            IdentityChangedError(sender.user_id, {static_cast<uint32_t>(sender.device_id)}));
        const bool known = std::any_of(
            held_incoming_.begin(), held_incoming_.end(),
            [&](const padlock::v1::Envelope& e) { return e.server_id() == envelope.server_id(); });
        if (!known) held_incoming_.push_back(envelope);
        continue;
      }
      // Tampered, corrupt, or undecryptable for another reason: it will never decrypt, and the
      // savepoint left the session as it was. Report and drop it.
      event.kind = MessengerEvent::Kind::kRejected;
      event.detail = absl::IsFailedPrecondition(status)
                         ? absl::StrCat("cannot decrypt (security code changed or no session): ",
                                        status.message())
                         : absl::StrCat("rejected a message that does not decrypt: ",
                                        status.message());
      out.push_back(std::move(event));
      acks.push_back(envelope.server_id());
    }
    // Anything else (local store failure): not acked, so the server delivers it again.
  }
  (void)Ack(acks);
  if (options_.send_receipts) {
    for (const auto& [peer, ids] : receipts) {
      (void)Compose(peer, ContentKind::kReceipt, EncodeReceiptBody(MessageStatus::kDelivered, ids),
                    false, "");
    }
  }
  if (options_.send_unsupported_receipts) {
    for (const auto& [peer, ids] : unsupported) {
      (void)Compose(peer, ContentKind::kReceipt,
                    EncodeUnsupportedReceiptBody(MessengerCapabilities(), ids), false, "");
    }
  }
  (void)FlushOutbox();
}

void Messenger::HandleEvent(StreamEvent event, std::vector<MessengerEvent>& out) {
  switch (event.kind) {
    case StreamEvent::Kind::kDisconnected: {
      in_flight_.clear();
      MessengerEvent e{.kind = MessengerEvent::Kind::kDisconnected};
      e.detail = std::string(event.status.message());
      out.push_back(std::move(e));
      return;
    }
    case StreamEvent::Kind::kStopped: {
      in_flight_.clear();
      MessengerEvent e{.kind = MessengerEvent::Kind::kStopped};
      e.detail = event.status.ok() ? "displaced by a newer connection or revoked"
                                   : std::string(event.status.message());
      out.push_back(std::move(e));
      return;
    }
    case StreamEvent::Kind::kFrame:
      break;
  }
  const padlock::v1::ServerFrame& frame = event.frame;
  switch (frame.frame_case()) {
    case padlock::v1::ServerFrame::kConnected: {
      in_flight_.clear();  // results of a previous connection never arrive: resend
      held_incoming_.clear();  // unacknowledged: this connection delivers them again
      MessengerEvent e{.kind = MessengerEvent::Kind::kConnected};
      e.detail = absl::StrCat("epoch ", frame.connected().epoch());
      out.push_back(std::move(e));
      (void)FlushOutbox();
      return;
    }
    case padlock::v1::ServerFrame::kDeliver:
      if (options_.receive) HandleDeliver(frame.deliver(), out);
      return;
    case padlock::v1::ServerFrame::kSendResult:
      HandleSendResult(frame.send_result(), out);
      return;
    case padlock::v1::ServerFrame::kQueueEmpty:
      out.push_back(MessengerEvent{.kind = MessengerEvent::Kind::kQueueEmpty});
      return;
    case padlock::v1::ServerFrame::kGap: {
      MessengerEvent e{.kind = MessengerEvent::Kind::kGap};
      e.gap = frame.gap();
      out.push_back(std::move(e));
      return;
    }
    case padlock::v1::ServerFrame::kPrekeysLow: {
      absl::StatusOr<uint32_t> remaining = ReplenishPreKeys(options_.prekey_batch);
      MessengerEvent e{.kind = MessengerEvent::Kind::kPreKeysReplenished};
      e.detail = remaining.ok() ? absl::StrCat(*remaining, " one-time prekeys on the server")
                                : std::string(remaining.status().message());
      out.push_back(std::move(e));
      return;
    }
    case padlock::v1::ServerFrame::kError: {
      // A frame the server could not take; a send it names is retried after a pause.
      auto it = in_flight_.find(frame.error().request_id());
      if (it != in_flight_.end()) {
        retry_at_[it->second.message_id] = ClockNow() + absl::Seconds(1);
        in_flight_.erase(it);
      }
      return;
    }
    default:
      return;  // pong, presence, displaced / closing (the stream acts on those itself)
  }
}

std::vector<MessengerEvent> Messenger::Pump(
    absl::Duration timeout, const std::function<bool(const MessengerEvent&)>& done) {
  std::vector<MessengerEvent> out;
  const absl::Time deadline = ClockNow() + timeout;
  DrainPendingEvents(out);
  if (done) {
    for (const MessengerEvent& e : out) {
      if (done(e)) return out;
    }
  }
  while (stream_ != nullptr) {
    absl::Time now = ClockNow();
    // Wake up for the earliest due retry too.
    absl::Time wake = deadline;
    for (const auto& [id, at] : retry_at_) wake = std::min(wake, at);
    // At least a few ms: a due retry that cannot go out yet (disconnected) must not spin.
    std::optional<StreamEvent> event = stream_->Next(
        std::max(wake - now, std::min(absl::Milliseconds(10), deadline - now)));
    bool stop = false;
    if (event.has_value()) {
      const bool stopped = event->kind == StreamEvent::Kind::kStopped;
      const size_t before = out.size();
      HandleEvent(*std::move(event), out);
      DrainPendingEvents(out);
      if (done) {
        for (size_t i = before; i < out.size(); ++i) stop = stop || done(out[i]);
      }
      stop = stop || stopped;
    }
    now = ClockNow();
    for (const auto& [id, at] : retry_at_) {
      if (at <= now) {
        (void)FlushOutbox();
        break;
      }
    }
    if (stop || now >= deadline) break;
  }
  return out;
}

absl::StatusOr<uint32_t> Messenger::ReplenishPreKeys(uint32_t count) {
  if (!account_.has_value()) return account().status();
  const uint32_t start = account_->next_prekey_id;
  absl::StatusOr<std::vector<PreKey>> keys = GeneratePreKeys(*context_, start, count);
  if (!keys.ok()) return keys.status();
  const uint32_t next = static_cast<uint32_t>((static_cast<uint64_t>(start) - 1 + count) %
                                              kMaxPreKeyId) + 1;
  absl::Status stored = store_->InTransaction([&]() -> absl::Status {
    for (const PreKey& key : *keys) {
      if (absl::Status s = store_->StorePreKey(key.id, key.record); !s.ok()) return s;
    }
    return store_->UpdatePreKeyIds(next, account_->signed_prekey_id);
  });
  if (!stored.ok()) return stored;
  account_->next_prekey_id = next;
  padlock::v1::GatewayPublishPreKeysRequest request;
  for (const PreKey& key : *keys) {
    padlock::v1::OneTimePreKey* otk = request.add_one_time_prekeys();
    otk->set_key_id(key.id);
    otk->set_public_key(key.public_key);
  }
  absl::StatusOr<padlock::v1::PublishPreKeysResponse> response =
      gateway_->PublishPreKeys(request);
  if (!response.ok()) return response.status();
  return response->one_time_prekeys_remaining();
}

absl::StatusOr<std::map<uint32_t, std::string>> Messenger::SafetyNumbers(const std::string& peer) {
  if (!account_.has_value()) return account().status();
  // From the list as the primary signed it, not only the accepted keys: after "security code
  // changed" the user compares the NEW numbers before accepting them.
  absl::StatusOr<padlock::v1::GetDeviceListResponse> response = gateway_->GetDeviceList(peer);
  if (!response.ok()) return response.status();
  const padlock::v1::SignedDeviceList* list = &response->device_list();
  if (absl::Status s = VerifyDeviceList(peer, *list, std::nullopt, std::nullopt); !s.ok()) {
    return s;
  }
  absl::StatusOr<IdentityKeyPair> identity = store_->LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  std::map<uint32_t, std::string> out;
  for (const padlock::v1::DeviceListEntry& entry : list->list().devices()) {
    absl::StatusOr<std::string> number = SafetyNumber(
        *context_, account_->user_id, identity->public_key, peer, entry.identity_key());
    if (!number.ok()) return number.status();
    out[entry.device_id()] = *number;
  }
  return out;
}

absl::Status Messenger::AcceptIdentity(const std::string& peer) {
  absl::StatusOr<padlock::v1::GetDeviceListResponse> response = gateway_->GetDeviceList(peer);
  if (!response.ok()) return response.status();
  const padlock::v1::SignedDeviceList& list = response->device_list();
  // Verify the signature only: the user accepts the new primary key and whatever version it
  // signed (an identity change restarts trust).
  if (absl::Status s = VerifyDeviceList(peer, list, std::nullopt, std::nullopt); !s.ok()) return s;
  std::set<uint32_t> changed;
  absl::Status accepted = store_->InTransaction([&]() -> absl::Status {
    for (const padlock::v1::DeviceListEntry& entry : list.list().devices()) {
      const RemoteAddress address{peer, static_cast<int32_t>(entry.device_id())};
      absl::StatusOr<std::optional<std::string>> known = store_->LoadRemoteIdentity(address);
      if (!known.ok()) return known.status();
      if (known->has_value() && **known != entry.identity_key()) {
        changed.insert(entry.device_id());
        if (absl::Status s = store_->DeleteSession(address); !s.ok()) return s;
      }
      if (absl::Status s = store_->AcceptRemoteIdentity(address, entry.identity_key()); !s.ok()) {
        return s;
      }
    }
    return store_->SaveVerifiedDeviceList(peer, {list.list().version(), list.SerializeAsString()});
  });
  if (!accepted.ok()) return accepted;
  held_.erase(peer);
  if (absl::Status s = ReaddressFor(peer, list, changed); !s.ok()) return s;
  // What arrived from the new key meanwhile is read now (its events come with the next Pump).
  padlock::v1::Deliver deliver;
  for (auto it = held_incoming_.begin(); it != held_incoming_.end();) {
    if (it->sender().user_id() == peer) {
      *deliver.add_envelopes() = std::move(*it);
      it = held_incoming_.erase(it);
    } else {
      ++it;
    }
  }
  if (deliver.envelopes_size() > 0 && connected()) HandleDeliver(deliver, pending_events_);
  return FlushOutbox();
}

bool Messenger::HoldForIdentityChange(const absl::Status& status) {
  std::optional<std::pair<std::string, std::vector<uint32_t>>> change = IdentityChanged(status);
  if (!change.has_value()) return false;
  std::set<uint32_t>& devices = held_[change->first];
  for (uint32_t d : change->second) {
    if (!devices.insert(d).second) continue;
    MessengerEvent e{.kind = MessengerEvent::Kind::kIdentityChanged};
    e.peer = change->first;
    e.peer_device = d;
    e.conversation = change->first;
    e.detail = std::string(status.message());
    pending_events_.push_back(std::move(e));
  }
  return true;
}

void Messenger::DrainPendingEvents(std::vector<MessengerEvent>& out) {
  for (MessengerEvent& e : pending_events_) out.push_back(std::move(e));
  pending_events_.clear();
}

bool Messenger::EntryHeld(const OutboxEntry& entry) const {
  if (held_.empty()) return false;
  if (held_.count(entry.conversation) > 0) return true;
  padlock::v1::OutgoingMessage message;
  if (!message.ParseFromString(entry.payload)) return false;
  for (const padlock::v1::Recipient& r : message.recipients()) {
    if (held_.count(r.device().user_id()) > 0) return true;
  }
  return false;
}

absl::Status Messenger::ReaddressFor(const std::string& user,
                                     const padlock::v1::SignedDeviceList& list,
                                     const std::set<uint32_t>& changed) {
  absl::StatusOr<std::vector<OutboxEntry>> entries = store_->ListOutbox();
  if (!entries.ok()) return entries.status();
  const bool own = user == account_->user_id;
  for (const OutboxEntry& entry : *entries) {
    padlock::v1::OutgoingMessage message;
    if (!message.ParseFromString(entry.payload)) continue;
    // A group entry shares one ciphertext: the server's mismatch answer re-addresses it
    // (FixGroupMismatch), with the sender key sent 1:1 over the new sessions.
    if (!message.shared_ciphertext().empty()) continue;
    bool involves = own || entry.conversation == user;
    for (const padlock::v1::Recipient& r : message.recipients()) {
      involves = involves || r.device().user_id() == user;
    }
    if (!involves) continue;
    const Content content{static_cast<ContentKind>(entry.content_kind), entry.body};
    absl::Status status = store_->InTransaction([&]() -> absl::Status {
      // Ciphertexts for an old key, or for a device that left the list, never go out; the
      // others stay byte for byte.
      for (int i = message.recipients_size() - 1; i >= 0; --i) {
        const padlock::v1::DeviceAddress& d = message.recipients(i).device();
        const bool gone = FindDevice(list.list(), d.device_id()) == nullptr;
        if (d.user_id() == user && (changed.count(d.device_id()) > 0 || gone)) {
          message.mutable_recipients()->DeleteSubrange(i, 1);
        }
      }
      if (absl::Status s = AddRecipients(list, content, message); !s.ok()) return s;
      return store_->UpdateOutboxPayload(entry.message_id, message.SerializeAsString());
    });
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Messenger>> Messenger::ChangeIdentity(MessengerOptions fresh) {
  if (!account_.has_value()) return account().status();
  if (account_->device_id != 1) {
    return absl::PermissionDeniedError(
        "only the primary device changes identity; a linked device is unlinked and linked again "
        "under a new device id");
  }
  if (fresh.home == options_.home) {
    return absl::InvalidArgumentError("the new identity needs a fresh folder");
  }
  absl::StatusOr<std::unique_ptr<Messenger>> next = Open(std::move(fresh));
  if (!next.ok()) return next.status();
  Messenger& n = **next;
  if (n.registered() || n.link_pending()) {
    return absl::AlreadyExistsError(absl::StrCat(n.options_.home, " already holds an account"));
  }
  absl::StatusOr<IdentityKeyPair> old_identity = store_->LoadLocalIdentity();
  if (!old_identity.ok()) return old_identity.status();
  absl::StatusOr<padlock::v1::SignedDeviceList> current = RefreshDeviceList(account_->user_id);
  if (!current.ok()) return current.status();

  absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(*n.context_);
  if (!identity.ok()) return identity.status();
  absl::StatusOr<uint32_t> registration_id = GenerateRegistrationId(*n.context_);
  if (!registration_id.ok()) return registration_id.status();
  constexpr uint32_t kSignedPreKeyId = 1;
  absl::StatusOr<SignedPreKey> signed_prekey = GenerateSignedPreKey(
      *n.context_, *identity, kSignedPreKeyId,
      static_cast<uint64_t>(absl::ToUnixMillis(n.ClockNow())));
  if (!signed_prekey.ok()) return signed_prekey.status();
  const uint32_t batch = std::min<uint32_t>(n.options_.prekey_batch, 100);
  absl::StatusOr<std::vector<PreKey>> prekeys = GeneratePreKeys(*n.context_, 1, batch);
  if (!prekeys.ok()) return prekeys.status();
  // The private halves are stored before the server learns the public ones.
  absl::Status stored = n.store_->InTransaction([&]() -> absl::Status {
    if (absl::Status s = n.store_->SaveLocalIdentity(*identity, *registration_id); !s.ok()) {
      return s;
    }
    if (absl::Status s = n.store_->StoreSignedPreKey(signed_prekey->id, signed_prekey->record);
        !s.ok()) {
      return s;
    }
    for (const PreKey& key : *prekeys) {
      if (absl::Status s = n.store_->StorePreKey(key.id, key.record); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!stored.ok()) return stored;

  // The same devices, device 1 with the new key, signed by the new key.
  padlock::v1::SignedDeviceList list;
  list.mutable_list()->set_user_id(account_->user_id);
  list.mutable_list()->set_version(current->list().version() + 1);
  for (const padlock::v1::DeviceListEntry& e : current->list().devices()) {
    padlock::v1::DeviceListEntry* added = list.mutable_list()->add_devices();
    *added = e;
    if (e.device_id() == 1) {
      added->set_identity_key(identity->public_key);
      added->set_registration_id(*registration_id);
    }
  }
  if (absl::Status s = SignDeviceList(*n.context_, identity->private_key, list); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> change_signature =
      Sign(*context_, old_identity->private_key,
           statement::EncodeIdentityChange(account_->user_id, 1, old_identity->public_key,
                                           identity->public_key, *registration_id));
  if (!change_signature.ok()) return change_signature.status();

  padlock::v1::GatewayChangeIdentityRequest request;
  request.set_new_identity_key(identity->public_key);
  request.set_new_registration_id(*registration_id);
  request.mutable_new_signed_prekey()->set_key_id(signed_prekey->id);
  request.mutable_new_signed_prekey()->set_public_key(signed_prekey->public_key);
  request.mutable_new_signed_prekey()->set_signature(signed_prekey->signature);
  for (const PreKey& key : *prekeys) {
    padlock::v1::OneTimePreKey* otk = request.add_new_one_time_prekeys();
    otk->set_key_id(key.id);
    otk->set_public_key(key.public_key);
  }
  request.set_change_signature(*change_signature);
  *request.mutable_device_list() = list;
  absl::StatusOr<padlock::v1::ChangeIdentityResponse> response =
      gateway_->ChangeIdentity(request);
  if (!response.ok()) return response.status();
  Disconnect();  // this key no longer logs in

  const AccountRecord account{account_->user_id, 1, batch + 1, signed_prekey->id};
  absl::Status saved = n.store_->InTransaction([&]() -> absl::Status {
    if (absl::Status s = n.store_->SaveAccount(account); !s.ok()) return s;
    if (absl::Status s =
            n.store_->AcceptRemoteIdentity({account.user_id, 1}, identity->public_key);
        !s.ok()) {
      return s;
    }
    return n.store_->SaveVerifiedDeviceList(account.user_id,
                                            {list.list().version(), list.SerializeAsString()});
  });
  if (!saved.ok()) return saved;
  n.account_ = account;
  if (absl::Status s = n.Start(); !s.ok()) return s;
  return next;
}

}  // namespace padlock::client
