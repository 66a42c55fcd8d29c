#include "clients/sdk/crypto_provider.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace padlock::client {
namespace {

constexpr size_t kAesBlockSize = 16;
constexpr size_t kSha256Size = 32;
// OpenSSL's cipher and RAND interfaces take int lengths; larger inputs are refused rather than
// truncated (libsignal never comes near this: messages are kilobytes).
constexpr size_t kMaxOpenSslLength = static_cast<size_t>(INT_MAX) - 2 * kAesBlockSize;

int Random(uint8_t* data, size_t len, void* /*user_data*/) {
  while (len > 0) {
    const size_t chunk = std::min(len, kMaxOpenSslLength);
    if (RAND_bytes(data, static_cast<int>(chunk)) != 1) return SG_ERR_UNKNOWN;
    data += chunk;
    len -= chunk;
  }
  return SG_SUCCESS;
}

// The HMAC algorithm object is fetched once per process and never freed (contexts made from it
// may outlive any owner we could pick).
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

int HmacInit(void** hmac_context, const uint8_t* key, size_t key_len, void* /*user_data*/) {
  EVP_MAC* mac = HmacAlgorithm();
  if (mac == nullptr) return SG_ERR_UNKNOWN;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) return SG_ERR_NOMEM;
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  // EVP_MAC_init(ctx, NULL, 0) means "keep the previous key" and fails on a fresh context, so an
  // empty key is passed as a non-null pointer with length 0.
  static const uint8_t kEmptyKey = 0;
  const uint8_t* key_ptr = key != nullptr ? key : &kEmptyKey;
  if (EVP_MAC_init(ctx, key_ptr, key_len, params) != 1) {
    EVP_MAC_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *hmac_context = ctx;
  return SG_SUCCESS;
}

int HmacUpdate(void* hmac_context, const uint8_t* data, size_t data_len, void* /*user_data*/) {
  if (data_len == 0) return SG_SUCCESS;
  return EVP_MAC_update(static_cast<EVP_MAC_CTX*>(hmac_context), data, data_len) == 1
             ? SG_SUCCESS
             : SG_ERR_UNKNOWN;
}

int HmacFinal(void* hmac_context, signal_buffer** output, void* /*user_data*/) {
  uint8_t mac[kSha256Size];
  size_t mac_len = 0;
  if (EVP_MAC_final(static_cast<EVP_MAC_CTX*>(hmac_context), mac, &mac_len, sizeof(mac)) != 1 ||
      mac_len != kSha256Size) {
    return SG_ERR_UNKNOWN;
  }
  signal_buffer* buffer = signal_buffer_create(mac, mac_len);
  OPENSSL_cleanse(mac, sizeof(mac));
  if (buffer == nullptr) return SG_ERR_NOMEM;
  *output = buffer;
  return SG_SUCCESS;
}

void HmacCleanup(void* hmac_context, void* /*user_data*/) {
  EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(hmac_context));
}

int Sha512Init(void** digest_context, void* /*user_data*/) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return SG_ERR_NOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *digest_context = ctx;
  return SG_SUCCESS;
}

int Sha512Update(void* digest_context, const uint8_t* data, size_t data_len, void* /*user_data*/) {
  if (data_len == 0) return SG_SUCCESS;
  return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(digest_context), data, data_len) == 1
             ? SG_SUCCESS
             : SG_ERR_UNKNOWN;
}

int Sha512Final(void* digest_context, signal_buffer** output, void* /*user_data*/) {
  auto* ctx = static_cast<EVP_MD_CTX*>(digest_context);
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_DigestFinal_ex(ctx, digest, &digest_len) != 1) return SG_ERR_UNKNOWN;
  // libsignal's fingerprint code loops update/final on one context: final must leave it ready
  // for a fresh digest. Forgetting this raises no error, only wrong safety numbers.
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) return SG_ERR_UNKNOWN;
  signal_buffer* buffer = signal_buffer_create(digest, digest_len);
  if (buffer == nullptr) return SG_ERR_NOMEM;
  *output = buffer;
  return SG_SUCCESS;
}

void Sha512Cleanup(void* digest_context, void* /*user_data*/) {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(digest_context));
}

const EVP_CIPHER* SelectCipher(int cipher, size_t key_len) {
  if (cipher == SG_CIPHER_AES_CBC_PKCS5) {
    switch (key_len) {
      case 16: return EVP_aes_128_cbc();
      case 24: return EVP_aes_192_cbc();
      case 32: return EVP_aes_256_cbc();
      default: return nullptr;
    }
  }
  if (cipher == SG_CIPHER_AES_CTR_NOPADDING) {
    switch (key_len) {
      case 16: return EVP_aes_128_ctr();
      case 24: return EVP_aes_192_ctr();
      case 32: return EVP_aes_256_ctr();
      default: return nullptr;
    }
  }
  return nullptr;
}

