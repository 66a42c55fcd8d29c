// Signatures made by the client SDK with freshly generated keys, checked by the service-side
// verifier: domain separation between the four statements, tampering, wrong keys, malformed
// input, the signed prekey, and concurrent verification.

#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <signal/curve.h>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/signal_handles.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"
#include "gtest/gtest.h"

namespace padlock {
namespace {

using client::IdentityKeyPair;
using client::SignalContext;
using statement::VerifySignature;
using statement::VerifySignedPreKey;

constexpr uint32_t kDeviceId = 1;
constexpr uint32_t kRegistrationId = 4242;
constexpr char kUser[] = "alice";

class StatementSignatureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
    absl::StatusOr<IdentityKeyPair> identity = client::GenerateIdentityKeyPair(*context_);
    ASSERT_TRUE(identity.ok()) << identity.status();
    identity_ = *identity;
    absl::StatusOr<IdentityKeyPair> other = client::GenerateIdentityKeyPair(*context_);
    ASSERT_TRUE(other.ok()) << other.status();
    other_ = *other;
    absl::StatusOr<client::SignedPreKey> spk =
        client::GenerateSignedPreKey(*context_, identity_, 7, 1700000000000ULL);
    ASSERT_TRUE(spk.ok()) << spk.status();
    signed_prekey_ = *spk;

    // The four statements over the same account, device, key and registration id.
    absl::StatusOr<std::string> device_list = statement::EncodeDeviceList(
        kUser, 1, {{kDeviceId, identity_.public_key, kRegistrationId}});
    ASSERT_TRUE(device_list.ok()) << device_list.status();
    statements_ = {
        statement::EncodeRegistration(kUser, kDeviceId, identity_.public_key, kRegistrationId,
                                      signed_prekey_.id, signed_prekey_.public_key),
        statement::EncodeLogin(kUser, kDeviceId, std::string(32, '\x07'), "gw.example.org"),
        *device_list,
        statement::EncodeIdentityChange(kUser, kDeviceId, identity_.public_key,
                                        other_.public_key, kRegistrationId),
    };
    for (const std::string& message : statements_) signatures_.push_back(SignWithIdentity(message));
  }

  std::string SignWithIdentity(const std::string& message) {
    absl::StatusOr<std::string> signature =
        client::Sign(*context_, identity_.private_key, message);
    EXPECT_TRUE(signature.ok()) << signature.status();
    return signature.ok() ? *signature : std::string();
  }

  std::unique_ptr<SignalContext> context_;
  IdentityKeyPair identity_;
  IdentityKeyPair other_;
  client::SignedPreKey signed_prekey_;
  std::vector<std::string> statements_;  // register, login, device list, identity change
  std::vector<std::string> signatures_;  // identity_'s signature of each statement
};

TEST_F(StatementSignatureTest, EachSignatureVerifiesOnlyForItsOwnStatement) {
  ASSERT_EQ(statements_.size(), 4u);
  for (size_t signed_as = 0; signed_as < statements_.size(); ++signed_as) {
    for (size_t checked_as = 0; checked_as < statements_.size(); ++checked_as) {
      EXPECT_EQ(VerifySignature(identity_.public_key, statements_[checked_as],
                                signatures_[signed_as]),
                signed_as == checked_as)
          << "signed as " << signed_as << ", checked as " << checked_as;
    }
  }
}

// Same field bytes under each of the four labels: only the label differs, and that is enough.
TEST_F(StatementSignatureTest, LabelAloneSeparatesIdenticalFields) {
  const std::array<std::string_view, 4> labels = {
      statement::kRegisterLabel, statement::kLoginLabel, statement::kDeviceListLabel,
      statement::kIdentityChangeLabel};
  std::vector<std::string> messages;
  std::vector<std::string> signatures;
  for (std::string_view label : labels) {
    statement::StatementEncoder encoder(label);
    encoder.AddString(kUser).AddU32(kDeviceId).AddBytes(identity_.public_key);
    messages.push_back(encoder.bytes());
    signatures.push_back(SignWithIdentity(messages.back()));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    for (size_t j = 0; j < labels.size(); ++j) {
      EXPECT_EQ(VerifySignature(identity_.public_key, messages[j], signatures[i]), i == j)
          << labels[i] << " checked as " << labels[j];
    }
  }
}

TEST_F(StatementSignatureTest, AnyTamperedStatementByteFails) {
  const std::string& login = statements_[1];
  ASSERT_TRUE(VerifySignature(identity_.public_key, login, signatures_[1]));
  for (size_t i = 0; i < login.size(); ++i) {
    std::string tampered = login;
    tampered[i] ^= 0x20;
    EXPECT_FALSE(VerifySignature(identity_.public_key, tampered, signatures_[1])) << "byte " << i;
  }
  EXPECT_FALSE(VerifySignature(identity_.public_key, login + '\0', signatures_[1]));
  EXPECT_FALSE(
      VerifySignature(identity_.public_key, login.substr(0, login.size() - 1), signatures_[1]));
}

TEST_F(StatementSignatureTest, AnyTamperedSignatureByteFails) {
  for (size_t i = 0; i < statement::kSignatureSize; ++i) {
    std::string tampered = signatures_[0];
    tampered[i] ^= 0x01;
    EXPECT_FALSE(VerifySignature(identity_.public_key, statements_[0], tampered)) << "byte " << i;
  }
}

TEST_F(StatementSignatureTest, WrongKeyFails) {
  for (size_t i = 0; i < statements_.size(); ++i) {
    EXPECT_FALSE(VerifySignature(other_.public_key, statements_[i], signatures_[i])) << i;
    EXPECT_FALSE(VerifySignature(signed_prekey_.public_key, statements_[i], signatures_[i])) << i;
  }
}

