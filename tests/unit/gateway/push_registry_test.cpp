#include "services/gateway/push_registry.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "services/common/runtime/config.h"
#include "services/gateway/gateway_config.h"

namespace padlock::gateway {
namespace {

// The P-256 base point G, uncompressed: a point on the curve.
std::string ValidP256dh() {
  return absl::HexStringToBytes(
      "046B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
      "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5");
}

const std::string kAuth(16, 'a');

// Host → addresses; unknown hosts are NotFound, "flaky.example" fails the resolver.
class FakeResolver final : public HostResolver {
 public:
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host) override {
    resolved.push_back(host);
    if (host == "flaky.example") return absl::UnavailableError("resolver timed out");
    auto it = hosts.find(host);
    if (it == hosts.end()) return absl::NotFoundError("no such host");
    return it->second;
  }
  std::map<std::string, std::vector<std::string>> hosts = {
      {"push.example", {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"}},
      {"ten.example", {"10.1.2.3"}},
      {"rfc1918-172.example", {"172.16.5.4"}},
      {"rfc1918-192.example", {"192.168.1.1"}},
      {"ula.example", {"fd12:3456:789a::1"}},
      {"loop4.example", {"127.0.0.1"}},
      {"loop6.example", {"::1"}},
      {"metadata.example", {"169.254.169.254"}},
      {"linklocal6.example", {"fe80::1"}},
      {"cgnat.example", {"100.64.0.1"}},
      {"multicast.example", {"224.0.0.251"}},
      {"multicast6.example", {"ff02::1"}},
      {"unspecified.example", {"0.0.0.0"}},
      {"unspecified6.example", {"::"}},
      {"mapped.example", {"::ffff:10.0.0.1"}},
      {"mixed.example", {"93.184.216.34", "10.0.0.7"}},
      {"localhost", {"127.0.0.1", "::1"}},
      {"127.0.0.1", {"127.0.0.1"}},
      {"::1", {"::1"}},
  };
  std::vector<std::string> resolved;
};

class PushValidatorTest : public ::testing::Test {
 protected:
  PushVerdict Check(const std::string& endpoint, const std::string& p256dh = ValidP256dh(),
                    const std::string& auth = kAuth) {
    PushSubscriptionValidator validator(&resolver_, allowed_);
    return validator.Check({endpoint, p256dh, auth});
  }
  void ExpectRefused(const std::string& endpoint, std::string_view reason) {
    PushVerdict v = Check(endpoint);
    EXPECT_EQ(v.status.code(), absl::StatusCode::kInvalidArgument) << endpoint << ": " << v.status;
    EXPECT_EQ(v.reason, reason) << endpoint << ": " << v.status;
  }

  FakeResolver resolver_;
  absl::flat_hash_set<std::string> allowed_;
};

TEST_F(PushValidatorTest, PublicHttpsEndpointPasses) {
  PushVerdict v = Check("https://push.example/wpush/v2/abc?x=1");
  EXPECT_TRUE(v.status.ok()) << v.status;
  EXPECT_TRUE(v.reason.empty());
  EXPECT_EQ(resolver_.resolved, std::vector<std::string>{"push.example"});
  EXPECT_TRUE(Check("http://PUSH.example:8080/x").status.ok());
}

TEST_F(PushValidatorTest, PrivateV4Refused) {
  ExpectRefused("https://ten.example/x", "address");
  ExpectRefused("https://rfc1918-172.example/x", "address");
  ExpectRefused("https://rfc1918-192.example/x", "address");
}

TEST_F(PushValidatorTest, PrivateV6Refused) { ExpectRefused("https://ula.example/x", "address"); }

TEST_F(PushValidatorTest, LoopbackRefused) {
  ExpectRefused("https://loop4.example/x", "address");
  ExpectRefused("https://loop6.example/x", "address");
  ExpectRefused("https://localhost/x", "address");
  ExpectRefused("http://127.0.0.1:8080/x", "address");
  ExpectRefused("http://[::1]:8080/x", "address");
}

TEST_F(PushValidatorTest, LinkLocalRefused) {
  ExpectRefused("http://metadata.example/latest", "address");
  ExpectRefused("http://linklocal6.example/", "address");
}

TEST_F(PushValidatorTest, CgnatMulticastUnspecifiedAndMappedRefused) {
  ExpectRefused("https://cgnat.example/", "address");
  ExpectRefused("https://multicast.example/", "address");
  ExpectRefused("https://multicast6.example/", "address");
  ExpectRefused("https://unspecified.example/", "address");
  ExpectRefused("https://unspecified6.example/", "address");
  ExpectRefused("https://mapped.example/", "address");
}

TEST_F(PushValidatorTest, AnyForbiddenAddressAmongSeveralRefuses) {
  ExpectRefused("https://mixed.example/", "address");
}

TEST_F(PushValidatorTest, NonHttpSchemeRefused) {
  ExpectRefused("ftp://push.example/x", "scheme");
  ExpectRefused("file:///etc/passwd", "scheme");
  ExpectRefused("javascript:alert(1)", "scheme");
  ExpectRefused("//push.example/x", "scheme");
  ExpectRefused("push.example/x", "scheme");
  EXPECT_TRUE(resolver_.resolved.empty());  // refused before any DNS
}

TEST_F(PushValidatorTest, OversizeRefused) {
  const std::string prefix = "https://push.example/";
  EXPECT_TRUE(Check(prefix + std::string(kMaxPushEndpointBytes - prefix.size(), 'a')).status.ok());
  ExpectRefused(prefix + std::string(kMaxPushEndpointBytes + 1 - prefix.size(), 'a'), "size");
}

TEST_F(PushValidatorTest, UserinfoRefused) {
  ExpectRefused("https://user:pass@push.example/x", "userinfo");
  ExpectRefused("https://user@push.example/x", "userinfo");
  // An '@' in the path is not userinfo.
  EXPECT_TRUE(Check("https://push.example/a@b").status.ok());
}

TEST_F(PushValidatorTest, MalformedUrlRefused) {
  ExpectRefused("https:///x", "url");
  ExpectRefused("https://push.example:0/", "url");
  ExpectRefused("https://push.example:99999/", "url");
  ExpectRefused("https://push.example:80a/", "url");
  ExpectRefused("https://push .example/", "url");
  ExpectRefused("https://[::1/", "url");
}

TEST_F(PushValidatorTest, BadP256dhRefused) {
  const std::string good = ValidP256dh();
  std::string off_curve = good;
  off_curve.back() ^= 1;
  std::string compressed = good.substr(0, 33);
  compressed[0] = 0x03;
  for (const std::string& p256dh : {std::string(), good.substr(0, 64), good + "x", off_curve,
                                    compressed, std::string(65, '\x04')}) {
    PushVerdict v = Check("https://push.example/x", p256dh);
    EXPECT_EQ(v.status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(v.reason, "p256dh");
  }
}

TEST_F(PushValidatorTest, BadAuthRefused) {
  for (size_t size : {0, 15, 17, 32}) {
    PushVerdict v = Check("https://push.example/x", ValidP256dh(), std::string(size, 'a'));
    EXPECT_EQ(v.status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(v.reason, "auth");
  }
}

TEST_F(PushValidatorTest, AllowListLetsLoopbackThrough) {
  allowed_ = {"127.0.0.1", "localhost", "::1"};
  EXPECT_TRUE(Check("http://127.0.0.1:8080/push").status.ok());
  EXPECT_TRUE(Check("http://LocalHost:8080/push").status.ok());
  EXPECT_TRUE(Check("http://[::1]:8080/push").status.ok());
  // Only the listed hosts: another name that resolves to loopback is still refused.
  ExpectRefused("http://loop4.example/push", "address");
}

TEST_F(PushValidatorTest, UnresolvableHostIsInvalidArgumentResolverFailureUnavailable) {
  ExpectRefused("https://nowhere.example/x", "unresolved");
  PushVerdict v = Check("https://flaky.example/x");
  EXPECT_EQ(v.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(v.reason, "resolver");
}

// A resolver whose look-ups wait until the test releases them (a name server that hangs).
class HangingResolver final : public HostResolver {
 public:
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& /*host*/) override {
    std::unique_lock lock(mu_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return released_; });
    return std::vector<std::string>{"93.184.216.34"};
  }
  bool WaitForWaiting(int n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return waiting_ >= n; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool released_ = false;
};

TEST(PushValidatorBound, LookupsBeyondTheBoundAreRefusedAtOnce) {
  HangingResolver resolver;
  PushSubscriptionValidator validator(&resolver, {}, /*max_lookups=*/2);
  const PushSubscription subscription{"https://slow.example/x", ValidP256dh(), kAuth};
  std::vector<PushVerdict> held(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] { held[i] = validator.Check(subscription); });
  }
  ASSERT_TRUE(resolver.WaitForWaiting(2));
  // Both slots are taken by hanging look-ups: the third is refused without waiting.
  PushVerdict third = validator.Check(subscription);
  EXPECT_EQ(third.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(third.reason, "busy");
  // Checks that need no look-up are not affected.
  EXPECT_EQ(validator.Check({"ftp://slow.example/x", ValidP256dh(), kAuth}).reason, "scheme");
  resolver.Release();
  for (std::thread& t : threads) t.join();
  for (const PushVerdict& v : held) EXPECT_TRUE(v.status.ok()) << v.status;
  // The slots are free again.
  EXPECT_TRUE(validator.Check(subscription).status.ok());
}

TEST(PushAddress, Classification) {
  for (const char* bad : {"10.0.0.1", "172.31.255.255", "192.168.0.1", "127.1.2.3",
                          "169.254.0.1", "100.127.255.255", "0.0.0.0", "255.255.255.255",
                          "224.0.0.1", "::", "::1", "fc00::1", "fdff::1", "fe80::1", "febf::1",
                          "ff0e::1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "not-an-address"}) {
    EXPECT_TRUE(IsForbiddenPushAddress(bad)) << bad;
  }
  for (const char* good : {"8.8.8.8", "100.63.255.255", "100.128.0.0", "172.32.0.1",
                           "192.169.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8",
                           "64:ff9b::808:808"}) {
    EXPECT_FALSE(IsForbiddenPushAddress(good)) << good;
  }
}

// An in-memory store that records what it holds.
class FakeStore final : public PushSubscriptionStore {
 public:
  absl::Status Put(const DeviceRef& device, const PushSubscription& s,
                   absl::Duration ttl) override {
    held[Key(device)] = s.endpoint;
    last_ttl = ttl;
    return absl::OkStatus();
  }
  absl::Status Delete(const DeviceRef& device) override {
    held.erase(Key(device));
    return absl::OkStatus();
  }
  absl::Status Refresh(const DeviceRef& device, absl::Duration ttl) override {
    refreshed.push_back(Key(device));
    last_ttl = ttl;
    return absl::OkStatus();
  }
  static std::string Key(const DeviceRef& d) {
    return d.user_id + ":" + std::to_string(d.device_id);
  }
  std::map<std::string, std::string> held;
  std::vector<std::string> refreshed;
  absl::Duration last_ttl;
};

TEST(PushRegistry, StoresValidRefusesInvalidAndCountsByReason) {
  FakeResolver resolver;
  FakeStore store;
  prometheus::Registry metrics;
  PushRegistry registry({.ttl = absl::Hours(2)}, &resolver, &store, &metrics);
  const DeviceRef alice{"alice", 2};
  ASSERT_TRUE(registry.Register(alice, {"https://push.example/a", ValidP256dh(), kAuth}).ok());
  EXPECT_EQ(store.held.at("alice:2"), "https://push.example/a");
  EXPECT_EQ(store.last_ttl, absl::Hours(2));
  EXPECT_EQ(registry.Register(alice, {"https://ten.example/a", ValidP256dh(), kAuth}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.held.at("alice:2"), "https://push.example/a");  // a refusal changes nothing
  ASSERT_TRUE(registry.Refresh(alice).ok());
  EXPECT_EQ(store.refreshed, std::vector<std::string>{"alice:2"});
  ASSERT_TRUE(registry.Remove(alice).ok());
  EXPECT_TRUE(store.held.empty());

  double registered = -1;
  double refused_address = -1;
  for (const auto& family : metrics.Collect()) {
    for (const auto& m : family.metric) {
      if (family.name == "padlock_gateway_push_subscriptions_registered_total") {
        registered = m.counter.value;
      }
      if (family.name == "padlock_gateway_push_subscriptions_refused_total" &&
          m.label.size() == 1 && m.label[0].value == "address") {
        refused_address = m.counter.value;
      }
    }
  }
  EXPECT_EQ(registered, 1);
  EXPECT_EQ(refused_address, 1);
}

TEST(PushRegistry, VapidKeyUnconfiguredIsFailedPrecondition) {
  FakeResolver resolver;
  FakeStore store;
  PushRegistry registry({}, &resolver, &store);
  absl::StatusOr<std::string> key = registry.VapidPublicKey();
  EXPECT_EQ(key.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(key.status().message(), "push not configured");
}

// A fresh P-256 key as PEM (private and public).
struct PemPair {
  std::string private_pem;
  std::string public_pem;
};

PemPair NewP256Pem() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  PemPair out;
  for (bool is_private : {true, false}) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (is_private) {
      PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    } else {
      PEM_write_bio_PUBKEY(bio, key);
    }
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    (is_private ? out.private_pem : out.public_pem).assign(data, static_cast<size_t>(size));
    BIO_free(bio);
  }
  EVP_PKEY_free(key);
  return out;
}

TEST(VapidKey, FromBase64UrlAndPem) {
  const std::string raw = ValidP256dh();
  std::string text;
  absl::WebSafeBase64Escape(raw, &text);
  absl::StatusOr<std::string> parsed = ParseVapidPublicKey(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, raw);
  EXPECT_EQ(ParseVapidPublicKey("bm90IGEga2V5").status().code(),
            absl::StatusCode::kInvalidArgument);

  const PemPair pem = NewP256Pem();
  absl::StatusOr<std::string> from_private = VapidPublicKeyFromPem(pem.private_pem);
  absl::StatusOr<std::string> from_public = VapidPublicKeyFromPem(pem.public_pem);
  ASSERT_TRUE(from_private.ok()) << from_private.status();
  ASSERT_TRUE(from_public.ok()) << from_public.status();
  EXPECT_EQ(*from_private, *from_public);
  EXPECT_TRUE(IsP256UncompressedPoint(*from_public));
  EXPECT_EQ(VapidPublicKeyFromPem("-----BEGIN NOTHING-----").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PushSettings, FromConfig) {
  std::string key;
  absl::WebSafeBase64Escape(ValidP256dh(), &key);
  runtime::Config config({{"PADLOCK_TOKEN_SECRET", std::string(64, 'a')},
                          {"PADLOCK_TLS", "off"},
                          {"PADLOCK_PUSH_ENDPOINT_TTL", "48h"},
                          {"PADLOCK_PUSH_ALLOWED_HOSTS", " 127.0.0.1, LocalHost "},
                          {"PADLOCK_VAPID_PUBLIC_KEY", key}});
  GatewaySettings s = GatewaySettingsFromConfig(config);
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
  EXPECT_EQ(s.push.ttl, absl::Hours(48));
  EXPECT_EQ(s.push.allowed_hosts, (absl::flat_hash_set<std::string>{"127.0.0.1", "localhost"}));
  EXPECT_EQ(s.push.vapid_public_key, ValidP256dh());

  runtime::Config defaults(
      {{"PADLOCK_TOKEN_SECRET", std::string(64, 'a')}, {"PADLOCK_TLS", "off"}});
  GatewaySettings d = GatewaySettingsFromConfig(defaults);
  EXPECT_EQ(d.push.ttl, absl::Hours(24 * 30));
  EXPECT_TRUE(d.push.allowed_hosts.empty());  // no exemption unless an operator sets one
  EXPECT_TRUE(d.push.vapid_public_key.empty());

  runtime::Config bad({{"PADLOCK_TOKEN_SECRET", std::string(64, 'a')},
                       {"PADLOCK_TLS", "off"},
                       {"PADLOCK_VAPID_PUBLIC_KEY", "AAAA"}});
  GatewaySettingsFromConfig(bad);
  EXPECT_FALSE(bad.Validate().ok());
}

}  // namespace
}  // namespace padlock::gateway
