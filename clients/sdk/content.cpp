#include "clients/sdk/content.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace padlock::client {
namespace {

constexpr uint8_t kFormatVersion = 1;
constexpr size_t kSmallestBucket = 64;
constexpr size_t kLargeStep = 64 * 1024;

bool ValidKind(uint8_t kind) {
  return kind >= static_cast<uint8_t>(ContentKind::kText) &&
         kind <= static_cast<uint8_t>(ContentKind::kStory);
}

}  // namespace

size_t PaddedContentSize(size_t body_size) {
  const size_t needed = kContentHeaderSize + body_size;
  size_t bucket = kSmallestBucket;
  while (bucket < needed && bucket < kLargeStep) bucket *= 2;
  if (bucket >= needed) return bucket;
  return (needed + kLargeStep - 1) / kLargeStep * kLargeStep;
}

absl::StatusOr<std::string> EncodeContent(const Content& content) {
  if (content.body.size() > kMaxContentBodySize) {
    return absl::InvalidArgumentError(absl::StrCat("content body of ", content.body.size(),
                                                   " bytes exceeds ", kMaxContentBodySize));
  }
  const uint8_t kind = static_cast<uint8_t>(content.kind);
  if (!ValidKind(kind)) return absl::InvalidArgumentError("unknown content kind");
  const uint32_t length = static_cast<uint32_t>(content.body.size());
  std::string out(PaddedContentSize(content.body.size()), '\0');
  out[0] = static_cast<char>(kFormatVersion);
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
  if (static_cast<uint8_t>(padded[0]) != kFormatVersion) {
    return absl::DataLossError("unknown content format version");
  }
  const uint8_t kind = static_cast<uint8_t>(padded[1]);
  if (!ValidKind(kind)) return absl::DataLossError("unknown content kind");
  const uint32_t length = (uint32_t{static_cast<uint8_t>(padded[2])} << 24) |
                          (uint32_t{static_cast<uint8_t>(padded[3])} << 16) |
                          (uint32_t{static_cast<uint8_t>(padded[4])} << 8) |
                          uint32_t{static_cast<uint8_t>(padded[5])};
  if (length > kMaxContentBodySize || length > padded.size() - kContentHeaderSize) {
    return absl::DataLossError("content length beyond the payload");
  }
  if (padded.size() != PaddedContentSize(length)) {
    return absl::DataLossError("content size is not its bucket");
  }
  for (size_t i = kContentHeaderSize + length; i < padded.size(); ++i) {
    if (padded[i] != '\0') return absl::DataLossError("non-zero content padding");
  }
  return Content{static_cast<ContentKind>(kind),
                 std::string(padded.substr(kContentHeaderSize, length))};
}

}  // namespace padlock::client
