#pragma once
// Web Push subscriptions of devices (docs/PUSH.md): validation of what a device registers, and
// the registry that validates, stores and removes them. Plain interfaces: no grpc or hiredis here.
//
// What the validator refuses (each an InvalidArgument naming the rule, counted by reason):
//   scheme       the endpoint is not an absolute http:// or https:// URL
//   size         the endpoint is longer than kMaxPushEndpointBytes
//   userinfo     the URL carries a user name or password ("https://u:p@host/")
//   unresolved   the host does not resolve (NXDOMAIN, no address)
//   address      ANY resolved address is unspecified, loopback, private (RFC 1918, fc00::/7),
//                link-local (169.254/16, fe80::/10), CGNAT (100.64/10), multicast, broadcast,
//                or another special-purpose range (0/8, 240/4, IPv4-mapped forms of all these)
//   p256dh       not a 65-byte uncompressed point on P-256
//   auth         not exactly 16 bytes
//   (busy)       kMaxPushLookupsInFlight look-ups are running already: ResourceExhausted
// A host on the operator's allow-list (exact, case-insensitive match of the URL's host) skips the
// address rule: local stacks and tests list "127.0.0.1,localhost" there. Production has none.
//
// The check is made at registration. A host's addresses may change later (DNS rebinding), so the
// notifier (a later release) must check the address it actually connects to again, and it never
// follows redirects: a 3xx from a push service is a failed push, not a new destination.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/gateway/authenticator.h"

namespace prometheus {
class Counter;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace padlock::gateway {

inline constexpr size_t kMaxPushEndpointBytes = 1000;
inline constexpr size_t kPushP256dhBytes = 65;
inline constexpr size_t kPushAuthBytes = 16;
// Host look-ups in flight at once per gateway. A look-up may block an executor thread for the
// resolver's whole timeout (an attacker's name server that never answers), so without a bound a
// few clients could hold every executor thread. Beyond it: ResourceExhausted, reason "busy".
inline constexpr int kMaxPushLookupsInFlight = 4;

// What a device registers (padlock.v1.PushSubscription).
struct PushSubscription {
  std::string endpoint;
  std::string p256dh;  // raw bytes
  std::string auth;    // raw bytes
};

// Resolves a host name to its addresses. Thread-safe.
class HostResolver {
 public:
  virtual ~HostResolver() = default;
  // The numeric addresses of `host` ("192.0.2.1", "2001:db8::1"), at least one. NotFound when the
  // name does not exist or has no address; Unavailable when the resolver failed (try again).
  // May block (DNS): call it off gRPC threads.
  virtual absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host) = 0;
};

// getaddrinfo(3), both address families.
class SystemHostResolver final : public HostResolver {
 public:
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host) override;
};

// True when `address` (numeric IPv4 or IPv6) is one a push may not go to (see the file comment);
// also true for text that is not a numeric address.
bool IsForbiddenPushAddress(std::string_view address);

// The parts of an endpoint URL the validator needs.
struct EndpointUrl {
  std::string scheme;  // lower case: "http" or "https"
  std::string host;    // lower case; an IPv6 literal without its brackets
};

// A refusal reason (the metric label) with its status; reason is empty when the check passed.
struct PushVerdict {
  absl::Status status;
  std::string_view reason;
};

class PushSubscriptionValidator {
 public:
  // `resolver` must outlive this. `allowed_hosts`: lower-case host names or numeric addresses.
  PushSubscriptionValidator(HostResolver* resolver, absl::flat_hash_set<std::string> allowed_hosts,
                            int max_lookups = kMaxPushLookupsInFlight);
  // Checks every rule of the file comment, cheapest first (no DNS for a bad key or a bad URL).
  // Unavailable (reason "resolver") when the resolver failed; ResourceExhausted (reason "busy")
  // when `max_lookups` look-ups are in flight. May block (DNS). Thread-safe.
  PushVerdict Check(const PushSubscription& subscription);

 private:
  HostResolver* const resolver_;
  const absl::flat_hash_set<std::string> allowed_hosts_;
  const int max_lookups_;
  std::atomic<int> lookups_{0};
};

// Parses an http(s) endpoint; InvalidArgument naming what is wrong (reason in the verdict).
PushVerdict ParseEndpointUrl(std::string_view endpoint, EndpointUrl* out);

// True when `point` is an uncompressed point on P-256 (OpenSSL's EC_POINT_oct2point).
bool IsP256UncompressedPoint(std::string_view point);

// The VAPID public key as 65 raw bytes, from base64url or base64 text (PADLOCK_VAPID_PUBLIC_KEY)
// or from a PEM file's contents holding the public or the private key (PADLOCK_VAPID_KEY_FILE).
// InvalidArgument when it is not a P-256 key.
absl::StatusOr<std::string> ParseVapidPublicKey(std::string_view text);
absl::StatusOr<std::string> VapidPublicKeyFromPem(std::string_view pem);

// Where subscriptions live: one entry per device, with a time to live. Thread-safe.
class PushSubscriptionStore {
 public:
  virtual ~PushSubscriptionStore() = default;
  // Stores (or replaces) the device's subscription for `ttl`. Unavailable when down.
  virtual absl::Status Put(const DeviceRef& device, const PushSubscription& subscription,
                           absl::Duration ttl) = 0;
  // Removes it; OK when there was none. Unavailable when down.
  virtual absl::Status Delete(const DeviceRef& device) = 0;
  // Restarts its time to live (nothing when there is none) and clears the device's push
  // coalescing mark (channels::PushCoalesceKey), so the next message pushes again. Unavailable
  // when down.
  virtual absl::Status Refresh(const DeviceRef& device, absl::Duration ttl) = 0;
};

struct PushOptions {
  // How long a subscription lives without a Connect (PADLOCK_PUSH_ENDPOINT_TTL).
  absl::Duration ttl = absl::Hours(24 * 30);
  // Hosts exempt from the address rule (PADLOCK_PUSH_ALLOWED_HOSTS), lower case.
  absl::flat_hash_set<std::string> allowed_hosts = {};
  // 65 raw bytes; empty: push is not configured.
  std::string vapid_public_key = {};
};

// Validates, stores and removes device subscriptions, and counts what it does. Thread-safe; the
// pointers must outlive it, `metrics` may be null. Every method may block (DNS, the store).
class PushRegistry {
 public:
  PushRegistry(PushOptions options, HostResolver* resolver, PushSubscriptionStore* store,
               prometheus::Registry* metrics = nullptr);
  // InvalidArgument by the validator's rules; Unavailable when the resolver or store failed.
  absl::Status Register(const DeviceRef& device, const PushSubscription& subscription);
  absl::Status Remove(const DeviceRef& device);
  // The connect-time refresh of the device's time to live.
  absl::Status Refresh(const DeviceRef& device);
  // FailedPrecondition "push not configured" without a VAPID key.
  absl::StatusOr<std::string> VapidPublicKey() const;
  absl::Duration ttl() const { return options_.ttl; }

 private:
  const PushOptions options_;
  PushSubscriptionValidator validator_;
  PushSubscriptionStore* const store_;
  prometheus::Counter* registered_ = nullptr;
  prometheus::Counter* removed_ = nullptr;
  prometheus::Family<prometheus::Counter>* refused_ = nullptr;
};

}  // namespace padlock::gateway
