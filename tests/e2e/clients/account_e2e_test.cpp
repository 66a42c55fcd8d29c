// Account upkeep and stories end to end, against the whole real backend through the public
// gateway: unlinking a device (the server revokes it, peers stop encrypting to it), stories to a
// chosen list with a server-side TTL and local expiry, and scheduled signed-prekey rotation with a
// grace period — through the SDK (Messenger) and through the `padlock` CLI.
#include <sys/wait.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/sdk/messenger.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/cli_fixture.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/e2e/clients/messenger_fixture.h"
#include "tests/harness/harness.h"

namespace padlock::client::e2e {
namespace {

[[maybe_unused]] ::testing::Environment* const kStackEnv =
    ::testing::AddGlobalTestEnvironment(new StackEnvironment);

class AccountE2eTest : public MessengerFixture {
 protected:
  static std::set<std::pair<std::string, uint32_t>> Recipients(const std::string& payload) {
    padlock::v1::OutgoingMessage message;
    EXPECT_TRUE(message.ParseFromString(payload));
    std::set<std::pair<std::string, uint32_t>> out;
    for (const padlock::v1::Recipient& r : message.recipients()) {
      out.insert({r.device().user_id(), r.device().device_id()});
    }
    return out;
  }
};

TEST_F(AccountE2eTest, UnlinkedDeviceIsRevokedAndPeersStopEncryptingToIt) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  const std::string carol_id = UniqueUser("carol");
  auto alice = Join(alice_id);
  auto bob = Join(bob_id);
  ASSERT_TRUE(alice && bob);
  auto laptop = Link(*alice, "alice-laptop");
  ASSERT_NE(laptop, nullptr);
  ASSERT_EQ(laptop->account()->device_id, 2u);

  // Before: bob's message reaches both of alice's devices (bob now has a session with each).
  ASSERT_TRUE(bob->SendText(alice_id, "before", absl::Seconds(20)).ok());
  ASSERT_EQ(Await(*alice, Kind::kMessage, 1).size(), 1u);
  ASSERT_EQ(Await(*laptop, Kind::kMessage, 1).size(), 1u);
  ASSERT_TRUE(bob->store().ContainsSession({alice_id, 2}).value());

  ASSERT_TRUE(alice->UnlinkDevice(2).ok());
  // The primary's own list: version 3 (1 register, 2 link, 3 unlink) without device 2.
  auto own = alice->store().LoadVerifiedDeviceList(alice_id);
  ASSERT_TRUE(own.ok() && own->has_value());
  EXPECT_EQ((*own)->version, 3u);
  EXPECT_FALSE(alice->store().ContainsSession({alice_id, 2}).value());

  // The unlinked device's stream is closed by the server for good.
  std::vector<MessengerEvent> stopped = Await(*laptop, Kind::kStopped, 1);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_FALSE(laptop->connected());
  // And its key no longer logs in: a fresh start of that folder cannot connect.
  laptop.reset();
  auto reopened = Open(Options("alice-laptop"));
  ASSERT_NE(reopened, nullptr);
  EXPECT_FALSE(reopened->Connect(absl::Seconds(10)).ok());

  // A peer with no cached list encrypts only to the remaining device from the start.
  auto carol = Join(carol_id);
  ASSERT_NE(carol, nullptr);
  carol->Disconnect();
  absl::StatusOr<std::string> from_carol = carol->ComposeText(alice_id, "from carol");
  ASSERT_TRUE(from_carol.ok()) << from_carol.status();
  auto carol_outbox = carol->store().ListOutbox();
  ASSERT_TRUE(carol_outbox.ok());
  ASSERT_EQ(carol_outbox->size(), 1u);
  EXPECT_EQ(Recipients((*carol_outbox)[0].payload),
            (std::set<std::pair<std::string, uint32_t>>{{alice_id, 1}}));

  // A peer with the old list (and a session with device 2) learns of the unlink from the
  // server's mismatch: it drops the session, verifies the new list and sends to device 1 only.
  absl::StatusOr<std::string> after = bob->SendText(alice_id, "after", absl::Seconds(20));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(bob->store().ContainsSession({alice_id, 2}).value());
  auto bob_view = bob->store().LoadVerifiedDeviceList(alice_id);
  ASSERT_TRUE(bob_view.ok() && bob_view->has_value());
  EXPECT_EQ((*bob_view)->version, 3u);

