#include "services/gateway/push_registry.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace padlock::gateway {
namespace {

PushVerdict Refuse(std::string_view reason, std::string message) {
  return {absl::InvalidArgumentError(std::move(message)), reason};
}

bool InV4(uint32_t address, uint32_t network, int prefix) {
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (address & mask) == (network & mask);
}

constexpr uint32_t V4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}

bool IsForbiddenV4(uint32_t a) {
  return InV4(a, V4(0, 0, 0, 0), 8)             // "this network", unspecified
         || InV4(a, V4(10, 0, 0, 0), 8)         // RFC 1918
         || InV4(a, V4(100, 64, 0, 0), 10)      // CGNAT (RFC 6598)
         || InV4(a, V4(127, 0, 0, 0), 8)        // loopback
         || InV4(a, V4(169, 254, 0, 0), 16)     // link-local
         || InV4(a, V4(172, 16, 0, 0), 12)      // RFC 1918
         || InV4(a, V4(192, 0, 0, 0), 24)       // IETF protocol assignments
         || InV4(a, V4(192, 168, 0, 0), 16)     // RFC 1918
         || InV4(a, V4(198, 18, 0, 0), 15)      // benchmarking
         || InV4(a, V4(224, 0, 0, 0), 4)        // multicast
         || InV4(a, V4(240, 0, 0, 0), 4);       // reserved, broadcast
}

uint32_t V4At(const uint8_t* b) {
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
}

bool IsForbiddenV6(const std::array<uint8_t, 16>& b) {
  static constexpr std::array<uint8_t, 12> kMapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr std::array<uint8_t, 12> kNat64 = {0x00, 0x64, 0xff, 0x9b, 0, 0,
                                                      0,    0,    0,    0,    0, 0};
  if (std::memcmp(b.data(), kMapped.data(), 12) == 0) return IsForbiddenV4(V4At(b.data() + 12));
  if (std::memcmp(b.data(), kNat64.data(), 12) == 0) return IsForbiddenV4(V4At(b.data() + 12));
  bool zero_prefix = true;  // ::/96: unspecified, loopback, IPv4-compatible (deprecated)
  for (int i = 0; i < 12; ++i) zero_prefix = zero_prefix && b[i] == 0;
  if (zero_prefix) return true;
  if ((b[0] & 0xfe) == 0xfc) return true;                   // fc00::/7 unique local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return true;   // fe80::/10 link-local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return true;   // fec0::/10 site-local (old)
  if (b[0] == 0xff) return true;                            // multicast
  return false;
}

bool IsHostChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

struct EvpPkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

}  // namespace

bool IsForbiddenPushAddress(std::string_view address) {
  const std::string text(address);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return IsForbiddenV4(ntohl(v4.s_addr));
  std::array<uint8_t, 16> v6{};
  if (inet_pton(AF_INET6, text.c_str(), v6.data()) == 1) return IsForbiddenV6(v6);
  return true;
}

PushVerdict ParseEndpointUrl(std::string_view endpoint_in, EndpointUrl* out) {
  const absl::string_view endpoint(endpoint_in.data(), endpoint_in.size());
  if (endpoint.size() > kMaxPushEndpointBytes) {
    return Refuse("size", absl::StrCat("subscription.endpoint: ", endpoint.size(),
                                       " bytes, at most ", kMaxPushEndpointBytes));
  }
  for (char c : endpoint) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return Refuse("url", "subscription.endpoint: spaces, control or non-ASCII characters "
                           "(percent-encode them)");
    }
  }
  const size_t sep = endpoint.find("://");
  std::string scheme =
      absl::AsciiStrToLower(endpoint.substr(0, sep == absl::string_view::npos ? 0 : sep));
  if (sep == absl::string_view::npos || (scheme != "http" && scheme != "https")) {
    return Refuse("scheme", "subscription.endpoint: not an http:// or https:// URL");
  }
  absl::string_view rest = endpoint.substr(sep + 3);
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != absl::string_view::npos) {
    return Refuse("userinfo", "subscription.endpoint: a user name or password in the URL");
  }
  absl::string_view host = authority;
  absl::string_view port;
  if (absl::ConsumePrefix(&host, "[")) {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) {
      return Refuse("url", "subscription.endpoint: unterminated [IPv6] host");
    }
    absl::string_view after = host.substr(close + 1);
    host = host.substr(0, close);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return Refuse("url", "subscription.endpoint: junk after the [IPv6] host");
    }
    port = after;
    in6_addr ignored{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &ignored) != 1) {
      return Refuse("url", "subscription.endpoint: not an IPv6 address in [ ]");
    }
  } else {
    if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    for (char c : host) {
      if (!IsHostChar(c)) return Refuse("url", "subscription.endpoint: not a host name");
    }
  }
  if (host.empty()) return Refuse("url", "subscription.endpoint: no host");
  if (!port.empty() || authority.back() == ':') {
    uint32_t number = 0;
    if (!absl::SimpleAtoi(port, &number) || number == 0 || number > 65535 ||
        port.find_first_not_of("0123456789") != absl::string_view::npos) {
      return Refuse("url", "subscription.endpoint: port not in 1..65535");
    }
  }
  out->scheme = std::move(scheme);
  out->host = absl::AsciiStrToLower(host);
  return {absl::OkStatus(), ""};
}

