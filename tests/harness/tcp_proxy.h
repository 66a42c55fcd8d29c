#pragma once
// TcpProxy: a loopback TCP relay to a server, for tests that need to see or disturb the bytes
// between a client and a server. Every byte relayed is recorded (per direction), and Freeze()
// stops relaying in both directions while keeping the connections open — a client whose network
// went silent. One thread; poll()-based; connections are relayed as they come.

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace padlock::testing {

class TcpProxy {
 public:
  // Listens on a free 127.0.0.1 port and relays to 127.0.0.1:`target_port`.
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // "127.0.0.1:<port>".
  std::string target() const;
  void Freeze() { frozen_ = true; }
  // Every byte sent by clients so far (all connections, in arrival order per read).
  std::string ClientBytes() const;
  // Every byte sent by the server so far.
  std::string ServerBytes() const;

 private:
  void Run();

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> frozen_{false};
  std::vector<std::pair<int, int>> pairs_;  // (client fd, upstream fd); thread-owned
  mutable std::mutex mu_;
  std::string from_clients_;
  std::string from_server_;
  std::thread thread_;
};

}  // namespace padlock::testing
