#include "services/gateway/turn.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/absl_compat.h"

namespace padlock::gateway {

absl::StatusOr<TurnCredentials> MakeTurnCredentials(const TurnOptions& options,
                                                    std::string_view subject, absl::Time now) {
  if (options.secret.empty() || options.urls.empty()) {
    return absl::FailedPreconditionError("TURN is not configured on this deployment");
  }
  TurnCredentials out;
  out.ttl_seconds = static_cast<uint32_t>(absl::ToInt64Seconds(options.ttl));
  out.username = absl::StrCat(absl::ToUnixSeconds(now + options.ttl), ":", ToAbsl(subject));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha1(), options.secret.data(), static_cast<int>(options.secret.size()),
           reinterpret_cast<const unsigned char*>(out.username.data()), out.username.size(), mac,
           &mac_len) == nullptr) {
    return absl::InternalError("TURN credentials: HMAC failed");
  }
  out.password = absl::Base64Escape(
      absl::string_view(reinterpret_cast<const char*>(mac), mac_len));
  out.urls = options.urls;
  return out;
}

}  // namespace padlock::gateway
