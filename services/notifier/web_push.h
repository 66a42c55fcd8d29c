#pragma once
// Web Push crypto (docs/PUSH.md): the message encryption of RFC 8291 (`aes128gcm`, RFC 8188's
// content coding) and the server identity of RFC 8292 (VAPID, an ES256 JWT). Everything is
// OpenSSL 3's EVP API; no primitive is written here. No network, no grpc.
//
// Keys travel as raw bytes: a P-256 public key is its 65-byte uncompressed point (0x04 || X || Y),
// a private key its 32-byte big-endian scalar, as the subscription (`p256dh`, `auth`) and the
// RFCs' examples give them.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/runtime/clock.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace padlock::notifier {

inline constexpr size_t kP256PublicKeyBytes = 65;
inline constexpr size_t kP256PrivateKeyBytes = 32;
inline constexpr size_t kWebPushAuthBytes = 16;
inline constexpr size_t kWebPushSaltBytes = 16;
// RFC 8188 header: salt (16) || record size (4, big-endian) || key id length (1) || key id, where
// the key id is the sender's ephemeral public key (65).
inline constexpr size_t kAes128gcmHeaderBytes = kWebPushSaltBytes + 4 + 1 + kP256PublicKeyBytes;
inline constexpr size_t kAesGcmTagBytes = 16;
// The record size written in the header. One record only; RFC 8291 §4 says a push message
// SHOULD fit 4096 bytes, which ours always do.
inline constexpr uint32_t kWebPushRecordSize = 4096;

// Base64url without padding (RFC 4648 §5), as Web Push and JWTs write it.
std::string Base64UrlEncode(std::string_view bytes);
// Accepts base64url with or without padding; InvalidArgument otherwise.
absl::StatusOr<std::string> Base64UrlDecode(std::string_view text);

// The sender's side of one message: its ephemeral key pair and the salt. Fresh random ones for
// every message in production (`RandomEncryptionSecrets`); fixed ones only in tests (RFC 8291
// Appendix A).
struct EncryptionSecrets {
  std::string sender_private;  // 32 bytes
  std::string sender_public;   // 65 bytes, the point of sender_private
  std::string salt;            // 16 bytes
};

// A fresh P-256 key pair and a random salt (OpenSSL's CSPRNG). Internal on an OpenSSL failure.
absl::StatusOr<EncryptionSecrets> RandomEncryptionSecrets();

// Encrypts `plaintext` for the subscription (`p256dh`: the device's 65-byte public key, `auth`:
// its 16-byte secret) as one `aes128gcm` record, the plaintext followed by the last-record
// delimiter 0x02 and zero padding up to `padded_size` bytes. So the body is always
// kAes128gcmHeaderBytes + padded_size + kAesGcmTagBytes bytes, whatever the plaintext: pad every
// wake-up to the same size and they all look alike. `padded_size` 0 means no padding
// (plaintext.size() + 1, as in RFC 8291 Appendix A).
// InvalidArgument when a key or the salt has the wrong size or is not on the curve, or when the
// plaintext does not fit `padded_size` or the record (kWebPushRecordSize); Internal on an OpenSSL
// failure.
absl::StatusOr<std::string> EncryptAes128gcm(std::string_view plaintext, std::string_view p256dh,
                                             std::string_view auth,
                                             const EncryptionSecrets& secrets,
                                             size_t padded_size = 0);

// The origin of a push endpoint for the JWT's `aud` (RFC 8292 §2): "scheme://host[:port]", scheme
// and host lower case, the port only when it is not the scheme's default. InvalidArgument for
// anything that is not an absolute http(s) URL with a host.
absl::StatusOr<std::string> EndpointOrigin(std::string_view endpoint);

// The application server's VAPID identity: a P-256 private key and the `sub` contact
// ("mailto:ops@example.org" or an https URL). Signs one JWT per origin and keeps it for
// `reuse_for`, well under its lifetime `lifetime` (RFC 8292 §2: `exp` at most 24 h ahead), so a
// push service never sees an expired token and we sign about once per origin per `reuse_for`.
// Thread-safe.
class VapidSigner {
 public:
  static constexpr absl::Duration kDefaultLifetime = absl::Hours(12);
  static constexpr absl::Duration kDefaultReuseFor = absl::Hours(6);

  // `private_key_pem`: a PKCS#8 or SEC1 PEM private key on P-256 (PADLOCK_VAPID_PRIVATE_KEY_FILE's
  // contents). InvalidArgument when it is not one, or when `lifetime` is not in (0, 24 h) or
  // `reuse_for` not in (0, lifetime). `clock` must outlive the signer; nullptr is the system clock.
  static absl::StatusOr<std::unique_ptr<VapidSigner>> FromPem(
      std::string_view private_key_pem, std::string subject, const runtime::Clock* clock = nullptr,
      absl::Duration lifetime = kDefaultLifetime, absl::Duration reuse_for = kDefaultReuseFor);
  ~VapidSigner();
  VapidSigner(const VapidSigner&) = delete;
  VapidSigner& operator=(const VapidSigner&) = delete;

  // The 65-byte public key (the `k` parameter; the gateway's GetPushConfig serves the same).
  const std::string& public_key() const { return public_key_; }

  // The value of the `Authorization` header for a push to `endpoint`:
  // "vapid t=<jwt>,k=<base64url public key>". The JWT is cached per origin (see the class
  // comment). InvalidArgument when the endpoint has no origin; Internal on an OpenSSL failure.
  absl::StatusOr<std::string> AuthorizationHeader(std::string_view endpoint);

  // Signs a fresh JWT for `audience` (an origin) expiring at `expiry`, without the cache.
  absl::StatusOr<std::string> SignJwt(std::string_view audience, absl::Time expiry) const;

  // How many JWTs were signed (cache misses), for tests and the metrics.
  int64_t signed_count() const;

 private:
  struct CachedJwt {
    std::string header;  // the whole Authorization value
    absl::Time reuse_until;
  };
  VapidSigner(EVP_PKEY* key, std::string public_key, std::string subject,
              const runtime::Clock* clock, absl::Duration lifetime, absl::Duration reuse_for);

  EVP_PKEY* const key_;  // owned
  const std::string public_key_;
  const std::string subject_;
  const runtime::Clock* const clock_;
  const absl::Duration lifetime_;
  const absl::Duration reuse_for_;
  // std::mutex, not absl::Mutex: TSan cannot see Debian's absl::Mutex (tests/fakes/manual_clock.h).
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, CachedJwt> cache_ ABSL_GUARDED_BY(mu_);
  int64_t signed_count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace padlock::notifier
