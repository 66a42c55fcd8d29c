#include "clients/sdk/device_crypto.h"

#include <signal/curve.h>
#include <signal/group_cipher.h>
#include <signal/group_session_builder.h>
#include <signal/protocol.h>
#include <signal/session_builder.h>
#include <signal/session_cipher.h>
#include <signal/session_pre_key.h>
#include <signal/signal_protocol.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/sdk/errors.h"
#include "clients/sdk/signal_handles.h"

namespace padlock::client {
namespace {

const uint8_t* Bytes(std::string_view s) {
  static const uint8_t kEmpty = 0;
  return s.data() == nullptr ? &kEmpty : reinterpret_cast<const uint8_t*>(s.data());
}

// libsignal's view of an address; borrows `address`'s string.
signal_protocol_address ToSignal(const RemoteAddress& address) {
  return signal_protocol_address{address.user_id.c_str(), address.user_id.size(),
                                 address.device_id};
}

signal_protocol_sender_key_name SenderKeyName(std::string_view group_id,
                                              const RemoteAddress& sender) {
  return signal_protocol_sender_key_name{group_id.data(), group_id.size(), ToSignal(sender)};
}

struct SessionBuilderFree {
  void operator()(session_builder* b) const { session_builder_free(b); }
};
struct SessionCipherFree {
  void operator()(session_cipher* c) const { session_cipher_free(c); }
};
struct GroupBuilderFree {
  void operator()(group_session_builder* b) const { group_session_builder_free(b); }
};
struct GroupCipherFree {
  void operator()(group_cipher* c) const { group_cipher_free(c); }
};

absl::StatusOr<SignalPtr<ec_public_key>> DecodeKey(SignalContext& context, std::string_view key,
                                                   std::string_view what) {
  ec_public_key* raw = nullptr;
  const int rc = curve_decode_point(&raw, Bytes(key), key.size(), context.get());
  if (rc < 0) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), " does not decode"));
  }
  return SignalPtr<ec_public_key>(raw);
}

absl::StatusOr<Ciphertext> FromMessage(const ciphertext_message* message) {
  Ciphertext out;
  const int type = ciphertext_message_get_type(message);
  if (!padlock::v1::EnvelopeType_IsValid(type)) {
    return absl::InternalError(absl::StrCat("unexpected ciphertext type ", type));
  }
  out.type = static_cast<padlock::v1::EnvelopeType>(type);
  out.bytes = ToString(ciphertext_message_get_serialized(message));  // borrowed
  return out;
}

}  // namespace

