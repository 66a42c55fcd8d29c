#pragma once
// Accounts for the load generator: N users with one device each, registered through the real
// gateway with real libsignal keys (a fresh identity key, a signed prekey, a signed version-1
// device list and the registration signature: exactly what a client sends), then logged in by
// signing the gateway's challenge (padlock-login-v1). One-time prekeys are uploaded only for the
// claims scenario (PublishOneTimePreKeys); the message scenarios never claim bundles.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace padlock::loadgen {

struct DeviceAccount {
  std::string user_id = {};
  uint32_t device_id = 1;
  uint32_t registration_id = 0;
  std::string identity_public = {};   // 33 bytes
  std::string identity_private = {};  // 32 bytes (a throw-away benchmark key)
  std::string token = {};             // session token after LogIn
};

struct AccountOptions {
  // Gateway target ("127.0.0.1:7400") and the credentials to reach it.
  std::string target = {};
  std::shared_ptr<grpc::ChannelCredentials> credentials = {};
  // TLS: the name to verify in the gateway's certificate (empty: the target's host).
  std::string tls_server_name = {};
  // User ids are `<prefix><index>`; the prefix must make them fresh (usernames: [a-z0-9._-]).
  std::string user_prefix = {};
  // Registrations and logins in flight at once (blocking calls on this many threads).
  int threads = 8;
  // Deadline of each unary call.
  int deadline_ms = 10000;
};

// Creates `count` accounts (keys generated here) and registers each through Gateway.Register.
// Errors: the first failed registration's status, with the user id index in the message
// (RESOURCE_EXHAUSTED means the gateway is not running with PADLOCK_RATE_LIMIT_PROFILE=test).
absl::StatusOr<std::vector<DeviceAccount>> RegisterAccounts(const AccountOptions& options,
                                                           int count);

// Logs every account in (GetChallenge, sign, Login) and stores the token in it.
absl::Status LogIn(const AccountOptions& options, std::vector<DeviceAccount>& accounts);

// Uploads `count` (≤ 100) fresh one-time prekeys for every logged-in account through
// Gateway.PublishPreKeys, so that claims take the same path as a real first contact (one
// one-time prekey handed out and deleted per claim). Errors: the first failed upload's status.
absl::Status PublishOneTimePreKeys(const AccountOptions& options,
                                   const std::vector<DeviceAccount>& accounts, int count);

// A channel to `target` with its own TCP connection: a local subchannel pool plus a unique
// channel argument, so gRPC never shares one socket between two channels of this process.
// `tls_server_name` (may be empty) overrides the name checked in the server's certificate.
std::shared_ptr<grpc::Channel> DedicatedChannel(const std::string& target,
                                                const std::shared_ptr<grpc::ChannelCredentials>& creds,
                                                int64_t unique_id,
                                                const std::string& tls_server_name = "");

}  // namespace padlock::loadgen
