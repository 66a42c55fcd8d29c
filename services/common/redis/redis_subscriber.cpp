#include "services/common/redis/redis_subscriber.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/redis/connection.h"

namespace padlock::redis {

using internal::Connection;

absl::StatusOr<std::unique_ptr<RedisSubscriber>> RedisSubscriber::Start(RedisClient* client,
                                                                        Callbacks callbacks) {
  if (client == nullptr) return absl::InvalidArgumentError("redis subscriber: no client");
  if (!callbacks.on_message) {
    return absl::InvalidArgumentError("redis subscriber: on_message is required");
  }
  const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    return absl::InternalError(absl::StrCat("redis subscriber: eventfd: ", std::strerror(errno)));
  }
  std::unique_ptr<RedisSubscriber> subscriber(
      new RedisSubscriber(client, std::move(callbacks), wake_fd));
  subscriber->thread_ = std::thread([s = subscriber.get()] { s->Run(); });
  return subscriber;
}

RedisSubscriber::RedisSubscriber(RedisClient* client, Callbacks callbacks, int wake_fd)
    : client_(client), callbacks_(std::move(callbacks)), wake_fd_(wake_fd) {}

RedisSubscriber::~RedisSubscriber() {
  Stop();
  ::close(wake_fd_);
}

void RedisSubscriber::Stop() {
  std::lock_guard stop_lock(stop_mu_);
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  stopped_ = true;
  active_.clear();
}

void RedisSubscriber::Wake() {
  const uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the thread will wake anyway.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
}

void RedisSubscriber::Subscribe(std::string_view channel) {
  {
    std::lock_guard lock(mu_);
    requests_.emplace_back(std::string(channel), true);
  }
  Wake();
}

void RedisSubscriber::Unsubscribe(std::string_view channel) {
  {
    std::lock_guard lock(mu_);
    requests_.emplace_back(std::string(channel), false);
  }
  Wake();
}

bool RedisSubscriber::IsActive(std::string_view channel) const {
  std::lock_guard lock(mu_);
  return active_.contains(absl::string_view(channel.data(), channel.size()));
}

void RedisSubscriber::SetActive(const std::string& name, bool active) {
  std::lock_guard lock(mu_);
  if (active) {
    active_.insert(name);
  } else {
    active_.erase(name);
  }
}

absl::Duration RedisSubscriber::Backoff(int failures) const {
  absl::Duration delay = absl::Milliseconds(50);
  for (int i = 1; i < failures && delay < absl::Seconds(2); ++i) delay *= 2;
  return std::min(delay, absl::Seconds(2));
}

void RedisSubscriber::Run() {
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
    }
    DrainRequests();
    absl::Time now = absl::Now();
    Reconcile(now);
    Deliver();

    // Sleep until a socket or the eventfd is readable, or the earliest retry is due.
    int timeout_ms = -1;
    if (!dirty_.empty()) {
      absl::Time due = absl::InfiniteFuture();
      for (const std::string& name : dirty_) {
        auto it = channels_.find(name);
        if (it != channels_.end()) due = std::min(due, it->second.not_before);
      }
      const absl::Duration wait =
          std::clamp(due - absl::Now(), absl::Milliseconds(1), absl::Seconds(2));
      timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(wait));
    }
    std::vector<pollfd> fds;
    std::vector<std::string> addresses;
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    for (auto& [address, link] : links_) {
      if (link.connection == nullptr) continue;
      fds.push_back(pollfd{link.connection->fd(), POLLIN, 0});
      addresses.push_back(address);
    }
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      std::abort();  // only EFAULT/EINVAL/ENOMEM: a programming error or a dying process
    }
    if (ready <= 0) continue;
    if (fds[0].revents != 0) {
      uint64_t count = 0;
      [[maybe_unused]] ssize_t n = ::read(wake_fd_, &count, sizeof(count));
    }
    now = absl::Now();
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = links_.find(addresses[i - 1]);
      if (it != links_.end() && it->second.connection != nullptr) {
        ReadLink(it->first, it->second, now);
      }
    }
    Deliver();
  }
  links_.clear();  // closes every connection
}

void RedisSubscriber::DrainRequests() {
  std::vector<std::pair<std::string, bool>> requests;
  {
    std::lock_guard lock(mu_);
    requests.swap(requests_);
  }
  for (auto& [name, wanted] : requests) {
    auto [it, inserted] = channels_.try_emplace(name);
    if (inserted && !wanted) {
      channels_.erase(it);
      continue;
    }
    it->second.wanted = wanted;
    dirty_.insert(name);
  }
}

