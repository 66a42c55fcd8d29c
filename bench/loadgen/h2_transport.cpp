#include "bench/loadgen/h2_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "bench/loadgen/grpc_framing.h"

namespace padlock::loadgen {
namespace {

// gRPC status codes (grpc/include/grpc/impl/codegen/status.h): this file does not include grpc.
constexpr int kCancelled = 1;
constexpr int kUnknown = 2;
constexpr int kInternal = 13;
constexpr int kUnavailable = 14;
constexpr int kUnauthenticated = 16;
constexpr int kResourceExhausted = 8;

// The server may send frames up to 4 MiB (docs/PROTOCOL.md); refuse anything far above.
constexpr size_t kMaxMessageBytes = size_t{16} << 20;
// Receive windows: per stream (SETTINGS_INITIAL_WINDOW_SIZE) and for the connection.
constexpr int32_t kStreamWindow = int32_t{1} << 24;
constexpr int32_t kConnectionWindow = int32_t{1} << 30;
constexpr size_t kReadBuffer = size_t{64} << 10;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "padlock-loadgen h2: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

// The gRPC status for a stream reset without grpc-status (grpc/doc/PROTOCOL-HTTP2.md, "Errors").
int StatusOfReset(uint32_t http2_error) {
  switch (http2_error) {
    case NGHTTP2_REFUSED_STREAM:
      return kUnavailable;
    case NGHTTP2_CANCEL:
      return kCancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return kResourceExhausted;
    default:
      return kInternal;
  }
}

// The gRPC status for an HTTP status other than 200 (the same document, "HTTP to gRPC Status
// Code Mapping").
int StatusOfHttp(int http_status) {
  switch (http_status) {
    case 401:
      return kUnauthenticated;
    case 429:
    case 502:
    case 503:
    case 504:
      return kUnavailable;
    default:
      return kUnknown;
  }
}

}  // namespace

class H2Stream;

// One loop thread and the connections it owns. Other threads reach a connection only through
// Post (a flag word and a queue under mutex_, then the eventfd).
class H2EventLoop {
 public:
  H2EventLoop(const sockaddr_storage& address, socklen_t address_length, std::string authority);
  ~H2EventLoop();

  // Called by H2Stream::Post from any thread: `stream` has requests for the loop.
  void Enqueue(H2Stream* stream);
  // On the loop thread only: flush `stream` at the end of this iteration.
  void MarkDirty(H2Stream* stream);
  bool OnLoopThread() const;
  void Adopt(H2Stream* stream);

  int epoll_fd() const { return epoll_fd_; }
  const sockaddr_storage& address() const { return address_; }
  socklen_t address_length() const { return address_length_; }
  const std::string& authority() const { return authority_; }
  nghttp2_session_callbacks* callbacks() const { return callbacks_; }
  // Reused across the connections of this loop (only one is being read or written at a time).
  FrameScratch& scratch() { return scratch_; }
  // A frame to parse `message` into, picked by its first field (the oneof's case), so that
  // alternating deliver and send_result frames each reuse their own nested messages.
  v1::ServerFrame& read_frame(absl::string_view message) {
    const uint8_t tag = message.empty() ? 0 : static_cast<uint8_t>(message[0]);
    return read_frames_[(tag >> 3) % std::size(read_frames_)];
  }
  char* read_buffer() { return read_buffer_.data(); }

 private:
  void Run();
  void TakeIncoming();

  const sockaddr_storage address_;
  const socklen_t address_length_;
  const std::string authority_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  nghttp2_session_callbacks* callbacks_ = nullptr;
  std::atomic<bool> stopping_{false};
  std::thread thread_;

  std::mutex mutex_;
  std::vector<H2Stream*> incoming_;   // under mutex_
  std::vector<H2Stream*> streams_;    // under mutex_: every stream of this loop (for the stop)
  std::atomic<bool> signalled_{false};  // the eventfd was written and not read yet

  // Loop thread only.
  std::vector<H2Stream*> dirty_;
  std::vector<H2Stream*> taken_;
  FrameScratch scratch_;
  v1::ServerFrame read_frames_[8];
  std::string read_buffer_ = std::string(kReadBuffer, '\0');
};

namespace {
thread_local const H2EventLoop* current_loop = nullptr;
}  // namespace

// One device's connection and stream. Public methods (StreamTransport) run on any thread and only
// post requests; everything else runs on the loop thread.
class H2Stream final : public StreamTransport {
 public:
  H2Stream(H2EventLoop* loop, Device* device)
      : loop_(loop), device_(device), deframer_(kMaxMessageBytes) {}
  ~H2Stream() override {
    // The loops are stopped by now (H2Client's contract), so nothing else touches this.
    if (session_ != nullptr) nghttp2_session_del(session_);
    if (fd_ >= 0) close(fd_);
  }