  ASSERT_TRUE(carol->Connect(absl::Seconds(20)).ok());
  ASSERT_TRUE(carol->AwaitSent(*from_carol, absl::Seconds(20)).ok());
  // The remaining device still receives both.
  std::vector<MessengerEvent> got = Await(*alice, Kind::kMessage, 2);
  ASSERT_EQ(got.size(), 2u);
  std::set<std::string> texts{got[0].text, got[1].text};
  EXPECT_EQ(texts, (std::set<std::string>{"after", "from carol"}));

  // Only the primary unlinks; the primary itself cannot be unlinked; unknown ids are NotFound.
  EXPECT_TRUE(absl::IsInvalidArgument(alice->UnlinkDevice(1)));
  EXPECT_TRUE(absl::IsNotFound(alice->UnlinkDevice(2)));
}

TEST_F(AccountE2eTest, StoriesReachOnlyTheListWithATtlAndExpire) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  const std::string carol_id = UniqueUser("carol");
  const std::string dave_id = UniqueUser("dave");
  const std::string erin_id = UniqueUser("erin");
  std::vector<padlock::v1::Envelope> at_bob;
  std::vector<padlock::v1::Envelope> at_dave;
  auto alice = Join(alice_id);
  auto bob = Join(bob_id, &at_bob);
  auto carol = Join(carol_id);
  auto dave = Join(dave_id, &at_dave);
  MessengerOptions erin_options = Options(erin_id);
  erin_options.story_ttl = absl::Seconds(5);  // a short TTL, to see it expire
  auto erin = Join(erin_id, erin_options);
  ASSERT_TRUE(alice && bob && carol && dave && erin);

  // Queued with ttl_seconds 86400 (the default) in the very bytes that go to the server.
  absl::StatusOr<std::string> story = alice->ComposeStory({bob_id, carol_id}, "at the beach");
  ASSERT_TRUE(story.ok()) << story.status();
  auto queued = alice->store().ListOutbox();
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(queued->size(), 1u);
  padlock::v1::OutgoingMessage outgoing;
  ASSERT_TRUE(outgoing.ParseFromString((*queued)[0].payload));
  EXPECT_EQ(outgoing.ttl_seconds(), 86400u);
  EXPECT_EQ(Recipients((*queued)[0].payload),
            (std::set<std::pair<std::string, uint32_t>>{{bob_id, 1}, {carol_id, 1}}));
  ASSERT_TRUE(alice->AwaitSent(*story, absl::Seconds(20)).ok());
  absl::StatusOr<std::string> short_story = erin->PostStory({bob_id}, "5 s only",
                                                            absl::Seconds(20));
  ASSERT_TRUE(short_story.ok()) << short_story.status();

  std::vector<MessengerEvent> bob_stories = Await(*bob, Kind::kStory, 2);
  ASSERT_EQ(bob_stories.size(), 2u);
  EXPECT_EQ(bob_stories[0].peer, alice_id);
  EXPECT_EQ(bob_stories[0].text, "at the beach");
  EXPECT_EQ(bob_stories[0].message_id, *story);
  EXPECT_EQ(bob_stories[1].peer, erin_id);
  // The server applied the TTLs: each envelope carries its expiry (computed by the
  // message-queue's clock, the timestamp by Redis's: they may differ by a few ms), and the
  // story's expiry is the earlier of that and the sender's own TTL.
  ASSERT_EQ(at_bob.size(), 2u);
  const int64_t kSlackMs = 2000;
  for (size_t i = 0; i < 2; ++i) {
    const int64_t ttl_ms = i == 0 ? 86'400'000 : 5'000;
    const int64_t sent = static_cast<int64_t>(at_bob[i].server_timestamp_ms());
    const int64_t server_expiry = static_cast<int64_t>(at_bob[i].expires_at_ms());
    EXPECT_NEAR(server_expiry - sent, ttl_ms, kSlackMs) << i;
    EXPECT_EQ(bob_stories[i].expires_at_ms, std::min(sent + ttl_ms, server_expiry)) << i;
    EXPECT_EQ(at_bob[i].ciphertext().find(i == 0 ? "at the beach" : "5 s only"),
              std::string::npos);
  }

  std::vector<MessengerEvent> carol_stories = Await(*carol, Kind::kStory, 1);
  ASSERT_EQ(carol_stories.size(), 1u);
  EXPECT_EQ(carol_stories[0].text, "at the beach");

  // Dave is not on the list: a 1:1 text alice sends after the story is the first and only
  // envelope dave gets (an inbox is in order, so a story for him would have come first).
  ASSERT_TRUE(alice->SendText(dave_id, "marker", absl::Seconds(20)).ok());
  std::vector<MessengerEvent> at_dave_events = Await(*dave, Kind::kMessage, 1);
  ASSERT_EQ(at_dave_events.size(), 1u);
  EXPECT_EQ(at_dave_events[0].text, "marker");
  ASSERT_EQ(at_dave.size(), 1u);
  EXPECT_EQ(at_dave[0].message_id(), at_dave_events[0].message_id);
  EXPECT_TRUE(dave->ListStories()->empty());

