#include "services/notifier/web_push.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/json_string.h"

namespace padlock::notifier {
namespace {

// Origins whose JWT is kept. Endpoints are chosen by clients, so the cache is bounded: beyond
// this, expired entries go, and if none had expired the whole cache is dropped (a re-sign costs
// one ECDSA signature per origin).
constexpr size_t kMaxCachedOrigins = 4096;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct KdfFree {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* Bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

// A P-256 key from its raw parts: the public point always, the private scalar when not empty.
absl::StatusOr<Pkey> P256Key(std::string_view public_point, std::string_view private_scalar) {
  if (public_point.size() != kP256PublicKeyBytes || public_point[0] != 0x04) {
    return absl::InvalidArgumentError("not an uncompressed P-256 public key");
  }
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> build(OSSL_PARAM_BLD_new());
  std::unique_ptr<BIGNUM, BnFree> scalar;
  if (build == nullptr) return absl::InternalError("OSSL_PARAM_BLD_new failed");
  if (OSSL_PARAM_BLD_push_utf8_string(build.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(build.get(), OSSL_PKEY_PARAM_PUB_KEY, public_point.data(),
                                       public_point.size()) != 1) {
    return absl::InternalError("building P-256 key parameters failed");
  }
  if (!private_scalar.empty()) {
    if (private_scalar.size() != kP256PrivateKeyBytes) {
      return absl::InvalidArgumentError("a P-256 private key is 32 bytes");
    }
    scalar.reset(BN_bin2bn(Bytes(private_scalar), static_cast<int>(private_scalar.size()),
                           nullptr));
    if (scalar == nullptr ||
        OSSL_PARAM_BLD_push_BN(build.get(), OSSL_PKEY_PARAM_PRIV_KEY, scalar.get()) != 1) {
      return absl::InternalError("building P-256 key parameters failed");
    }
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(build.get()));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1) {
    return absl::InternalError("EVP_PKEY_fromdata_init failed");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw,
                        private_scalar.empty() ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEYPAIR,
                        params.get()) != 1) {
    return absl::InvalidArgumentError("not a P-256 key");
  }
  Pkey key(raw);
  // fromdata does not check that the point is on the curve; a peer's point off the curve is the
  // classic invalid-curve attack on ECDH, so check it (and the pair's consistency) here.
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
      EVP_PKEY_CTX_new_from_pkey(nullptr, raw, nullptr));
  if (check == nullptr) return absl::InternalError("EVP_PKEY_CTX_new_from_pkey failed");
  if (EVP_PKEY_public_check(check.get()) != 1 ||
      (!private_scalar.empty() && EVP_PKEY_pairwise_check(check.get()) != 1)) {
    return absl::InvalidArgumentError("not a valid P-256 key");
  }
  return key;
}

absl::StatusOr<std::string> PublicPoint(EVP_PKEY* key) {
  std::string point(kP256PublicKeyBytes, '\0');
  size_t length = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, Bytes(point),
                                      point.size(), &length) != 1 ||
      length != point.size() || point[0] != 0x04) {
    return absl::InternalError("reading a P-256 public key failed");
  }
  return point;
}

absl::StatusOr<std::string> Ecdh(EVP_PKEY* own, EVP_PKEY* peer) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own, nullptr));
  size_t length = 0;
  if (ctx == nullptr || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &length) != 1) {
    return absl::InternalError("ECDH failed");
  }
  std::string secret(length, '\0');
  if (EVP_PKEY_derive(ctx.get(), Bytes(secret), &length) != 1) {
    return absl::InternalError("ECDH failed");
  }
  secret.resize(length);
  return secret;
}

// HKDF-SHA256 (RFC 5869), extract then expand.
absl::StatusOr<std::string> Hkdf(std::string_view salt, std::string_view ikm, std::string_view info,
                                 size_t length) {
  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (kdf == nullptr) return absl::InternalError("HKDF unavailable");
  std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (ctx == nullptr) return absl::InternalError("EVP_KDF_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()),
                                        ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                        info.size()),
      OSSL_PARAM_construct_end()};
  std::string out(length, '\0');
  if (EVP_KDF_derive(ctx.get(), Bytes(out), out.size(), params) != 1) {
    return absl::InternalError("HKDF failed");
  }
  return out;
}