void RedisSubscriber::Reconcile(absl::Time now) {
  if (dirty_.empty()) return;
  if (refresh_needed_) {
    bool due = false;
    for (const std::string& name : dirty_) {
      auto it = channels_.find(name);
      if (it != channels_.end() && it->second.wanted &&
          it->second.state == Channel::State::kPending && it->second.not_before <= now) {
        due = true;
        break;
      }
    }
    if (due) {
      refresh_needed_ = false;
      // Not fatal: routing falls back to the old map, and MOVED answers correct it.
      client_->RefreshTopology().IgnoreError();
    }
  }
  const std::vector<std::string> names(dirty_.begin(), dirty_.end());
  for (const std::string& name : names) {
    auto it = channels_.find(name);
    if (it == channels_.end()) {
      dirty_.erase(name);
      continue;
    }
    Channel& channel = it->second;
    if (!channel.wanted) {
      if (channel.state == Channel::State::kPending) {
        channels_.erase(it);
        dirty_.erase(name);
      } else if (channel.state == Channel::State::kActive) {
        dirty_.erase(name);
        const std::string address = channel.link;
        Link& link = links_[address];
        SetActive(name, false);
        if (link.connection == nullptr || !link.connection->Append({"SUNSUBSCRIBE", name}).ok()) {
          FailLink(address, link, now);  // drops every unwanted channel of the link, this one too
          continue;
        }
        link.outstanding.emplace_back(false, name);
        link.needs_flush = true;
        channel.state = Channel::State::kUnsubscribing;
      } else {
        dirty_.erase(name);  // kRequested / kUnsubscribing: the pending reply finishes the job
      }
      continue;
    }
    if (channel.state == Channel::State::kPending) {
      if (channel.not_before <= now) SendSubscribe(name, channel, now);
      continue;  // SendSubscribe clears `dirty_` on success
    }
    dirty_.erase(name);  // requested, active or unsubscribing: replies drive it from here
  }
  for (auto& [address, link] : links_) {
    if (!link.needs_flush || link.connection == nullptr) continue;
    link.needs_flush = false;
    if (!link.connection->Flush().ok()) FailLink(address, link, now);
  }
}

void RedisSubscriber::SendSubscribe(const std::string& name, Channel& channel, absl::Time now) {
  std::string address = channel.route_override;
  if (address.empty()) {
    absl::StatusOr<std::string> routed = client_->AddressForKey(name);
    if (!routed.ok()) {
      channel.not_before = now + Backoff(++channel.failures);
      refresh_needed_ = true;
      return;
    }
    address = *std::move(routed);
  }
  Link* link = LinkFor(address, now);
  if (link == nullptr) {
    channel.route_override.clear();
    channel.not_before = std::max(links_[address].retry_at, now + absl::Milliseconds(1));
    refresh_needed_ = client_->options().mode == RedisMode::kCluster;
    return;
  }
  if (!link->connection->Append({"SSUBSCRIBE", name}).ok()) {
    FailLink(address, *link, now);
    return;
  }
  link->outstanding.emplace_back(true, name);
  link->needs_flush = true;
  channel.state = Channel::State::kRequested;
  channel.link = address;
  dirty_.erase(name);
}

RedisSubscriber::Link* RedisSubscriber::LinkFor(const std::string& address, absl::Time now) {
  Link& link = links_[address];
  if (link.connection != nullptr) return &link;
  if (now < link.retry_at) return nullptr;
  absl::StatusOr<NodeAddress> parsed = ParseNodeAddress(address);
  absl::StatusOr<std::unique_ptr<Connection>> connection =
      parsed.ok() ? Connection::Open(*parsed,
                                     internal::ConnectionSettings{
                                         client_->options().connect_timeout,
                                         client_->options().command_timeout,
                                         client_->options().password})
                  : parsed.status();
  if (!connection.ok()) {
    link.retry_at = now + Backoff(++link.failures);
    return nullptr;
  }
  link.connection = *std::move(connection);
  link.failures = 0;
  link.retry_at = absl::InfinitePast();
  return &link;
}

void RedisSubscriber::ReadLink(const std::string& address, Link& link, absl::Time now) {
  const absl::Status read = link.connection->ReadAvailable();
  while (true) {
    absl::StatusOr<std::optional<RedisReply>> reply = link.connection->NextBuffered();
    if (!reply.ok()) {
      FailLink(address, link, now);
      return;
    }
    if (!reply->has_value()) break;
    HandleReply(address, link, **reply, now);
  }
  if (!read.ok()) FailLink(address, link, now);
}

