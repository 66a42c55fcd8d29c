#pragma once
// What goes inside every Signal ciphertext: the content kind and the body, padded to a size
// bucket so that the ciphertext length reveals only the bucket (docs/CLIENT.md "Padding").
//
// Format (version 1), before encryption:
//   byte 0      format version, 1
//   byte 1      ContentKind
//   bytes 2..5  body length L, big-endian uint32
//   bytes 6..   body (L bytes), then zero bytes up to the bucket size
// The bucket is the smallest of 64, 128, 256, ..., 65536 bytes that holds 6 + L; above 64 KiB the
// size is rounded up to a multiple of 64 KiB. Bodies longer than kMaxContentBodySize are refused.
// Decoding checks the version, the kind, the length and that every padding byte is zero.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace padlock::client {

enum class ContentKind : uint8_t {
  kText = 1,
  kReceipt = 2,
  kTyping = 3,
  kCallSignal = 4,
  kGroupKeyDistribution = 5,
  // A group's title and member list (sent 1:1 to every member on create, add, remove).
  kGroupUpdate = 6,
  // A story: u32 big-endian time-to-live in seconds, then the text (messenger_stories.cpp).
  kStory = 7,
};

struct Content {
  ContentKind kind = ContentKind::kText;
  std::string body;
  bool operator==(const Content&) const = default;
};

inline constexpr size_t kContentHeaderSize = 6;
inline constexpr size_t kMaxContentBodySize = 256 * 1024;

// The padded size for a body of `body_size` bytes (header included).
size_t PaddedContentSize(size_t body_size);

// Encodes and pads. InvalidArgument when the body exceeds kMaxContentBodySize or the kind is
// not one of ContentKind's values.
absl::StatusOr<std::string> EncodeContent(const Content& content);

// Parses what EncodeContent produced. DataLoss when the bytes are malformed (wrong version or
// kind, length beyond the buffer, non-zero padding, size not a bucket).
absl::StatusOr<Content> DecodeContent(std::string_view padded);

}  // namespace padlock::client
