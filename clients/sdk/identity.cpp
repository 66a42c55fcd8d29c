#include "clients/sdk/identity.h"

#include <signal/curve.h>
#include <signal/key_helper.h>
#include <signal/ratchet.h>
#include <signal/session_pre_key.h>
#include <signal/signal_protocol.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/signal_handles.h"

namespace padlock::client {
namespace {

constexpr size_t kPublicKeySize = 33;
constexpr size_t kPrivateKeySize = 32;

const uint8_t* Bytes(std::string_view s) {
  static const uint8_t kEmpty = 0;
  return s.data() == nullptr ? &kEmpty : reinterpret_cast<const uint8_t*>(s.data());
}

absl::Status LibraryError(const char* what, int rc) {
  return absl::InternalError(absl::StrCat(what, " failed: libsignal error ", rc));
}

absl::StatusOr<std::string> SerializePublic(const ec_public_key* key) {
  signal_buffer* raw = nullptr;
  const int rc = ec_public_key_serialize(&raw, key);
  if (rc < 0) return LibraryError("ec_public_key_serialize", rc);
  BufferPtr buffer(raw);
  return ToString(buffer.get());
}

absl::StatusOr<std::string> SerializePrivate(const ec_private_key* key) {
  signal_buffer* raw = nullptr;
  const int rc = ec_private_key_serialize(&raw, key);
  if (rc < 0) return LibraryError("ec_private_key_serialize", rc);
  SecretBufferPtr buffer(raw);
  return ToString(buffer.get());
}

absl::StatusOr<SignalPtr<ec_private_key>> DecodePrivate(SignalContext& context,
                                                        std::string_view private_key) {
  if (private_key.size() != kPrivateKeySize) {
    return absl::InvalidArgumentError("private key must be 32 bytes");
  }
  ec_private_key* raw = nullptr;
  const int rc =
      curve_decode_private_point(&raw, Bytes(private_key), private_key.size(), context.get());
  if (rc < 0) return LibraryError("curve_decode_private_point", rc);
  return SignalPtr<ec_private_key>(raw);
}

// Rebuilds libsignal's identity key pair from bytes, checking that the halves belong together.
absl::StatusOr<SignalPtr<ratchet_identity_key_pair>> ToRatchetIdentity(
    SignalContext& context, const IdentityKeyPair& identity) {
  if (identity.public_key.size() != kPublicKeySize) {
    return absl::InvalidArgumentError("identity public key must be 33 bytes");
  }
  absl::StatusOr<SignalPtr<ec_private_key>> private_key =
      DecodePrivate(context, identity.private_key);
  if (!private_key.ok()) return private_key.status();

  ec_public_key* raw_public = nullptr;
  int rc = curve_decode_point(&raw_public, Bytes(identity.public_key), identity.public_key.size(),
                              context.get());
  if (rc < 0) return absl::InvalidArgumentError("identity public key does not decode");
  SignalPtr<ec_public_key> public_key(raw_public);

  ec_public_key* raw_derived = nullptr;
  rc = curve_generate_public_key(&raw_derived, private_key->get());
  if (rc < 0) return LibraryError("curve_generate_public_key", rc);
  SignalPtr<ec_public_key> derived(raw_derived);
  if (ec_public_key_compare(derived.get(), public_key.get()) != 0) {
    return absl::InvalidArgumentError("identity public key does not match the private key");
  }

  ratchet_identity_key_pair* raw_pair = nullptr;
  // Takes its own references to both keys; ours are released by the handles.
  rc = ratchet_identity_key_pair_create(&raw_pair, public_key.get(), private_key->get());
  if (rc < 0) return LibraryError("ratchet_identity_key_pair_create", rc);
  return SignalPtr<ratchet_identity_key_pair>(raw_pair);
}

}  // namespace

absl::StatusOr<IdentityKeyPair> GenerateIdentityKeyPair(SignalContext& context) {
  ratchet_identity_key_pair* raw = nullptr;
  const int rc = signal_protocol_key_helper_generate_identity_key_pair(&raw, context.get());
  if (rc < 0) return LibraryError("generate_identity_key_pair", rc);
  SignalPtr<ratchet_identity_key_pair> pair(raw);

  IdentityKeyPair result;
  // Getters return borrowed pointers.
  absl::StatusOr<std::string> public_key =
      SerializePublic(ratchet_identity_key_pair_get_public(pair.get()));
  if (!public_key.ok()) return public_key.status();
  absl::StatusOr<std::string> private_key =
      SerializePrivate(ratchet_identity_key_pair_get_private(pair.get()));
  if (!private_key.ok()) return private_key.status();
  result.public_key = *std::move(public_key);
  result.private_key = *std::move(private_key);
  return result;
}

absl::StatusOr<uint32_t> GenerateRegistrationId(SignalContext& context) {
  uint32_t registration_id = 0;
  const int rc = signal_protocol_key_helper_generate_registration_id(
      &registration_id, /*extended_range=*/0, context.get());
  if (rc < 0) return LibraryError("generate_registration_id", rc);
  return registration_id;
}

absl::StatusOr<std::string> Sign(SignalContext& context, std::string_view private_key,
                                 std::string_view message) {
  absl::StatusOr<SignalPtr<ec_private_key>> key = DecodePrivate(context, private_key);
  if (!key.ok()) return key.status();
  signal_buffer* raw = nullptr;
  const int rc = curve_calculate_signature(context.get(), &raw, key->get(), Bytes(message),
                                           message.size());
  if (rc < 0) return LibraryError("curve_calculate_signature", rc);
  BufferPtr signature(raw);
  return ToString(signature.get());
}

absl::StatusOr<SignedPreKey> GenerateSignedPreKey(SignalContext& context,
                                                  const IdentityKeyPair& identity, uint32_t id,
                                                  uint64_t timestamp_ms) {
  absl::StatusOr<SignalPtr<ratchet_identity_key_pair>> ratchet_identity =
      ToRatchetIdentity(context, identity);
  if (!ratchet_identity.ok()) return ratchet_identity.status();

  session_signed_pre_key* raw = nullptr;
  int rc = signal_protocol_key_helper_generate_signed_pre_key(
      &raw, ratchet_identity->get(), id, timestamp_ms, context.get());
  if (rc < 0) return LibraryError("generate_signed_pre_key", rc);
  SignalPtr<session_signed_pre_key> signed_pre_key(raw);

  SignedPreKey result;
  result.id = session_signed_pre_key_get_id(signed_pre_key.get());
  result.timestamp_ms = session_signed_pre_key_get_timestamp(signed_pre_key.get());
  const ec_key_pair* key_pair = session_signed_pre_key_get_key_pair(signed_pre_key.get());
  absl::StatusOr<std::string> public_key = SerializePublic(ec_key_pair_get_public(key_pair));
  if (!public_key.ok()) return public_key.status();
  absl::StatusOr<std::string> private_key = SerializePrivate(ec_key_pair_get_private(key_pair));
  if (!private_key.ok()) return private_key.status();
  result.public_key = *std::move(public_key);
  result.private_key = *std::move(private_key);
  result.signature.assign(
      reinterpret_cast<const char*>(session_signed_pre_key_get_signature(signed_pre_key.get())),
      session_signed_pre_key_get_signature_len(signed_pre_key.get()));

  signal_buffer* raw_record = nullptr;
  rc = session_signed_pre_key_serialize(&raw_record, signed_pre_key.get());
  if (rc < 0) return LibraryError("session_signed_pre_key_serialize", rc);
  SecretBufferPtr record(raw_record);
  result.record = ToString(record.get());
  return result;
}

absl::StatusOr<std::vector<PreKey>> GeneratePreKeys(SignalContext& context, uint32_t start,
                                                    uint32_t count) {
  if (start < 1 || start > kMaxPreKeyId) {
    return absl::InvalidArgumentError(absl::StrCat("prekey start id must be in [1, ",
                                                   kMaxPreKeyId, "], got ", start));
  }
  // More would repeat ids within one batch (and overflow libsignal's unsigned id arithmetic).
  if (count > kMaxPreKeyId) {
    return absl::InvalidArgumentError("too many prekeys requested");
  }
  std::vector<PreKey> result;
  if (count == 0) return result;

  signal_protocol_key_helper_pre_key_list_node* head = nullptr;
  int rc = signal_protocol_key_helper_generate_pre_keys(&head, start, count, context.get());
  if (rc < 0) return LibraryError("generate_pre_keys", rc);
  // The list owns its elements and releases them when freed.
  std::unique_ptr<signal_protocol_key_helper_pre_key_list_node,
                  decltype(&signal_protocol_key_helper_key_list_free)>
      list(head, &signal_protocol_key_helper_key_list_free);

  result.reserve(count);
  for (const signal_protocol_key_helper_pre_key_list_node* node = list.get(); node != nullptr;
       node = signal_protocol_key_helper_key_list_next(node)) {
    const session_pre_key* pre_key = signal_protocol_key_helper_key_list_element(node);
    PreKey out;
    out.id = session_pre_key_get_id(pre_key);
    const ec_key_pair* key_pair = session_pre_key_get_key_pair(pre_key);
    absl::StatusOr<std::string> public_key = SerializePublic(ec_key_pair_get_public(key_pair));
    if (!public_key.ok()) return public_key.status();
    absl::StatusOr<std::string> private_key =
        SerializePrivate(ec_key_pair_get_private(key_pair));
    if (!private_key.ok()) return private_key.status();
    out.public_key = *std::move(public_key);
    out.private_key = *std::move(private_key);

    signal_buffer* raw_record = nullptr;
    rc = session_pre_key_serialize(&raw_record, pre_key);
    if (rc < 0) return LibraryError("session_pre_key_serialize", rc);
    SecretBufferPtr record(raw_record);
    out.record = ToString(record.get());
    result.push_back(std::move(out));
  }
  if (result.size() != count) {
    return absl::InternalError(
        absl::StrCat("generate_pre_keys returned ", result.size(), " keys, wanted ", count));
  }
  return result;
}

}  // namespace padlock::client
