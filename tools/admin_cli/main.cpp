// padlock-admin: the operator's command line for KeyDirectoryAdmin (docs/KEY_DIRECTORY.md).
//
//   padlock-admin [--target=HOST:PORT] [--tls-dir=DIR] invite [--ttl=7d] [--for=USER]
//   padlock-admin [--target=HOST:PORT] [--tls-dir=DIR] reset USER
//   padlock-admin [--target=HOST:PORT] [--tls-dir=DIR] ban USER [--reason=TEXT]
//   padlock-admin [--target=HOST:PORT] [--tls-dir=DIR] unban USER
//   padlock-admin [--target=HOST:PORT] [--tls-dir=DIR] delete USER
//
// Target: --target, else PADLOCK_ADMIN_TARGET, else 127.0.0.1:7431 (the key-directory's admin
// port). The call is mutual TLS with an operator certificate: --tls-dir, else
// PADLOCK_ADMIN_TLS_DIR, names a directory holding tls.crt, tls.key and ca.crt (what
// scripts/lib/internal-certs.sh writes for `operator`, or a cert-manager Secret); the server must
// present a certificate for `key-directory`. Plaintext only with PADLOCK_INTERNAL_INSECURE=1
// (tests). Every call has a 10 s deadline. Exit codes: 0 done; 1 the service refused or failed
// (gRPC code and message on stderr); 2 usage error (also: no certificate); 3 service unreachable
// (UNAVAILABLE / DEADLINE_EXCEEDED).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "padlock/v1/key_directory.grpc.pb.h"
#include "services/common/runtime/internal_tls.h"

namespace {

constexpr char kUsage[] =
    "usage: padlock-admin [--target=HOST:PORT] [--tls-dir=DIR] COMMAND\n"
    "  invite [--ttl=DURATION] [--for=USER]   print a single-use registration invite token\n"
    "                                          (DURATION: 30m, 12h, 7d; default 7d)\n"
    "  reset USER                             remove USER's devices and keys, keep the id\n"
    "  ban USER [--reason=TEXT]               ban USER (the reason is not stored)\n"
    "  unban USER                             lift a ban\n"
    "  delete USER                            delete USER's account for good\n"
    "target: --target, $PADLOCK_ADMIN_TARGET or 127.0.0.1:7431 (the key-directory's admin port)\n"
    "operator certificate: --tls-dir, $PADLOCK_ADMIN_TLS_DIR (tls.crt, tls.key, ca.crt);\n"
    "  plaintext only with PADLOCK_INTERNAL_INSECURE=1 (tests)\n";

int Usage(const std::string& problem) {
  std::cerr << "padlock-admin: " << problem << "\n" << kUsage;
  return 2;
}

// "90s", "30m", "12h", "7d" → seconds; -1 when malformed.
long long ParseTtl(const std::string& text) {
  if (text.size() < 2) return -1;
  const char unit = text.back();
  const std::string digits = text.substr(0, text.size() - 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) return -1;
  const long long n = std::stoll(digits);
  switch (unit) {
    case 's': return n;
    case 'm': return n * 60;
    case 'h': return n * 3600;
    case 'd': return n * 86400;
    default: return -1;
  }
}

const char* CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",   "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",      "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  return index >= 0 && index <= 16 ? kNames[index] : "UNKNOWN";
}

