#include "services/message_queue/dedupe_id.h"

#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::message_queue {
namespace {

constexpr std::string_view kLabel{"padlock-dedupe-v1\0", 18};

void AppendU32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

std::string RandomSecret() {
  std::string secret(DedupeIds::kMinSecretBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()),
                 static_cast<int>(secret.size())) != 1) {
    std::abort();  // no randomness: nothing safe to fall back to
  }
  return secret;
}

}  // namespace

DedupeIds::DedupeIds(std::string secret)
    : secret_(secret.empty() ? RandomSecret() : std::move(secret)) {
  if (secret_.size() < kMinSecretBytes) std::abort();  // runtime::ParseSecret rejects these
  std::string input = "padlock-dedupe-key-id-v1";
  input.append(secret_);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  key_id_ = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), 4));
}

std::string DedupeIds::ForSend(std::string_view sender_user, uint32_t sender_device,
                               std::string_view message_id) const {
  // Length-prefixed user, fixed-width device: no two (user, device, id) share an input.
  std::string input(kLabel);
  AppendU32(&input, static_cast<uint32_t>(sender_user.size()));
  input.append(sender_user);
  AppendU32(&input, sender_device);
  input.append(message_id);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
           &mac_len) == nullptr ||
      mac_len < kIdBytes) {
    std::abort();  // HMAC-SHA256 over memory cannot fail short of a broken libcrypto
  }
  return std::string(reinterpret_cast<const char*>(mac), kIdBytes);
}

}  // namespace padlock::message_queue