std::string Info(std::string_view label) {
  std::string info(label);
  info.push_back('\0');
  return info;
}

}  // namespace

std::string Base64UrlEncode(std::string_view bytes) {
  return absl::WebSafeBase64Escape(ToAbsl(bytes));
}

absl::StatusOr<std::string> Base64UrlDecode(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '=')) {
      return absl::InvalidArgumentError("not base64url");
    }
  }
  if (!absl::WebSafeBase64Unescape(ToAbsl(text), &out)) {
    return absl::InvalidArgumentError("not base64url");
  }
  return out;
}

absl::StatusOr<EncryptionSecrets> RandomEncryptionSecrets() {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (key == nullptr) return absl::InternalError("P-256 key generation failed");
  EncryptionSecrets secrets;
  BIGNUM* scalar = nullptr;
  if (EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_PRIV_KEY, &scalar) != 1) {
    return absl::InternalError("reading a P-256 private key failed");
  }
  std::unique_ptr<BIGNUM, BnFree> owned(scalar);
  secrets.sender_private.assign(kP256PrivateKeyBytes, '\0');
  constexpr int kScalarBytes = static_cast<int>(kP256PrivateKeyBytes);
  if (BN_bn2binpad(scalar, Bytes(secrets.sender_private), kScalarBytes) != kScalarBytes) {
    return absl::InternalError("reading a P-256 private key failed");
  }
  absl::StatusOr<std::string> point = PublicPoint(key.get());
  if (!point.ok()) return point.status();
  secrets.sender_public = *std::move(point);
  secrets.salt.assign(kWebPushSaltBytes, '\0');
  if (RAND_bytes(Bytes(secrets.salt), static_cast<int>(secrets.salt.size())) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return secrets;
}

absl::StatusOr<std::string> EncryptAes128gcm(std::string_view plaintext, std::string_view p256dh,
                                             std::string_view auth,
                                             const EncryptionSecrets& secrets,
                                             size_t padded_size) {
  if (auth.size() != kWebPushAuthBytes) {
    return absl::InvalidArgumentError("the auth secret is 16 bytes");
  }
  if (secrets.salt.size() != kWebPushSaltBytes) {
    return absl::InvalidArgumentError("the salt is 16 bytes");
  }
  const size_t record_plaintext = padded_size == 0 ? plaintext.size() + 1 : padded_size;
  if (plaintext.size() + 1 > record_plaintext ||
      record_plaintext + kAesGcmTagBytes > kWebPushRecordSize) {
    return absl::InvalidArgumentError("the plaintext does not fit the padded record");
  }
  absl::StatusOr<Pkey> device = P256Key(p256dh, "");
  if (!device.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("p256dh: ", device.status().message()));
  }
  absl::StatusOr<Pkey> sender = P256Key(secrets.sender_public, secrets.sender_private);
  if (!sender.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sender key: ", sender.status().message()));
  }

  // RFC 8291 §3.3-3.4 and RFC 8188 §2.2-2.3.
  absl::StatusOr<std::string> ecdh = Ecdh(sender->get(), device->get());
  if (!ecdh.ok()) return ecdh.status();
  const std::string key_info =
      absl::StrCat(Info("WebPush: info"), ToAbsl(p256dh), secrets.sender_public);
  absl::StatusOr<std::string> ikm = Hkdf(auth, *ecdh, key_info, 32);
  if (!ikm.ok()) return ikm.status();
  absl::StatusOr<std::string> cek =
      Hkdf(secrets.salt, *ikm, Info("Content-Encoding: aes128gcm"), 16);
  if (!cek.ok()) return cek.status();
  // One record: sequence number 0, so the nonce is the derived one unchanged.
  absl::StatusOr<std::string> nonce = Hkdf(secrets.salt, *ikm, Info("Content-Encoding: nonce"), 12);
  if (!nonce.ok()) return nonce.status();

  std::string record(record_plaintext, '\0');
  std::copy(plaintext.begin(), plaintext.end(), record.begin());
  record[plaintext.size()] = '\x02';  // last-record delimiter; the zeros after it are padding

  std::string body;
  body.reserve(kAes128gcmHeaderBytes + record.size() + kAesGcmTagBytes);
  body.append(secrets.salt);
  const uint32_t rs = kWebPushRecordSize;
  for (int shift : {24, 16, 8, 0}) body.push_back(static_cast<char>((rs >> shift) & 0xff));
  body.push_back(static_cast<char>(kP256PublicKeyBytes));
  body.append(secrets.sender_public);

  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  std::string ciphertext(record.size() + kAesGcmTagBytes, '\0');
  int written = 0;
  int final_written = 0;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex2(ctx.get(), EVP_aes_128_gcm(), Bytes(*cek), Bytes(*nonce), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), Bytes(ciphertext), &written, Bytes(record),
                        static_cast<int>(record.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), Bytes(ciphertext) + written, &final_written) != 1 ||
      static_cast<size_t>(written + final_written) != record.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAesGcmTagBytes),
                          Bytes(ciphertext) + record.size()) != 1) {
    return absl::InternalError("AES-128-GCM failed");
  }
  body.append(ciphertext);
  return body;
}

