#pragma once
// What goes inside every Signal ciphertext: the content kind and the body, padded to a size
// bucket so that the ciphertext length reveals only the bucket. The normative description is
// docs/PROTOCOL.md "Message content"; test vectors are docs/vectors/content.json.
//
// Format (version 1), before encryption:
//   byte 0      format version, 1
//   byte 1      ContentKind
//   bytes 2..5  body length L, big-endian uint32
//   bytes 6..   body (L bytes), then zero bytes up to the bucket size
// The bucket is the smallest of 64, 128, 256, ..., 65536 bytes that holds 6 + L; above 64 KiB the
// size is rounded up to a multiple of 64 KiB. Bodies longer than kMaxContentBodySize are refused.
// Decoding checks the version, the length, the bucket and that every padding byte is zero.
//
// Kinds and versions this client does not know are not errors of the layout: DecodeContent
// returns them (Content::format_version above kContentFormatVersion, or a kind outside
// ContentKind) so that the receiver can answer "unsupported" (docs/PROTOCOL.md) instead of
// dropping the message.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// The highest kind this client understands (sent in "unsupported" receipts as its capability).
inline constexpr uint8_t kHighestKnownContentKind = static_cast<uint8_t>(ContentKind::kStory);
// The content format this client writes and reads.
inline constexpr uint8_t kContentFormatVersion = 1;

// True for the kinds of ContentKind (those this client can read).
bool IsKnownContentKind(uint8_t kind);

struct Content {
  ContentKind kind = ContentKind::kText;
  std::string body;
  // Set by DecodeContent: a version above kContentFormatVersion means the layout after byte 1 is
  // unknown, `kind` is byte 1 as sent and `body` is empty. EncodeContent writes only version 1.
  uint8_t format_version = kContentFormatVersion;
  bool operator==(const Content&) const = default;
};

inline constexpr size_t kContentHeaderSize = 6;
// The largest body this client sends. Chosen so that the padded content (a 32 KiB bucket) plus
// libsignal's overhead (≈ 150 bytes for a pre-key message) stays below the message-queue's
// per-device ciphertext limit (PADLOCK_MAX_CIPHERTEXT_BYTES, default 64 KiB); the next bucket,
// 64 KiB, would not fit once encrypted. docs/PROTOCOL.md "Limits" (checked by
// tests/unit/contract/limits_test.cpp).
inline constexpr size_t kMaxContentBodySize = 32 * 1024 - kContentHeaderSize;
// The largest body DecodeContent accepts (older clients padded up to 256 KiB).
inline constexpr size_t kMaxDecodedContentBodySize = 256 * 1024;

// The padded size for a body of `body_size` bytes (header included).
size_t PaddedContentSize(size_t body_size);

// Encodes and pads as format version 1. InvalidArgument when the body exceeds
// kMaxContentBodySize ("... too long ..."), the kind is 0, or content.format_version is not 1.
// Kinds this client does not know are encoded as given (a peer may know them; tests use this to
// play a newer client).
absl::StatusOr<std::string> EncodeContent(const Content& content);

// Parses what EncodeContent produced. DataLoss when the bytes are malformed (version 0, kind 0,
// length beyond the buffer or above kMaxDecodedContentBodySize, non-zero padding, size not a
// bucket). A newer format version (only bytes 0 and 1 are read) or an unknown kind is returned,
// not refused: see the note at the top.
absl::StatusOr<Content> DecodeContent(std::string_view padded);

// ---- Bodies: what each kind carries inside Content::body (docs/PROTOCOL.md) ----

// Delivery state of an outgoing message in history.
// kDelivered, kRead and kUnsupported are also the status byte of receipt bodies on the wire
// (docs/PROTOCOL.md "Receipt"). kUnsupported: the recipient's client could not show the message
// (a content kind or format it does not know) and said so.
enum class MessageStatus : int {
  kPending = 0,
  kSent = 1,
  kDelivered = 2,
  kRead = 3,
  kFailed = 4,
  kUnsupported = 5,
};

// How a text body names its conversation, so that this account's other devices file a copy
// under the right peer: u16 big-endian length of the recipient user id, the id, then the text.
std::string EncodeTextBody(std::string_view to_user, std::string_view text);
absl::StatusOr<std::pair<std::string, std::string>> DecodeTextBody(std::string_view body);
// A receipt body: one status byte (MessageStatus kDelivered or kRead), then 16-byte message ids.
// With status kUnsupported the status byte is followed by the receiver's capabilities (below),
// then the ids. DecodeReceiptBody reads all three statuses (DataLoss for any other).
std::string EncodeReceiptBody(MessageStatus status, const std::vector<std::string>& message_ids);
absl::StatusOr<std::pair<MessageStatus, std::vector<std::string>>> DecodeReceiptBody(
    std::string_view body);

// What a client reads: the highest content format version and the content kinds (ascending).
// Sent in "unsupported" receipts so that the sender knows what the peer's client can show.
struct ContentCapabilities {
  uint8_t format_version = kContentFormatVersion;
  std::vector<uint8_t> kinds = {};
  bool operator==(const ContentCapabilities&) const = default;
};
// This SDK's Messenger: format 1; kinds text, receipt, typing, group key distribution, group
// update, story (not call signal: no body layout is defined for it yet).
ContentCapabilities MessengerCapabilities();
// An "unsupported" receipt: status byte 5, format version byte, kind count byte, the kinds, then
// 16-byte message ids (at least one).
std::string EncodeUnsupportedReceiptBody(const ContentCapabilities& capabilities,
                                         const std::vector<std::string>& message_ids);
// The capabilities of an "unsupported" receipt body. DataLoss for any other body.
absl::StatusOr<ContentCapabilities> DecodeUnsupportedReceiptCapabilities(std::string_view body);

// A story body: u32 big-endian time-to-live in seconds (not 0), then the text.
std::string EncodeStoryBody(uint32_t ttl_seconds, std::string_view text);
absl::StatusOr<std::pair<uint32_t, std::string>> DecodeStoryBody(std::string_view body);

// A group update body: 16-byte group id, u16 title length, title, u16 member count, then each
// member as u16 length + user id.
struct GroupUpdate {
  std::string group_id;
  std::string title;
  std::vector<std::string> members = {};
};
std::string EncodeGroupUpdate(const GroupUpdate& update);
absl::StatusOr<GroupUpdate> DecodeGroupUpdate(std::string_view body);
// The history conversation of a group: "group:" + hex(group id).
std::string GroupConversation(std::string_view group_id);

}  // namespace padlock::client
