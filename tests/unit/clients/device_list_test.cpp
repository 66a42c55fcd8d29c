// Client-side device-list verification (signature with the services' own statement encoder,
// version never going back, pinned primary key), and the SDK's small wire helpers.
#include "clients/sdk/device_list.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "clients/cli/commands.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/gateway_client.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/messenger.h"
#include "common/statement/signed_statement.h"
#include "gtest/gtest.h"

namespace padlock::client {
namespace {

class DeviceListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    context_ = *SignalContext::Create();
    primary_ = *GenerateIdentityKeyPair(*context_);
    second_ = *GenerateIdentityKeyPair(*context_);
  }

  padlock::v1::SignedDeviceList Make(const std::string& user, uint64_t version,
                                     const std::vector<std::pair<uint32_t, IdentityKeyPair*>>& ds,
                                     const IdentityKeyPair& signer) {
    padlock::v1::SignedDeviceList out;
    out.mutable_list()->set_user_id(user);
    out.mutable_list()->set_version(version);
    std::vector<statement::DeviceListEntry> entries;
    for (const auto& [id, key] : ds) {
      auto* e = out.mutable_list()->add_devices();
      e->set_device_id(id);
      e->set_identity_key(key->public_key);
      e->set_registration_id(100 + id);
      entries.push_back({id, key->public_key, 100 + id});
    }
    out.set_signature(
        *Sign(*context_, signer.private_key, *statement::EncodeDeviceList(user, version, entries)));
    return out;
  }

  std::unique_ptr<SignalContext> context_;
  IdentityKeyPair primary_, second_;
};

TEST_F(DeviceListTest, AcceptsListSignedByItsPrimary) {
  auto list = Make("alice", 2, {{1, &primary_}, {2, &second_}}, primary_);
  EXPECT_TRUE(VerifyDeviceList("alice", list, std::nullopt, std::nullopt).ok());
  EXPECT_TRUE(VerifyDeviceList("alice", list, primary_.public_key, std::nullopt).ok());
}