int Report(const grpc::Status& status) {
  if (status.ok()) return 0;
  std::cerr << "padlock-admin: " << CodeName(status.error_code()) << ": "
            << status.error_message() << "\n";
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  return unreachable ? 3 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string target;
  if (const char* env = std::getenv("PADLOCK_ADMIN_TARGET"); env != nullptr && *env != '\0') {
    target = env;
  }
  std::map<std::string, std::string> flags;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq == std::string::npos) return Usage("flag " + arg + " needs =VALUE");
      flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
    } else {
      words.push_back(arg);
    }
  }
  if (auto it = flags.find("target"); it != flags.end()) {
    target = it->second;
    flags.erase(it);
  }
  if (target.empty()) target = "127.0.0.1:7431";
  std::string tls_dir;
  if (const char* env = std::getenv("PADLOCK_ADMIN_TLS_DIR"); env != nullptr) tls_dir = env;
  if (auto it = flags.find("tls-dir"); it != flags.end()) {
    tls_dir = it->second;
    flags.erase(it);
  }
  const char* insecure_env = std::getenv("PADLOCK_INTERNAL_INSECURE");
  const std::string insecure = insecure_env != nullptr ? insecure_env : "";
  padlock::runtime::InternalTls tls;
  if (insecure == "1" || insecure == "true") {
    tls.insecure = true;
  } else if (tls_dir.empty()) {
    return Usage("no operator certificate: --tls-dir=DIR or PADLOCK_ADMIN_TLS_DIR");
  } else {
    auto loaded = padlock::runtime::InternalTlsFromDirectory(tls_dir);
    if (!loaded.ok()) return Usage(std::string(loaded.status().message()));
    tls = *std::move(loaded);
  }
  if (words.empty()) return Usage("no command");
  const std::string command = words[0];
  auto allow = [&](std::initializer_list<const char*> allowed, size_t args) -> std::string {
    for (const auto& [name, value] : flags) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || name == a;
      if (!ok) return "unknown flag --" + name + " for " + command;
    }
    if (words.size() != args + 1) {
      return command + (args ? " takes USER" : " takes no argument");
    }
    return "";
  };

  grpc::ChannelArguments args;
  if (!tls.insecure) args.SetSslTargetNameOverride("key-directory");
  auto stub = padlock::v1::KeyDirectoryAdmin::NewStub(grpc::CreateCustomChannel(
      target, padlock::runtime::InternalChannelCredentials(tls), args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));

  if (command == "invite") {
    if (auto problem = allow({"ttl", "for"}, 0); !problem.empty()) return Usage(problem);
    padlock::v1::CreateInviteRequest request;
    if (flags.contains("ttl")) {
      const long long seconds = ParseTtl(flags["ttl"]);
      if (seconds <= 0 || seconds > 0xFFFFFFFFLL) return Usage("bad --ttl " + flags["ttl"]);
      request.set_ttl_seconds(static_cast<uint32_t>(seconds));
    }
    if (flags.contains("for")) request.set_for_user_id(flags["for"]);
    padlock::v1::CreateInviteResponse response;
    grpc::Status status = stub->CreateInvite(&context, request, &response);
    if (status.ok()) {
      std::cout << response.token() << "\n";
      std::cerr << "expires at " << response.expires_at_ms() << " ms since the epoch\n";
    }
    return Report(status);
  }
  if (command == "reset" || command == "unban" || command == "delete" || command == "ban") {
    if (auto problem = command == "ban" ? allow({"reason"}, 1) : allow({}, 1); !problem.empty()) {
      return Usage(problem);
    }
    const std::string& user = words[1];
    grpc::Status status;
    if (command == "reset") {
      padlock::v1::ResetIdentityRequest request;
      request.set_user_id(user);
      padlock::v1::ResetIdentityResponse response;
      status = stub->ResetIdentity(&context, request, &response);
    } else if (command == "ban") {
      padlock::v1::BanAccountRequest request;
      request.set_user_id(user);
      request.set_reason(flags["reason"]);
      padlock::v1::BanAccountResponse response;
      status = stub->BanAccount(&context, request, &response);
    } else if (command == "unban") {
      padlock::v1::UnbanAccountRequest request;
      request.set_user_id(user);
      padlock::v1::UnbanAccountResponse response;
      status = stub->UnbanAccount(&context, request, &response);
    } else {
      padlock::v1::AdminDeleteAccountRequest request;
      request.set_user_id(user);
      padlock::v1::AdminDeleteAccountResponse response;
      status = stub->DeleteAccount(&context, request, &response);
    }
    if (status.ok()) std::cout << command << " " << user << ": done\n";
    return Report(status);
  }
  return Usage("unknown command " + command);
}