TEST_F(StatementSignatureTest, MalformedKeyOrSignatureLengthFailsWithoutCrashing) {
  const std::string& key = identity_.public_key;
  const std::string& message = statements_[0];
  const std::string& signature = signatures_[0];
  for (const std::string& bad_key :
       {std::string(), key.substr(1), key.substr(0, 32), key + '\x00', identity_.private_key}) {
    EXPECT_FALSE(VerifySignature(bad_key, message, signature)) << bad_key.size();
  }
  for (const std::string& bad_signature :
       {std::string(), signature.substr(0, 63), signature + '\x00', signature + signature}) {
    EXPECT_FALSE(VerifySignature(key, message, bad_signature)) << bad_signature.size();
  }
}

TEST_F(StatementSignatureTest, SignedPreKeyVerifiesOnlyAsSignedPreKey) {
  EXPECT_TRUE(VerifySignedPreKey(identity_.public_key, signed_prekey_.public_key,
                                 signed_prekey_.signature));
  // Not as any statement...
  for (size_t i = 0; i < statements_.size(); ++i) {
    EXPECT_FALSE(VerifySignature(identity_.public_key, statements_[i], signed_prekey_.signature))
        << i;
  }
  // ...and no statement's signature passes as a signed-prekey signature.
  for (size_t i = 0; i < signatures_.size(); ++i) {
    EXPECT_FALSE(
        VerifySignedPreKey(identity_.public_key, signed_prekey_.public_key, signatures_[i]))
        << i;
  }
  EXPECT_FALSE(VerifySignedPreKey(other_.public_key, signed_prekey_.public_key,
                                  signed_prekey_.signature));
  EXPECT_FALSE(VerifySignedPreKey(identity_.public_key, other_.public_key,
                                  signed_prekey_.signature));
}

TEST_F(StatementSignatureTest, ConcurrentVerificationIsConsistent) {
  struct Case {
    const std::string* key;
    const std::string* message;
    std::string signature;
    bool expected;
  };
  std::vector<Case> cases;
  for (size_t i = 0; i < statements_.size(); ++i) {
    cases.push_back({&identity_.public_key, &statements_[i], signatures_[i], true});
    cases.push_back({&other_.public_key, &statements_[i], signatures_[i], false});
    cases.push_back(
        {&identity_.public_key, &statements_[(i + 1) % statements_.size()], signatures_[i], false});
    std::string tampered = signatures_[i];
    tampered[10] ^= 0x04;
    cases.push_back({&identity_.public_key, &statements_[i], tampered, false});
  }
  constexpr int kThreads = 4;
  constexpr int kRounds = 25;
  std::atomic<int> mismatches{0};
  std::atomic<int> checked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (size_t c = 0; c < cases.size(); ++c) {
          // Each thread walks the cases from a different starting point.
          const Case& item = cases[(c + t * 3) % cases.size()];
          if (VerifySignature(*item.key, *item.message, item.signature) != item.expected) {
            mismatches.fetch_add(1);
          }
          checked.fetch_add(1);
        }
        // Signing on the shared context at the same time must also stay correct.
        absl::StatusOr<std::string> signature =
            client::Sign(*context_, identity_.private_key, statements_[round % 4]);
        if (!signature.ok() ||
            !VerifySignature(identity_.public_key, statements_[round % 4], *signature)) {
          mismatches.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(checked.load(), kThreads * kRounds * static_cast<int>(cases.size()));
  EXPECT_EQ(mismatches.load(), 0);
}

// ValidatePublicKey refuses five u-coordinates as "small order" from a fixed list. Check each
// against the definition: a clamped scalar (a multiple of the cofactor 8) sends a small-order
// point to the identity, whose x-only Diffie-Hellman output is all zeros.
TEST_F(StatementSignatureTest, KeysRefusedAsSmallOrderReallyHaveSmallOrder) {
  const char* const kRefused[] = {
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  };
  // A freshly generated private key is clamped (libsignal's curve25519_donna does not clamp).
  ec_private_key* raw_private = nullptr;
  ASSERT_EQ(curve_decode_private_point(
                &raw_private, reinterpret_cast<const uint8_t*>(other_.private_key.data()), 32,
                context_->get()),
            0);
  client::SignalPtr<ec_private_key> scalar(raw_private);

  auto agreement_is_zero = [&](const std::string& key) {
    ec_public_key* raw_public = nullptr;
    EXPECT_EQ(curve_decode_point(&raw_public, reinterpret_cast<const uint8_t*>(key.data()),
                                 key.size(), context_->get()),
              0);
    client::SignalPtr<ec_public_key> point(raw_public);
    uint8_t* shared = nullptr;
    EXPECT_EQ(curve_calculate_agreement(&shared, point.get(), scalar.get()), 32);
    bool zero = true;
    for (int i = 0; i < 32; ++i) zero = zero && shared[i] == 0;
    std::free(shared);
    return zero;
  };
  for (const char* u : kRefused) {
    const std::string key = std::string(1, '\x05') + absl::HexStringToBytes(u);
    EXPECT_EQ(statement::ValidatePublicKey(key).message(), "public key has small order") << u;
    EXPECT_TRUE(agreement_is_zero(key)) << u;
  }
  EXPECT_TRUE(statement::ValidatePublicKey(identity_.public_key).ok());
  EXPECT_FALSE(agreement_is_zero(identity_.public_key));
}

}  // namespace
}  // namespace padlock
