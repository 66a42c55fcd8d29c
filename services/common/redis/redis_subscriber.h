#pragma once
// RedisSubscriber: wake-up channels over sharded pub/sub (SSUBSCRIBE / SPUBLISH), the same code
// on one redis-server (Redis 7 serves sharded pub/sub standalone too) and on a Redis Cluster.
//
// Why a thread of its own with blocking hiredis contexts: hiredis 0.14's async API aborts on
// `smessage` pushes (notes/redis-grpc-pqxx.md). One thread owns one connection per node that
// owns subscribed channels and poll()s their sockets together with an eventfd, so that other
// threads can add and remove channels between reads.
//
// Delivery is best effort, as Redis pub/sub is: a message published while a connection is down,
// or while a slot migrates, is lost. What the subscriber guarantees instead is that every such
// window ends with an `on_resubscribed` call naming the channels concerned, once they are
// subscribed again, so that the owner re-reads whatever state the messages stood for.
//
// Reconnects: on EOF or an I/O error of a node connection (node restart), on a MOVED answer to
// SSUBSCRIBE, and on an `sunsubscribe` the server pushes by itself (its slot moved away), the
// channels concerned are routed again (the slot map is refreshed first in cluster mode) and
// subscribed again, retrying with exponential backoff (50 ms doubling to 2 s) for as long as
// they stay wanted.

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/redis/redis_client.h"

namespace padlock::redis {

namespace internal {
class Connection;
}  // namespace internal

class RedisSubscriber {
 public:
  // All callbacks run on the subscriber thread, one at a time, and must not block (hand work
  // off to an executor). They may call Subscribe/Unsubscribe/IsActive, never Stop. Views passed
  // to them are valid only during the call.
  struct Callbacks {
    // A message published on a subscribed channel. Required.
    std::function<void(std::string_view channel, std::string_view payload)> on_message;
    // The first time a Subscribe()d channel is confirmed by the server; from then on every
    // message published on it reaches on_message (until a reconnect, see on_resubscribed).
    // Optional. A gateway subscribes, waits for this, then reads the backlog.
    std::function<void(const std::string& channel)> on_subscribed;
    // Channels that were subscribed, lost their subscription (connection loss, slot moved), and
    // are subscribed again now: messages on them may have been missed in between. Optional.
    std::function<void(const std::vector<std::string>& channels)> on_resubscribed;
  };

  // Starts the subscriber thread. `client` provides routing (its slot map) and connection
  // settings, and must outlive the subscriber. InvalidArgument without on_message; Internal when
  // the thread's wake-up descriptor cannot be created.
  static absl::StatusOr<std::unique_ptr<RedisSubscriber>> Start(RedisClient* client,
                                                                Callbacks callbacks);

  // Stop()s.
  ~RedisSubscriber();
  RedisSubscriber(const RedisSubscriber&) = delete;
  RedisSubscriber& operator=(const RedisSubscriber&) = delete;

  // Asks for `channel` (a shard channel, routed by its hash tag like a key). Returns at once;
  // on_subscribed reports the confirmation. Subscribing to a channel already wanted does
  // nothing (no counting: one Unsubscribe undoes any number of Subscribes).
  void Subscribe(std::string_view channel) ABSL_LOCKS_EXCLUDED(mu_);

  // Drops `channel`. Returns at once; a message already on its way may still be delivered
  // shortly afterwards. Unknown channels are ignored.
  void Unsubscribe(std::string_view channel) ABSL_LOCKS_EXCLUDED(mu_);

  // True while the server confirms a subscription to `channel`.
  bool IsActive(std::string_view channel) const ABSL_LOCKS_EXCLUDED(mu_);

  // Stops and joins the thread, closing every connection. No callback runs after it returns.
  // Idempotent. Must not be called from a callback.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Thread-owned state of one wanted (or being dropped) channel.
  struct Channel {
    enum class State {
      kPending,        // to be sent SSUBSCRIBE (now, or at not_before)
      kRequested,      // SSUBSCRIBE sent on `link`, not confirmed yet
      kActive,         // confirmed on `link`
      kUnsubscribing,  // SUNSUBSCRIBE sent on `link`
    };
    State state = State::kPending;
    bool wanted = true;
    bool confirmed_once = false;  // on_subscribed was reported
    bool lost = false;            // lost after confirmation: report on_resubscribed when back
    std::string link;             // address of the link it is requested/active on
    std::string route_override;   // a MOVED target, tried before the slot map
    int hops = 0;                 // MOVED answers since the last confirmation
    int failures = 0;             // consecutive failures, for backoff
    absl::Time not_before = absl::InfinitePast();
  };

  // Thread-owned connection to one node.
  struct Link {
    std::unique_ptr<internal::Connection> connection;  // null while down
    // Commands awaiting their reply, in order: (is SSUBSCRIBE, channel).
    std::deque<std::pair<bool, std::string>> outstanding;
    bool needs_flush = false;
    int failures = 0;
    absl::Time retry_at = absl::InfinitePast();
  };

  RedisSubscriber(RedisClient* client, Callbacks callbacks, int wake_fd);

  void Run();
  void Wake();
  void DrainRequests();
  void Reconcile(absl::Time now);
  void SendSubscribe(const std::string& name, Channel& channel, absl::Time now);
  Link* LinkFor(const std::string& address, absl::Time now);
  void ReadLink(const std::string& address, Link& link, absl::Time now);
  void HandleReply(const std::string& address, Link& link, const RedisReply& reply,
                   absl::Time now);
  void FailLink(const std::string& address, Link& link, absl::Time now);
  void Lost(const std::string& name, Channel& channel, absl::Time not_before);
  void SetActive(const std::string& name, bool active) ABSL_LOCKS_EXCLUDED(mu_);
  void Deliver();
  absl::Duration Backoff(int failures) const;

  RedisClient* const client_;
  const Callbacks callbacks_;
  const int wake_fd_;  // eventfd
  std::thread thread_;

  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with TSan, which then
  // reports false races on everything absl::Mutex guards.
  mutable std::mutex mu_;
  // Requests from other threads: (channel, wanted), applied in order by the thread.
  std::vector<std::pair<std::string, bool>> requests_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::mutex stop_mu_;  // serialises Stop() callers

  // Owned by the subscriber thread only (no locking).
  std::map<std::string, Channel> channels_;
  std::map<std::string, Link> links_;  // by "host:port"
  std::set<std::string> dirty_;        // channels that need an action
  bool refresh_needed_ = false;        // refresh the slot map before routing again
  std::vector<std::string> newly_subscribed_;
  std::vector<std::string> resubscribed_;
};

}  // namespace padlock::redis
