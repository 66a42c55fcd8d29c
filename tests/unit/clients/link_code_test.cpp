// The link code a new device shows (Messenger::CreateLinkRequest) as ParseLinkCode reads it, and
// the local refusals of Messenger::ChangeIdentity. No server: nothing here connects.
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "clients/sdk/messenger.h"
#include "common/statement/signature.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace padlock::client {
namespace {

class LinkCodeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Messenger> Open(const std::string& folder) {
    MessengerOptions options;
    options.home = dir_.path() + "/" + folder;
    options.gateway.target = "127.0.0.1:1";  // never reached
    absl::StatusOr<std::unique_ptr<Messenger>> m = Messenger::Open(options);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }
  padlock::testing::TempDir dir_;
};

TEST_F(LinkCodeTest, ParseLinkCodeReturnsTheNewDevicesPublicKeys) {
  std::unique_ptr<Messenger> device = Open("laptop");
  ASSERT_TRUE(device != nullptr);
  absl::StatusOr<std::string> code = device->CreateLinkRequest("bob");
  ASSERT_TRUE(code.ok()) << code.status();
  absl::StatusOr<LinkCodeContents> parsed = ParseLinkCode(*code);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user_id, "bob");
  EXPECT_EQ(parsed->identity_key, device->store().LoadLocalIdentity()->public_key);
  EXPECT_EQ(parsed->registration_id, *device->store().LoadRegistrationId());
  EXPECT_EQ(parsed->signed_prekey_id, 1u);
  EXPECT_EQ(parsed->signed_prekey_public.size(), 33u);
  EXPECT_TRUE(statement::VerifySignedPreKey(parsed->identity_key, parsed->signed_prekey_public,
                                            parsed->signed_prekey_signature));
}

TEST_F(LinkCodeTest, ParseLinkCodeRefusesMalformedCodes) {
  EXPECT_TRUE(absl::IsInvalidArgument(ParseLinkCode("not base64 !").status()));
  std::string wrong_magic;
  absl::WebSafeBase64Escape("XXXX", &wrong_magic);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseLinkCode(wrong_magic).status()));
  std::unique_ptr<Messenger> device = Open("laptop");
  ASSERT_TRUE(device != nullptr);
  absl::StatusOr<std::string> code = device->CreateLinkRequest("bob");
  ASSERT_TRUE(code.ok());
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(*code, &raw));
  std::string truncated;
  absl::WebSafeBase64Escape(raw.substr(0, raw.size() - 1), &truncated);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseLinkCode(truncated).status()));
  std::string longer;
  absl::WebSafeBase64Escape(raw + "x", &longer);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseLinkCode(longer).status()));
}

TEST_F(LinkCodeTest, ChangeIdentityNeedsARegisteredPrimaryAndAFreshFolder) {
  std::unique_ptr<Messenger> none = Open("unregistered");
  ASSERT_TRUE(none != nullptr);
  MessengerOptions fresh;
  fresh.home = dir_.path() + "/fresh";
  fresh.gateway.target = "127.0.0.1:1";
  EXPECT_TRUE(absl::IsFailedPrecondition(none->ChangeIdentity(fresh).status()));
  // A device still waiting for its link approval is not an account either.
  std::unique_ptr<Messenger> pending = Open("pending");
  ASSERT_TRUE(pending != nullptr);
  ASSERT_TRUE(pending->CreateLinkRequest("bob").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(pending->ChangeIdentity(fresh).status()));
  EXPECT_FALSE(pending->IdentityHeld("alice"));
}

}  // namespace
}  // namespace padlock::client