// One AES pass in either direction. CBC pads with PKCS#5 (checked on decrypt); CTR is a stream
// mode and never pads.
int AesCrypt(bool encrypt, signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
             const uint8_t* iv, size_t iv_len, const uint8_t* input, size_t input_len) {
  const EVP_CIPHER* evp_cipher = SelectCipher(cipher, key_len);
  if (evp_cipher == nullptr || key == nullptr || iv == nullptr || iv_len != kAesBlockSize ||
      input_len > kMaxOpenSslLength || (input == nullptr && input_len != 0)) {
    return SG_ERR_INVAL;
  }
  static const uint8_t kEmptyInput = 0;
  if (input == nullptr) input = &kEmptyInput;

  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return SG_ERR_NOMEM;
  std::vector<uint8_t> out(input_len + kAesBlockSize);
  int result = SG_ERR_UNKNOWN;
  int update_len = 0;
  int final_len = 0;
  if (EVP_CipherInit_ex(ctx, evp_cipher, nullptr, key, iv, encrypt ? 1 : 0) == 1 &&
      EVP_CIPHER_CTX_set_padding(ctx, cipher == SG_CIPHER_AES_CBC_PKCS5 ? 1 : 0) == 1 &&
      EVP_CipherUpdate(ctx, out.data(), &update_len, input, static_cast<int>(input_len)) == 1 &&
      EVP_CipherFinal_ex(ctx, out.data() + update_len, &final_len) == 1) {
    signal_buffer* buffer =
        signal_buffer_create(out.data(), static_cast<size_t>(update_len + final_len));
    if (buffer == nullptr) {
      result = SG_ERR_NOMEM;
    } else {
      *output = buffer;
      result = SG_SUCCESS;
    }
  }
  EVP_CIPHER_CTX_free(ctx);
  OPENSSL_cleanse(out.data(), out.size());  // may hold plaintext
  return result;
}

int Encrypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
            const uint8_t* iv, size_t iv_len, const uint8_t* plaintext, size_t plaintext_len,
            void* /*user_data*/) {
  return AesCrypt(true, output, cipher, key, key_len, iv, iv_len, plaintext, plaintext_len);
}

int Decrypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
            const uint8_t* iv, size_t iv_len, const uint8_t* ciphertext, size_t ciphertext_len,
            void* /*user_data*/) {
  return AesCrypt(false, output, cipher, key, key_len, iv, iv_len, ciphertext, ciphertext_len);
}

}  // namespace

signal_crypto_provider OpenSslCryptoProvider() {
  signal_crypto_provider provider{};
  provider.random_func = Random;
  provider.hmac_sha256_init_func = HmacInit;
  provider.hmac_sha256_update_func = HmacUpdate;
  provider.hmac_sha256_final_func = HmacFinal;
  provider.hmac_sha256_cleanup_func = HmacCleanup;
  provider.sha512_digest_init_func = Sha512Init;
  provider.sha512_digest_update_func = Sha512Update;
  provider.sha512_digest_final_func = Sha512Final;
  provider.sha512_digest_cleanup_func = Sha512Cleanup;
  provider.encrypt_func = Encrypt;
  provider.decrypt_func = Decrypt;
  provider.user_data = nullptr;
  return provider;
}

absl::StatusOr<std::unique_ptr<SignalContext>> SignalContext::Create() {
  std::unique_ptr<SignalContext> context(new SignalContext());
  int rc = signal_context_create(&context->context_, context.get());
  if (rc != SG_SUCCESS) {
    context->context_ = nullptr;
    return absl::InternalError(absl::StrCat("signal_context_create failed: ", rc));
  }
  const signal_crypto_provider provider = OpenSslCryptoProvider();
  rc = signal_context_set_crypto_provider(context->context_, &provider);
  if (rc != SG_SUCCESS) {
    return absl::InternalError(absl::StrCat("signal_context_set_crypto_provider failed: ", rc));
  }
  rc = signal_context_set_locking_functions(context->context_, &SignalContext::Lock,
                                            &SignalContext::Unlock);
  if (rc != SG_SUCCESS) {
    return absl::InternalError(absl::StrCat("signal_context_set_locking_functions failed: ", rc));
  }
  return context;
}

SignalContext::~SignalContext() {
  if (context_ != nullptr) signal_context_destroy(context_);
}

void SignalContext::Lock(void* user_data) {
  static_cast<SignalContext*>(user_data)->mutex_.lock();
}

void SignalContext::Unlock(void* user_data) {
  static_cast<SignalContext*>(user_data)->mutex_.unlock();
}

}  // namespace padlock::client
