#include "tests/harness/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace padlock::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

}  // namespace

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = Loopback(0);
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  ::listen(listen_fd_, 64);
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  thread_.join();
  for (auto [a, b] : pairs_) {
    ::close(a);
    ::close(b);
  }
  ::close(listen_fd_);
}

std::string TcpProxy::target() const { return absl::StrCat("127.0.0.1:", port_); }

std::string TcpProxy::ClientBytes() const {
  std::lock_guard lock(mu_);
  return from_clients_;
}

std::string TcpProxy::ServerBytes() const {
  std::lock_guard lock(mu_);
  return from_server_;
}

void TcpProxy::Run() {
  while (!stop_) {
    std::vector<pollfd> polls = {{listen_fd_, POLLIN, 0}};
    if (!frozen_) {
      for (auto [a, b] : pairs_) {
        polls.push_back({a, POLLIN, 0});
        polls.push_back({b, POLLIN, 0});
      }
    }
    if (::poll(polls.data(), polls.size(), 50) <= 0) continue;
    if (polls[0].revents & POLLIN) {
      const int client = ::accept(listen_fd_, nullptr, nullptr);
      const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr = Loopback(target_port_);
      if (client >= 0 &&
          ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        pairs_.emplace_back(client, upstream);
      } else {
        if (client >= 0) ::close(client);
        ::close(upstream);
      }
    }
    for (size_t i = 1; i < polls.size(); ++i) {
      if (!(polls[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto& pair = pairs_[(i - 1) / 2];
      if (pair.first < 0) continue;  // closed earlier in this round
      const bool from_client = polls[i].fd == pair.first;
      const int to = from_client ? pair.second : pair.first;
      char buffer[65536];
      const ssize_t n = ::read(polls[i].fd, buffer, sizeof(buffer));
      if (n <= 0) {
        // One side closed: close both (the peer sees the connection end).
        ::shutdown(to, SHUT_RDWR);
        continue;
      }
      {
        std::lock_guard lock(mu_);
        (from_client ? from_clients_ : from_server_).append(buffer, static_cast<size_t>(n));
      }
      ssize_t written = 0;
      while (written < n) {
        const ssize_t w = ::write(to, buffer + written, static_cast<size_t>(n - written));
        if (w <= 0) break;
        written += w;
      }
    }
  }
}

}  // namespace padlock::testing