  void Start() override { Post(kStart); }
  void Wake() override { Post(0); }
  void Close() override { Post(kClose); }
  void Cancel() override { Post(kCancel); }

  // Loop thread: take the posted requests, then write what there is.
  void Process() {
    dirty_ = false;
    // Cleared before the requests are taken: a Post after this point queues the stream again,
    // and one before it is seen by the exchange (or by Flush's Device::NextFrame).
    queued_.store(false);
    const uint8_t requests = requests_.exchange(0);
    if ((requests & kStart) != 0 && !opened_) Open();
    if ((requests & kClose) != 0) close_requested_ = true;
    if ((requests & kCancel) != 0 && !ended_) {
      if (session_ != nullptr && stream_id_ > 0) {
        // on_stream_close reports CANCELLED once the RST_STREAM is out.
        nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CANCEL);
      } else {
        End(kCancelled, "cancelled before the stream opened");
      }
    }
    Flush();
  }

  // Loop thread: the socket is readable, writable or broken.
  void OnSocketEvents(uint32_t events) {
    if (fd_ < 0) return;
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) Read();
    if (fd_ >= 0 && (events & (EPOLLHUP | EPOLLERR)) != 0 && !ended_) {
      int error = 0;
      socklen_t length = sizeof error;
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length);
      End(kUnavailable, absl::StrCat("connection to ", loop_->authority(), " failed: ",
                                     std::strerror(error != 0 ? error : ECONNRESET)));
    }
    // Flush when nghttp2 has something to answer (SETTINGS and PING acks) or output waits for
    // EPOLLOUT; a read that only brought frames (the device Posts what they cause) needs none.
    if (fd_ >= 0 && (nghttp2_session_want_write(session_) != 0 || out_offset_ < out_.size())) {
      loop_->MarkDirty(this);
    }
  }

  // Loop thread, at the stop: whatever is still open ends now.
  void Abort() {
    if (!ended_ && opened_) End(kCancelled, "the h2 client stopped");
    CloseSocket();
  }

  // Loop thread: true when the stream was not in the loop's dirty list yet (Process clears it).
  bool MarkDirty() { return !std::exchange(dirty_, true); }

  // nghttp2 callbacks (loop thread, inside mem_recv / mem_send).
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                      void* user_data);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t length, void* user_data);
  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                           void* user_data);
  static ssize_t ReadData(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source*, void* user_data);

 private:
  static constexpr uint8_t kStart = 1, kClose = 2, kCancel = 4;

  void Post(uint8_t requests) {
    if (requests != 0) requests_.fetch_or(requests);
    if (loop_->OnLoopThread()) {
      loop_->MarkDirty(this);
    } else if (!queued_.exchange(true)) {
      loop_->Enqueue(this);
    }
  }

  void Open();
  void Read();
  void Flush();
  // Ends the stream for the device (once) and drops the connection.
  void End(int code, const std::string& message);
  void CloseSocket();

  H2EventLoop* const loop_;
  Device* const device_;
  std::atomic<uint8_t> requests_{0};  // seq_cst throughout: see Post and Process
  std::atomic<bool> queued_{false};  // in the loop's incoming queue

  // Loop thread only.
  bool dirty_ = false;  // in the loop's dirty list
  bool opened_ = false;
  bool ended_ = false;
  bool close_requested_ = false;
  bool half_closed_ = false;     // END_STREAM given to nghttp2
  bool data_deferred_ = false;   // ReadData returned NGHTTP2_ERR_DEFERRED
  int fd_ = -1;
  nghttp2_session* session_ = nullptr;
  int32_t stream_id_ = -1;
  std::string data_;             // gRPC messages not yet taken by nghttp2 (from data_offset_)
  size_t data_offset_ = 0;
  std::string out_;              // bytes nghttp2 produced, not yet written (from out_offset_)
  size_t out_offset_ = 0;
  GrpcDeframer deframer_;
  int http_status_ = 0;
  int grpc_status_ = -1;
  std::string grpc_message_;
  std::string failure_;          // a local reason to end the stream (a bad frame from the server)
};

