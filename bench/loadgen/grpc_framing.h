#pragma once
// The gRPC length-prefixed message framing that the h2 transport writes into, and reads out of,
// HTTP/2 DATA frames (grpc/doc/PROTOCOL-HTTP2.md, "Length-Prefixed-Message"):
//
//   message := compressed-flag (1 byte, 0 here) || length (4 bytes, big-endian) || bytes
//
// A message may span DATA frames, and one DATA frame may hold several messages (and the start of
// the next): GrpcDeframer reassembles them whatever the frame boundaries. No grpc or HTTP/2
// includes: the unit test (tests/unit/loadgen) builds this file on its own, sanitizers included.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"

namespace padlock::loadgen {

inline constexpr size_t kGrpcPrefixBytes = 5;

// Appends `message` serialized, with its 5-byte prefix (uncompressed), to `out`. Reuses `out`'s
// capacity: no allocation once it has grown.
void AppendGrpcMessage(const google::protobuf::MessageLite& message, std::string& out);

// Splits the DATA bytes of one stream into messages. Not thread-safe (one stream, one thread).
class GrpcDeframer {
 public:
  // Messages longer than `max_message_bytes` are refused (ResourceExhausted).
  explicit GrpcDeframer(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Consumes `bytes`, the next DATA payload of the stream, and calls `on_message` once per
  // complete message, in order; the view is valid during that call only. A message completed
  // inside `bytes` is passed without a copy; only a message split across calls is buffered.
  // Errors (after which the stream is unusable): InvalidArgument for a compressed message (this
  // client never offers compression), ResourceExhausted for one above the limit.
  absl::Status Feed(absl::string_view bytes,
                    absl::FunctionRef<void(absl::string_view)> on_message);

  // True when no part of a message is buffered (a stream may end only here).
  bool AtMessageBoundary() const { return buffer_.empty(); }

 private:
  // Reads the prefix at `p`: the message length, or an error.
  absl::Status ParsePrefix(const char* p, size_t& length) const;

  const size_t max_message_bytes_;
  std::string buffer_;  // a partial message: its prefix (if complete) and body so far
  size_t length_ = 0;   // of the buffered message's body, once its prefix is complete
};

}  // namespace padlock::loadgen
