#pragma once
// The load generator's fast device-stream transport (--transport=h2, the default):
// Gateway.Connect spoken directly as gRPC over plaintext HTTP/2 (h2c with prior knowledge), with
// nghttp2 on a few epoll event loops, so that the generator costs a fraction of what the server
// does per envelope and measures the server rather than itself.
//
// One TCP connection per device, carrying that device's one stream. Each connection belongs to
// one loop thread (device index mod threads), which does all its I/O: per loop iteration it reads
// every readable socket (nghttp2_session_mem_recv; whole ServerFrames go to Device::OnFrame),
// then, for every connection touched, pulls the device's pending frames (Device::NextFrame),
// frames them as gRPC messages (grpc_framing.h), lets nghttp2 produce its frames into one buffer
// (nghttp2_session_mem_send) and writes that with one send(). Windows are large (SETTINGS and a
// connection WINDOW_UPDATE at start), so nghttp2 sends a WINDOW_UPDATE per 8 MiB received, not
// per message.
//
// Plaintext only: TLS (--tls-ca) stays on --transport=grpc. What this client does not do, since
// the gateway does not need it from a benchmark: compression, reconnects, HTTP/1.1 upgrade. (In
// reconnect-and-resend mode a Device whose stream broke asks for a new stream, which opens a new
// connection: the transport itself never reconnects one.)

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/loadgen/device_stream.h"

namespace padlock::loadgen {

class H2EventLoop;

// The event loops and the gateway address. Thread-safe.
class H2Client {
 public:
  // Resolves `target` ("host:port", "[v6]:port") and starts `threads` loop threads.
  // Errors: InvalidArgument for a malformed target, Unavailable when it does not resolve. Aborts
  // when epoll or eventfd cannot be created (a machine that cannot run the benchmark at all).
  static absl::StatusOr<std::unique_ptr<H2Client>> Create(const std::string& target, int threads);
  // Stops the loops and closes every connection still open; streams not ended yet end with
  // CANCELLED (Device::OnStreamEnd). The devices must outlive this.
  ~H2Client();

  // A stream for `device` on loop `device->index() % threads`; Device::Connect starts it. The
  // stream must not outlive this client's loops once started (destroy the client first).
  std::unique_ptr<StreamTransport> NewStream(Device* device);

 private:
  H2Client() = default;
  std::vector<std::unique_ptr<H2EventLoop>> loops_;
};

}  // namespace padlock::loadgen
