#pragma once
// A tiny HTTP/1.1 listener on 127.0.0.1 (port 0) that plays a Web Push service in tests: it
// records each request and answers with a canned response. One connection at a time.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace padlock::notifier {

struct ReceivedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  absl::Time received;  // when the whole request was read
};

// Accepts connections one at a time, reads one request, answers with `response` (raw bytes; empty:
// close without answering) and closes.
class TinyHttpServer {
 public:
  TinyHttpServer() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(listener_, 16), 0);
    socklen_t length = sizeof(address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~TinyHttpServer() {
    stop_ = true;
    thread_.join();
    close(listener_);
  }
  int port() const { return port_; }
  void SetResponse(std::string response) {
    std::lock_guard<std::mutex> lock(mu_);
    response_ = std::move(response);
  }
  // The answer for requests to `path` exactly (others get SetResponse's).
  void SetResponseFor(const std::string& path, std::string response) {
    std::lock_guard<std::mutex> lock(mu_);
    path_responses_[path] = std::move(response);
  }
  // The requests to `path`.
  std::vector<ReceivedRequest> requests_to(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<ReceivedRequest> out;
    for (const ReceivedRequest& r : requests_) {
      if (r.path == path) out.push_back(r);
    }
    return out;
  }
  std::vector<ReceivedRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  int connections() const { return connections_.load(); }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      ++connections_;
      std::string data;
      char buffer[4096];
      size_t header_end = std::string::npos;
      size_t content_length = 0;
      while (true) {
        pollfd c{fd, POLLIN, 0};
        if (poll(&c, 1, 5000) <= 0) break;
        const ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n <= 0) break;
        data.append(buffer, static_cast<size_t>(n));
        if (header_end == std::string::npos) {
          header_end = data.find("\r\n\r\n");
          if (header_end != std::string::npos) {
            for (absl::string_view line : absl::StrSplit(data.substr(0, header_end), "\r\n")) {
              const size_t colon = line.find(':');
              if (colon == absl::string_view::npos) continue;
              if (absl::AsciiStrToLower(line.substr(0, colon)) == "content-length") {
                uint64_t v = 0;
                if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &v)) {
                  content_length = v;
                }
              }
            }
          }
        }
        if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) {
          break;
        }
      }
      ReceivedRequest request;
      if (header_end != std::string::npos) {
        std::vector<std::string> lines = absl::StrSplit(data.substr(0, header_end), "\r\n");
        std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
        if (first.size() >= 2) {
          request.method = first[0];
          request.path = first[1];
        }
        for (size_t i = 1; i < lines.size(); ++i) {
          const size_t colon = lines[i].find(':');
          if (colon == std::string::npos) continue;
          request.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
              std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
        }
        request.body = data.substr(header_end + 4);
      }
      request.received = absl::Now();
      std::string response;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto special = path_responses_.find(request.path);
        response = special != path_responses_.end() ? special->second : response_;
        requests_.push_back(std::move(request));
      }
      if (!response.empty()) (void)!write(fd, response.data(), response.size());
      close(fd);
    }
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
  std::mutex mu_;
  std::string response_ = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  std::vector<ReceivedRequest> requests_;
  std::map<std::string, std::string> path_responses_;
};

}  // namespace padlock::notifier
