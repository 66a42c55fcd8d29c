// CurlPushClient against a tiny HTTP/1.1 listener on 127.0.0.1 (in-process, port 0): what is sent,
// the address rule re-checked at connect time, redirects not followed, Retry-After read.
#include "services/notifier/curl_push_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace padlock::notifier {
namespace {

struct ReceivedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
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
      std::string response;
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(std::move(request));
        response = response_;
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
};

class CurlPushClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<CurlPushClient> Client(bool allow_loopback) {
    CurlPushClientOptions options;
    if (allow_loopback) options.allowed_hosts = {"127.0.0.1", "localhost"};
    options.timeout = absl::Seconds(10);
    auto client = CurlPushClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }
  PushHttpRequest Request(const std::string& path) {
    PushHttpRequest request;
    request.url = absl::StrCat("http://127.0.0.1:", server_.port(), path);
    request.headers = {{"TTL", "60"}, {"Urgency", "high"}, {"Content-Encoding", "aes128gcm"}};
    request.body = std::string(358, '\x07');
    return request;
  }
  // Posts and waits (with a deadline) for the one callback.
  PushHttpResult PostAndWait(CurlPushClient& client, PushHttpRequest request) {
    auto promise = std::make_shared<std::promise<PushHttpResult>>();
    std::future<PushHttpResult> future = promise->get_future();
    EXPECT_TRUE(client
                    .Post(std::move(request),
                          [promise](const PushHttpResult& r) { promise->set_value(r); })
                    .ok());
    EXPECT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    return future.get();
  }

  TinyHttpServer server_;
};

TEST_F(CurlPushClientTest, PostsBodyAndHeadersToAnAllowedHost) {
  auto client = Client(/*allow_loopback=*/true);
  const PushHttpResult result = PostAndWait(*client, Request("/push/abc"));
  EXPECT_EQ(result.status, 201) << result.error;
  const std::vector<ReceivedRequest> requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].path, "/push/abc");
  EXPECT_EQ(requests[0].body, std::string(358, '\x07'));
  EXPECT_EQ(requests[0].headers.at("ttl"), "60");
  EXPECT_EQ(requests[0].headers.at("urgency"), "high");
  EXPECT_EQ(requests[0].headers.at("content-encoding"), "aes128gcm");
  EXPECT_EQ(requests[0].headers.count("expect"), 0u);
}

TEST_F(CurlPushClientTest, RefusesLoopbackWithoutTheAllowListAndNeverConnects) {
  auto client = Client(/*allow_loopback=*/false);
  const PushHttpResult result = PostAndWait(*client, Request("/push/abc"));
  EXPECT_EQ(result.status, 0);
  EXPECT_EQ(result.error, "refused address");
  EXPECT_EQ(server_.connections(), 0);
  EXPECT_EQ(result.error.find("/push/abc"), std::string::npos);  // no URL in errors
}

TEST_F(CurlPushClientTest, DoesNotFollowRedirects) {
  auto client = Client(/*allow_loopback=*/true);
  server_.SetResponse(absl::StrCat("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:",
                                   server_.port(),
                                   "/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
  const PushHttpResult result = PostAndWait(*client, Request("/push/abc"));
  EXPECT_EQ(result.status, 307);
  EXPECT_EQ(ClassifyResponse(result.status), PushOutcome::kFailed);
  ASSERT_EQ(server_.requests().size(), 1u);  // the Location was never asked for
  EXPECT_EQ(server_.requests()[0].path, "/push/abc");
}

TEST_F(CurlPushClientTest, ReadsRetryAfterOf429AndGoneStatuses) {
  auto client = Client(/*allow_loopback=*/true);
  server_.SetResponse(
      "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n"
      "Connection: close\r\n\r\n");
  PushHttpResult result = PostAndWait(*client, Request("/p"));
  EXPECT_EQ(result.status, 429);
  EXPECT_EQ(result.retry_after, "7");
  server_.SetResponse("HTTP/1.1 410 Gone\r\nContent-Length: 4\r\nConnection: close\r\n\r\ngone");
  result = PostAndWait(*client, Request("/p"));
  EXPECT_EQ(result.status, 410);
  EXPECT_EQ(result.retry_after, "");
}

TEST_F(CurlPushClientTest, NoAnswerIsStatusZero) {
  auto client = Client(/*allow_loopback=*/true);
  server_.SetResponse("");  // closes without a word
  const PushHttpResult result = PostAndWait(*client, Request("/p"));
  EXPECT_EQ(result.status, 0);
  EXPECT_FALSE(result.error.empty());
  EXPECT_EQ(ClassifyResponse(result.status), PushOutcome::kRetry);
}

TEST_F(CurlPushClientTest, ManyInFlightEachAnsweredOnce) {
  auto client = Client(/*allow_loopback=*/true);
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  constexpr int kPushes = 20;
  for (int i = 0; i < kPushes; ++i) {
    ASSERT_TRUE(client
                    ->Post(Request(absl::StrCat("/p", i)),
                           [&](const PushHttpResult& r) {
                             EXPECT_EQ(r.status, 201);
                             std::lock_guard<std::mutex> lock(mu);
                             ++answered;
                             cv.notify_all();
                           })
                    .ok());
  }
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return answered == kPushes; }));
  EXPECT_EQ(answered, kPushes);
}

}  // namespace
}  // namespace padlock::notifier