bool IsP256UncompressedPoint(std::string_view point) {
  if (point.size() != kPushP256dhBytes || static_cast<uint8_t>(point[0]) != 0x04) return false;
  EC_GROUP* group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  if (group == nullptr) return false;
  EC_POINT* p = EC_POINT_new(group);
  // oct2point refuses coordinates that are not on the curve.
  const bool ok = p != nullptr &&
                  EC_POINT_oct2point(group, p, reinterpret_cast<const unsigned char*>(point.data()),
                                     point.size(), nullptr) == 1 &&
                  EC_POINT_is_at_infinity(group, p) == 0;
  EC_POINT_free(p);
  EC_GROUP_free(group);
  return ok;
}

absl::StatusOr<std::string> ParseVapidPublicKey(std::string_view text) {
  const std::string trimmed(
      absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size())));
  std::string raw;
  if (!absl::WebSafeBase64Unescape(trimmed, &raw) && !absl::Base64Unescape(trimmed, &raw)) {
    return absl::InvalidArgumentError("VAPID public key: not base64url");
  }
  if (!IsP256UncompressedPoint(raw)) {
    return absl::InvalidArgumentError(
        "VAPID public key: not a 65-byte uncompressed P-256 point (base64url)");
  }
  return raw;
}

absl::StatusOr<std::string> VapidPublicKeyFromPem(std::string_view pem) {
  std::unique_ptr<EVP_PKEY, EvpPkeyFree> key;
  for (bool public_key : {true, false}) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    if (bio == nullptr) return absl::InternalError("VAPID key: out of memory");
    key.reset(public_key ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr)
                         : PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    if (key != nullptr) break;
  }
  if (key == nullptr) {
    return absl::InvalidArgumentError("VAPID key: no PEM public or private key");
  }
  std::string raw(kPushP256dhBytes, '\0');
  size_t length = 0;
  if (!EVP_PKEY_is_a(key.get(), "EC") ||
      EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      reinterpret_cast<unsigned char*>(raw.data()), raw.size(),
                                      &length) != 1 ||
      length != raw.size() || !IsP256UncompressedPoint(raw)) {
    return absl::InvalidArgumentError("VAPID key: not a P-256 key");
  }
  return raw;
}

absl::StatusOr<std::vector<std::string>> SystemHostResolver::Resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    // Only "no such name / no address" is the caller's fault; anything else (EAI_AGAIN, a
    // failing server, EAI_SYSTEM) may pass: Unavailable.
    if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_ADDRFAMILY) {
      return absl::NotFoundError(absl::StrCat(host, ": no such host"));
    }
    return absl::UnavailableError(absl::StrCat("resolving the push host: ", gai_strerror(rc)));
  }
  std::vector<std::string> addresses;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw = nullptr;
    if (a->ai_family == AF_INET) {
      raw = &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr;
    } else if (a->ai_family == AF_INET6) {
      raw = &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (inet_ntop(a->ai_family, raw, text, sizeof(text)) != nullptr) addresses.emplace_back(text);
  }
  freeaddrinfo(found);
  if (addresses.empty()) return absl::NotFoundError(absl::StrCat(host, ": no address"));
  return addresses;
}

PushSubscriptionValidator::PushSubscriptionValidator(
    HostResolver* resolver, absl::flat_hash_set<std::string> allowed_hosts, int max_lookups)
    : resolver_(resolver), allowed_hosts_(std::move(allowed_hosts)), max_lookups_(max_lookups) {}

