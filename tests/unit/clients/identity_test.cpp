#include "clients/sdk/identity.h"

#include <signal/curve.h>
#include <signal/session_pre_key.h>

#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "clients/sdk/signal_handles.h"
#include "common/statement/signature.h"
#include "gtest/gtest.h"

namespace padlock::client {
namespace {

const uint8_t* Data(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SignalContext>> context = SignalContext::Create();
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
  }

  IdentityKeyPair NewIdentity() {
    absl::StatusOr<IdentityKeyPair> identity = GenerateIdentityKeyPair(*context_);
    EXPECT_TRUE(identity.ok()) << identity.status();
    return identity.ok() ? *identity : IdentityKeyPair{};
  }

  std::unique_ptr<SignalContext> context_;
};

TEST_F(IdentityTest, IdentityKeyPairHasWireSizesAndIsFresh) {
  const IdentityKeyPair a = NewIdentity();
  const IdentityKeyPair b = NewIdentity();
  EXPECT_EQ(a.public_key.size(), 33u);
  EXPECT_EQ(a.public_key[0], '\x05');
  EXPECT_EQ(a.private_key.size(), 32u);
  EXPECT_TRUE(statement::ValidatePublicKey(a.public_key).ok());
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_NE(a.private_key, b.private_key);
}

TEST_F(IdentityTest, PublicKeyIsDerivedFromPrivateKey) {
  const IdentityKeyPair identity = NewIdentity();
  ec_private_key* raw_private = nullptr;
  ASSERT_EQ(curve_decode_private_point(&raw_private, Data(identity.private_key), 32,
                                       context_->get()),
            0);
  SignalPtr<ec_private_key> private_key(raw_private);
  ec_public_key* raw_public = nullptr;
  ASSERT_EQ(curve_generate_public_key(&raw_public, private_key.get()), 0);
  SignalPtr<ec_public_key> public_key(raw_public);
  signal_buffer* raw = nullptr;
  ASSERT_EQ(ec_public_key_serialize(&raw, public_key.get()), 0);
  BufferPtr serialized(raw);
  EXPECT_EQ(ToString(serialized.get()), identity.public_key);
}

TEST_F(IdentityTest, RegistrationIdIsInCompactRange) {
  std::set<uint32_t> seen;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<uint32_t> id = GenerateRegistrationId(*context_);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_GE(*id, 1u);
    EXPECT_LE(*id, 16380u);
    seen.insert(*id);
  }
  EXPECT_GT(seen.size(), 1u);  // 50 draws from 16380 values all equal: chance ~1e-208
}

TEST_F(IdentityTest, SignProducesVerifiableRandomisedSignatures) {
  const IdentityKeyPair identity = NewIdentity();
  absl::StatusOr<std::string> first = Sign(*context_, identity.private_key, "message");
  absl::StatusOr<std::string> second = Sign(*context_, identity.private_key, "message");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->size(), 64u);
  EXPECT_NE(*first, *second);
  EXPECT_TRUE(statement::VerifySignature(identity.public_key, "message", *first));
  EXPECT_TRUE(statement::VerifySignature(identity.public_key, "message", *second));
}

TEST_F(IdentityTest, SignAcceptsEmptyMessage) {
  const IdentityKeyPair identity = NewIdentity();
  absl::StatusOr<std::string> signature = Sign(*context_, identity.private_key, "");
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(statement::VerifySignature(identity.public_key, "", *signature));
}

TEST_F(IdentityTest, SignRejectsWrongPrivateKeyLength) {
  const IdentityKeyPair identity = NewIdentity();
  EXPECT_EQ(Sign(*context_, identity.private_key.substr(1), "m").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Sign(*context_, identity.public_key, "m").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Sign(*context_, "", "m").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(IdentityTest, SignedPreKeyIsSignedOverSerializedKey) {
  const IdentityKeyPair identity = NewIdentity();
  absl::StatusOr<SignedPreKey> spk =
      GenerateSignedPreKey(*context_, identity, 42, 1700000000123ULL);
  ASSERT_TRUE(spk.ok()) << spk.status();
  EXPECT_EQ(spk->id, 42u);
  EXPECT_EQ(spk->timestamp_ms, 1700000000123ULL);
  EXPECT_EQ(spk->public_key.size(), 33u);
  EXPECT_EQ(spk->private_key.size(), 32u);
  EXPECT_EQ(spk->signature.size(), 64u);
  EXPECT_TRUE(statement::VerifySignedPreKey(identity.public_key, spk->public_key, spk->signature));
  EXPECT_TRUE(statement::VerifySignature(identity.public_key, spk->public_key, spk->signature));

  // The record is what libsignal's signed-prekey store expects back.
  session_signed_pre_key* raw = nullptr;
  ASSERT_EQ(session_signed_pre_key_deserialize(&raw, Data(spk->record), spk->record.size(),
                                               context_->get()),
            0);
  SignalPtr<session_signed_pre_key> record(raw);
  EXPECT_EQ(session_signed_pre_key_get_id(record.get()), 42u);
  EXPECT_EQ(session_signed_pre_key_get_timestamp(record.get()), 1700000000123ULL);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(
                            session_signed_pre_key_get_signature(record.get())),
                        session_signed_pre_key_get_signature_len(record.get())),
            spk->signature);
}

TEST_F(IdentityTest, SignedPreKeyRejectsMismatchedIdentityHalves) {
  const IdentityKeyPair a = NewIdentity();
  const IdentityKeyPair b = NewIdentity();
  const IdentityKeyPair mixed{a.public_key, b.private_key};
  EXPECT_EQ(GenerateSignedPreKey(*context_, mixed, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  const IdentityKeyPair short_public{a.public_key.substr(1), a.private_key};
  EXPECT_EQ(GenerateSignedPreKey(*context_, short_public, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  const IdentityKeyPair short_private{a.public_key, a.private_key.substr(1)};
  EXPECT_EQ(GenerateSignedPreKey(*context_, short_private, 1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(IdentityTest, PreKeysHaveConsecutiveIdsAndDistinctValidKeys) {
  absl::StatusOr<std::vector<PreKey>> keys = GeneratePreKeys(*context_, 10, 5);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 5u);
  std::set<std::string> publics;
  for (size_t i = 0; i < keys->size(); ++i) {
    const PreKey& key = (*keys)[i];
    EXPECT_EQ(key.id, 10 + i);
    EXPECT_EQ(key.private_key.size(), 32u);
    EXPECT_TRUE(statement::ValidatePublicKey(key.public_key).ok());
    publics.insert(key.public_key);

    session_pre_key* raw = nullptr;
    ASSERT_EQ(session_pre_key_deserialize(&raw, Data(key.record), key.record.size(),
                                          context_->get()),
              0);
    SignalPtr<session_pre_key> record(raw);
    EXPECT_EQ(session_pre_key_get_id(record.get()), key.id);
  }
  EXPECT_EQ(publics.size(), 5u);
}

TEST_F(IdentityTest, PreKeyIdsWrapToOne) {
  absl::StatusOr<std::vector<PreKey>> keys = GeneratePreKeys(*context_, kMaxPreKeyId, 2);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].id, kMaxPreKeyId);
  EXPECT_EQ((*keys)[1].id, 1u);
}

TEST_F(IdentityTest, PreKeysRejectOutOfRangeStartAndAcceptZeroCount) {
  EXPECT_EQ(GeneratePreKeys(*context_, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GeneratePreKeys(*context_, kMaxPreKeyId + 1, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GeneratePreKeys(*context_, 1, kMaxPreKeyId + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<PreKey>> none = GeneratePreKeys(*context_, 1, 0);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace padlock::client
