#include "services/notifier/web_push.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/runtime/absl_compat.h"
#include "services/notifier/push_policy.h"
#include "tests/fakes/manual_clock.h"
#include "tests/unit/notifier/web_push_test_util.h"

namespace padlock::notifier {
namespace {

using ::testing::HasSubstr;
using test_util::Decrypt;
using test_util::Device;
using test_util::NewDevice;
using test_util::Pkey;
using test_util::RawKey;
using test_util::U;
using ::testing::StartsWith;

// RFC 8291 Appendix A.
constexpr char kRfcPlaintext[] = "When I grow up, I want to be a watermelon";
constexpr char kRfcAsPrivate[] = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
constexpr char kRfcAsPublic[] =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
constexpr char kRfcUaPrivate[] = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
constexpr char kRfcUaPublic[] =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
constexpr char kRfcSalt[] = "DGv6ra1nlYgDCS1FRnbzlw";
constexpr char kRfcAuth[] = "BTBZMqHH6r4Tts7J_aSIgg";
constexpr char kRfcBody[] =
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

std::string B64(std::string_view text) {
  absl::StatusOr<std::string> raw = Base64UrlDecode(text);
  EXPECT_TRUE(raw.ok()) << text;
  return raw.value_or("");
}

TEST(WebPushEncryption, ReproducesRfc8291AppendixA) {
  const EncryptionSecrets secrets{B64(kRfcAsPrivate), B64(kRfcAsPublic), B64(kRfcSalt)};
  absl::StatusOr<std::string> body =
      EncryptAes128gcm(kRfcPlaintext, B64(kRfcUaPublic), B64(kRfcAuth), secrets);
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(Base64UrlEncode(*body), kRfcBody);
}

TEST(WebPushEncryption, TestDecryptOpensTheRfcExample) {
  // Holds the test's decrypt itself to the RFC, so the round trips below prove something.
  const Device ua{B64(kRfcUaPrivate), B64(kRfcUaPublic), B64(kRfcAuth)};
  EXPECT_EQ(Decrypt(B64(kRfcBody), ua), std::optional<std::string>(kRfcPlaintext));
}

TEST(WebPushEncryption, RoundTripsWithRandomSecretsAndFixedPadding) {
  const Device device = NewDevice();
  for (std::string plaintext : {std::string("w"), std::string(R"({"v":1,"t":"wake"})"),
                                std::string(200, 'x')}) {
    absl::StatusOr<EncryptionSecrets> secrets = RandomEncryptionSecrets();
    ASSERT_TRUE(secrets.ok()) << secrets.status();
    absl::StatusOr<std::string> body =
        EncryptAes128gcm(plaintext, device.public_point, device.auth, *secrets, 256);
    ASSERT_TRUE(body.ok()) << body.status();
    EXPECT_EQ(body->size(), kAes128gcmHeaderBytes + 256 + kAesGcmTagBytes) << plaintext;
    EXPECT_EQ(body->substr(16, 4), std::string("\x00\x00\x10\x00", 4));  // rs = 4096
    EXPECT_EQ(Decrypt(*body, device), std::optional<std::string>(plaintext));
  }
}

TEST(WebPushEncryption, EveryMessageHasItsOwnSaltAndSenderKey) {
  const Device device = NewDevice();
  absl::StatusOr<EncryptionSecrets> a = RandomEncryptionSecrets();
  absl::StatusOr<EncryptionSecrets> b = RandomEncryptionSecrets();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->salt, b->salt);
  EXPECT_NE(a->sender_public, b->sender_public);
  EXPECT_NE(*EncryptAes128gcm("w", device.public_point, device.auth, *a, 64),
            *EncryptAes128gcm("w", device.public_point, device.auth, *b, 64));
}

TEST(WebPushEncryption, OtherDeviceOrAuthCannotDecrypt) {
  const Device device = NewDevice();
  absl::StatusOr<EncryptionSecrets> secrets = RandomEncryptionSecrets();
  ASSERT_TRUE(secrets.ok());
  absl::StatusOr<std::string> body =
      EncryptAes128gcm("wake", device.public_point, device.auth, *secrets, 64);
  ASSERT_TRUE(body.ok());
  Device other = NewDevice();
  EXPECT_EQ(Decrypt(*body, other), std::nullopt);
  Device wrong_auth = device;
  wrong_auth.auth = "fedcba9876543210";
  EXPECT_EQ(Decrypt(*body, wrong_auth), std::nullopt);
}

TEST(WebPushEncryption, RefusesBadInputs) {
  const Device device = NewDevice();
  absl::StatusOr<EncryptionSecrets> secrets = RandomEncryptionSecrets();
  ASSERT_TRUE(secrets.ok());
  EXPECT_EQ(EncryptAes128gcm("wake", device.public_point, "short", *secrets).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string off_curve = device.public_point;
  off_curve[40] ^= 0x01;
  EXPECT_EQ(EncryptAes128gcm("wake", off_curve, device.auth, *secrets).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncryptAes128gcm("wake", device.public_point.substr(1), device.auth, *secrets)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Padding smaller than plaintext + delimiter, and a record beyond 4096 bytes.
  EXPECT_EQ(EncryptAes128gcm("wake", device.public_point, device.auth, *secrets, 4)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncryptAes128gcm("wake", device.public_point, device.auth, *secrets, 4081)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(EncryptAes128gcm("wake", device.public_point, device.auth, *secrets, 4080).ok());
}

TEST(EndpointOrigin, KeepsSchemeHostAndNonDefaultPort) {
  EXPECT_EQ(*EndpointOrigin("https://Push.Example.NET/wpush/v2/abc?x=1"),
            "https://push.example.net");
  EXPECT_EQ(*EndpointOrigin("https://push.example.net:443/a"), "https://push.example.net");
  EXPECT_EQ(*EndpointOrigin("http://127.0.0.1:8080/p"), "http://127.0.0.1:8080");
  EXPECT_EQ(*EndpointOrigin("HTTP://localhost:80"), "http://localhost");
  EXPECT_EQ(*EndpointOrigin("https://[2001:db8::1]:8443/p"), "https://[2001:db8::1]:8443");
  EXPECT_FALSE(EndpointOrigin("ftp://example.net/").ok());
  EXPECT_FALSE(EndpointOrigin("https:///path").ok());
  EXPECT_FALSE(EndpointOrigin("https://u:p@example.net/").ok());
  EXPECT_FALSE(EndpointOrigin("https://example.net:99999/").ok());
  EXPECT_FALSE(EndpointOrigin("example.net/").ok());
}

// A fresh VAPID key as PEM (what PADLOCK_VAPID_PRIVATE_KEY_FILE holds).
std::string NewVapidPem() {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  return pem;
}

// Verifies an ES256 JWS (r || s) with a raw public point.
bool VerifyEs256(std::string_view jwt, std::string_view public_point) {
  const size_t dot = jwt.rfind('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view signing_input = jwt.substr(0, dot);
  absl::StatusOr<std::string> raw = Base64UrlDecode(jwt.substr(dot + 1));
  if (!raw.ok() || raw->size() != 64) return false;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(U(*raw), 32, nullptr), BN_bin2bn(U(*raw) + 32, 32, nullptr));
  unsigned char* der = nullptr;
  const int der_length = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  Pkey key = RawKey(public_point, "");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = key != nullptr &&
                  EVP_DigestVerifyInit_ex(ctx, nullptr, "SHA256", nullptr, nullptr, key.get(),
                                          nullptr) == 1 &&
                  EVP_DigestVerify(ctx, der, static_cast<size_t>(der_length), U(signing_input),
                                   signing_input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

struct ParsedHeader {
  std::string jwt;
  std::string k;
};

ParsedHeader ParseAuthorization(std::string_view header) {
  ParsedHeader parsed;
  EXPECT_THAT(std::string(header), StartsWith("vapid t="));
  for (absl::string_view part : absl::StrSplit(ToAbsl(header.substr(6)), ',')) {
    if (part.substr(0, 2) == "t=") parsed.jwt = std::string(part.substr(2));
    if (part.substr(0, 2) == "k=") parsed.k = std::string(part.substr(2));
  }
  return parsed;
}

TEST(VapidSigner, JwtVerifiesWithThePublicKeyAndCarriesTheClaims) {
  testing::ManualClock clock;
  absl::StatusOr<std::unique_ptr<VapidSigner>> signer =
      VapidSigner::FromPem(NewVapidPem(), "mailto:ops@example.org", &clock);
  ASSERT_TRUE(signer.ok()) << signer.status();
  absl::StatusOr<std::string> header =
      (*signer)->AuthorizationHeader("https://push.example.net:443/wpush/v2/secret-path");
  ASSERT_TRUE(header.ok()) << header.status();
  const ParsedHeader parsed = ParseAuthorization(*header);
  EXPECT_EQ(parsed.k, Base64UrlEncode((*signer)->public_key()));
  EXPECT_TRUE(VerifyEs256(parsed.jwt, (*signer)->public_key()));

  std::vector<std::string> parts = absl::StrSplit(parsed.jwt, '.');
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(B64(parts[0]), R"({"typ":"JWT","alg":"ES256"})");
  const int64_t exp = absl::ToUnixSeconds(clock.Now() + VapidSigner::kDefaultLifetime);
  EXPECT_EQ(B64(parts[1]), absl::StrCat(R"({"aud":"https://push.example.net","exp":)", exp,
                                        R"(,"sub":"mailto:ops@example.org"})"));
  EXPECT_LT(exp, absl::ToUnixSeconds(clock.Now() + absl::Hours(24)));
  // The endpoint's path (the subscription's secret) is not in the token.
  EXPECT_THAT(B64(parts[1]), ::testing::Not(HasSubstr("secret-path")));
}

TEST(VapidSigner, WrongKeyDoesNotVerify) {
  absl::StatusOr<std::unique_ptr<VapidSigner>> signer =
      VapidSigner::FromPem(NewVapidPem(), "mailto:ops@example.org");
  absl::StatusOr<std::unique_ptr<VapidSigner>> other =
      VapidSigner::FromPem(NewVapidPem(), "mailto:ops@example.org");
  ASSERT_TRUE(signer.ok() && other.ok());
  const ParsedHeader parsed =
      ParseAuthorization(*(*signer)->AuthorizationHeader("https://a.example/"));
  EXPECT_TRUE(VerifyEs256(parsed.jwt, (*signer)->public_key()));
  EXPECT_FALSE(VerifyEs256(parsed.jwt, (*other)->public_key()));
  std::string tampered = parsed.jwt;
  tampered[tampered.find('.') + 2] ^= 0x01;
  EXPECT_FALSE(VerifyEs256(tampered, (*signer)->public_key()));
}

TEST(VapidSigner, CachesPerOriginForLessThanTheLifetime) {
  testing::ManualClock clock;
  absl::StatusOr<std::unique_ptr<VapidSigner>> signer = VapidSigner::FromPem(
      NewVapidPem(), "mailto:ops@example.org", &clock, absl::Hours(12), absl::Hours(6));
  ASSERT_TRUE(signer.ok());
  VapidSigner& s = **signer;
  const std::string first = *s.AuthorizationHeader("https://a.example/one");
  EXPECT_EQ(*s.AuthorizationHeader("https://a.example/two"), first);  // same origin
  EXPECT_EQ(s.signed_count(), 1);
  EXPECT_NE(*s.AuthorizationHeader("https://b.example/one"), first);  // another origin
  EXPECT_EQ(s.signed_count(), 2);
  clock.Advance(absl::Hours(6) - absl::Seconds(1));
  EXPECT_EQ(*s.AuthorizationHeader("https://a.example/three"), first);
  EXPECT_EQ(s.signed_count(), 2);
  clock.Advance(absl::Seconds(1));
  const std::string renewed = *s.AuthorizationHeader("https://a.example/three");
  EXPECT_NE(renewed, first);
  EXPECT_EQ(s.signed_count(), 3);
  EXPECT_TRUE(VerifyEs256(ParseAuthorization(renewed).jwt, s.public_key()));
}

TEST(WakeUp, FixedSizeBodyDecryptsToTheWakeUpWithTheHeaders) {
  absl::StatusOr<std::unique_ptr<VapidSigner>> signer =
      VapidSigner::FromPem(NewVapidPem(), "mailto:ops@example.org");
  ASSERT_TRUE(signer.ok());
  const Device device = NewDevice();
  const std::string endpoint = "https://push.example.net/wpush/abc";
  absl::StatusOr<PushHttpRequest> a =
      BuildWakeUp(endpoint, device.public_point, device.auth, absl::Hours(24 * 7), **signer);
  absl::StatusOr<PushHttpRequest> b =
      BuildWakeUp(endpoint, device.public_point, device.auth, absl::Hours(24 * 7), **signer);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status();
  EXPECT_EQ(a->url, endpoint);
  EXPECT_EQ(a->body.size(), kWakeUpBodyBytes);
  EXPECT_EQ(b->body.size(), kWakeUpBodyBytes);
  EXPECT_NE(a->body, b->body);  // fresh secrets each time
  EXPECT_EQ(Decrypt(a->body, device), std::optional<std::string>(kWakeUpPlaintext));
  std::map<std::string, std::string> headers(a->headers.begin(), a->headers.end());
  EXPECT_EQ(headers["TTL"], "604800");
  EXPECT_EQ(headers["Urgency"], "high");
  EXPECT_EQ(headers["Topic"], "padlock-wake");
  EXPECT_EQ(headers["Content-Encoding"], "aes128gcm");
  const ParsedHeader vapid = ParseAuthorization(headers["Authorization"]);
  EXPECT_TRUE(VerifyEs256(vapid.jwt, (*signer)->public_key()));
  EXPECT_EQ(BuildWakeUp(endpoint, "bad", device.auth, absl::Hours(1), **signer).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildWakeUp("ftp://x/", device.public_point, device.auth, absl::Hours(1), **signer)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VapidSigner, RefusesBadKeysAndLifetimes) {
  EXPECT_EQ(VapidSigner::FromPem("not a pem", "mailto:a@b").status().code(),
            absl::StatusCode::kInvalidArgument);
  Pkey p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, p384.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<size_t>(length));
  BIO_free(bio);
  EXPECT_EQ(VapidSigner::FromPem(pem, "mailto:a@b").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VapidSigner::FromPem(NewVapidPem(), "mailto:a@b", nullptr, absl::Hours(24))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VapidSigner::FromPem(NewVapidPem(), "mailto:a@b", nullptr, absl::Hours(12),
                                 absl::Hours(12))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::notifier
