#pragma once
// POSTs Web Push requests with libcurl's multi interface on one thread of its own: many pushes in
// flight at once, none blocking a caller. The rules the gateway checked at registration are
// checked again on the address actually connected to (DNS may have changed since: rebinding):
//   - the socket is opened only when the address is not forbidden (IsForbiddenPushAddress:
//     private, loopback, link-local, …) or the URL's host is on the allow-list
//     (PADLOCK_PUSH_ALLOWED_HOSTS); otherwise the transfer fails without connecting;
//   - redirects are never followed (a 3xx is returned as it is: the caller counts it a failure);
//   - only http and https; no proxy from the environment (a proxy would connect for us, past
//     the address check).
// Nothing here logs; errors carry no URL (an endpoint's path is a capability).

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/notifier/push_dispatcher.h"
#include "services/notifier/push_policy.h"

typedef void CURLM;

namespace padlock::notifier {

struct CurlPushClientOptions {
  // Lower-case host names or numeric addresses (IPv6 without brackets) exempt from the address
  // rule, matched against the URL's host.
  absl::flat_hash_set<std::string> allowed_hosts;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::Seconds(15);  // the whole transfer
  // Transfers in flight at once; more wait in the queue. A full queue refuses at once.
  size_t max_in_flight = 256;
  size_t max_queued = 10'000;
};

class CurlPushClient final : public PushPoster {
 public:
  using Done = std::function<void(const PushHttpResult&)>;

  // Starts the transfer thread. Internal when libcurl cannot be set up.
  static absl::StatusOr<std::unique_ptr<CurlPushClient>> Create(CurlPushClientOptions options);
  // Stops the thread; transfers still running or queued end with status 0, error "shut down"
  // (each `done` still runs once, on the transfer thread, before this returns).
  ~CurlPushClient();
  CurlPushClient(const CurlPushClient&) = delete;
  CurlPushClient& operator=(const CurlPushClient&) = delete;

  // Queues `request`; `done` runs exactly once, on the transfer thread (it must not block), or
  // not at all when this returns an error: ResourceExhausted when max_queued requests wait.
  absl::Status Post(PushHttpRequest request, Done done) override;

 private:
  struct Transfer;
  explicit CurlPushClient(CurlPushClientOptions options, CURLM* multi);
  void Run();
  void Start(std::unique_ptr<Transfer> transfer);

  const CurlPushClientOptions options_;
  CURLM* const multi_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Transfer>> queued_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Transfers added to the multi handle, owned here; the transfer thread's own (no lock).
  absl::flat_hash_set<Transfer*> running_;
  std::thread thread_;
};

}  // namespace padlock::notifier
