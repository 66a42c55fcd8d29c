#include "common/statement/signature.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "common/statement/signed_statement.h"
#include "gtest/gtest.h"

namespace padlock::statement {
namespace {

// A fixed vector made once by the client SDK (padlock::client::GenerateIdentityKeyPair + Sign,
// GenerateSignedPreKey): it pins the signature format independently of key generation. Tests with
// freshly generated keys are in tests/unit/clients/statement_signature_test.cpp.
const std::string kPublicKey = absl::HexStringToBytes(
    "05205dd71450d2c2fa0580b9b09d72b21bf1404f2e40aa954469f08e4cfb6efc14");
const std::string kLoginSignature = absl::HexStringToBytes(
    "0865783818f4bcd93f94f1213d84779a3932724db1792e533eec26fb8b0e31b5"
    "5a157e17b905dcc1db0d78cefeea35290e4b0382bc9c3b41c56522a19a752c83");
const std::string kSignedPreKey = absl::HexStringToBytes(
    "0538622d81d980d50fd5aade475f374b3bddfed109d1615c802e209f92a5e8a76b");
const std::string kSignedPreKeySignature = absl::HexStringToBytes(
    "5ff0cddf0bc209f67d43cf5f1fe45588b99a3b9658e8a92e2f73174a521e52d2"
    "08ce85aeba3cf76d2c75aa1323abd81043f744347e2cc4a34f46b14510199888");

std::string LoginMessage() {
  return EncodeLogin("alice", 1, "challenge-0123456789abcdef", "gw.example.org");
}

std::string KeyFromU(const std::string& u_hex) {
  return std::string(1, '\x05') + absl::HexStringToBytes(u_hex);
}

TEST(VerifySignature, AcceptsFixedVector) {
  EXPECT_TRUE(VerifySignature(kPublicKey, LoginMessage(), kLoginSignature));
}

TEST(VerifySignature, RejectsFixedVectorForOtherMessage) {
  EXPECT_FALSE(VerifySignature(kPublicKey, EncodeLogin("alice", 2, "challenge-0123456789abcdef",
                                                       "gw.example.org"),
                               kLoginSignature));
  EXPECT_FALSE(VerifySignature(kPublicKey, "", kLoginSignature));
}

TEST(VerifySignature, RejectsEveryFlippedSignatureByte) {
  for (size_t i = 0; i < kSignatureSize; ++i) {
    std::string tampered = kLoginSignature;
    tampered[i] ^= 0x01;
    EXPECT_FALSE(VerifySignature(kPublicKey, LoginMessage(), tampered)) << "byte " << i;
  }
}

TEST(VerifySignature, RejectsWrongSignatureLengths) {
  const std::string message = LoginMessage();
  EXPECT_FALSE(VerifySignature(kPublicKey, message, ""));
  EXPECT_FALSE(VerifySignature(kPublicKey, message, kLoginSignature.substr(0, 63)));
  EXPECT_FALSE(VerifySignature(kPublicKey, message, kLoginSignature + '\0'));
  EXPECT_FALSE(VerifySignature(kPublicKey, message, std::string(96, '\0')));
}

TEST(VerifySignature, RejectsMalformedKeysWithoutCrashing) {
  const std::string message = LoginMessage();
  EXPECT_FALSE(VerifySignature("", message, kLoginSignature));
  EXPECT_FALSE(VerifySignature(kPublicKey.substr(1), message, kLoginSignature));  // raw 32 bytes
  EXPECT_FALSE(VerifySignature(kPublicKey.substr(0, 32), message, kLoginSignature));
  EXPECT_FALSE(VerifySignature(kPublicKey + '\0', message, kLoginSignature));
  std::string wrong_type = kPublicKey;
  wrong_type[0] = 0x06;
  EXPECT_FALSE(VerifySignature(wrong_type, message, kLoginSignature));
}

// libsignal ignores bit 255 of the u-coordinate, so without the canonical check the same signature
// would verify under a second spelling of the key.
TEST(VerifySignature, RejectsSecondEncodingOfTheSameKey) {
  std::string alias = kPublicKey;
  alias[32] = static_cast<char>(static_cast<uint8_t>(alias[32]) | 0x80);
  EXPECT_FALSE(VerifySignature(alias, LoginMessage(), kLoginSignature));
}

TEST(VerifySignedPreKey, AcceptsFixedVector) {
  EXPECT_TRUE(VerifySignedPreKey(kPublicKey, kSignedPreKey, kSignedPreKeySignature));
}

TEST(VerifySignedPreKey, RejectsSwappedKeysAndMalformedInput) {
  EXPECT_FALSE(VerifySignedPreKey(kSignedPreKey, kPublicKey, kSignedPreKeySignature));
  EXPECT_FALSE(VerifySignedPreKey(kPublicKey, kSignedPreKey.substr(1), kSignedPreKeySignature));
  EXPECT_FALSE(VerifySignedPreKey(kPublicKey, kSignedPreKey, kLoginSignature));
  EXPECT_FALSE(VerifySignedPreKey(kPublicKey, kSignedPreKey, ""));
}

TEST(ValidatePublicKey, AcceptsRealKeys) {
  EXPECT_TRUE(ValidatePublicKey(kPublicKey).ok());
  EXPECT_TRUE(ValidatePublicKey(kSignedPreKey).ok());
}

TEST(ValidatePublicKey, RejectsWrongLengthAndType) {
  for (const std::string& key :
       {std::string(), kPublicKey.substr(1), kPublicKey.substr(0, 32), kPublicKey + '\x00',
        std::string(33, '\0'), std::string(1, '\x05')}) {
    EXPECT_EQ(ValidatePublicKey(key).code(), absl::StatusCode::kInvalidArgument)
        << absl::BytesToHexString(key);
  }
  std::string wrong_type = kPublicKey;
  wrong_type[0] = 0x08;
  EXPECT_EQ(ValidatePublicKey(wrong_type).code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidatePublicKey, RejectsSmallOrderPoints) {
  const std::vector<std::string> small_order_u = {
      "0000000000000000000000000000000000000000000000000000000000000000",  // 0
      "0100000000000000000000000000000000000000000000000000000000000000",  // 1
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  // order 8
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  // order 8
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p - 1
  };
  for (const std::string& u : small_order_u) {
    absl::Status status = ValidatePublicKey(KeyFromU(u));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << u;
    EXPECT_EQ(status.message(), "public key has small order") << u;
  }
}

TEST(ValidatePublicKey, RejectsNonCanonicalEncodings) {
  const std::vector<std::string> non_canonical_u = {
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p + 1
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // 2^255 - 1
      "0900000000000000000000000000000000000000000000000000000000000080",  // 9 with bit 255 set
  };
  for (const std::string& u : non_canonical_u) {
    absl::Status status = ValidatePublicKey(KeyFromU(u));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << u;
    EXPECT_EQ(status.message(), "public key is not canonically encoded") << u;
  }
  // The largest canonical value, p - 1, passes the canonical check (and fails as small order).
  const std::string p_minus_1 =
      KeyFromU("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
  EXPECT_EQ(ValidatePublicKey(p_minus_1).message(), "public key has small order");
  // The base point u = 9 is canonical and of large order.
  const std::string base_point =
      KeyFromU("0900000000000000000000000000000000000000000000000000000000000000");
  EXPECT_TRUE(ValidatePublicKey(base_point).ok());
}

}  // namespace
}  // namespace padlock::statement