absl::Status SignalError(int rc, std::string_view what) {
  const std::string message = absl::StrCat(std::string(what), ": libsignal error ", rc);
  switch (rc) {
    case SG_ERR_DUPLICATE_MESSAGE:
      return absl::AlreadyExistsError(absl::StrCat(message, " (duplicate message)"));
    case SG_ERR_INVALID_MESSAGE:
    case SG_ERR_INVALID_MAC:
    case SG_ERR_INVALID_PROTO_BUF:
    case SG_ERR_INVALID_VERSION:
    case SG_ERR_LEGACY_MESSAGE:
    case SG_ERR_INVALID_KEY:
      return absl::DataLossError(absl::StrCat(message, " (invalid message)"));
    case SG_ERR_UNTRUSTED_IDENTITY:
      return UntrustedIdentityError(absl::StrCat(message, " (untrusted identity)"));
    case SG_ERR_NO_SESSION:
      return absl::FailedPreconditionError(absl::StrCat(message, " (no session)"));
    case SG_ERR_INVALID_KEY_ID:
      return absl::FailedPreconditionError(absl::StrCat(message, " (unknown prekey id)"));
    case SG_ERR_NOMEM:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

DeviceCrypto::DeviceCrypto(SignalContext& context, LocalStore& store,
                           StoreContextPtr store_context, RemoteAddress self)
    : context_(context),
      store_(store),
      store_context_(std::move(store_context)),
      self_(std::move(self)) {}

// Each operation runs in one store transaction: libsignal's writes (session record, consumed
// one-time prekey, newly trusted identity, sender key) are committed together or not at all,
// and a failed decrypt leaves the store exactly as it was.
template <typename T, typename F>
absl::StatusOr<T> DeviceCrypto::Transact(F body) {
  absl::StatusOr<T> result = absl::InternalError("transaction body did not run");
  const absl::Status status = store_.InTransaction([&] {
    result = body();
    return result.status();
  });
  if (!status.ok()) return status;
  return result;
}

absl::Status DeviceCrypto::ProcessPreKeyBundle(const padlock::v1::PreKeyBundle& bundle) {
  return store_.InTransaction([&] { return ProcessPreKeyBundleInTx(bundle); });
}

absl::StatusOr<Ciphertext> DeviceCrypto::Encrypt(const RemoteAddress& to, const Content& content) {
  return Transact<Ciphertext>([&] { return EncryptInTx(to, content); });
}

absl::StatusOr<Content> DeviceCrypto::Decrypt(const RemoteAddress& from,
                                              const Ciphertext& ciphertext) {
  return Transact<Content>([&] { return DecryptInTx(from, ciphertext); });
}

absl::StatusOr<Ciphertext> DeviceCrypto::GroupDistribution(std::string_view group_id) {
  return Transact<Ciphertext>([&] { return GroupDistributionInTx(group_id); });
}

absl::Status DeviceCrypto::ProcessGroupDistribution(std::string_view group_id,
                                                    const RemoteAddress& sender,
                                                    const Ciphertext& distribution) {
  return store_.InTransaction(
      [&] { return ProcessGroupDistributionInTx(group_id, sender, distribution); });
}

absl::StatusOr<Ciphertext> DeviceCrypto::GroupEncrypt(std::string_view group_id,
                                                      const Content& content) {
  return Transact<Ciphertext>([&] { return GroupEncryptInTx(group_id, content); });
}

absl::StatusOr<Content> DeviceCrypto::GroupDecrypt(std::string_view group_id,
                                                   const RemoteAddress& sender,
                                                   const Ciphertext& ciphertext) {
  return Transact<Content>([&] { return GroupDecryptInTx(group_id, sender, ciphertext); });
}

DeviceCrypto::~DeviceCrypto() = default;

absl::StatusOr<std::unique_ptr<DeviceCrypto>> DeviceCrypto::Create(SignalContext& context,
                                                                    LocalStore& store,
                                                                    RemoteAddress self) {
  absl::StatusOr<IdentityKeyPair> identity = store.LoadLocalIdentity();
  if (!identity.ok()) return identity.status();
  absl::StatusOr<StoreContextPtr> store_context = store.CreateStoreContext(context);
  if (!store_context.ok()) return store_context.status();
  return std::unique_ptr<DeviceCrypto>(
      new DeviceCrypto(context, store, *std::move(store_context), std::move(self)));
}

absl::Status DeviceCrypto::ProcessPreKeyBundleInTx(const padlock::v1::PreKeyBundle& bundle) {
  if (bundle.device().user_id().empty() || bundle.device().device_id() == 0) {
    return absl::InvalidArgumentError("bundle has no device address");
  }
  absl::StatusOr<SignalPtr<ec_public_key>> identity =
      DecodeKey(context_, bundle.identity_key(), "bundle identity key");
  if (!identity.ok()) return identity.status();
  absl::StatusOr<SignalPtr<ec_public_key>> signed_pre_key =
      DecodeKey(context_, bundle.signed_prekey().public_key(), "bundle signed prekey");
  if (!signed_pre_key.ok()) return signed_pre_key.status();
  SignalPtr<ec_public_key> one_time;
  uint32_t one_time_id = 0;
  if (bundle.has_one_time_prekey()) {
    absl::StatusOr<SignalPtr<ec_public_key>> key =
        DecodeKey(context_, bundle.one_time_prekey().public_key(), "bundle one-time prekey");
    if (!key.ok()) return key.status();
    one_time = *std::move(key);
    one_time_id = bundle.one_time_prekey().key_id();
  }

  session_pre_key_bundle* raw_bundle = nullptr;
  const std::string& signature = bundle.signed_prekey().signature();
  // Takes its own references to the keys.
  int rc = session_pre_key_bundle_create(
      &raw_bundle, bundle.registration_id(), static_cast<int>(bundle.device().device_id()),
      one_time_id, one_time.get(), bundle.signed_prekey().key_id(), signed_pre_key->get(),
      Bytes(signature), signature.size(), identity->get());
  if (rc < 0) return SignalError(rc, "session_pre_key_bundle_create");
  SignalPtr<session_pre_key_bundle> pre_key_bundle(raw_bundle);

  const RemoteAddress remote{bundle.device().user_id(),
                             static_cast<int32_t>(bundle.device().device_id())};
  const signal_protocol_address address = ToSignal(remote);
  session_builder* raw_builder = nullptr;
  rc = session_builder_create(&raw_builder, store_context_.get(), &address, context_.get());
  if (rc < 0) return SignalError(rc, "session_builder_create");
  std::unique_ptr<session_builder, SessionBuilderFree> builder(raw_builder);
  rc = session_builder_process_pre_key_bundle(builder.get(), pre_key_bundle.get());
  if (rc == SG_ERR_INVALID_KEY) {
    return absl::InvalidArgumentError("bundle signed prekey signature does not verify");
  }
  if (rc < 0) {
    return SignalError(rc, absl::StrCat("process bundle of ", remote.user_id, ":",
                                        remote.device_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<Ciphertext> DeviceCrypto::EncryptInTx(const RemoteAddress& to,
                                                     const Content& content) {
  absl::StatusOr<std::string> padded = EncodeContent(content);
  if (!padded.ok()) return padded.status();
  const signal_protocol_address address = ToSignal(to);
  if (signal_protocol_session_contains_session(store_context_.get(), &address) != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("no session with ", to.user_id, ":", to.device_id));
  }
  session_cipher* raw_cipher = nullptr;
  int rc = session_cipher_create(&raw_cipher, store_context_.get(), &address, context_.get());
  if (rc < 0) return SignalError(rc, "session_cipher_create");
  std::unique_ptr<session_cipher, SessionCipherFree> cipher(raw_cipher);
  ciphertext_message* raw_message = nullptr;
  rc = session_cipher_encrypt(cipher.get(), Bytes(*padded), padded->size(), &raw_message);
  if (rc < 0) return SignalError(rc, absl::StrCat("encrypt to ", to.user_id, ":", to.device_id));
  SignalPtr<ciphertext_message> message(raw_message);
  return FromMessage(message.get());
}

absl::StatusOr<Content> DeviceCrypto::DecryptInTx(const RemoteAddress& from,
                                              const Ciphertext& ciphertext) {
  const signal_protocol_address address = ToSignal(from);
  session_cipher* raw_cipher = nullptr;
  int rc = session_cipher_create(&raw_cipher, store_context_.get(), &address, context_.get());
  if (rc < 0) return SignalError(rc, "session_cipher_create");
  std::unique_ptr<session_cipher, SessionCipherFree> cipher(raw_cipher);
  const std::string what = absl::StrCat("decrypt from ", from.user_id, ":", from.device_id);

  signal_buffer* raw_plaintext = nullptr;
  switch (ciphertext.type) {
    case padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE: {
      pre_key_signal_message* raw = nullptr;
      rc = pre_key_signal_message_deserialize(&raw, Bytes(ciphertext.bytes),
                                              ciphertext.bytes.size(), context_.get());
      if (rc < 0) return SignalError(rc, what);
      SignalPtr<pre_key_signal_message> message(raw);
      rc = session_cipher_decrypt_pre_key_signal_message(cipher.get(), message.get(), nullptr,
                                                         &raw_plaintext);
      break;
    }
    case padlock::v1::ENVELOPE_TYPE_MESSAGE: {
      signal_message* raw = nullptr;
      rc = signal_message_deserialize(&raw, Bytes(ciphertext.bytes), ciphertext.bytes.size(),
                                      context_.get());
      if (rc < 0) return SignalError(rc, what);
      SignalPtr<signal_message> message(raw);
      rc = session_cipher_decrypt_signal_message(cipher.get(), message.get(), nullptr,
                                                 &raw_plaintext);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("not a 1:1 envelope type: ", static_cast<int>(ciphertext.type)));
  }
  if (rc < 0) return SignalError(rc, what);
  SecretBufferPtr plaintext(raw_plaintext);
  return DecodeContent(ToString(plaintext.get()));
}

absl::StatusOr<Ciphertext> DeviceCrypto::GroupDistributionInTx(std::string_view group_id) {
  const signal_protocol_sender_key_name name = SenderKeyName(group_id, self_);
  group_session_builder* raw_builder = nullptr;
  int rc = group_session_builder_create(&raw_builder, store_context_.get(), context_.get());
  if (rc < 0) return SignalError(rc, "group_session_builder_create");
  std::unique_ptr<group_session_builder, GroupBuilderFree> builder(raw_builder);
  sender_key_distribution_message* raw = nullptr;
  rc = group_session_builder_create_session(builder.get(), &raw, &name);
  if (rc < 0) return SignalError(rc, "group_session_builder_create_session");
  SignalPtr<sender_key_distribution_message> message(raw);
  // A distribution message is a ciphertext_message underneath (the notes: cast to serialize).
  return FromMessage(reinterpret_cast<const ciphertext_message*>(message.get()));
}

absl::Status DeviceCrypto::ProcessGroupDistributionInTx(std::string_view group_id,
                                                    const RemoteAddress& sender,
                                                    const Ciphertext& distribution) {
  if (distribution.type != padlock::v1::ENVELOPE_TYPE_SENDER_KEY_DISTRIBUTION) {
    return absl::InvalidArgumentError("not a sender-key distribution message");
  }
  sender_key_distribution_message* raw = nullptr;
  int rc = sender_key_distribution_message_deserialize(
      &raw, Bytes(distribution.bytes), distribution.bytes.size(), context_.get());
  if (rc < 0) return SignalError(rc, "parse sender-key distribution");
  SignalPtr<sender_key_distribution_message> message(raw);
  group_session_builder* raw_builder = nullptr;
  rc = group_session_builder_create(&raw_builder, store_context_.get(), context_.get());
  if (rc < 0) return SignalError(rc, "group_session_builder_create");
  std::unique_ptr<group_session_builder, GroupBuilderFree> builder(raw_builder);
  const signal_protocol_sender_key_name name = SenderKeyName(group_id, sender);
  rc = group_session_builder_process_session(builder.get(), &name, message.get());
  if (rc < 0) return SignalError(rc, "process sender-key distribution");
  return absl::OkStatus();
}

absl::StatusOr<Ciphertext> DeviceCrypto::GroupEncryptInTx(std::string_view group_id,
                                                      const Content& content) {
  absl::StatusOr<std::string> padded = EncodeContent(content);
  if (!padded.ok()) return padded.status();
  const signal_protocol_sender_key_name name = SenderKeyName(group_id, self_);
  group_cipher* raw_cipher = nullptr;
  int rc = group_cipher_create(&raw_cipher, store_context_.get(), &name, context_.get());
  if (rc < 0) return SignalError(rc, "group_cipher_create");
  std::unique_ptr<group_cipher, GroupCipherFree> cipher(raw_cipher);
  ciphertext_message* raw_message = nullptr;
  rc = group_cipher_encrypt(cipher.get(), Bytes(*padded), padded->size(), &raw_message);
  if (rc < 0) return SignalError(rc, "group encrypt");
  SignalPtr<ciphertext_message> message(raw_message);
  return FromMessage(message.get());
}

absl::StatusOr<Content> DeviceCrypto::GroupDecryptInTx(std::string_view group_id,
                                                   const RemoteAddress& sender,
                                                   const Ciphertext& ciphertext) {
  if (ciphertext.type != padlock::v1::ENVELOPE_TYPE_SENDER_KEY_MESSAGE) {
    return absl::InvalidArgumentError("not a sender-key message");
  }
  sender_key_message* raw = nullptr;
  int rc = sender_key_message_deserialize(&raw, Bytes(ciphertext.bytes), ciphertext.bytes.size(),
                                          context_.get());
  if (rc < 0) return SignalError(rc, "parse group message");
  SignalPtr<sender_key_message> message(raw);
  const signal_protocol_sender_key_name name = SenderKeyName(group_id, sender);
  group_cipher* raw_cipher = nullptr;
  rc = group_cipher_create(&raw_cipher, store_context_.get(), &name, context_.get());
  if (rc < 0) return SignalError(rc, "group_cipher_create");
  std::unique_ptr<group_cipher, GroupCipherFree> cipher(raw_cipher);
  signal_buffer* raw_plaintext = nullptr;
  rc = group_cipher_decrypt(cipher.get(), message.get(), nullptr, &raw_plaintext);
  if (rc < 0) {
    return SignalError(rc, absl::StrCat("group decrypt from ", sender.user_id, ":",
                                        sender.device_id));
  }
  SecretBufferPtr plaintext(raw_plaintext);
  return DecodeContent(ToString(plaintext.get()));
}

}  // namespace padlock::client
