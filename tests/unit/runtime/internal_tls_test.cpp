// Internal TLS settings and the caller policy (runtime/internal_tls.h); the handshake and the
// per-call check against real binaries are in tests/e2e/internal_trust.
#include "services/common/runtime/internal_tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <grpcpp/security/auth_context.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "services/common/runtime/server.h"
#include "tests/harness/harness.h"

namespace padlock::runtime {
namespace {


// The properties gRPC's TLS puts in an AuthContext, for the SANs only.
class FakeAuthContext final : public grpc::AuthContext {
 public:
  explicit FakeAuthContext(std::vector<std::string> sans) : sans_(std::move(sans)) {}
  bool IsPeerAuthenticated() const override { return true; }
  std::vector<grpc::string_ref> GetPeerIdentity() const override { return {}; }
  std::string GetPeerIdentityPropertyName() const override { return ""; }
  std::vector<grpc::string_ref> FindPropertyValues(const std::string& name) const override {
    std::vector<grpc::string_ref> values;
    if (name != "x509_subject_alternative_name") return values;
    for (const std::string& san : sans_) values.emplace_back(san);
    return values;
  }
  grpc::AuthPropertyIterator begin() const override { return EmptyIterator(); }
  grpc::AuthPropertyIterator end() const override { return EmptyIterator(); }
  void AddProperty(const std::string& /*key*/, const grpc::string_ref& /*value*/) override {}
  bool SetPeerIdentityPropertyName(const std::string& /*name*/) override { return false; }