TEST_F(DeviceListTest, RejectsListSignedByAnotherDevice) {
  auto list = Make("alice", 2, {{1, &primary_}, {2, &second_}}, second_);
  EXPECT_EQ(VerifyDeviceList("alice", list, std::nullopt, std::nullopt).code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(DeviceListTest, RejectsAddedDeviceNotCoveredBySignature) {
  auto list = Make("alice", 1, {{1, &primary_}}, primary_);
  // A server (or anyone in between) slips in a device: the signature no longer covers the list.
  auto* e = list.mutable_list()->add_devices();
  e->set_device_id(2);
  e->set_identity_key(second_.public_key);
  e->set_registration_id(7);
  EXPECT_EQ(VerifyDeviceList("alice", list, std::nullopt, std::nullopt).code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(DeviceListTest, RejectsOlderVersionThanSeen) {
  auto v1 = Make("alice", 1, {{1, &primary_}}, primary_);
  auto v2 = Make("alice", 2, {{1, &primary_}, {2, &second_}}, primary_);
  EXPECT_TRUE(VerifyDeviceList("alice", v2, std::nullopt, v1).ok());
  absl::Status older = VerifyDeviceList("alice", v1, std::nullopt, v2);
  EXPECT_EQ(older.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(VerifyDeviceList("alice", v2, std::nullopt, v2).ok());  // same list again
}

TEST_F(DeviceListTest, RejectsDifferentListUnderSameVersion) {
  auto a = Make("alice", 2, {{1, &primary_}}, primary_);
  auto b = Make("alice", 2, {{1, &primary_}, {2, &second_}}, primary_);
  EXPECT_EQ(VerifyDeviceList("alice", b, std::nullopt, a).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DeviceListTest, ChangedPrimaryKeyIsSecurityCodeChange) {
  auto list = Make("alice", 3, {{1, &second_}}, second_);
  absl::Status status = VerifyDeviceList("alice", list, primary_.public_key, std::nullopt);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(status.message()).find("security code changed"), std::string::npos);
}

TEST_F(DeviceListTest, RejectsListOfAnotherUserOrWithoutPrimary) {
  auto list = Make("alice", 1, {{1, &primary_}}, primary_);
  EXPECT_EQ(VerifyDeviceList("bob", list, std::nullopt, std::nullopt).code(),
            absl::StatusCode::kInvalidArgument);
  auto no_primary = Make("alice", 2, {{2, &second_}}, second_);
  EXPECT_EQ(VerifyDeviceList("alice", no_primary, std::nullopt, std::nullopt).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MessengerBodies, TextBodyRoundTripsAndRejectsTruncation) {
  const std::string body = EncodeTextBody("bob", "hello, bob");
  auto decoded = DecodeTextBody(body);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->first, "bob");
  EXPECT_EQ(decoded->second, "hello, bob");
  EXPECT_EQ(DecodeTextBody(body.substr(0, 3)).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeTextBody("x").status().code(), absl::StatusCode::kDataLoss);
}

TEST(MessengerBodies, ReceiptBodyRoundTripsAndRejectsBadLengths) {
  const std::vector<std::string> ids{std::string(16, 'a'), std::string(16, 'b')};
  auto decoded = DecodeReceiptBody(EncodeReceiptBody(MessageStatus::kRead, ids));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->first, MessageStatus::kRead);
  EXPECT_EQ(decoded->second, ids);
  EXPECT_EQ(DecodeReceiptBody(std::string(1, '\x02') + "short").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeReceiptBody(std::string(1, '\x09') + std::string(16, 'a')).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(MessengerBodies, UnsupportedReceiptCarriesCapabilitiesThenIds) {
  const std::vector<std::string> ids{std::string(16, 'a')};
  const ContentCapabilities mine = MessengerCapabilities();
  EXPECT_EQ(mine.format_version, 1);
  EXPECT_EQ(mine.kinds, (std::vector<uint8_t>{1, 2, 3, 5, 6, 7}));
  const std::string body = EncodeUnsupportedReceiptBody(mine, ids);
  EXPECT_EQ(body.substr(0, 9), std::string("\x05\x01\x06\x01\x02\x03\x05\x06\x07", 9));
  auto decoded = DecodeReceiptBody(body);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->first, MessageStatus::kUnsupported);
  EXPECT_EQ(decoded->second, ids);
  auto capabilities = DecodeUnsupportedReceiptCapabilities(body);
  ASSERT_TRUE(capabilities.ok()) << capabilities.status();
  EXPECT_EQ(*capabilities, mine);
  // A kind count beyond the body, ids not a multiple of 16, or another status: corrupt.
  EXPECT_EQ(DecodeReceiptBody(std::string("\x05\x01\x09\x01", 4)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeReceiptBody(body + "x").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeUnsupportedReceiptCapabilities(EncodeReceiptBody(MessageStatus::kRead, ids))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

TEST(MessengerBodies, GroupUpdateRoundTripsAndRejectsMalformed) {
  const GroupUpdate update{std::string(16, '\x42'), "friends", {"alice", "bob", "carol"}};
  const std::string body = EncodeGroupUpdate(update);
  auto decoded = DecodeGroupUpdate(body);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->group_id, update.group_id);
  EXPECT_EQ(decoded->title, "friends");
  EXPECT_EQ(decoded->members, update.members);
  EXPECT_EQ(DecodeGroupUpdate(body.substr(0, body.size() - 1)).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeGroupUpdate(body + "x").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodeGroupUpdate("short").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(GroupConversation(std::string("\x01\xab", 2)), "group:01ab");
}

TEST(GatewayErrors, RetryAfterTravelsInTheStatus) {
  absl::Status plain = absl::ResourceExhaustedError("slow down");
  EXPECT_FALSE(RetryAfter(plain).has_value());
  absl::Status with = WithRetryAfter(plain, absl::Milliseconds(1500));
  ASSERT_TRUE(RetryAfter(with).has_value());
  EXPECT_EQ(*RetryAfter(with), absl::Milliseconds(1500));
  EXPECT_EQ(with.code(), absl::StatusCode::kResourceExhausted);
}

TEST(CliArgs, ParsesGlobalFlagsAnywhereAndCommandFlags) {
  auto args = cli::ParseArgs({"send", "--home", "/tmp/a", "bob", "hello", "there", "--json",
                              "--gateway=127.0.0.1:9", "--timeout", "3"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->command, "send");
  EXPECT_EQ(args->home, "/tmp/a");
  EXPECT_EQ(args->gateway, "127.0.0.1:9");
  EXPECT_TRUE(args->json);
  EXPECT_EQ(args->positional, (std::vector<std::string>{"bob", "hello", "there"}));
  EXPECT_EQ(args->flags.at("timeout"), "3");
}

TEST(CliArgs, RejectsUnknownFlagMissingValueAndNoCommand) {
  EXPECT_EQ(cli::ParseArgs({"listen", "--bogus", "1"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cli::ParseArgs({"listen", "--timeout"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cli::ParseArgs({"--json"}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock::client
