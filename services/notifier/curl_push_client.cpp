#include "services/notifier/curl_push_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/runtime/absl_compat.h"
#include "services/gateway/push_registry.h"

namespace padlock::notifier {
namespace {

// libcurl's global set-up is not thread-safe; do it once, before any thread of ours exists.
bool GlobalInit() {
  static const bool ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  return ok;
}

// The URL's host, lower case, IPv6 without brackets; empty when the URL does not parse.
std::string UrlHost(const std::string& url) {
  CURLU* parsed = curl_url();
  std::string host;
  char* part = nullptr;
  if (parsed != nullptr && curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(parsed, CURLUPART_HOST, &part, 0) == CURLUE_OK) {
    host = absl::AsciiStrToLower(part);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
  }
  curl_free(part);
  curl_url_cleanup(parsed);
  return host;
}

std::string AddressText(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (address->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text,
              sizeof(text));
  } else if (address->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
              sizeof(text));
  }
  return text;
}

}  // namespace

struct CurlPushClient::Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  PushHttpRequest request;
  bool host_allowed = false;
  bool address_refused = false;
  PushHttpResult result;
  Done done;
  absl::Time started;

  ~Transfer() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }

  // CURLOPT_OPENSOCKETFUNCTION: every address curl is about to connect to passes here, after its
  // own resolution, so the rule holds for the address really used.
  static curl_socket_t OpenSocket(void* data, curlsocktype, curl_sockaddr* address) {
    auto* self = static_cast<Transfer*>(data);
    if (!self->host_allowed && gateway::IsForbiddenPushAddress(AddressText(&address->addr))) {
      self->address_refused = true;
      return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype, address->protocol);
  }

  static size_t Header(char* buffer, size_t size, size_t count, void* data) {
    auto* self = static_cast<Transfer*>(data);
    const absl::string_view line(buffer, size * count);
    constexpr absl::string_view kName = "retry-after:";
    if (line.size() > kName.size() && absl::StartsWithIgnoreCase(line, kName)) {
      self->result.retry_after =
          std::string(absl::StripAsciiWhitespace(line.substr(kName.size())));
    }
    return size * count;
  }

  // The body of the answer is not needed: read and dropped.
  static size_t Discard(char*, size_t size, size_t count, void*) { return size * count; }
};

absl::StatusOr<std::unique_ptr<CurlPushClient>> CurlPushClient::Create(
    CurlPushClientOptions options) {
  if (!GlobalInit()) return absl::InternalError("curl_global_init failed");
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
  return std::unique_ptr<CurlPushClient>(new CurlPushClient(std::move(options), multi));
}

CurlPushClient::CurlPushClient(CurlPushClientOptions options, CURLM* multi)
    : options_(std::move(options)), multi_(multi) {
  thread_ = std::thread([this] { Run(); });
}

CurlPushClient::~CurlPushClient() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  curl_multi_wakeup(multi_);
  thread_.join();
  curl_multi_cleanup(multi_);
}

absl::Status CurlPushClient::Post(PushHttpRequest request, Done done) {
  auto transfer = std::make_unique<Transfer>();
  transfer->request = std::move(request);
  transfer->done = std::move(done);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("push client shutting down");
    if (queued_.size() >= options_.max_queued) {
      return absl::ResourceExhaustedError("push queue full");
    }
    queued_.push_back(std::move(transfer));
  }
  curl_multi_wakeup(multi_);
  return absl::OkStatus();
}

void CurlPushClient::Start(std::unique_ptr<Transfer> transfer) {
  Transfer* t = transfer.get();
  t->easy = curl_easy_init();
  t->started = absl::Now();
  t->host_allowed = options_.allowed_hosts.contains(UrlHost(t->request.url));
  for (const auto& [name, value] : t->request.headers) {
    t->headers = curl_slist_append(t->headers, absl::StrCat(name, ": ", value).c_str());
  }
  // Without this, curl sends "Expect: 100-continue" for larger bodies and waits for an answer.
  t->headers = curl_slist_append(t->headers, "Expect:");
  CURL* e = t->easy;
  bool ok = e != nullptr && t->headers != nullptr;
  ok = ok && curl_easy_setopt(e, CURLOPT_URL, t->request.url.c_str()) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request.body.data()) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                        static_cast<curl_off_t>(t->request.body.size())) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                        static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout))) ==
           CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                        static_cast<long>(absl::ToInt64Milliseconds(options_.timeout))) ==
           CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &Transfer::OpenSocket) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::Header) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_HEADERDATA, t) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::Discard) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_PRIVATE, t) == CURLE_OK &&
       curl_multi_add_handle(multi_, e) == CURLM_OK;
  if (!ok) {
    t->result.error = "setting up the transfer failed";
    t->done(t->result);
    return;
  }
  // Owned through running_ (and CURLOPT_PRIVATE) until it completes.
  running_.insert(transfer.release());
}

void CurlPushClient::Run() {
  while (true) {
    std::vector<std::unique_ptr<Transfer>> starting;
    bool stopping = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stopping_;
      const size_t room =
          options_.max_in_flight > running_.size() ? options_.max_in_flight - running_.size() : 0;
      const size_t take = stopping ? queued_.size() : std::min(room, queued_.size());
      starting.assign(std::make_move_iterator(queued_.begin()),
                      std::make_move_iterator(queued_.begin() + static_cast<long>(take)));
      queued_.erase(queued_.begin(), queued_.begin() + static_cast<long>(take));
    }
    if (stopping) {
      // Everything still queued or running ends now, each callback once.
      for (auto& t : starting) {
        t->result.error = "shut down";
        t->done(t->result);
      }
      for (Transfer* raw : running_) {
        std::unique_ptr<Transfer> t(raw);
        curl_multi_remove_handle(multi_, t->easy);
        t->result.error = "shut down";
        t->done(t->result);
      }
      running_.clear();
      return;
    }
    for (auto& t : starting) Start(std::move(t));
    int running = 0;
    curl_multi_perform(multi_, &running);
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &raw);
      std::unique_ptr<Transfer> t(raw);
      const CURLcode code = message->data.result;
      curl_multi_remove_handle(multi_, t->easy);
      running_.erase(raw);
      t->result.latency = absl::Now() - t->started;
      if (code == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        t->result.status = static_cast<int>(status);
      } else {
        t->result.status = 0;
        t->result.error = t->address_refused ? "refused address" : curl_easy_strerror(code);
      }
      t->done(t->result);
    }
    curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
  }
}

}  // namespace padlock::notifier
