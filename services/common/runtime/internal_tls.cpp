#include "services/common/runtime/internal_tls.h"

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace padlock::runtime {
namespace {

constexpr std::string_view kHealthService = "grpc.health.v1.Health";
constexpr std::string_view kReflectionPrefix = "grpc.reflection.";

absl::StatusOr<std::string> ReadPemFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream contents;
  contents << in.rdbuf();
  if (contents.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a PEM file"));
  }
  return contents.str();
}

// Runs inside gRPC's server auth filter on every call of a TLS port, after the handshake verified
// the client certificate against the CA. IsBlocking() is false: the check is a few map look-ups,
// so it runs inline on the transport thread instead of on gRPC's thread pool.
class CallerPolicyProcessor final : public grpc::AuthMetadataProcessor {
 public:
  CallerPolicyProcessor(CallerPolicy policy, prometheus::Family<prometheus::Counter>* refused,
                        std::string port_label)
      : policy_(std::move(policy)), refused_(refused), port_label_(std::move(port_label)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* /*consumed_auth_metadata*/,
                       OutputMetadata* /*response_metadata*/) override {
    // The request path ("/padlock.v1.MessageQueue/Enqueue") is among the metadata the filter
    // passes; without it nothing can be decided, so the call is refused (fail closed).
    std::string_view grpc_service;
    if (auto it = auth_metadata.find(":path"); it != auth_metadata.end()) {
      std::string_view path(it->second.data(), it->second.size());
      if (path.size() > 1 && path.front() == '/') {
        path.remove_prefix(1);
        grpc_service = path.substr(0, path.find('/'));
      }
    }
    const std::string identity = context != nullptr ? PeerIdentity(*context) : "";
    if (identity.empty()) {
      Count(grpc_service, "none");
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "client certificate names no padlock identity");
    }
    if (grpc_service.empty()) {
      Count("unknown", identity);
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no method in the request");
    }
    if (CallerAllowed(policy_, identity, grpc_service)) return grpc::Status::OK;
    Count(grpc_service, identity);
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat(identity, " may not call ", std::string(grpc_service)));
  }

 private:
  void Count(std::string_view grpc_service, std::string_view caller) {
    if (refused_ == nullptr) return;
    // Label values are bounded: services are the server's own plus what callers ask for, and a
    // caller is an identity the internal CA issued. An unknown service is folded into "other".
    const bool known = policy_.contains(std::string(grpc_service)) ||
                       grpc_service == kHealthService ||
                       grpc_service.starts_with(kReflectionPrefix);
    refused_
        ->Add({{"port", port_label_},
               {"grpc_service", known ? std::string(grpc_service) : "other"},
               {"caller", std::string(caller)}})
        .Increment();
  }

  const CallerPolicy policy_;
  prometheus::Family<prometheus::Counter>* const refused_;
  const std::string port_label_;
};

}  // namespace

InternalTls InternalTlsFromConfig(Config& config) {
  InternalTls tls;
  tls.insecure = config.Bool("PADLOCK_INTERNAL_INSECURE", false);
  const std::pair<const char*, std::string*> files[] = {
      {"PADLOCK_INTERNAL_CA", &tls.ca_pem},
      {"PADLOCK_INTERNAL_CERT", &tls.cert_pem},
      {"PADLOCK_INTERNAL_KEY", &tls.key_pem}};
  for (const auto& [variable, pem] : files) {
    const std::string path = config.String(variable, "");
    if (tls.insecure) continue;  // read (so not "unknown"), but plaintext was asked for
    if (path.empty()) {
      config.AddError(variable,
                      "required (PEM file; see docs/OPERATIONS.md \"Internal TLS\"); "
                      "PADLOCK_INTERNAL_INSECURE=1 runs internal gRPC in plaintext, for tests "
                      "only");
      continue;
    }
    absl::StatusOr<std::string> contents = ReadPemFile(path);
    if (!contents.ok()) {
      config.AddError(variable, std::string(contents.status().message()));
      continue;
    }
    *pem = *std::move(contents);
  }
  return tls;
}

absl::StatusOr<InternalTls> InternalTlsFromDirectory(const std::string& dir) {
  InternalTls tls;
  const std::pair<const char*, std::string*> files[] = {
      {"ca.crt", &tls.ca_pem}, {"tls.crt", &tls.cert_pem}, {"tls.key", &tls.key_pem}};
  for (const auto& [name, pem] : files) {
    absl::StatusOr<std::string> contents = ReadPemFile(absl::StrCat(dir, "/", name));
    if (!contents.ok()) return contents.status();
    *pem = *std::move(contents);
  }
  return tls;
}

std::string PeerIdentity(const grpc::AuthContext& context) {
  std::string identity;
  for (const grpc::string_ref& san : context.FindPropertyValues("x509_subject_alternative_name")) {
    std::string_view value(san.data(), san.size());
    if (!value.starts_with(kIdentityUriPrefix)) continue;
    value.remove_prefix(kIdentityUriPrefix.size());
    // "service/<name>" or "operator/<who>", nothing else.
    const size_t slash = value.find('/');
    const std::string_view kind = value.substr(0, slash);
    if (slash == std::string_view::npos || slash + 1 == value.size() ||
        value.find('/', slash + 1) != std::string_view::npos ||
        (kind != "service" && kind != "operator")) {
      return "";  // a malformed identity: trust none of the certificate's
    }
    // A certificate naming two identities is ambiguous (a service that is also an operator?).
    if (!identity.empty() && identity != value) return "";
    identity = std::string(value);
  }
  return identity;
}

std::string ServiceIdentity(std::string_view service) {
  return absl::StrCat("service/", std::string(service));
}

bool CallerAllowed(const CallerPolicy& policy, std::string_view identity,
                   std::string_view grpc_service) {
  if (identity.empty()) return false;
  if (grpc_service == kHealthService || grpc_service.starts_with(kReflectionPrefix)) {
    return true;
  }
  auto it = policy.find(std::string(grpc_service));
  if (it == policy.end()) return false;
  if (it->second.contains(std::string(identity))) return true;
  return identity.starts_with("operator/") && it->second.contains(std::string(kAnyOperator));
}

std::shared_ptr<grpc::ServerCredentials> InternalServerCredentials(const InternalTls& tls,
                                                                   CallerPolicy policy,
                                                                   prometheus::Registry* metrics,
                                                                   std::string port_label) {
  if (tls.insecure) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = tls.ca_pem;
  options.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(options);
  prometheus::Family<prometheus::Counter>* refused = nullptr;
  if (metrics != nullptr) {
    refused = &prometheus::BuildCounter()
                   .Name("padlock_internal_calls_refused_total")
                   .Help("Calls refused on an internal port because the caller's certificate "
                         "identity may not call the service (or names no identity).")
                   .Register(*metrics);
  }
  credentials->SetAuthMetadataProcessor(std::make_shared<CallerPolicyProcessor>(
      std::move(policy), refused, std::move(port_label)));
  return credentials;
}

std::shared_ptr<grpc::ChannelCredentials> InternalChannelCredentials(const InternalTls& tls) {
  if (tls.insecure) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.ca_pem;
  options.pem_private_key = tls.key_pem;
  options.pem_cert_chain = tls.cert_pem;
  return grpc::SslCredentials(options);
}

}  // namespace padlock::runtime