absl::StatusOr<std::string> EndpointOrigin(std::string_view endpoint) {
  const size_t colon = endpoint.find("://");
  if (colon == std::string_view::npos) return absl::InvalidArgumentError("endpoint: no scheme");
  const std::string scheme = absl::AsciiStrToLower(ToAbsl(endpoint.substr(0, colon)));
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError("endpoint: not http or https");
  }
  std::string_view authority = endpoint.substr(colon + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) {
    return absl::InvalidArgumentError("endpoint: user info");
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("endpoint: bad host");
    host = authority.substr(0, close + 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return absl::InvalidArgumentError("endpoint: bad host");
      port = rest.substr(1);
    }
  } else if (const size_t c = authority.rfind(':'); c != std::string_view::npos) {
    host = authority.substr(0, c);
    port = authority.substr(c + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError("endpoint: no host");
  for (char ch : host) {
    if (static_cast<unsigned char>(ch) <= 0x20 || static_cast<unsigned char>(ch) >= 0x7f) {
      return absl::InvalidArgumentError("endpoint: bad host");
    }
  }
  std::string origin = absl::StrCat(scheme, "://", absl::AsciiStrToLower(ToAbsl(host)));
  if (!port.empty()) {
    int number = 0;
    if (!absl::SimpleAtoi(ToAbsl(port), &number) || number <= 0 || number > 65535 ||
        !std::all_of(port.begin(), port.end(), [](char d) { return d >= '0' && d <= '9'; })) {
      return absl::InvalidArgumentError("endpoint: bad port");
    }
    if (!((scheme == "https" && number == 443) || (scheme == "http" && number == 80))) {
      absl::StrAppend(&origin, ":", number);
    }
  }
  return origin;
}

absl::StatusOr<std::unique_ptr<VapidSigner>> VapidSigner::FromPem(
    std::string_view private_key_pem, std::string subject, const runtime::Clock* clock,
    absl::Duration lifetime, absl::Duration reuse_for) {
  if (lifetime <= absl::ZeroDuration() || lifetime >= absl::Hours(24)) {
    return absl::InvalidArgumentError("VAPID: the JWT lifetime must be under 24 h");
  }
  if (reuse_for <= absl::ZeroDuration() || reuse_for >= lifetime) {
    return absl::InvalidArgumentError("VAPID: a JWT must be reused for less than its lifetime");
  }
  BIO* bio = BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size()));
  if (bio == nullptr) return absl::InternalError("VAPID key: out of memory");
  Pkey key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  if (key == nullptr) return absl::InvalidArgumentError("VAPID key: no PEM private key");
  char group[32] = {0};
  size_t group_length = 0;
  if (!EVP_PKEY_is_a(key.get(), "EC") ||
      EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                     &group_length) != 1 ||
      std::string_view(group, group_length) != "prime256v1") {
    return absl::InvalidArgumentError("VAPID key: not a P-256 key");
  }
  absl::StatusOr<std::string> point = PublicPoint(key.get());
  if (!point.ok()) return point.status();
  return std::unique_ptr<VapidSigner>(new VapidSigner(
      key.release(), *std::move(point), std::move(subject),
      clock != nullptr ? clock : runtime::SystemClock::Get(), lifetime, reuse_for));
}