// ----- H2EventLoop -----

H2EventLoop::H2EventLoop(const sockaddr_storage& address, socklen_t address_length,
                         std::string authority)
    : address_(address), address_length_(address_length), authority_(std::move(authority)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || event_fd_ < 0) Die("epoll_create1/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the eventfd
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) Die("epoll_ctl(eventfd)");
  nghttp2_session_callbacks_new(&callbacks_);
  nghttp2_session_callbacks_set_on_header_callback(callbacks_, &H2Stream::OnHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks_, &H2Stream::OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks_, &H2Stream::OnStreamClose);
  thread_ = std::thread([this] { Run(); });
}

H2EventLoop::~H2EventLoop() {
  stopping_ = true;
  const uint64_t one = 1;
  if (write(event_fd_, &one, sizeof one) < 0 && errno != EAGAIN) Die("write(eventfd)");
  thread_.join();
  nghttp2_session_callbacks_del(callbacks_);
  close(event_fd_);
  close(epoll_fd_);
}

bool H2EventLoop::OnLoopThread() const { return current_loop == this; }

void H2EventLoop::Adopt(H2Stream* stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  streams_.push_back(stream);
}

void H2EventLoop::Enqueue(H2Stream* stream) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    incoming_.push_back(stream);
  }
  // One eventfd write per loop wake-up, however many streams were queued meanwhile.
  if (!signalled_.exchange(true)) {
    const uint64_t one = 1;
    if (write(event_fd_, &one, sizeof one) < 0 && errno != EAGAIN) Die("write(eventfd)");
  }
}

void H2EventLoop::MarkDirty(H2Stream* stream) {
  if (stream->MarkDirty()) dirty_.push_back(stream);
}

void H2EventLoop::TakeIncoming() {
  uint64_t count;
  if (read(event_fd_, &count, sizeof count) < 0 && errno != EAGAIN) Die("read(eventfd)");
  // Cleared before the queue is taken: a stream queued after this point writes the eventfd again.
  signalled_.store(false);
  taken_.clear();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    taken_.swap(incoming_);
  }
  for (H2Stream* stream : taken_) MarkDirty(stream);
}

void H2EventLoop::Run() {
  current_loop = this;
  std::vector<epoll_event> events(1024);
  while (!stopping_.load(std::memory_order_relaxed)) {
    // Never block while streams wait for their flush (none do here: the list is empty below).
    const int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        TakeIncoming();
      } else {
        static_cast<H2Stream*>(events[i].data.ptr)->OnSocketEvents(events[i].events);
      }
    }
    // Process does not add to dirty_ (it only pulls frames and writes), so indices stay valid.
    for (size_t i = 0; i < dirty_.size(); ++i) {
      dirty_[i]->Process();
    }
    dirty_.clear();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (H2Stream* stream : streams_) stream->Abort();
}

// ----- H2Stream -----

void H2Stream::Open() {
  opened_ = true;
  const sockaddr_storage& address = loop_->address();
  fd_ = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    End(kUnavailable, absl::StrCat("socket: ", std::strerror(errno)));
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&address), loop_->address_length()) != 0 &&
      errno != EINPROGRESS) {
    End(kUnavailable, absl::StrCat("connect to ", loop_->authority(), ": ", std::strerror(errno)));
    return;
  }
  // Edge-triggered: Read drains the socket, Flush writes until EAGAIN and then waits for EPOLLOUT
  // (raised only after a write found the buffer full, so idle connections do not wake us).
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = this;
  if (epoll_ctl(loop_->epoll_fd(), EPOLL_CTL_ADD, fd_, &ev) != 0) Die("epoll_ctl(ADD)");

  if (nghttp2_session_client_new(&session_, loop_->callbacks(), this) != 0) {
    Die("nghttp2_session_client_new");
  }
  // Large receive windows once, instead of nghttp2 (or gRPC) topping them up per message. The
  // automatic WINDOW_UPDATE stays on: every DATA chunk is consumed inside its callback, so
  // nghttp2's "received" is our "consumed", and it sends an update only when half a window
  // (8 MiB on a stream, 512 MiB on the connection) has been received.
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);

  static constexpr char kPath[] = "/padlock.v1.Gateway/Connect";
  const std::string bearer = "Bearer " + device_->account().token;
  auto header = [](const char* name, const std::string& value) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                      std::strlen(name), value.size(), NGHTTP2_NV_FLAG_NONE};
  };
  const std::string post = "POST", http = "http", path = kPath, grpc = "application/grpc",
                    trailers = "trailers", agent = "padlock-loadgen-h2",
                    revision = std::to_string(device_->stream_revision());
  const nghttp2_nv headers[] = {
      header(":method", post),           header(":scheme", http),
      header(":path", path),             header(":authority", loop_->authority()),
      header("content-type", grpc),      header("te", trailers),
      header("authorization", bearer),   header("user-agent", agent),
      header("padlock-stream-revision", revision),
  };
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Stream::ReadData;
  // nghttp2 copies the headers here.
  stream_id_ = nghttp2_submit_request(session_, nullptr, headers, std::size(headers), &provider,
                                      this);
  if (stream_id_ < 0) {
    End(kInternal, absl::StrCat("nghttp2_submit_request: ", nghttp2_strerror(stream_id_)));
  }
}