void RedisSubscriber::HandleReply(const std::string& address, Link& link,
                                  const RedisReply& reply, absl::Time now) {
  // Removes the oldest outstanding command matching (subscribe, name); true when there was one.
  auto take_outstanding = [&link](bool subscribe, const std::string& name) {
    auto it = std::find(link.outstanding.begin(), link.outstanding.end(),
                        std::make_pair(subscribe, name));
    if (it == link.outstanding.end()) return false;
    link.outstanding.erase(it);
    return true;
  };
  const bool cluster = client_->options().mode == RedisMode::kCluster;

  if (reply.is_error()) {
    // Errors only ever answer a command, oldest first.
    if (link.outstanding.empty()) return;
    auto [subscribe, name] = link.outstanding.front();
    link.outstanding.pop_front();
    auto it = channels_.find(name);
    if (it == channels_.end() || it->second.link != address) return;
    Channel& channel = it->second;
    if (subscribe && channel.state == Channel::State::kRequested) {
      absl::StatusOr<Redirect> redirect = ParseRedirect(reply.str());
      channel.state = Channel::State::kPending;
      channel.link.clear();
      if (redirect.ok() && redirect->kind == Redirect::Kind::kMoved && ++channel.hops <= 5) {
        channel.route_override = redirect->target.ToString();
        channel.not_before = now;
      } else {
        channel.route_override.clear();
        channel.not_before = now + Backoff(++channel.failures);
      }
      refresh_needed_ = cluster;
      dirty_.insert(name);
    } else if (!subscribe && channel.state == Channel::State::kUnsubscribing) {
      channel.state = Channel::State::kPending;
      channel.link.clear();
      dirty_.insert(name);  // drops it, or subscribes again if wanted meanwhile
    }
    return;
  }
  if (!reply.is_array() || reply.elements().size() < 3 || !reply.elements()[0].is_string()) {
    return;
  }
  const std::string& kind = reply.elements()[0].str();
  const std::string& name = reply.elements()[1].str();
  auto it = channels_.find(name);

  if (kind == "smessage") {
    if (it == channels_.end() || !it->second.wanted) return;
    Deliver();  // confirmations read before this message are reported before it
    callbacks_.on_message(name, reply.elements()[2].str());
    return;
  }
  if (kind == "ssubscribe") {
    take_outstanding(true, name);
    if (it == channels_.end()) return;
    Channel& channel = it->second;
    channel.state = Channel::State::kActive;
    channel.link = address;
    channel.hops = 0;
    channel.failures = 0;
    channel.route_override.clear();
    if (!channel.wanted) {
      dirty_.insert(name);  // Unsubscribe() came while SSUBSCRIBE was in flight
      return;
    }
    SetActive(name, true);
    if (!channel.confirmed_once) {
      channel.confirmed_once = true;
      newly_subscribed_.push_back(name);
    } else if (channel.lost) {
      resubscribed_.push_back(name);
    }
    channel.lost = false;
    return;
  }
  if (kind == "sunsubscribe") {
    const bool requested = take_outstanding(false, name);
    if (it == channels_.end() || it->second.link != address) return;
    Channel& channel = it->second;
    if (requested) {
      channel.state = Channel::State::kPending;
      channel.link.clear();
      // Wanted again since Unsubscribe(): a fresh subscription, reported by on_subscribed.
      channel.confirmed_once = false;
      channel.lost = false;
      dirty_.insert(name);
      return;
    }
    // Pushed by the server: the channel's slot moved to another node.
    if (channel.state == Channel::State::kActive) {
      refresh_needed_ = cluster;
      Lost(name, channel, now);
    }
  }
}

void RedisSubscriber::Lost(const std::string& name, Channel& channel, absl::Time not_before) {
  channel.lost = channel.confirmed_once;
  channel.state = Channel::State::kPending;
  channel.link.clear();
  channel.route_override.clear();
  channel.not_before = not_before;
  dirty_.insert(name);
  SetActive(name, false);
}

void RedisSubscriber::FailLink(const std::string& address, Link& link, absl::Time now) {
  link.connection.reset();
  link.outstanding.clear();
  link.needs_flush = false;
  link.retry_at = now + Backoff(++link.failures);
  refresh_needed_ = client_->options().mode == RedisMode::kCluster;
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& channel = it->second;
    if (channel.link != address || channel.state == Channel::State::kPending) {
      ++it;
      continue;
    }
    if (!channel.wanted) {
      SetActive(it->first, false);
      dirty_.erase(it->first);
      it = channels_.erase(it);
      continue;
    }
    // The first retry goes out at once: the node may be back (or the slot elsewhere) already.
    Lost(it->first, channel, now);
    ++it;
  }
}

void RedisSubscriber::Deliver() {
  if (!newly_subscribed_.empty()) {
    std::vector<std::string> names;
    names.swap(newly_subscribed_);
    if (callbacks_.on_subscribed) {
      for (const std::string& name : names) callbacks_.on_subscribed(name);
    }
  }
  if (!resubscribed_.empty()) {
    std::vector<std::string> names;
    names.swap(resubscribed_);
    if (callbacks_.on_resubscribed) callbacks_.on_resubscribed(names);
  }
}

}  // namespace padlock::redis