VapidSigner::VapidSigner(EVP_PKEY* key, std::string public_key, std::string subject,
                         const runtime::Clock* clock, absl::Duration lifetime,
                         absl::Duration reuse_for)
    : key_(key),
      public_key_(std::move(public_key)),
      subject_(std::move(subject)),
      clock_(clock),
      lifetime_(lifetime),
      reuse_for_(reuse_for) {}

VapidSigner::~VapidSigner() { EVP_PKEY_free(key_); }

int64_t VapidSigner::signed_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return signed_count_;
}

absl::StatusOr<std::string> VapidSigner::SignJwt(std::string_view audience,
                                                 absl::Time expiry) const {
  const std::string header = Base64UrlEncode(R"({"typ":"JWT","alg":"ES256"})");
  const std::string claims = Base64UrlEncode(absl::StrCat(
      R"({"aud":)", runtime::JsonString(audience), R"(,"exp":)", absl::ToUnixSeconds(expiry),
      R"(,"sub":)", runtime::JsonString(subject_), "}"));
  const std::string signing_input = absl::StrCat(header, ".", claims);

  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  size_t der_length = 0;
  if (ctx == nullptr ||
      EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key_, nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &der_length, Bytes(signing_input),
                     signing_input.size()) != 1) {
    return absl::InternalError("VAPID: ECDSA signing failed");
  }
  std::string der(der_length, '\0');
  if (EVP_DigestSign(ctx.get(), Bytes(der), &der_length, Bytes(signing_input),
                     signing_input.size()) != 1) {
    return absl::InternalError("VAPID: ECDSA signing failed");
  }
  // JWS (RFC 7518 §3.4) wants r || s, each 32 bytes big-endian, not OpenSSL's DER.
  const unsigned char* cursor = Bytes(der);
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(
      d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der_length)));
  if (sig == nullptr) return absl::InternalError("VAPID: bad ECDSA signature encoding");
  std::string raw(64, '\0');
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), Bytes(raw), 32) != 32 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), Bytes(raw) + 32, 32) != 32) {
    return absl::InternalError("VAPID: bad ECDSA signature");
  }
  return absl::StrCat(signing_input, ".", Base64UrlEncode(raw));
}

absl::StatusOr<std::string> VapidSigner::AuthorizationHeader(std::string_view endpoint) {
  absl::StatusOr<std::string> origin = EndpointOrigin(endpoint);
  if (!origin.ok()) return origin.status();
  const absl::Time now = clock_->Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(*origin);
    if (it != cache_.end() && now < it->second.reuse_until) return it->second.header;
  }
  // Signed outside the lock: two threads may both sign for one origin; either token is valid.
  absl::StatusOr<std::string> jwt = SignJwt(*origin, now + lifetime_);
  if (!jwt.ok()) return jwt.status();
  // RFC 8292 allows optional white space after the comma; without it, strict parsers (py_vapid's
  // among them) read the header too.
  std::string header = absl::StrCat("vapid t=", *jwt, ",k=", Base64UrlEncode(public_key_));
  std::lock_guard<std::mutex> lock(mu_);
  ++signed_count_;
  if (cache_.size() >= kMaxCachedOrigins && !cache_.contains(*origin)) {
    absl::erase_if(cache_, [now](const auto& entry) { return entry.second.reuse_until <= now; });
    if (cache_.size() >= kMaxCachedOrigins) cache_.clear();
  }
  cache_[*origin] = CachedJwt{header, now + reuse_for_};
  return header;
}

}  // namespace padlock::notifier