void H2Stream::Read() {
  while (fd_ >= 0) {
    const ssize_t n = recv(fd_, loop_->read_buffer(), kReadBuffer, 0);
    if (n > 0) {
      const ssize_t used = nghttp2_session_mem_recv(
          session_, reinterpret_cast<const uint8_t*>(loop_->read_buffer()), static_cast<size_t>(n));
      if (used < 0) {
        End(kInternal, absl::StrCat("HTTP/2 from ", loop_->authority(), ": ",
                                    nghttp2_strerror(static_cast<int>(used))));
        return;
      }
      if (ended_) {
        CloseSocket();
        return;
      }
      if (!failure_.empty()) {  // a bad message from the server (OnDataChunk)
        End(kInternal, failure_);
        return;
      }
      // A short read drained the socket; data arriving later raises a new edge.
      if (static_cast<size_t>(n) < kReadBuffer) return;
      continue;
    }
    if (n == 0) {
      End(kUnavailable, absl::StrCat("connection closed by ", loop_->authority()));
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    if (errno == EINTR) continue;
    End(kUnavailable, absl::StrCat("recv from ", loop_->authority(), ": ", std::strerror(errno)));
    return;
  }
}

void H2Stream::Flush() {
  if (fd_ < 0 || session_ == nullptr) return;
  if (!half_closed_ && stream_id_ > 0) {
    const size_t before = data_.size();
    FrameScratch& scratch = loop_->scratch();
    while (const v1::ClientFrame* frame = device_->NextFrame(scratch)) {
      AppendGrpcMessage(*frame, data_);
    }
    if (data_deferred_ && (data_.size() > before || close_requested_)) {
      data_deferred_ = false;
      nghttp2_session_resume_data(session_, stream_id_);
    }
  }
  // Everything nghttp2 has to say, into one buffer...
  while (nghttp2_session_want_write(session_) != 0) {
    const uint8_t* chunk = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &chunk);
    if (n < 0) {
      End(kInternal, absl::StrCat("nghttp2_session_mem_send: ",
                                  nghttp2_strerror(static_cast<int>(n))));
      return;
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(chunk), static_cast<size_t>(n));
  }
  if (ended_) {  // on_stream_close ran during mem_send (our RST_STREAM went out)
    CloseSocket();
    return;
  }
  // ...and one send() for it.
  while (out_offset_ < out_.size()) {
    const ssize_t n = send(fd_, out_.data() + out_offset_, out_.size() - out_offset_, MSG_NOSIGNAL);
    if (n > 0) {
      out_offset_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT follows
    End(kUnavailable, absl::StrCat("send to ", loop_->authority(), ": ", std::strerror(errno)));
    return;
  }
  out_.clear();
  out_offset_ = 0;
}

void H2Stream::End(int code, const std::string& message) {
  if (!ended_) {
    ended_ = true;
    device_->OnStreamEnd(code, message);
  }
  // Not from inside an nghttp2 callback: callers there only set ended_ (see OnStreamClose).
  CloseSocket();
}

void H2Stream::CloseSocket() {
  if (fd_ >= 0) {
    close(fd_);  // also leaves the epoll set
    fd_ = -1;
  }
}

int H2Stream::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                       void* user_data) {
  auto* self = static_cast<H2Stream*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->hd.stream_id != self->stream_id_) return 0;
  const absl::string_view n(reinterpret_cast<const char*>(name), name_length);
  const absl::string_view v(reinterpret_cast<const char*>(value), value_length);
  if (n == ":status") {
    if (!absl::SimpleAtoi(v, &self->http_status_)) self->http_status_ = 0;
  } else if (n == "grpc-status") {
    if (!absl::SimpleAtoi(v, &self->grpc_status_)) self->grpc_status_ = kUnknown;
  } else if (n == "grpc-message") {
    self->grpc_message_.assign(v.data(), v.size());  // percent-encoded; good enough for a failure note
  }
  return 0;
}

