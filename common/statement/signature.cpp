#include "common/statement/signature.h"

#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace padlock::statement {
namespace {

// The process-wide context used to decode keys. curve_decode_point only uses it to log, and
// curve_verify_signature does not use one at all, so no crypto provider is needed. Locking
// functions are installed anyway, recursive as libsignal requires, so that a later caller of a
// locking libsignal function on this context stays safe.
struct VerifierState {
  std::recursive_mutex mutex;
  signal_context* context = nullptr;
};

void LockVerifier(void* user_data) { static_cast<VerifierState*>(user_data)->mutex.lock(); }
void UnlockVerifier(void* user_data) { static_cast<VerifierState*>(user_data)->mutex.unlock(); }

[[noreturn]] void DieInit(const char* what, int code) {
  std::fprintf(stderr, "padlock::statement: libsignal %s failed (%d)\n", what, code);
  std::abort();
}

VerifierState& Verifier() {
  // Never destroyed: verification may run from other threads during static destruction.
  static VerifierState* const state = [] {
    auto* s = new VerifierState;
    int rc = signal_context_create(&s->context, s);
    if (rc != SG_SUCCESS) DieInit("signal_context_create", rc);
    rc = signal_context_set_locking_functions(s->context, LockVerifier, UnlockVerifier);
    if (rc != SG_SUCCESS) DieInit("signal_context_set_locking_functions", rc);
    return s;
  }();
  return *state;
}

const uint8_t* Bytes(std::string_view s) {
  // string_view of an empty string may carry a null pointer; libsignal gets a valid one.
  static const uint8_t kEmpty = 0;
  return s.data() == nullptr ? &kEmpty : reinterpret_cast<const uint8_t*>(s.data());
}

// Owns a decoded key.
struct PublicKeyRef {
  ec_public_key* key = nullptr;
  PublicKeyRef() = default;
  PublicKeyRef(const PublicKeyRef&) = delete;
  PublicKeyRef& operator=(const PublicKeyRef&) = delete;
  ~PublicKeyRef() {
    if (key != nullptr) SIGNAL_UNREF(key);
  }
};

// The u-coordinate is little-endian in bytes 1..32. Canonical means below p = 2^255 - 19 with
// bit 255 clear: libsignal ignores bit 255 and reduces mod p, so otherwise several encodings
// would name one key.
bool IsCanonical(std::string_view key) {
  const auto* u = reinterpret_cast<const uint8_t*>(key.data()) + 1;
  if ((u[31] & 0x80) != 0) return false;
  if (u[31] != 0x7f) return true;
  for (int i = 30; i >= 1; --i) {
    if (u[i] != 0xff) return true;
  }
  return u[0] < 0xed;
}

// Every u-coordinate below p of a point of order dividing 8, on the curve (cofactor 8: u = 0 of
// order 2, one u of order 4, two of order 8) or its twist (cofactor 4: u = 0, one u of order 4):
// five values, little-endian. With non-canonical encodings already refused, this list is complete.
// (A scalar multiplication by a clamped scalar, a multiple of 8, would find the same points at
// ~100 µs per key; tests/unit/clients checks each entry that way.)
constexpr uint8_t kSmallOrderU[5][32] = {
    {0},  // 0: order 2
    {1},  // 1: order 4 (twist)
    {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
     0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
    {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
     0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
    // p - 1: order 4
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
};

// A small-order key lets anyone forge "its" signatures (the verification equation no longer
// depends on a secret), so it can prove possession of nothing. Expects a canonical key.
bool IsSmallOrder(std::string_view key) {
  const uint8_t* u = Bytes(key) + 1;
  for (const auto& bad : kSmallOrderU) {
    if (std::memcmp(u, bad, sizeof(bad)) == 0) return true;
  }
  return false;
}

// Structural checks plus decoding; on success `out` owns the decoded key.
absl::Status DecodeValidPublicKey(std::string_view key, PublicKeyRef& out) {
  if (key.size() != kPublicKeySize) {
    return absl::InvalidArgumentError("public key must be 33 bytes");
  }
  if (static_cast<uint8_t>(key[0]) != kPublicKeyType) {
    return absl::InvalidArgumentError("public key type byte must be 0x05");
  }
  if (!IsCanonical(key)) {
    return absl::InvalidArgumentError("public key is not canonically encoded");
  }
  if (IsSmallOrder(key)) {
    return absl::InvalidArgumentError("public key has small order");
  }
  const int rc = curve_decode_point(&out.key, Bytes(key), key.size(), Verifier().context);
  if (rc != SG_SUCCESS || out.key == nullptr) {
    return absl::InvalidArgumentError("public key does not decode");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePublicKey(std::string_view key) {
  PublicKeyRef decoded;
  return DecodeValidPublicKey(key, decoded);
}

bool VerifySignature(std::string_view public_key, std::string_view message,
                     std::string_view signature) {
  if (signature.size() != kSignatureSize) return false;
  PublicKeyRef decoded;
  if (!DecodeValidPublicKey(public_key, decoded).ok()) return false;
  // 1 = valid, 0 = invalid, negative = error: only 1 is acceptance.
  return curve_verify_signature(decoded.key, Bytes(message), message.size(), Bytes(signature),
                                signature.size()) == 1;
}

bool VerifySignedPreKey(std::string_view identity_key, std::string_view signed_prekey_public,
                        std::string_view signature) {
  if (!ValidatePublicKey(signed_prekey_public).ok()) return false;
  return VerifySignature(identity_key, signed_prekey_public, signature);
}

}  // namespace padlock::statement