 private:
  struct EmptyIterator : grpc::AuthPropertyIterator {
    EmptyIterator() {}  // the base constructor is protected
  };
  std::vector<std::string> sans_;
};

std::string IdentityOf(std::vector<std::string> sans) {
  return PeerIdentity(FakeAuthContext(std::move(sans)));
}

TEST(PeerIdentity, ReadsTheServiceOrOperatorUri) {
  EXPECT_EQ(IdentityOf({"gateway", "localhost", "spiffe://padlock/service/gateway"}),
            "service/gateway");
  EXPECT_EQ(IdentityOf({"spiffe://padlock/operator/alice"}), "operator/alice");
}

TEST(PeerIdentity, NoneWithoutAPadlockUri) {
  EXPECT_EQ(IdentityOf({}), "");
  EXPECT_EQ(IdentityOf({"gateway", "spiffe://other/service/gateway"}), "");
}

TEST(PeerIdentity, NoneForMalformedOrAmbiguousIdentities) {
  EXPECT_EQ(IdentityOf({"spiffe://padlock/admin/alice"}), "");
  EXPECT_EQ(IdentityOf({"spiffe://padlock/service/"}), "");
  EXPECT_EQ(IdentityOf({"spiffe://padlock/service/a/b"}), "");
  EXPECT_EQ(IdentityOf({"spiffe://padlock/service/gateway", "spiffe://padlock/operator/eve"}),
            "");
  EXPECT_EQ(IdentityOf({"spiffe://padlock/service/gateway", "spiffe://padlock/admin/x"}), "");
  // The same identity twice is still one identity.
  EXPECT_EQ(IdentityOf({"spiffe://padlock/service/presence", "spiffe://padlock/service/presence"}),
            "service/presence");
}

bool HasError(const Config& config, const std::string& variable, const std::string& text) {
  for (const Config::Error& e : config.errors()) {
    if (e.variable == variable && e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(CallerPolicy, AllowsOnlyListedIdentitiesForAService) {
  const CallerPolicy policy = {{"padlock.v1.MessageQueue", {ServiceIdentity("gateway")}}};
  EXPECT_TRUE(CallerAllowed(policy, "service/gateway", "padlock.v1.MessageQueue"));
  EXPECT_FALSE(CallerAllowed(policy, "service/presence", "padlock.v1.MessageQueue"));
  EXPECT_FALSE(CallerAllowed(policy, "operator/alice", "padlock.v1.MessageQueue"));
  // Services not listed are refused to everybody.
  EXPECT_FALSE(CallerAllowed(policy, "service/gateway", "padlock.v1.KeyDirectoryAdmin"));
}

TEST(CallerPolicy, AnyOperatorMatchesOperatorsOnly) {
  const CallerPolicy policy = {{"padlock.v1.KeyDirectoryAdmin", {std::string(kAnyOperator)}}};
  EXPECT_TRUE(CallerAllowed(policy, "operator/alice", "padlock.v1.KeyDirectoryAdmin"));
  EXPECT_FALSE(CallerAllowed(policy, "service/gateway", "padlock.v1.KeyDirectoryAdmin"));
  EXPECT_FALSE(CallerAllowed(policy, "service/operator", "padlock.v1.KeyDirectoryAdmin"));
}

TEST(CallerPolicy, HealthAndReflectionAreOpenToEveryIdentityButNone) {
  const CallerPolicy policy;
  EXPECT_TRUE(CallerAllowed(policy, "service/presence", "grpc.health.v1.Health"));
  EXPECT_TRUE(CallerAllowed(policy, "operator/bob", "grpc.reflection.v1alpha.ServerReflection"));
  EXPECT_FALSE(CallerAllowed(policy, "", "grpc.health.v1.Health"));
}

TEST(InternalTlsConfig, RefusesToStartWithoutCertificatesUnlessInsecure) {
  Config config({});
  InternalTls tls = InternalTlsFromConfig(config);
  EXPECT_FALSE(tls.insecure);
  EXPECT_TRUE(HasError(config, "PADLOCK_INTERNAL_CA", "PADLOCK_INTERNAL_INSECURE=1"));
  EXPECT_TRUE(HasError(config, "PADLOCK_INTERNAL_CERT", "required"));
  EXPECT_TRUE(HasError(config, "PADLOCK_INTERNAL_KEY", "required"));

  Config insecure({{"PADLOCK_INTERNAL_INSECURE", "1"}});
  tls = InternalTlsFromConfig(insecure);
  EXPECT_TRUE(tls.insecure);
  EXPECT_TRUE(insecure.errors().empty());
}

TEST(InternalTlsConfig, NamesUnreadableAndNonPemFiles) {
  padlock::testing::TempDir dir;
  const std::string not_pem = dir.path() + "/not.pem";
  std::ofstream(not_pem) << "hello";
  Config config({{"PADLOCK_INTERNAL_CA", not_pem},
                 {"PADLOCK_INTERNAL_CERT", dir.path() + "/missing.crt"},
                 {"PADLOCK_INTERNAL_KEY", not_pem}});
  InternalTlsFromConfig(config);
  EXPECT_TRUE(HasError(config, "PADLOCK_INTERNAL_CA", "is not a PEM file"));
  EXPECT_TRUE(HasError(config, "PADLOCK_INTERNAL_CERT", "cannot read"));
}

TEST(AdminPortConfig, FollowsTheGrpcHostByDefault) {
  Config config({{"PADLOCK_GRPC_ADDRESS", "127.0.0.1:7430"}});
  ServerOptions options = ServerOptionsFromConfig(config, "key-directory", 7430, 9430);
  AdminPortFromConfig(config, options, 7431);
  EXPECT_EQ(options.admin_listen_address, "127.0.0.1:7431");
  EXPECT_TRUE(config.errors().empty());

  Config port({{"PADLOCK_ADMIN_PORT", "9999"}});
  options = ServerOptionsFromConfig(port, "key-directory", 7430, 9430);
  AdminPortFromConfig(port, options, 7431);
  EXPECT_EQ(options.admin_listen_address, "0.0.0.0:9999");
}

TEST(AdminPortConfig, AddressAndPortTogetherIsAnError) {
  Config config({{"PADLOCK_ADMIN_ADDRESS", "127.0.0.1:1"}, {"PADLOCK_ADMIN_PORT", "2"}});
  ServerOptions options = ServerOptionsFromConfig(config, "key-directory", 7430, 9430);
  AdminPortFromConfig(config, options, 7431);
  EXPECT_TRUE(HasError(config, "PADLOCK_ADMIN_ADDRESS", "not both"));
}

}  // namespace
}  // namespace padlock::runtime
