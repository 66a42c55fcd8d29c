#pragma once
// The device's side of RFC 8291 for tests, written from the RFCs and independent of
// services/notifier/web_push.cpp: keys from raw bytes, HKDF as HMAC-SHA256 by hand (RFC 5869),
// AES-128-GCM decryption, a fresh device key pair. Used by the unit tests and tests/e2e/push.

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace padlock::notifier::test_util {

inline const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
inline unsigned char* U(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The test's own side of the protocol, written from the RFCs and independent of web_push.cpp's
// helpers: keys from raw bytes, HKDF as HMAC-SHA256 by hand (RFC 5869), AES-GCM decryption.
inline Pkey RawKey(std::string_view point, std::string_view scalar) {
  OSSL_PARAM_BLD* build = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(build, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(build, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  BIGNUM* bn = nullptr;
  if (!scalar.empty()) {
    bn = BN_bin2bn(U(scalar), static_cast<int>(scalar.size()), nullptr);
    OSSL_PARAM_BLD_push_BN(build, OSSL_PKEY_PARAM_PRIV_KEY, bn);
  }
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(build);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* key = nullptr;
  EVP_PKEY_fromdata_init(ctx);
  EVP_PKEY_fromdata(ctx, &key, scalar.empty() ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEYPAIR, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(build);
  BN_free(bn);
  return Pkey(key);
}

inline std::string Hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t length = 0;
  EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(), U(data),
            data.size(), out, sizeof(out), &length);
  return std::string(reinterpret_cast<char*>(out), length);
}

// HKDF for outputs of at most one block (all Web Push needs): T(1) = HMAC(PRK, info || 0x01).
inline std::string HkdfOneBlock(std::string_view salt, std::string_view ikm, std::string_view info,
                         size_t length) {
  const std::string prk = Hmac(salt, ikm);
  return Hmac(prk, std::string(info) + '\x01').substr(0, length);
}

struct Device {
  std::string private_scalar;
  std::string public_point;
  std::string auth;
};

inline Device NewDevice() {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  Device device;
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_PRIV_KEY, &bn);
  device.private_scalar.assign(32, '\0');
  BN_bn2binpad(bn, U(device.private_scalar), 32);
  BN_free(bn);
  device.public_point.assign(65, '\0');
  size_t length = 0;
  EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                  U(device.public_point), 65, &length);
  device.auth = std::string("0123456789abcdef");
  return device;
}

// Decrypts an aes128gcm body as the device would; nullopt when anything fails (wrong key, tag).
inline std::optional<std::string> Decrypt(std::string_view body, const Device& device) {
  if (body.size() < 86 + 16 || static_cast<unsigned char>(body[20]) != 65) return std::nullopt;
  const std::string_view salt = body.substr(0, 16);
  const std::string_view sender_public = body.substr(21, 65);
  const std::string_view ciphertext = body.substr(86);
  Pkey own = RawKey(device.public_point, device.private_scalar);
  Pkey peer = RawKey(sender_public, "");
  if (own == nullptr || peer == nullptr) return std::nullopt;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_pkey(nullptr, own.get(), nullptr);
  std::string ecdh(32, '\0');
  size_t ecdh_length = ecdh.size();
  const bool derived = EVP_PKEY_derive_init(ctx) == 1 &&
                       EVP_PKEY_derive_set_peer(ctx, peer.get()) == 1 &&
                       EVP_PKEY_derive(ctx, U(ecdh), &ecdh_length) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!derived) return std::nullopt;
  const std::string key_info =
      std::string("WebPush: info", 14) + device.public_point + std::string(sender_public);
  const std::string ikm = HkdfOneBlock(device.auth, ecdh, key_info, 32);
  const std::string cek =
      HkdfOneBlock(salt, ikm, std::string("Content-Encoding: aes128gcm", 28), 16);
  const std::string nonce = HkdfOneBlock(salt, ikm, std::string("Content-Encoding: nonce", 24), 12);

  const std::string_view sealed = ciphertext.substr(0, ciphertext.size() - 16);
  std::string tag(ciphertext.substr(ciphertext.size() - 16));
  std::string plain(sealed.size(), '\0');
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  int n = 0;
  int f = 0;
  const bool ok = EVP_DecryptInit_ex2(c, EVP_aes_128_gcm(), U(cek), U(nonce), nullptr) == 1 &&
                  EVP_DecryptUpdate(c, U(plain), &n, U(sealed),
                                    static_cast<int>(sealed.size())) == 1 &&
                  EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, U(tag)) == 1 &&
                  EVP_DecryptFinal_ex(c, U(plain) + n, &f) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) return std::nullopt;
  // RFC 8188 §2: strip the zero padding, then the delimiter, which must be 0x02 (last record).
  const size_t last = plain.find_last_not_of('\0');
  if (last == std::string::npos || plain[last] != '\x02') return std::nullopt;
  return plain.substr(0, last);
}

}  // namespace padlock::notifier::test_util
