#include "clients/sdk/safety_number.h"

#include <signal/curve.h>
#include <signal/fingerprint.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/signal_handles.h"

namespace padlock::client {
namespace {

absl::StatusOr<SignalPtr<ec_public_key>> DecodeKey(SignalContext& context, std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("identity key is empty");
  ec_public_key* raw = nullptr;
  const int rc = curve_decode_point(&raw, reinterpret_cast<const uint8_t*>(key.data()),
                                    key.size(), context.get());
  if (rc < 0) return absl::InvalidArgumentError("identity key does not decode");
  return SignalPtr<ec_public_key>(raw);
}

struct GeneratorFree {
  void operator()(fingerprint_generator* g) const { fingerprint_generator_free(g); }
};

}  // namespace

absl::StatusOr<std::string> SafetyNumber(SignalContext& context, std::string_view local_user_id,
                                         std::string_view local_identity_key,
                                         std::string_view remote_user_id,
                                         std::string_view remote_identity_key) {
  if (local_user_id.empty() || remote_user_id.empty()) {
    return absl::InvalidArgumentError("user id is empty");
  }
  absl::StatusOr<SignalPtr<ec_public_key>> local = DecodeKey(context, local_identity_key);
  if (!local.ok()) return local.status();
  absl::StatusOr<SignalPtr<ec_public_key>> remote = DecodeKey(context, remote_identity_key);
  if (!remote.ok()) return remote.status();

  fingerprint_generator* raw_generator = nullptr;
  int rc = fingerprint_generator_create(&raw_generator, kSafetyNumberIterations,
                                        kSafetyNumberScannableVersion, context.get());
  if (rc < 0) return absl::InternalError(absl::StrCat("fingerprint_generator_create: ", rc));
  std::unique_ptr<fingerprint_generator, GeneratorFree> generator(raw_generator);

  // The library wants NUL-terminated identifiers.
  const std::string local_id(local_user_id);
  const std::string remote_id(remote_user_id);
  fingerprint* raw = nullptr;
  rc = fingerprint_generator_create_for(generator.get(), local_id.c_str(), local->get(),
                                        remote_id.c_str(), remote->get(), &raw);
  if (rc < 0) return absl::InternalError(absl::StrCat("fingerprint_generator_create_for: ", rc));
  SignalPtr<fingerprint> fp(raw);
  // Borrowed pointers, valid while `fp` lives.
  const displayable_fingerprint* displayable = fingerprint_get_displayable(fp.get());
  const char* text = displayable_fingerprint_text(displayable);
  if (text == nullptr) return absl::InternalError("fingerprint has no displayable text");
  return std::string(text);
}

}  // namespace padlock::client