  // Stories are not chat history; they are listed apart, with their expiry.
  EXPECT_TRUE(bob->store().ListMessages("")->empty());
  auto listed = bob->ListStories();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  auto own = alice->ListStories();
  ASSERT_TRUE(own.ok());
  ASSERT_EQ(own->size(), 1u);
  EXPECT_TRUE((*own)[0].outgoing);
  EXPECT_EQ((*own)[0].audience, (std::vector<std::string>{bob_id, carol_id}));

  // Six seconds later (bob's clock) erin's story is gone, alice's is still there ...
  skew_ = absl::Seconds(6);
  listed = bob->ListStories();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].text, "at the beach");
  // ... and a day later nothing is shown.
  skew_ = absl::Hours(24) + absl::Seconds(1);
  EXPECT_TRUE(bob->ListStories()->empty());
  EXPECT_TRUE(carol->ListStories()->empty());

  EXPECT_TRUE(absl::IsNotFound(alice->ComposeStory({"no-such-user"}, "x").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(alice->ComposeStory({alice_id}, "x").status()));
}

TEST_F(AccountE2eTest, SignedPreKeyRotatesOnScheduleAndTheOldKeyDecryptsWithinGrace) {
  const std::string alice_id = UniqueUser("alice");
  const std::string bob_id = UniqueUser("bob");
  const std::string carol_id = UniqueUser("carol");
  const std::string dave_id = UniqueUser("dave");
  MessengerOptions alice_options = Options(alice_id);
  alice_options.signed_prekey_rotation = absl::Hours(24 * 7);
  alice_options.signed_prekey_grace = absl::Hours(24 * 30);
  auto alice = Join(alice_id, alice_options);
  auto bob = Join(bob_id);
  auto dave = Join(dave_id);
  ASSERT_TRUE(alice && bob && dave);
  const uint32_t first = alice->account()->signed_prekey_id;
  absl::StatusOr<bool> rotated = alice->RotateSignedPreKeyIfDue();
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_FALSE(*rotated);  // brand new

  // Bob and dave build sessions on the first signed prekey; their PreKey messages wait unsent.
  bob->Disconnect();
  dave->Disconnect();
  absl::StatusOr<std::string> from_bob = bob->ComposeText(alice_id, "built on the old key");
  ASSERT_TRUE(from_bob.ok()) << from_bob.status();
  absl::StatusOr<std::string> from_dave = dave->ComposeText(alice_id, "too late");
  ASSERT_TRUE(from_dave.ok()) << from_dave.status();

  // Eight days on, alice's client rotates and publishes a new signed prekey.
  skew_ = absl::Hours(24 * 8);
  rotated = alice->RotateSignedPreKeyIfDue();
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_TRUE(*rotated);
  const uint32_t second = alice->account()->signed_prekey_id;
  EXPECT_NE(second, first);
  EXPECT_TRUE(alice->store().ContainsSignedPreKey(first).value());  // kept for the grace period
  rotated = alice->RotateSignedPreKeyIfDue();
  ASSERT_TRUE(rotated.ok());
  EXPECT_FALSE(*rotated);  // not due again yet

  // A peer claiming now gets the new key, and its messages decrypt.
  auto carol = Join(carol_id);
  ASSERT_NE(carol, nullptr);
  auto claimed = carol->gateway().ClaimBundles(alice_id, 1);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  ASSERT_EQ(claimed->bundles_size(), 1);
  EXPECT_EQ(claimed->bundles(0).signed_prekey().key_id(), second);
  ASSERT_TRUE(carol->SendText(alice_id, "built on the new key", absl::Seconds(20)).ok());

  // The session built on the old key still decrypts within the grace period.
  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());
  ASSERT_TRUE(bob->AwaitSent(*from_bob, absl::Seconds(20)).ok());
  std::vector<MessengerEvent> got = Await(*alice, Kind::kMessage, 2);
  ASSERT_EQ(got.size(), 2u);
  std::set<std::string> texts{got[0].text, got[1].text};
  EXPECT_EQ(texts, (std::set<std::string>{"built on the old key", "built on the new key"}));

  // After the grace period the old private key is deleted (and the current one, 31 days old by
  // then, is rotated again); a PreKey message on the old key no longer decrypts.
  skew_ = absl::Hours(24 * 39);
  rotated = alice->RotateSignedPreKeyIfDue();
  ASSERT_TRUE(rotated.ok());
  EXPECT_TRUE(*rotated);
  EXPECT_FALSE(alice->store().ContainsSignedPreKey(first).value());
  EXPECT_TRUE(alice->store().ContainsSignedPreKey(second).value());
  ASSERT_TRUE(dave->Connect(absl::Seconds(20)).ok());
  ASSERT_TRUE(dave->AwaitSent(*from_dave, absl::Seconds(20)).ok());
  // It is reported (not shown as a message) and acknowledged.
  bool reported = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(20);
       !reported && absl::Now() < deadline;) {
    for (const MessengerEvent& e : alice->Pump(absl::Milliseconds(200))) {
      EXPECT_NE(e.kind, Kind::kMessage) << e.text;
      if (e.peer == dave_id &&
          (e.kind == Kind::kRejected || e.kind == Kind::kIdentityChanged)) {
        reported = true;
      }
    }
  }
  EXPECT_TRUE(reported);
}