PushVerdict PushSubscriptionValidator::Check(const PushSubscription& subscription) {
  if (subscription.auth.size() != kPushAuthBytes) {
    return Refuse("auth", absl::StrCat("subscription.auth: ", subscription.auth.size(),
                                       " bytes, must be ", kPushAuthBytes));
  }
  if (!IsP256UncompressedPoint(subscription.p256dh)) {
    return Refuse("p256dh",
                  "subscription.p256dh: not a 65-byte uncompressed point on P-256 (0x04||X||Y)");
  }
  EndpointUrl url;
  if (PushVerdict parsed = ParseEndpointUrl(subscription.endpoint, &url); !parsed.status.ok()) {
    return parsed;
  }
  if (lookups_.fetch_add(1) >= max_lookups_) {
    lookups_.fetch_sub(1);
    return {absl::ResourceExhaustedError("push subscription checks busy: retry later"), "busy"};
  }
  absl::StatusOr<std::vector<std::string>> addresses = resolver_->Resolve(url.host);
  lookups_.fetch_sub(1);
  if (absl::IsNotFound(addresses.status())) {
    return Refuse("unresolved",
                  absl::StrCat("subscription.endpoint: host ", url.host, " does not resolve"));
  }
  if (!addresses.ok()) {
    return {absl::UnavailableError(std::string(addresses.status().message())), "resolver"};
  }
  if (allowed_hosts_.contains(url.host)) return {absl::OkStatus(), ""};
  for (const std::string& address : *addresses) {
    if (IsForbiddenPushAddress(address)) {
      return Refuse("address",
                    absl::StrCat("subscription.endpoint: host ", url.host, " resolves to ", address,
                                 ", a private, loopback, link-local or special address"));
    }
  }
  return {absl::OkStatus(), ""};
}

PushRegistry::PushRegistry(PushOptions options, HostResolver* resolver,
                           PushSubscriptionStore* store, prometheus::Registry* metrics)
    : options_(std::move(options)),
      validator_(resolver, options_.allowed_hosts),
      store_(store) {
  if (metrics != nullptr) {
    registered_ = &prometheus::BuildCounter()
                       .Name("padlock_gateway_push_subscriptions_registered_total")
                       .Help("Web Push subscriptions stored (new or replacing one)")
                       .Register(*metrics)
                       .Add({});
    removed_ = &prometheus::BuildCounter()
                    .Name("padlock_gateway_push_subscriptions_removed_total")
                    .Help("Web Push subscriptions removed by their device")
                    .Register(*metrics)
                    .Add({});
    refused_ = &prometheus::BuildCounter()
                    .Name("padlock_gateway_push_subscriptions_refused_total")
                    .Help("Web Push subscriptions refused, by reason: scheme, size, url, "
                          "userinfo, unresolved, address, p256dh, auth (INVALID_ARGUMENT); "
                          "resolver, store (UNAVAILABLE); busy (RESOURCE_EXHAUSTED)")
                    .Register(*metrics);
  }
}

absl::Status PushRegistry::Register(const DeviceRef& device,
                                    const PushSubscription& subscription) {
  PushVerdict verdict = validator_.Check(subscription);
  if (verdict.status.ok()) {
    verdict.status = store_->Put(device, subscription, options_.ttl);
    if (!verdict.status.ok()) verdict.reason = "store";
  }
  if (!verdict.status.ok()) {
    if (refused_ != nullptr) refused_->Add({{"reason", std::string(verdict.reason)}}).Increment();
    return verdict.status;
  }
  if (registered_ != nullptr) registered_->Increment();
  return absl::OkStatus();
}

absl::Status PushRegistry::Remove(const DeviceRef& device) {
  absl::Status s = store_->Delete(device);
  if (s.ok() && removed_ != nullptr) removed_->Increment();
  return s;
}

absl::Status PushRegistry::Refresh(const DeviceRef& device) {
  return store_->Refresh(device, options_.ttl);
}

absl::StatusOr<std::string> PushRegistry::VapidPublicKey() const {
  if (options_.vapid_public_key.empty()) {
    return absl::FailedPreconditionError("push not configured");
  }
  return options_.vapid_public_key;
}

}  // namespace padlock::gateway
