// padlock-healthcheck: asks a gRPC server for its grpc.health.v1 status, like grpc_health_probe.
//
//   padlock-healthcheck --addr=HOST:PORT [--service=NAME] [--timeout=2s]
//                       [--tls [--tls-ca=FILE] [--tls-server-name=NAME]
//                              [--tls-cert=FILE --tls-key=FILE]]
//
// --tls-cert/--tls-key present a client certificate (mutual TLS): internal services require one
// from the internal CA (runtime/internal_tls.h); any identity may ask for health.
//
// Prints one line on stdout and exits with
//   0  SERVING
//   1  NOT_SERVING (also UNKNOWN, and a service name the server does not know)
//   2  no answer: unreachable, timed out, another RPC error, or bad arguments
// --service="" (the default) is readiness; --service=liveness asks whether the process answers.

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include "services/common/runtime/config.h"
#include "services/common/runtime/health_client.h"

namespace {

constexpr int kServing = 0;
constexpr int kNotServing = 1;
constexpr int kNoAnswer = 2;

constexpr char kUsage[] =
    "usage: padlock-healthcheck --addr=HOST:PORT [--service=NAME] [--timeout=2s]\n"
    "                           [--tls [--tls-ca=FILE] [--tls-server-name=NAME]\n"
    "                                  [--tls-cert=FILE --tls-key=FILE]]\n"
    "exit status: 0 SERVING, 1 NOT_SERVING, 2 unreachable or error\n";

int Usage(std::string_view problem) {
  std::cout << "error: " << problem << "\n" << kUsage;
  return kNoAnswer;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (!arg.starts_with("--")) return Usage(std::string("unexpected argument: ") + argv[i]);
    arg.remove_prefix(2);
    const size_t eq = arg.find('=');
    std::string name(arg.substr(0, eq));
    std::string value;
    if (eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (name != "tls" && i + 1 < argc) {
      value = argv[++i];  // "--addr HOST:PORT"
    }
    if (name != "addr" && name != "service" && name != "timeout" && name != "tls" &&
        name != "tls-ca" && name != "tls-server-name" && name != "tls-cert" &&
        name != "tls-key") {
      return Usage("unknown flag --" + name);
    }
    flags[name] = value.empty() && name == "tls" ? "true" : value;
  }
  if (flags["addr"].empty()) return Usage("--addr is required");

  // The same parsing and messages as the services' PADLOCK_* variables.
  padlock::runtime::Config parsed({{"--addr", flags["addr"]},
                                   {"--timeout", flags["timeout"]},
                                   {"--tls", flags["tls"]}});
  const std::string addr = parsed.HostPort("--addr", "");
  const absl::Duration timeout = parsed.Duration("--timeout", absl::Seconds(2),
                                                 absl::Milliseconds(1), absl::Hours(1));
  const bool tls = parsed.Bool("--tls", false);
  if (!parsed.errors().empty()) {
    const auto& e = parsed.errors().front();
    return Usage(e.variable + ": " + e.message);
  }
  const std::string service = flags["service"];

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!flags["tls-ca"].empty()) {
      std::ifstream in(flags["tls-ca"]);
      if (!in) return Usage("cannot read --tls-ca " + flags["tls-ca"]);
      std::stringstream pem;
      pem << in.rdbuf();
      ssl.pem_root_certs = pem.str();
    }
    if (flags["tls-cert"].empty() != flags["tls-key"].empty()) {
      return Usage("--tls-cert and --tls-key go together");
    }
    if (!flags["tls-cert"].empty()) {
      std::ifstream cert(flags["tls-cert"]);
      std::ifstream key(flags["tls-key"]);
      if (!cert) return Usage("cannot read --tls-cert " + flags["tls-cert"]);
      if (!key) return Usage("cannot read --tls-key " + flags["tls-key"]);
      std::stringstream cert_pem, key_pem;
      cert_pem << cert.rdbuf();
      key_pem << key.rdbuf();
      ssl.pem_cert_chain = cert_pem.str();
      ssl.pem_private_key = key_pem.str();
    }
    credentials = grpc::SslCredentials(ssl);
    if (!flags["tls-server-name"].empty()) {
      args.SetSslTargetNameOverride(flags["tls-server-name"]);
    }
  } else if (!flags["tls-ca"].empty() || !flags["tls-server-name"].empty() ||
             !flags["tls-cert"].empty() || !flags["tls-key"].empty()) {
    return Usage("--tls-ca, --tls-server-name, --tls-cert and --tls-key need --tls");
  }

  auto channel = grpc::CreateCustomChannel(addr, credentials, args);
  const auto state = padlock::runtime::CheckHealth(channel, service, timeout);
  const std::string subject = addr + " service=\"" + service + "\": ";
  if (!state.ok()) {
    if (state.status().code() == absl::StatusCode::kNotFound) {
      std::cout << subject << "NOT_SERVING (service unknown to the server)\n";
      return kNotServing;
    }
    std::cout << subject << "UNREACHABLE (" << state.status().ToString() << ")\n";
    return kNoAnswer;
  }
  std::cout << subject << padlock::runtime::HealthStateName(*state) << "\n";
  return *state == padlock::runtime::HealthState::kServing ? kServing : kNotServing;
}
