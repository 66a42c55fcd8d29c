#pragma once
// Server-side checks of Signal identity keys and XEdDSA signatures, done with
// libsignal-protocol-c's own curve code so that services accept exactly what clients produce.
// libsignal headers stay inside this library's .cpp files.
//
// Thread-safe: every function may be called from any number of threads at once. They share one
// process-wide libsignal context (created on first use, never destroyed); it is only used to
// decode keys, which takes no lock and keeps no state.

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace padlock::statement {

// Serialized public key: type byte 0x05 followed by the 32-byte Curve25519 u-coordinate.
inline constexpr size_t kPublicKeySize = 33;
inline constexpr unsigned char kPublicKeyType = 0x05;
// XEdDSA signature as produced by curve_calculate_signature.
inline constexpr size_t kSignatureSize = 64;

// Returns OK when `key` is a public key a device could have generated: 33 bytes, type byte 0x05,
// accepted by curve_decode_point, a canonical u-coordinate (below 2^255 - 19, top bit clear, so
// one key has exactly one encoding and byte comparison of keys is key comparison) and not of
// small order (a small-order key would let anyone forge "its" signatures, making proof of
// possession meaningless). Otherwise InvalidArgument naming the defect (never the key bytes).
absl::Status ValidatePublicKey(std::string_view key);

// True only when `signature` is a valid XEdDSA signature of exactly `message` by `public_key`.
// False for anything else, without crashing: a key that fails ValidatePublicKey, a signature that
// is not 64 bytes (checked first), a wrong key, a changed byte. Note that libsignal signatures are
// malleable (another valid signature exists for the same message): never use signature bytes
// as ids or replay keys.
bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature);

// True when `signature` is `identity_key`'s signature over the 33-byte serialized
// `signed_prekey_public` exactly (as X3DH requires; the one signature that is not over a
// statement) and both keys pass ValidatePublicKey.
bool VerifySignedPreKey(std::string_view identity_key, std::string_view signed_prekey_public,
                        std::string_view signature);

}  // namespace padlock::statement
