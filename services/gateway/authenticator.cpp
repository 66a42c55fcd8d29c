#include "services/gateway/authenticator.h"

#include <openssl/rand.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/logging.h"
#include "services/common/runtime/metrics_util.h"

namespace padlock::gateway {
namespace {

constexpr size_t kChallengeSize = 32;

std::string OpenSslRandom32() {
  std::string out(kChallengeSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size())) !=
      1) {
    return "";
  }
  return out;
}

absl::Status LoginFailed() { return absl::UnauthenticatedError(kLoginFailedMessage); }

}  // namespace

Authenticator::Authenticator(ChallengeStore* challenges, IdentitySource* identities,
                             const SessionTokens* tokens, AuthOptions options,
                             prometheus::Registry* metrics, runtime::Clock* clock,
                             std::function<std::string()> random32)
    : challenges_(challenges),
      identities_(identities),
      tokens_(tokens),
      options_(std::move(options)),
      clock_(clock != nullptr ? clock : runtime::SystemClock::Get()),
      random32_(random32 ? std::move(random32) : OpenSslRandom32) {
  if (metrics != nullptr) {
    logins_ = &prometheus::BuildCounter()
                   .Name("padlock_gateway_logins_total")
                   .Help("Login attempts by result (ok, failed, error)")
                   .Register(*metrics);
    auth_failures_ = &prometheus::BuildCounter()
                          .Name("padlock_gateway_auth_failures_total")
                          .Help("Requests refused for their token, by reason: malformed (no or "
                                "bad authorization header), invalid (forged, expired, unknown "
                                "key), unlisted (device no longer listed), stale (account change "
                                "with an old device-list version)")
                          .Register(*metrics);
  }
}

void Authenticator::CountLogin(const char* result) {
  if (logins_ != nullptr) logins_->Add({{"result", result}}).Increment();
}

void Authenticator::CountAuthFailure(const char* reason) {
  if (auth_failures_ != nullptr) auth_failures_->Add({{"reason", reason}}).Increment();
}

absl::StatusOr<Challenge> Authenticator::NewChallenge(const DeviceRef& device) {
  std::string challenge = random32_();
  if (challenge.size() != kChallengeSize) {
    return absl::InternalError("challenge: random generator failed");
  }
  const absl::Time expires_at = clock_->Now() + options_.challenge_ttl;
  if (absl::Status s = challenges_->Put(device, challenge, options_.audience,
                                        options_.challenge_ttl);
      !s.ok()) {
    return s;
  }
  return Challenge{std::move(challenge), expires_at, options_.audience};
}

absl::StatusOr<Session> Authenticator::Login(const DeviceRef& device, const std::string& challenge,
                                             const std::string& signature) {
  if (challenge.size() != kChallengeSize) {
    CountLogin("failed");
    return LoginFailed();
  }
  // Consumed before the signature is checked: a challenge gets exactly one attempt, so a wrong
  // signature cannot be retried against it.
  absl::StatusOr<std::optional<std::string>> audience = challenges_->Consume(device, challenge);
  if (!audience.ok()) {
    CountLogin("error");
    return audience.status();
  }
  if (!audience->has_value()) {
    CountLogin("failed");
    return LoginFailed();
  }
  absl::StatusOr<IdentityInfo> identity = identities_->GetIdentityKey(device);
  if (!identity.ok()) {
    if (identity.status().code() == absl::StatusCode::kNotFound) {
      CountLogin("failed");
      return LoginFailed();
    }
    CountLogin("error");
    return identity.status();
  }
  const std::string statement =
      statement::EncodeLogin(device.user_id, device.device_id, challenge, **audience);
  if (!statement::VerifySignature(identity->identity_key, statement, signature)) {
    CountLogin("failed");
    runtime::LogInfo("login signature rejected", {{"user", runtime::HashUserId(device.user_id)},
                                                  {"device", device.device_id}});
    return LoginFailed();
  }
  SessionClaims claims;
  claims.user_id = device.user_id;
  claims.device_id = device.device_id;
  claims.device_list_version = identity->device_list_version;
  claims.expires_at = clock_->Now() + options_.token_ttl;
  Session session{tokens_->Issue(claims), claims.expires_at, claims.device_list_version};
  CountLogin("ok");
  return session;
}

absl::StatusOr<SessionClaims> Authenticator::Authenticate(
    std::optional<std::string_view> authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (!authorization.has_value() || authorization->size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(ToAbsl(*authorization), ToAbsl(kScheme))) {
    CountAuthFailure("malformed");
    return absl::UnauthenticatedError(kInvalidTokenMessage);
  }
  absl::StatusOr<SessionClaims> claims =
      tokens_->Verify(
          ToStd(absl::StripAsciiWhitespace(ToAbsl(authorization->substr(kScheme.size())))),
          clock_->Now());
  if (!claims.ok()) CountAuthFailure("invalid");
  return claims;
}

absl::Status Authenticator::CheckCurrent(const SessionClaims& claims) {
  absl::StatusOr<IdentityInfo> identity =
      identities_->GetIdentityKey(DeviceRef{claims.user_id, claims.device_id});
  if (!identity.ok()) {
    if (identity.status().code() != absl::StatusCode::kNotFound) return identity.status();
  } else if (identity->device_list_version <= claims.device_list_version) {
    return absl::OkStatus();
  }
  CountAuthFailure(identity.ok() ? "stale" : "unlisted");
  return absl::UnauthenticatedError(kInvalidTokenMessage);
}

absl::Status Authenticator::CheckListed(const SessionClaims& claims) {
  absl::StatusOr<IdentityInfo> identity =
      identities_->GetIdentityKey(DeviceRef{claims.user_id, claims.device_id});
  if (identity.ok()) return absl::OkStatus();
  if (identity.status().code() != absl::StatusCode::kNotFound) return identity.status();
  return RefuseUnlisted();
}

absl::Status Authenticator::RefuseUnlisted() {
  CountAuthFailure("unlisted");
  return absl::UnauthenticatedError(kInvalidTokenMessage);
}

}  // namespace padlock::gateway