int H2Stream::OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                          size_t length, void* user_data) {
  auto* self = static_cast<H2Stream*>(user_data);
  if (stream_id != self->stream_id_ || self->ended_ || !self->failure_.empty()) return 0;
  const absl::Status status = self->deframer_.Feed(
      absl::string_view(reinterpret_cast<const char*>(data), length),
      [&](absl::string_view message) {
        if (!self->failure_.empty()) return;
        v1::ServerFrame& frame = self->loop_->read_frame(message);
        if (!frame.ParseFromArray(message.data(), static_cast<int>(message.size()))) {
          self->failure_ = "unparsable ServerFrame from the gateway";
          return;
        }
        self->device_->OnFrame(frame);
      });
  if (!status.ok()) self->failure_ = std::string(status.message());
  // Read ends the stream with failure_ once nghttp2 returns.
  return 0;
}

int H2Stream::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                            void* user_data) {
  auto* self = static_cast<H2Stream*>(user_data);
  if (stream_id != self->stream_id_ || self->ended_) return 0;
  int code;
  std::string message;
  if (!self->failure_.empty()) {
    code = kInternal;
    message = self->failure_;
  } else if (self->grpc_status_ >= 0) {
    code = self->grpc_status_;
    message = self->grpc_message_;
  } else if (error_code != NGHTTP2_NO_ERROR) {
    code = StatusOfReset(error_code);
    message = absl::StrCat("stream reset: HTTP/2 error ", error_code, " (",
                           nghttp2_http2_strerror(error_code), ")");
  } else if (self->http_status_ != 200) {
    code = StatusOfHttp(self->http_status_);
    message = absl::StrCat("HTTP status ", self->http_status_);
  } else {
    code = kUnknown;
    message = "stream ended without grpc-status";
  }
  // The socket is closed by the caller of mem_recv / mem_send once nghttp2 returns.
  self->ended_ = true;
  self->device_->OnStreamEnd(code, message);
  return 0;
}

ssize_t H2Stream::ReadData(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
  auto* self = static_cast<H2Stream*>(user_data);
  const size_t n = std::min(length, self->data_.size() - self->data_offset_);
  std::memcpy(buf, self->data_.data() + self->data_offset_, n);
  self->data_offset_ += n;
  if (self->data_offset_ == self->data_.size()) {
    self->data_.clear();  // keeps its capacity
    self->data_offset_ = 0;
    if (self->close_requested_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      self->half_closed_ = true;
    } else if (n == 0) {
      self->data_deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

// ----- H2Client -----

absl::StatusOr<std::unique_ptr<H2Client>> H2Client::Create(const std::string& target,
                                                           int threads) {
  std::string host, port;
  if (!target.empty() && target.front() == '[') {
    const size_t close = target.find("]:");
    if (close == std::string::npos) return absl::InvalidArgumentError("bad target " + target);
    host = target.substr(1, close - 1);
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos) return absl::InvalidArgumentError("target without port: " + target);
    host = target.substr(0, colon);
    port = target.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolve ", target, ": ", gai_strerror(rc)));
  }
  sockaddr_storage address{};
  const socklen_t length = found->ai_addrlen;
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  std::unique_ptr<H2Client> client(new H2Client());
  for (int i = 0; i < std::max(1, threads); ++i) {
    client->loops_.push_back(std::make_unique<H2EventLoop>(address, length, target));
  }
  return client;
}

H2Client::~H2Client() = default;

std::unique_ptr<StreamTransport> H2Client::NewStream(Device* device) {
  H2EventLoop* loop = loops_[device->index() % loops_.size()].get();
  auto stream = std::make_unique<H2Stream>(loop, device);
  loop->Adopt(stream.get());
  return stream;
}

}  // namespace padlock::loadgen
