#pragma once
// Trust between Padlock services: mutual TLS on every internal port, and who may call what.
//
// Every internal server asks for a client certificate signed by the internal CA and verifies it
// in the TLS handshake (no certificate, or one from another CA: the connection fails before any
// call). Then, per call, a CallerPolicy decides by the caller's identity — the URI SAN
// `spiffe://padlock/service/<name>` or `spiffe://padlock/operator/<who>` of its certificate —
// whether it may call the requested gRPC service: PERMISSION_DENIED otherwise. Health and
// reflection are open to every verified identity (probes run with the service's own
// certificate). Every internal client presents its own certificate and checks that the server's
// certificate names the service it meant to reach (a DNS SAN such as `key-directory`), whatever
// address it dialled.
//
// Certificates come from scripts/lib/internal-certs.sh (local stack, compose, tests) or
// cert-manager (Kubernetes); docs/OPERATIONS.md "Internal TLS".
//
// Environment:
//   PADLOCK_INTERNAL_CA        PEM file of the internal CA (cert-manager: ca.crt)
//   PADLOCK_INTERNAL_CERT      PEM file of this process's certificate chain (tls.crt)
//   PADLOCK_INTERNAL_KEY       PEM file of its private key (tls.key)
//   PADLOCK_INTERNAL_INSECURE  1/true: plaintext internal gRPC and no caller checks, for tests
//                              only. Without it the three files are required: a service never
//                              falls back to plaintext silently.
//
// The files are read once at start-up; rotating them takes a restart (docs/OPERATIONS.md).

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "services/common/runtime/config.h"

namespace grpc {
class AuthContext;
}  // namespace grpc

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace padlock::runtime {

// The PEM material of one process, or the explicit plaintext mode.
struct InternalTls {
  bool insecure = false;
  std::string ca_pem = {};
  std::string cert_pem = {};
  std::string key_pem = {};
};

// Reads PADLOCK_INTERNAL_*; errors (missing or unreadable files without the insecure flag) are
// recorded in `config`.
InternalTls InternalTlsFromConfig(Config& config);

// Reads PEM files directly (tools and tests): `dir` holding tls.crt, tls.key and ca.crt, the
// layout of internal-certs.sh and of a cert-manager Secret. NotFound / InvalidArgument naming the
// file otherwise.
absl::StatusOr<InternalTls> InternalTlsFromDirectory(const std::string& dir);

// The identity a certificate's URI SAN names, without the prefix: "service/gateway",
// "operator/alice". Empty when the peer presented no such SAN (or no certificate), or when a
// certificate names a malformed identity under the prefix or two different ones.
std::string PeerIdentity(const grpc::AuthContext& context);

inline constexpr std::string_view kIdentityUriPrefix = "spiffe://padlock/";
// Identity of a service by name ("gateway" → "service/gateway").
std::string ServiceIdentity(std::string_view service);
// Matches any operator certificate in a CallerPolicy.
inline constexpr std::string_view kAnyOperator = "operator/*";

// Who may call which gRPC service on one listening port: full service name
// ("padlock.v1.MessageQueue") → identities ("service/gateway", kAnyOperator). Services not
// listed are refused to everybody, except grpc.health.v1.Health and server reflection, which
// every verified identity may call.
using CallerPolicy = std::map<std::string, std::set<std::string>>;

// True when `identity` may call `grpc_service` under `policy` (the rule above).
bool CallerAllowed(const CallerPolicy& policy, std::string_view identity,
                   std::string_view grpc_service);

// Credentials for an internal listening port: insecure when tls.insecure; otherwise TLS that
// requires and verifies a client certificate from the CA, with `policy` checked on every call.
// Refused calls are counted in padlock_internal_calls_refused_total{port, grpc_service, caller}
// of `metrics` (may be null); `port_label` names the port there ("grpc", "admin").
std::shared_ptr<grpc::ServerCredentials> InternalServerCredentials(const InternalTls& tls,
                                                                   CallerPolicy policy,
                                                                   prometheus::Registry* metrics,
                                                                   std::string port_label);

// Credentials for a channel to an internal service: insecure when tls.insecure; otherwise this
// process's certificate and the CA as the only root.
std::shared_ptr<grpc::ChannelCredentials> InternalChannelCredentials(const InternalTls& tls);

}  // namespace padlock::runtime
