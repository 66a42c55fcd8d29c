#pragma once
// A device's long-term and medium-term keys, as plain bytes (DESIGN.md §3): the identity key pair,
// the registration id, the signed prekey and one-time prekeys, and signing with the identity key.
// Public keys are the 33-byte serialized form (0x05 + 32 bytes) that services check with
// padlock::statement::ValidatePublicKey; private keys are the 32-byte Curve25519 scalars and never
// leave the device. Nothing here stores keys (the SQLite store comes later).
//
// Thread-safe as far as `context` is (SignalContext is).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "clients/sdk/crypto_provider.h"

namespace padlock::client {

struct IdentityKeyPair {
  std::string public_key;   // 33 bytes
  std::string private_key;  // 32 bytes, secret
};

struct SignedPreKey {
  uint32_t id = 0;
  uint64_t timestamp_ms = 0;  // creation time given by the caller, Unix milliseconds
  std::string public_key;     // 33 bytes
  std::string private_key;    // 32 bytes, secret
  std::string signature;      // 64 bytes: identity key's signature over `public_key` exactly
  std::string record;         // libsignal's serialized session_signed_pre_key (for the key store)
};

struct PreKey {
  uint32_t id = 0;
  std::string public_key;   // 33 bytes
  std::string private_key;  // 32 bytes, secret
  std::string record;       // libsignal's serialized session_pre_key (for the key store)
};

// Highest prekey id libsignal hands out; one-time prekey ids are 1..kMaxPreKeyId and wrap.
inline constexpr uint32_t kMaxPreKeyId = 0xFFFFFE;

// A fresh Curve25519 identity key pair. Do this once per install. Internal on library failure.
absl::StatusOr<IdentityKeyPair> GenerateIdentityKeyPair(SignalContext& context);

// A fresh registration id in [1, 16380] (libsignal's compact range). Once per install.
absl::StatusOr<uint32_t> GenerateRegistrationId(SignalContext& context);

// The 64-byte XEdDSA signature of `message` by `private_key` (32 bytes). Signatures are
// randomised: signing twice gives different bytes, both valid. InvalidArgument when the key is not
// 32 bytes; Internal on library failure. Sign statements from padlock::statement::Encode*, never
// raw keys (except the signed prekey, which GenerateSignedPreKey signs).
absl::StatusOr<std::string> Sign(SignalContext& context, std::string_view private_key,
                                 std::string_view message);

// A fresh signed prekey with id `id`, signed by `identity`. InvalidArgument when `identity` does
// not hold a 33-byte public and 32-byte private key; Internal on library failure.
absl::StatusOr<SignedPreKey> GenerateSignedPreKey(SignalContext& context,
                                                  const IdentityKeyPair& identity, uint32_t id,
                                                  uint64_t timestamp_ms);

// `count` fresh one-time prekeys with ids start, start+1, ... (wrapping from kMaxPreKeyId back to
// 1). InvalidArgument when `start` is not in [1, kMaxPreKeyId]; an empty vector when count is 0;
// Internal on library failure.
absl::StatusOr<std::vector<PreKey>> GeneratePreKeys(SignalContext& context, uint32_t start,
                                                    uint32_t count);

}  // namespace padlock::client
