// The Redis key inventory of docs/PRIVACY.md, enforced: the whole backend (tests/harness/stack.h)
// is driven through the public gateway through every feature that writes Redis (register, login,
// a pending login challenge, key publication and claims, a push subscription, device streams,
// 1:1 and shared-payload sends with a retry, acks, presence visibility nobody/everyone with
// subscriptions, rate limits).
// Then every key in Redis must match exactly one row of the doc's table, have the type it names,
// carry a time-to-live where it says "yes", and — where it says the sender is "never" there —
// hold the sender's user id neither in its name nor in its content. A key of a kind without a
// row fails naming the key. Every row must also have been seen, unless listed in kNotExercised.
// And the two minimisations themselves: dedupe records are 16-byte keyed ids, and last seen is
// stored only for visibility everyone (deleted on a switch to nobody).
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/harness.h"
#include "tests/harness/stack.h"

namespace padlock::e2e {
namespace {

// One row of the inventory table.
struct Row {
  std::string pattern;  // as written, e.g. q:{<user>:<device>}
  std::regex regex;
  std::string type;
  bool ttl = false;           // "yes": the key must carry a TTL
  bool sender_never = false;  // "never": no sender user id in name or content
};

// Rows this test cannot produce without machinery of its own, and why.
const std::set<std::string> kNotExercised = {
    "invite:{<token>}",       // needs PADLOCK_REGISTRATION_POLICY=invite and the admin CLI
    "pr:sweep:{pr.<shard>}",  // a 5 s lock held only while a replica sweeps
    // written only when the message-queue has a push interval (a notifier); this stack has none
    "pn:{<user>:<device>}",
};

std::string PlaceholderRegex(const std::string& name) {
  if (name == "device" || name == "parity" || name == "shard") return "[0-9]+";
  if (name == "hex") return "[0-9a-f]+";
  return ".+";
}

// `<name>` placeholders become their regex; everything else matches literally.
std::regex PatternRegex(const std::string& pattern) {
  std::string out = "^";
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '<') {
      const size_t end = pattern.find('>', i);
      if (end != std::string::npos) {
        out += PlaceholderRegex(pattern.substr(i + 1, end - i - 1));
        i = end;
        continue;
      }
    }
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return std::regex(out + "$");
}

std::string Cell(absl::string_view cell) { return std::string(absl::StripAsciiWhitespace(cell)); }

// The table under "### Redis key inventory" in the doc at `path`.
std::vector<Row> ParseInventory(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<Row> rows;
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) {
      in_section = line == "### Redis key inventory";
      continue;
    }
    if (!in_section || line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    for (absl::string_view c : absl::StrSplit(line, '|')) cells.push_back(Cell(c));
    // "| a | b |" splits into "", a, b, "": 7 columns give 9 pieces.
    EXPECT_EQ(cells.size(), 9u) << "inventory row with other than 7 columns: " << line;
    if (cells.size() != 9u) continue;
    Row row;
    row.pattern = std::string(
        absl::StripPrefix(absl::StripSuffix(absl::string_view(cells[1]), "`"), "`"));
    row.regex = PatternRegex(row.pattern);
    row.type = cells[2];
    EXPECT_TRUE(cells[4] == "yes" || cells[4] == "none") << "TTL is yes or none: " << line;
    row.ttl = cells[4] == "yes";
    EXPECT_TRUE(cells[6] == "never" || cells[6] == "-") << "sender is never or -: " << line;
    row.sender_never = cells[6] == "never";
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<const Row*> Matching(const std::vector<Row>& rows, const std::string& key) {
  std::vector<const Row*> out;
  for (const Row& row : rows) {
    if (std::regex_match(key, row.regex)) out.push_back(&row);
  }
  return out;
}

class PrivacyInventoryE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rows_ = ParseInventory(PADLOCK_PRIVACY_DOC);
    testing::StackOptions options;
    // Production rate limits (test's are 1e6 per second: their buckets would expire at once),
    // with room for this test's registrations and logins from one address.
    options.gateway_env = {{"PADLOCK_RATE_LIMIT_PROFILE", "production"},
                           {"PADLOCK_REGISTER_BURST", "100"},
                           {"PADLOCK_LOGIN_BURST", "100"},
                           // A push subscription to a loopback "push service" (never called).
                           {"PADLOCK_PUSH_ALLOWED_HOSTS", "127.0.0.1"}};
    auto stack = testing::PadlockStack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    ops_ = std::make_unique<AccountOps>(
        grpc::CreateChannel(stack_->gateway_target(), stack_->gateway_credentials()));
  }

