// The limits table of docs/PROTOCOL.md against the code: every row's value must equal the default
// the services (and the SDK) actually use, and every limit known here must be in the table. The
// services' defaults are read the way main() reads them: *SettingsFromConfig with an empty
// configuration (errors such as a missing token secret do not matter here), and the
// key-directory's RegistryOptions (its main.cpp passes the same defaults; checked from its source
// too, as it has no settings function to call).

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "clients/sdk/content.h"
#include "clients/sdk/device_crypto.h"
#include "gtest/gtest.h"
#include "services/common/runtime/config.h"
#include "services/gateway/gateway_config.h"
#include "services/key_directory/key_registry.h"
#include "services/message_queue/message_queue_config.h"
#include "services/presence/presence_config.h"
#include "tests/harness/harness.h"
#include "tests/unit/clients/test_device.h"

namespace padlock {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// "30 d", "1 h", "12 min", "60 s", "500 ms": the largest unit that divides the duration.
std::string DocDuration(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  if (ms % 86'400'000 == 0) return absl::StrCat(ms / 86'400'000, " d");
  if (ms % 3'600'000 == 0) return absl::StrCat(ms / 3'600'000, " h");
  if (ms % 60'000 == 0) return absl::StrCat(ms / 60'000, " min");
  if (ms % 1'000 == 0) return absl::StrCat(ms / 1'000, " s");
  return absl::StrCat(ms, " ms");
}
// A token bucket's refill written as the period of one token ("12 min"), or a rate ("50/s").
std::string FormatPeriod(double per_second) {
  return DocDuration(absl::Milliseconds(std::llround(1000.0 / per_second)));
}
std::string FormatRate(double per_second) { return absl::StrCat(std::llround(per_second), "/s"); }
std::string Count(double n) { return absl::StrCat(std::llround(n)); }

// setting → documented default, from the rows between the markers.
std::map<std::string, std::string> DocumentedLimits() {
  const std::string doc = ReadFile(PADLOCK_PROTOCOL_MD);
  EXPECT_FALSE(doc.empty()) << "cannot read " << PADLOCK_PROTOCOL_MD;
  const size_t begin = doc.find("<!-- limits:begin -->");
  const size_t end = doc.find("<!-- limits:end -->");
  EXPECT_NE(begin, std::string::npos) << "no limits:begin marker in docs/PROTOCOL.md";
  EXPECT_NE(end, std::string::npos) << "no limits:end marker in docs/PROTOCOL.md";
  std::map<std::string, std::string> out;
  if (begin == std::string::npos || end == std::string::npos) return out;
  for (absl::string_view line : absl::StrSplit(doc.substr(begin, end - begin), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!absl::StartsWith(line, "|") || absl::StartsWith(line, "| ---") ||
        absl::StartsWith(line, "| limit")) {
      continue;
    }
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    // "", limit, default, setting, beyond it, ""
    EXPECT_GE(cells.size(), 5u) << line;
    if (cells.size() < 5) continue;
    std::string value(absl::StripAsciiWhitespace(cells[2]));
    std::string setting(absl::StripAsciiWhitespace(cells[3]));
    absl::StrReplaceAll({{"`", ""}}, &value);
    absl::StrReplaceAll({{"`", ""}}, &setting);
    EXPECT_EQ(out.count(setting), 0u) << "listed twice: " << setting;
    out[setting] = value;
  }
  return out;
}

// setting → the default in the code, formatted as the table writes it.
std::map<std::string, std::string> CodeLimits() {
  runtime::Config empty_gw(std::map<std::string, std::string>{});
  const gateway::GatewaySettings gw = gateway::GatewaySettingsFromConfig(empty_gw);
  runtime::Config empty_mq(std::map<std::string, std::string>{});
  const message_queue::MessageQueueSettings mq =
      message_queue::MessageQueueSettingsFromConfig(empty_mq);
  runtime::Config empty_pr(std::map<std::string, std::string>{});
  const presence::PresenceSettings pr = presence::PresenceSettingsFromConfig(empty_pr);
  const key_directory::RegistryOptions kd;
  return {
      // gateway
      {"PADLOCK_MAX_SEND_BYTES", Count(gw.streams.max_send_bytes)},
      {"PADLOCK_MAX_FRAME_BYTES", Count(gw.streams.max_frame_bytes)},
      {"PADLOCK_MAX_UNACKED", Count(gw.streams.max_unacked)},
      {"PADLOCK_MAX_STREAMS", Count(gw.streams.max_streams)},
      {"PADLOCK_SEND_BURST", Count(gw.streams.sends_per_device.burst)},
      {"PADLOCK_SEND_RATE", FormatRate(gw.streams.sends_per_device.per_second)},
      {"PADLOCK_REGISTER_BURST", Count(gw.limits.register_per_address.burst)},
      {"PADLOCK_REGISTER_REFILL", FormatPeriod(gw.limits.register_per_address.per_second)},
      {"PADLOCK_LOGIN_BURST", Count(gw.limits.login_per_address.burst)},
      {"PADLOCK_LOGIN_REFILL", FormatPeriod(gw.limits.login_per_address.per_second)},
      {"PADLOCK_TOKEN_TTL", DocDuration(gw.auth.token_ttl)},
      {"PADLOCK_CHALLENGE_TTL", DocDuration(gw.auth.challenge_ttl)},
      {"PADLOCK_KEEPALIVE_TIME", DocDuration(gw.keepalive_time)},
      {"PADLOCK_KEEPALIVE_TIMEOUT", DocDuration(gw.keepalive_timeout)},
      {"PADLOCK_PUSH_ENDPOINT_TTL", DocDuration(gw.push.ttl)},
      {"fixed: push endpoint bytes", Count(gateway::kMaxPushEndpointBytes)},
      {"fixed: push look-ups in flight", Count(gateway::kMaxPushLookupsInFlight)},
      // message-queue
      {"PADLOCK_MAX_CIPHERTEXT_BYTES", Count(mq.dispatch.max_ciphertext_bytes)},
      {"PADLOCK_RETENTION", DocDuration(mq.limits.retention)},
      {"PADLOCK_ENQUEUE_DEDUPE_WINDOW", DocDuration(mq.limits.dedupe_window)},
      {"PADLOCK_INBOX_MAX_ENVELOPES", Count(mq.limits.max_entries)},
      {"PADLOCK_INBOX_MAX_BYTES", Count(mq.limits.max_bytes)},
      // presence
      {"PADLOCK_PRESENCE_MAX_SUBSCRIPTIONS", Count(pr.options.max_subscriptions)},
      {"PADLOCK_PRESENCE_SUBSCRIBE_BURST", Count(pr.timings.rate_burst)},
      {"PADLOCK_PRESENCE_SUBSCRIBE_REFILL",
       DocDuration(absl::Milliseconds(pr.timings.rate_refill_ms))},
      // key-directory
      {"PADLOCK_MAX_DEVICES", Count(kd.max_devices)},
      {"PADLOCK_PREKEYS_LOW_THRESHOLD", Count(kd.prekeys_low_threshold)},
      {"PADLOCK_CLAIMS_PER_REQUESTER_BURST", Count(kd.claims_per_requester.burst)},
      {"PADLOCK_CLAIMS_PER_REQUESTER_PER_SECOND", FormatRate(kd.claims_per_requester.per_second)},
      {"PADLOCK_CLAIMS_PER_TARGET_BURST", Count(kd.claims_per_target.burst)},
      {"PADLOCK_CLAIMS_PER_TARGET_PER_SECOND", FormatRate(kd.claims_per_target.per_second)},
      {"fixed: one-time prekeys per upload", Count(kd.max_prekeys_per_call)},
      {"fixed: one-time prekeys stored", Count(kd.max_prekeys_stored)},
      // the SDK
      {"SDK: kMaxContentBodySize", Count(client::kMaxContentBodySize)},
  };
}

TEST(ProtocolLimits, EveryDocumentedLimitEqualsTheCodesDefault) {
  const std::map<std::string, std::string> documented = DocumentedLimits();
  const std::map<std::string, std::string> code = CodeLimits();
  for (const auto& [setting, value] : documented) {
    auto it = code.find(setting);
    if (it == code.end()) {
      ADD_FAILURE() << "docs/PROTOCOL.md lists `" << setting
                    << "`, which this test does not know: add it to CodeLimits()";
      continue;
    }
    EXPECT_EQ(value, it->second) << "docs/PROTOCOL.md says " << setting << " = " << value
                                 << ", the code's default is " << it->second;
  }
  for (const auto& [setting, value] : code) {
    EXPECT_EQ(documented.count(setting), 1u)
        << setting << " (default " << value << ") is missing from docs/PROTOCOL.md's limits";
  }
}

// The key-directory's main.cpp reads its variables itself (no settings function to call): its
// defaults must be RegistryOptions' (the values the table is checked against above).
TEST(ProtocolLimits, KeyDirectoryMainUsesRegistryOptionsDefaults) {
  const std::string main_cpp = ReadFile(PADLOCK_KEY_DIRECTORY_MAIN);
  ASSERT_FALSE(main_cpp.empty()) << PADLOCK_KEY_DIRECTORY_MAIN;
  const key_directory::RegistryOptions kd;
  const std::map<std::string, int64_t> expected = {
      {"PADLOCK_MAX_DEVICES", kd.max_devices},
      {"PADLOCK_PREKEYS_LOW_THRESHOLD", kd.prekeys_low_threshold},
      {"PADLOCK_CLAIMS_PER_REQUESTER_BURST", std::llround(kd.claims_per_requester.burst)},
      {"PADLOCK_CLAIMS_PER_REQUESTER_PER_SECOND", std::llround(kd.claims_per_requester.per_second)},
      {"PADLOCK_CLAIMS_PER_TARGET_BURST", std::llround(kd.claims_per_target.burst)},
      {"PADLOCK_CLAIMS_PER_TARGET_PER_SECOND", std::llround(kd.claims_per_target.per_second)},
  };
  for (const auto& [name, value] : expected) {
    const std::regex pattern("\"" + name + "\",\\s*([0-9]+)\\s*,");
    std::smatch match;
    ASSERT_TRUE(std::regex_search(main_cpp, match, pattern)) << name << " not read in main.cpp";
    EXPECT_EQ(std::stoll(match[1].str()), value) << name;
  }
}

// The SDK's largest body, padded and encrypted as the first (pre-key) message of a session — the
// largest form — fits the message-queue's per-device limit; one byte more goes to the 64 KiB
// bucket, which cannot fit. So the SDK refuses early what the server would refuse.
TEST(ProtocolLimits, LargestSdkBodyFitsThePerDeviceCiphertextLimit) {
  runtime::Config empty(std::map<std::string, std::string>{});
  const size_t limit =
      message_queue::MessageQueueSettingsFromConfig(empty).dispatch.max_ciphertext_bytes;
  absl::StatusOr<std::unique_ptr<client::SignalContext>> context = client::SignalContext::Create();
  ASSERT_TRUE(context.ok()) << context.status();
  padlock::testing::TempDir dir;
  client::testing::TestDevice alice(**context, dir.path() + "/alice.db", {"alice", 1});
  client::testing::TestDevice bob(**context, dir.path() + "/bob.db", {"bob", 1});
  ASSERT_TRUE(alice.crypto().ProcessPreKeyBundle(bob.ClaimBundle()).ok());
  const std::string body(client::kMaxContentBodySize, 'x');
  absl::StatusOr<client::Ciphertext> largest =
      alice.crypto().Encrypt(bob.address(), {client::ContentKind::kText, body});
  ASSERT_TRUE(largest.ok()) << largest.status();
  EXPECT_EQ(largest->type, padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE);
  EXPECT_LE(largest->bytes.size(), limit);
  // The next bucket alone is already the whole limit; libsignal's overhead (MAC, header, CBC
  // padding: never 0) would take it over.
  EXPECT_GE(client::PaddedContentSize(client::kMaxContentBodySize + 1), limit);
  EXPECT_GT(largest->bytes.size(), client::PaddedContentSize(client::kMaxContentBodySize));
  EXPECT_EQ(alice.crypto().Encrypt(bob.address(), {client::ContentKind::kText, body + "x"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace padlock
