// CurlPushClient against a tiny HTTP/1.1 listener on 127.0.0.1 (in-process, port 0): what is sent,
// the address rule re-checked at connect time, redirects not followed, Retry-After read.
#include "services/notifier/curl_push_client.h"

#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/unit/notifier/tiny_http_server.h"

namespace padlock::notifier {
namespace {

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