  std::string Cli(const std::string& key, const std::vector<std::string>& args) {
    absl::StatusOr<std::string> out = stack_->RedisCliForKey(key, args);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*out)) : "";
  }

  // Everything a key holds, as redis-cli prints it (raw bytes), for substring searches.
  std::string Content(const std::string& key, const std::string& type) {
    if (type == "string") return Cli(key, {"GET", key});
    if (type == "hash") return Cli(key, {"HGETALL", key});
    if (type == "set") return Cli(key, {"SMEMBERS", key});
    if (type == "zset") return Cli(key, {"ZRANGE", key, "0", "-1"});
    if (type == "stream") return Cli(key, {"XRANGE", key, "-", "+"});
    if (type == "list") return Cli(key, {"LRANGE", key, "0", "-1"});
    return "";
  }

  Account MustRegister(const std::string& name) {
    auto account = ops_->Register(absl::StrCat(name, ".", prefix_));
    EXPECT_TRUE(account.ok()) << account.status();
    return account.ok() ? *std::move(account) : Account{};
  }
  std::unique_ptr<DeviceConn> Connect(const Account& account) {
    auto token = ops_->Login(account, 1);
    EXPECT_TRUE(token.ok()) << token.status();
    auto conn = DeviceConn::Open(ops_->stub(), token.ok() ? *token : "");
    EXPECT_TRUE(conn->WaitConnected().has_value()) << "no connected frame for " << account.user;
    return conn;
  }
  static bool SetVisibility(DeviceConn& conn, pb::PresenceVisibility visibility) {
    pb::ClientFrame frame;
    frame.mutable_set_presence_visibility()->set_visibility(visibility);
    return conn.Write(frame);
  }
  // Waits until the user's presence hash says `field` is (or is not) there.
  bool WaitMetaField(const std::string& user, const std::string& field, bool present) {
    const std::string key = absl::StrCat("pr:meta:{", user, "}");
    return testing::WaitFor(
        [&] { return Cli(key, {"HEXISTS", key, field}) == (present ? "1" : "0"); },
        absl::Seconds(20));
  }
  bool WaitOffline(const std::string& user) {
    const std::string key = absl::StrCat("pr:on:{", user, "}");
    return testing::WaitFor([&] { return Cli(key, {"HLEN", key}) == "0"; }, absl::Seconds(20));
  }

  std::vector<Row> rows_;
  std::unique_ptr<testing::PadlockStack> stack_;
  std::unique_ptr<AccountOps> ops_;
  const std::string prefix_ = absl::StrCat("pv", getpid());
};

TEST(PrivacyInventory, TheDocTableParsesAndAnUnknownKindMatchesNoRow) {
  // Guards the enforcement itself: no rows would make every check below pass vacuously.
  const std::vector<Row> rows = ParseInventory(PADLOCK_PRIVACY_DOC);
  ASSERT_GE(rows.size(), 15u);
  EXPECT_TRUE(Matching(rows, "brand-new-kind:{alice:1}").empty());
  EXPECT_EQ(Matching(rows, "q:{alice:1}").size(), 1u);
  EXPECT_EQ(Matching(rows, "qd1:{alice:1}").size(), 1u);
  EXPECT_EQ(Matching(rows, "pr:exp:{pr.7}").size(), 1u);
  EXPECT_EQ(Matching(rows, "gp:{00ff}").size(), 1u);
  EXPECT_TRUE(Matching(rows, "gp:{alice:1:00ff}").empty());  // the old, sender-naming form
}

