#include "services/gateway/session_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::gateway {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kKeyIdSize = 4;
constexpr size_t kMacSize = 32;
// version, key id, device id, device-list version, expiry, user id length.
constexpr size_t kFixedSize = 1 + kKeyIdSize + 4 + 8 + 8 + 1;
constexpr size_t kMaxUserId = 255;

void PutBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian(std::string_view in, size_t offset, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) {
    value = (value << 8) | static_cast<uint8_t>(in[offset + static_cast<size_t>(i)]);
  }
  return value;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
           &mac_len) == nullptr ||
      mac_len != kMacSize) {
    std::abort();  // OpenSSL cannot fail here short of memory exhaustion.
  }
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

absl::Status Invalid() { return absl::UnauthenticatedError(kInvalidTokenMessage); }

}  // namespace

SessionTokens::Key SessionTokens::MakeKey(std::string secret) {
  std::string input = "padlock-token-key-id-v1";
  input.append(secret);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return Key{std::move(secret), std::string(reinterpret_cast<const char*>(digest), kKeyIdSize)};
}

SessionTokens::SessionTokens(std::string secret, std::string previous)
    : current_(MakeKey(std::move(secret))) {
  if (!previous.empty()) previous_ = MakeKey(std::move(previous));
}

std::string SessionTokens::current_key_id() const { return absl::BytesToHexString(current_.id); }

std::string SessionTokens::Issue(const SessionClaims& claims) const {
  if (claims.user_id.empty() || claims.user_id.size() > kMaxUserId) std::abort();
  std::string payload;
  payload.reserve(kFixedSize + claims.user_id.size() + kMacSize);
  payload.push_back(static_cast<char>(kVersion));
  payload.append(current_.id);
  PutBigEndian(payload, claims.device_id, 4);
  PutBigEndian(payload, claims.device_list_version, 8);
  PutBigEndian(payload, static_cast<uint64_t>(absl::ToUnixMillis(claims.expires_at)), 8);
  PutBigEndian(payload, claims.user_id.size(), 1);
  payload.append(claims.user_id);
  payload.append(HmacSha256(current_.secret, payload));
  return absl::WebSafeBase64Escape(payload);
}

absl::StatusOr<SessionClaims> SessionTokens::Verify(std::string_view token,
                                                    absl::Time now) const {
  // Bound the input before decoding (a token is at most ~400 characters).
  if (token.empty() || token.size() > 1024) return Invalid();
  std::string raw;
  if (!absl::WebSafeBase64Unescape(std::string(token), &raw)) return Invalid();
  if (raw.size() < kFixedSize + kMacSize) return Invalid();
  const size_t user_len = static_cast<uint8_t>(raw[kFixedSize - 1]);
  if (user_len == 0 || raw.size() != kFixedSize + user_len + kMacSize) return Invalid();
  if (static_cast<uint8_t>(raw[0]) != kVersion) return Invalid();
  const std::string_view payload(raw.data(), kFixedSize + user_len);
  const std::string_view mac(raw.data() + payload.size(), kMacSize);
  const std::string_view key_id(raw.data() + 1, kKeyIdSize);
  const Key* key = nullptr;
  if (key_id == current_.id) {
    key = &current_;
  } else if (previous_.has_value() && key_id == previous_->id) {
    key = &*previous_;
  }
  if (key == nullptr) return Invalid();
  const std::string expected = HmacSha256(key->secret, payload);
  if (CRYPTO_memcmp(expected.data(), mac.data(), kMacSize) != 0) return Invalid();

  SessionClaims claims;
  claims.device_id = static_cast<uint32_t>(GetBigEndian(raw, 1 + kKeyIdSize, 4));
  claims.device_list_version = GetBigEndian(raw, 1 + kKeyIdSize + 4, 8);
  const uint64_t expiry_ms = GetBigEndian(raw, 1 + kKeyIdSize + 12, 8);
  if (expiry_ms > static_cast<uint64_t>(INT64_MAX)) return Invalid();
  claims.expires_at = absl::FromUnixMillis(static_cast<int64_t>(expiry_ms));
  claims.user_id.assign(raw.data() + kFixedSize, user_len);
  claims.key_id = absl::BytesToHexString(ToAbsl(key_id));
  if (now >= claims.expires_at) return Invalid();
  return claims;
}

}  // namespace padlock::gateway
