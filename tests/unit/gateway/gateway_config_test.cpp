#include "services/gateway/gateway_config.h"

#include <gtest/gtest.h>

#include <string>

namespace padlock::gateway {
namespace {

const std::string kHexSecret(64, 'a');  // 32 bytes of 0xaa

bool HasErrorFor(const runtime::Config& config, const std::string& variable) {
  for (const auto& e : config.errors()) {
    if (e.variable == variable) return true;
  }
  return false;
}

TEST(GatewaySettings, TokenSecretIsRequired) {
  runtime::Config config(std::map<std::string, std::string>{});
  GatewaySettingsFromConfig(config);
  EXPECT_TRUE(HasErrorFor(config, "PADLOCK_TOKEN_SECRET"));
}

TEST(GatewaySettings, DefaultsWithSecret) {
  runtime::Config config({{"PADLOCK_TOKEN_SECRET", kHexSecret}, {"PADLOCK_TLS", "off"}});
  GatewaySettings s = GatewaySettingsFromConfig(config);
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
  EXPECT_EQ(s.token_secret, std::string(32, '\xaa'));
  EXPECT_TRUE(s.token_secret_previous.empty());
  EXPECT_EQ(s.auth.audience, "padlock");
  EXPECT_EQ(s.auth.challenge_ttl, absl::Seconds(60));
  EXPECT_EQ(s.auth.token_ttl, absl::Hours(1));
  EXPECT_EQ(s.key_directory_deadline, absl::Seconds(2));
  EXPECT_EQ(s.limits.register_per_address.burst, 5);
  EXPECT_TRUE(s.turn.secret.empty());
  EXPECT_EQ(s.limits.login_per_address.burst, 30);
  EXPECT_EQ(s.streams.max_unacked, 256u);
  EXPECT_EQ(s.streams.max_streams, 20000u);
  EXPECT_EQ(s.streams.sends_per_device.burst, 200);
  EXPECT_FALSE(s.tls);
}

TEST(GatewaySettings, ExecutorQueueAlsoBoundsRelaysInFlight) {
  runtime::Config defaults({{"PADLOCK_TOKEN_SECRET", kHexSecret}, {"PADLOCK_TLS", "off"}});
  EXPECT_EQ(GatewaySettingsFromConfig(defaults).limits.max_relays_in_flight, 4096u);
  runtime::Config config({{"PADLOCK_TOKEN_SECRET", kHexSecret},
                          {"PADLOCK_TLS", "off"},
                          {"PADLOCK_GATEWAY_QUEUE", "100"}});
  GatewaySettings s = GatewaySettingsFromConfig(config);
  ASSERT_TRUE(config.Validate().ok()) << config.Validate();
  EXPECT_EQ(s.queue, 100u);
  EXPECT_EQ(s.limits.max_relays_in_flight, 100u);
}

TEST(GatewaySettings, TlsIsOnByDefaultAndNeedsCertificateAndKey) {
  runtime::Config config({{"PADLOCK_TOKEN_SECRET", kHexSecret}});
  GatewaySettings s = GatewaySettingsFromConfig(config);
  EXPECT_TRUE(s.tls);
  EXPECT_TRUE(HasErrorFor(config, "PADLOCK_TLS_CERT"));
  EXPECT_TRUE(HasErrorFor(config, "PADLOCK_TLS_KEY"));
}

TEST(GatewaySettings, TlsFilesMustBePem) {
  runtime::Config config({{"PADLOCK_TOKEN_SECRET", kHexSecret},
                          {"PADLOCK_TLS_CERT", "/etc/hostname"},
                          {"PADLOCK_TLS_KEY", "/nonexistent/key.pem"}});
  GatewaySettingsFromConfig(config);
  EXPECT_TRUE(HasErrorFor(config, "PADLOCK_TLS_CERT"));
  EXPECT_TRUE(HasErrorFor(config, "PADLOCK_TLS_KEY"));
}

TEST(GatewaySettings, StreamLimitsFromEnvironment) {
  runtime::Config config({{"PADLOCK_TOKEN_SECRET", kHexSecret},
                          {"PADLOCK_TLS", "off"},
                          {"PADLOCK_MAX_STREAMS", "3"},
                          {"PADLOCK_MAX_UNACKED", "16"},
                          {"PADLOCK_SEND_BURST", "2"},
                          {"PADLOCK_SEND_RATE", "1"},
                          {"PADLOCK_MAX_SEND_BYTES", "2048"},
                          {"PADLOCK_GATEWAY_ID", "gw-a"}});
  GatewaySettings s = GatewaySettingsFromConfig(config);
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
  EXPECT_EQ(s.streams.max_streams, 3u);
  EXPECT_EQ(s.streams.max_unacked, 16u);
  EXPECT_EQ(s.streams.sends_per_device.burst, 2);
  EXPECT_EQ(s.streams.sends_per_device.per_second, 1);
  EXPECT_EQ(s.streams.max_send_bytes, 2048u);
  EXPECT_EQ(s.streams.gateway_id, "gw-a");
}

TEST(GatewaySettings, ShortPreviousSecretIsAnError) {
  runtime::Config config(
      {{"PADLOCK_TOKEN_SECRET", kHexSecret}, {"PADLOCK_TOKEN_SECRET_PREVIOUS", "abcd"}});
  GatewaySettingsFromConfig(config);
  EXPECT_TRUE(HasErrorFor(config, "PADLOCK_TOKEN_SECRET_PREVIOUS"));
  EXPECT_FALSE(HasErrorFor(config, "PADLOCK_TOKEN_SECRET"));
}

TEST(GatewaySettings, TestProfileRaisesRegisterLimit) {
  runtime::Config config(
      {{"PADLOCK_TOKEN_SECRET", kHexSecret}, {"PADLOCK_RATE_LIMIT_PROFILE", "test"},
       {"PADLOCK_TLS", "off"},
       {"PADLOCK_TURN_SECRET", "s"}, {"PADLOCK_TURN_URLS", "turn:a:3478, turns:b:5349"}});
  GatewaySettings s = GatewaySettingsFromConfig(config);
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_EQ(s.limits.register_per_address.burst, 1e6);
  EXPECT_EQ(s.limits.login_per_address.burst, 1e6);
  EXPECT_EQ(s.streams.sends_per_device.burst, 1e6);
  EXPECT_EQ(s.turn.urls, (std::vector<std::string>{"turn:a:3478", "turns:b:5349"}));
}

}  // namespace
}  // namespace padlock::gateway
