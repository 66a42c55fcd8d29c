#include "clients/sdk/content.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace padlock::client {
namespace {

constexpr size_t kSmallestBucket = 64;
constexpr size_t kLargeStep = 64 * 1024;

}  // namespace

bool IsKnownContentKind(uint8_t kind) {
  return kind >= static_cast<uint8_t>(ContentKind::kText) && kind <= kHighestKnownContentKind;
}

size_t PaddedContentSize(size_t body_size) {
  const size_t needed = kContentHeaderSize + body_size;
  size_t bucket = kSmallestBucket;
  while (bucket < needed && bucket < kLargeStep) bucket *= 2;
  if (bucket >= needed) return bucket;
  return (needed + kLargeStep - 1) / kLargeStep * kLargeStep;
}

absl::StatusOr<std::string> EncodeContent(const Content& content) {
  if (content.body.size() > kMaxContentBodySize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message too long: its content body is ", content.body.size(), " bytes, at most ",
        kMaxContentBodySize, " fit in the server's per-device limit once padded and encrypted"));
  }
  if (content.format_version != kContentFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot encode content format version ", content.format_version));
  }
  const uint8_t kind = static_cast<uint8_t>(content.kind);
  if (kind == 0) return absl::InvalidArgumentError("content kind 0 is not a kind");
  const uint32_t length = static_cast<uint32_t>(content.body.size());
  std::string out(PaddedContentSize(content.body.size()), '\0');
  out[0] = static_cast<char>(kContentFormatVersion);
  out[1] = static_cast<char>(kind);
  out[2] = static_cast<char>(length >> 24);
  out[3] = static_cast<char>(length >> 16);
  out[4] = static_cast<char>(length >> 8);
  out[5] = static_cast<char>(length);
  out.replace(kContentHeaderSize, content.body.size(), content.body);
  return out;
}

absl::StatusOr<Content> DecodeContent(std::string_view padded) {
  if (padded.size() < kContentHeaderSize) return absl::DataLossError("content too short");
  const uint8_t version = static_cast<uint8_t>(padded[0]);
  const uint8_t kind = static_cast<uint8_t>(padded[1]);
  if (version == 0) return absl::DataLossError("content format version 0");
  if (kind == 0) return absl::DataLossError("content kind 0");
  // A newer format: its layout after byte 1 is not ours to check. The caller answers
  // "unsupported" (docs/PROTOCOL.md) rather than dropping it as corrupt.
  if (version > kContentFormatVersion) return Content{static_cast<ContentKind>(kind), "", version};
  const uint32_t length = (uint32_t{static_cast<uint8_t>(padded[2])} << 24) |
                          (uint32_t{static_cast<uint8_t>(padded[3])} << 16) |
                          (uint32_t{static_cast<uint8_t>(padded[4])} << 8) |
                          uint32_t{static_cast<uint8_t>(padded[5])};
  if (length > kMaxDecodedContentBodySize || length > padded.size() - kContentHeaderSize) {
    return absl::DataLossError("content length beyond the payload");
  }
  if (padded.size() != PaddedContentSize(length)) {
    return absl::DataLossError("content size is not its bucket");
  }
  for (size_t i = kContentHeaderSize + length; i < padded.size(); ++i) {
    if (padded[i] != '\0') return absl::DataLossError("non-zero content padding");
  }
  // An unknown kind is returned as is: the caller answers "unsupported".
  return Content{static_cast<ContentKind>(kind),
                 std::string(padded.substr(kContentHeaderSize, length)), version};
}

}  // namespace padlock::client