TEST_F(PrivacyInventoryE2eTest, EveryRedisKeyIsInTheInventoryWithItsTtlAndWithoutSenders) {
  Account alice = MustRegister("alice");  // the only sender
  Account bob = MustRegister("bob");      // visibility everyone, then nobody
  Account carol = MustRegister("carol");  // visibility nobody
  Account dave = MustRegister("dave");    // never connects: his envelopes stay pending
  // A login challenge that is never used (it stays until its TTL).
  ASSERT_TRUE(ops_->Challenge(dave.user, 1).ok());
  // Carol registers a Web Push subscription (the gateway's push:{user:device} key).
  {
    pb::SetPushSubscriptionRequest request;
    request.mutable_subscription()->set_endpoint("http://127.0.0.1:9/push/carol");
    request.mutable_subscription()->set_p256dh(absl::HexStringToBytes(
        "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
        "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"));
    request.mutable_subscription()->set_auth(std::string(16, 'k'));
    pb::SetPushSubscriptionResponse response;
    grpc::ClientContext context;
    Authorize(context, carol.primary_token);
    grpc::Status status = ops_->stub().SetPushSubscription(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // Alice fetches bob's keys (the claim rate-limit buckets).
  {
    pb::GatewayClaimBundlesRequest claim;
    claim.set_user_id(bob.user);
    pb::ClaimBundlesResponse bundles;
    grpc::ClientContext context;
    Authorize(context, alice.primary_token);
    grpc::Status status = ops_->stub().ClaimBundles(&context, claim, &bundles);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  auto b1 = Connect(bob);
  ASSERT_TRUE(SetVisibility(*b1, pb::PRESENCE_VISIBILITY_EVERYONE));
  auto c1 = Connect(carol);
  ASSERT_TRUE(SetVisibility(*c1, pb::PRESENCE_VISIBILITY_NOBODY));
  auto a1 = Connect(alice);
  pb::ClientFrame watch;
  watch.mutable_subscribe_presence()->add_user_ids(bob.user);
  watch.mutable_subscribe_presence()->add_user_ids(carol.user);
  ASSERT_TRUE(a1->Write(watch));
  ASSERT_TRUE(a1->WaitFrame([&](const pb::ServerFrame& f) {
                  return f.has_presence_event() &&
                         f.presence_event().status().user_id() == bob.user &&
                         f.presence_event().status().online();
                }).has_value());

  // 1:1 sends: to bob (online, acked at once) and dave (pending); the one to dave again with the
  // same message id, which the keyed dedupe id must still recognise as a retry.
  auto to_bob = a1->Result(a1->Send(OneToOne(alice, 1, bob, prefix_ + "-to-bob")));
  ASSERT_TRUE(to_bob.has_value() && to_bob->has_accepted());
  const pb::OutgoingMessage for_dave = OneToOne(alice, 1, dave, prefix_ + "-to-dave");
  auto first = a1->Result(a1->Send(for_dave));
  auto retry = a1->Result(a1->Send(for_dave));
  ASSERT_TRUE(first.has_value() && first->has_accepted());
  ASSERT_TRUE(retry.has_value() && retry->has_accepted());
  EXPECT_EQ(retry->accepted().placements(0).server_id(),
            first->accepted().placements(0).server_id());
  // A group send: one shared payload for bob, carol and dave.
  pb::OutgoingMessage group;
  group.set_message_id(MessageId(prefix_ + "-group"));
  group.set_shared_ciphertext("opaque-group-payload");
  group.set_shared_type(pb::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  for (const Account* to : {&bob, &carol, &dave}) {
    pb::Recipient* r = group.add_recipients();
    r->mutable_device()->set_user_id(to->user);
    r->mutable_device()->set_device_id(1);
    r->set_registration_id(to->devices.at(1).registration_id);
    r->set_header("opaque-header");
  }
  auto grouped = a1->Result(a1->Send(group));
  ASSERT_TRUE(grouped.has_value() && grouped->has_accepted());
  ASSERT_TRUE(b1->WaitEnvelopes(2));
  ASSERT_TRUE(c1->WaitEnvelopes(1));

  // Presence: last seen is kept for bob (everyone) and never for carol (nobody).
  b1->Cancel();
  c1->Cancel();
  ASSERT_TRUE(WaitOffline(bob.user));
  ASSERT_TRUE(WaitOffline(carol.user));
  EXPECT_TRUE(WaitMetaField(bob.user, "seen", true)) << "everyone: last seen kept";
  const std::string carol_meta = absl::StrCat("pr:meta:{", carol.user, "}");
  EXPECT_EQ(Cli(carol_meta, {"HEXISTS", carol_meta, "seen"}), "0") << "nobody: no last seen";
  // Bob switches to nobody: his stored last seen goes.
  b1 = Connect(bob);
  ASSERT_TRUE(SetVisibility(*b1, pb::PRESENCE_VISIBILITY_NOBODY));
  EXPECT_TRUE(WaitMetaField(bob.user, "seen", false)) << "switch to nobody: last seen deleted";

  // The inventory.
  absl::StatusOr<std::vector<std::string>> keys = stack_->AllRedisKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_FALSE(keys->empty());
  std::set<std::string> seen_rows;
  int checked_for_sender = 0;
  bool sender_found_in_an_inbox = false;
  for (const std::string& key : *keys) {
    SCOPED_TRACE(key);
    const std::vector<const Row*> rows = Matching(rows_, key);
    if (rows.size() != 1) {
      ADD_FAILURE() << "Redis key '" << key << "' matches " << rows.size()
                    << " rows of the Redis key inventory in docs/PRIVACY.md (exactly one "
                       "needed): add a row (pattern, type, TTL, what it reveals) for its kind";
      continue;
    }
    const Row& row = *rows[0];
    const std::string type = Cli(key, {"TYPE", key});
    if (type == "none") continue;  // expired or deleted since KEYS
    seen_rows.insert(row.pattern);
    EXPECT_EQ(type, row.type) << "docs/PRIVACY.md says " << row.pattern << " is a " << row.type;
    if (row.ttl) {
      int64_t pttl = 0;
      ASSERT_TRUE(absl::SimpleAtoi(Cli(key, {"PTTL", key}), &pttl));
      EXPECT_TRUE(pttl > 0 || pttl == -2)
          << "key '" << key << "' has no TTL (PTTL " << pttl << "), docs/PRIVACY.md says it has";
    }
    const std::string content = Content(key, type);
    if (row.sender_never) {
      ++checked_for_sender;
      EXPECT_EQ(key.find(alice.user), std::string::npos)
          << "docs/PRIVACY.md: a " << row.pattern << " key never names a sender";
      EXPECT_EQ(content.find(alice.user), std::string::npos)
          << "docs/PRIVACY.md: a " << row.pattern << " key never holds a sender";
    }
    if (key.rfind("q:{" + dave.user, 0) == 0 && content.find(alice.user) != std::string::npos) {
      sender_found_in_an_inbox = true;
    }
    if (key.rfind("qd", 0) == 0) {
      // Dedupe records: "_b" (the bucket number) and 16-byte keyed ids, nothing else.
      const std::string lengths = Cli(
          key, {"EVAL",
                "local o = {} for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do "
                "if f ~= '_b' then o[#o + 1] = #f end end return o",
                "1", key});
      for (absl::string_view n : absl::StrSplit(lengths, '\n', absl::SkipWhitespace())) {
        EXPECT_EQ(n, "16") << "dedupe record of another size in " << key;
      }
    }
  }
  // The searches above can fail: the sender is where the doc says it is (dave's inbox).
  EXPECT_TRUE(sender_found_in_an_inbox);
  EXPECT_GE(checked_for_sender, 5);
  for (const Row& row : rows_) {
    if (kNotExercised.count(row.pattern) > 0) continue;
    EXPECT_TRUE(seen_rows.count(row.pattern) > 0)
        << "no key of row " << row.pattern
        << " was produced: exercise it here or list it in kNotExercised with why";
  }
}

}  // namespace
}  // namespace padlock::e2e