// ---- The same through the `padlock` binary ----

using Result = CliResult;

class AccountCliE2eTest : public CliFixture {};

TEST_F(AccountCliE2eTest, DevicesUnlinkStoriesAndHelp) {
  Result r = Run("nobody", {"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "devices unlink DEVICE_ID")) << r.output;
  EXPECT_TRUE(Contains(r.output, "story post --to")) << r.output;
  EXPECT_TRUE(Contains(r.output, "story list")) << r.output;

  const std::string alice = UniqueUser("cli-alice");
  const std::string bob = UniqueUser("cli-bob");
  const std::string carol = UniqueUser("cli-carol");
  for (const std::string& u : {alice, bob, carol}) ASSERT_EQ(Run(u, {"register", u}).exit_code, 0);

  // Link a laptop: `padlock link` prints the code and waits for the approval; with --timeout 0
  // it stops at once (the code stays the same), and running it again after the approval
  // completes the link.
  r = Run("alice-laptop", {"--json", "link", alice, "--timeout", "0"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "not approved")) << r.output;
  const size_t at = r.output.find("\"link_code\":\"");
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string code = r.output.substr(at + 13, r.output.find('"', at + 13) - at - 13);
  ASSERT_EQ(Run(alice, {"link-approve", code}).exit_code, 0);
  r = Run("alice-laptop", {"link", alice, "--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "this folder is now " + alice + " device 2")) << r.output;

  r = Run(alice, {"devices"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "device list version 2")) << r.output;
  EXPECT_TRUE(Contains(r.output, "device 2")) << r.output;

  r = Run("alice-laptop", {"devices", "unlink", "2"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "only the primary")) << r.output;
  r = Run(alice, {"devices", "unlink"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = Run(alice, {"devices", "unlink", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "unlinked device 2 (published device list version 3")) << r.output;
  r = Run(alice, {"--json", "devices"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "\"list_version\":3")) << r.output;
  EXPECT_FALSE(Contains(r.output, "\"device\":2")) << r.output;
  r = Run(alice, {"devices", "unlink", "2"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "device 2 is not on the device list")) << r.output;
  r = Run(alice, {"devices", "unlink", "1"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(Contains(r.output, "cannot be unlinked")) << r.output;
  // The unlinked laptop is refused by the server.
  r = Run("alice-laptop", {"status"});
  EXPECT_NE(r.exit_code, 0) << r.output;

  // Stories.
  r = Run(alice, {"story", "post", "hello"});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(Contains(r.output, "--to")) << r.output;
  r = Run(alice, {"story", "post", "--to", "nobody-here", "hello"});
  EXPECT_EQ(r.exit_code, 5) << r.output;
  r = Run(alice, {"story", "post", "--to", bob, "sunset", "at", "the", "pier"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "posted a story to " + bob)) << r.output;

  r = Run(bob, {"--json", "listen", "--count", "1", "--timeout", "30"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "\"event\":\"story\"")) << r.output;
  EXPECT_TRUE(Contains(r.output, "\"text\":\"sunset at the pier\"")) << r.output;
  r = Run(bob, {"story", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, alice + ": sunset at the pier  (until ")) << r.output;
  r = Run(bob, {"history"});
  EXPECT_TRUE(Contains(r.output, "(no messages)")) << r.output;
  r = Run(alice, {"story", "list"});
  EXPECT_TRUE(Contains(r.output, "you → " + bob + ": sunset at the pier")) << r.output;
  r = Run(carol, {"story", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "(no stories")) << r.output;
}

}  // namespace
}  // namespace padlock::client::e2e
