#include "clients/sdk/content.h"

#include <algorithm>
#include <utility>

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

// ---- Bodies -------------------------------------------------------------------------------

namespace {

constexpr size_t kGroupIdSize = 16;

void PutU16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

bool GetString(std::string_view& in, std::string& out) {
  if (in.size() < 2) return false;
  const size_t len = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
  if (in.size() < 2 + len) return false;
  out = std::string(in.substr(2, len));
  in.remove_prefix(2 + len);
  return true;
}

}  // namespace

std::string EncodeTextBody(std::string_view to_user, std::string_view text) {
  std::string out;
  out.push_back(static_cast<char>((to_user.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(to_user.size() & 0xff));
  out.append(to_user);
  out.append(text);
  return out;
}

absl::StatusOr<std::pair<std::string, std::string>> DecodeTextBody(std::string_view body) {
  if (body.size() < 2) return absl::DataLossError("text body too short");
  const size_t len = (static_cast<uint8_t>(body[0]) << 8) | static_cast<uint8_t>(body[1]);
  if (body.size() < 2 + len) return absl::DataLossError("text body: bad recipient length");
  return std::make_pair(std::string(body.substr(2, len)), std::string(body.substr(2 + len)));
}

std::string EncodeReceiptBody(MessageStatus status, const std::vector<std::string>& message_ids) {
  std::string out(1, static_cast<char>(status));
  for (const std::string& id : message_ids) out.append(id);
  return out;
}

namespace {

// The bytes of an "unsupported" receipt before its message ids (status, version, count, kinds),
// or 0 when `body` is too short to hold them.
size_t UnsupportedReceiptPrefix(std::string_view body) {
  if (body.size() < 3) return 0;
  const size_t prefix = 3 + static_cast<uint8_t>(body[2]);
  return body.size() < prefix ? 0 : prefix;
}

}  // namespace

absl::StatusOr<std::pair<MessageStatus, std::vector<std::string>>> DecodeReceiptBody(
    std::string_view body) {
  if (body.empty()) return absl::DataLossError("receipt body is empty");
  const int status = static_cast<uint8_t>(body[0]);
  size_t first_id = 1;
  if (status == static_cast<int>(MessageStatus::kUnsupported)) {
    first_id = UnsupportedReceiptPrefix(body);
    if (first_id == 0) return absl::DataLossError("unsupported receipt: bad capabilities");
  } else if (status != static_cast<int>(MessageStatus::kDelivered) &&
             status != static_cast<int>(MessageStatus::kRead)) {
    return absl::DataLossError("receipt body has an unknown status");
  }
  if ((body.size() - first_id) % 16 != 0) {
    return absl::DataLossError("receipt body has a bad length");
  }
  std::vector<std::string> ids;
  for (size_t i = first_id; i < body.size(); i += 16) ids.emplace_back(body.substr(i, 16));
  return std::make_pair(static_cast<MessageStatus>(status), std::move(ids));
}

ContentCapabilities MessengerCapabilities() {
  return ContentCapabilities{
      kContentFormatVersion,
      {static_cast<uint8_t>(ContentKind::kText), static_cast<uint8_t>(ContentKind::kReceipt),
       static_cast<uint8_t>(ContentKind::kTyping),
       static_cast<uint8_t>(ContentKind::kGroupKeyDistribution),
       static_cast<uint8_t>(ContentKind::kGroupUpdate), static_cast<uint8_t>(ContentKind::kStory)}};
}

std::string EncodeUnsupportedReceiptBody(const ContentCapabilities& capabilities,
                                         const std::vector<std::string>& message_ids) {
  std::string out;
  out.push_back(static_cast<char>(MessageStatus::kUnsupported));
  out.push_back(static_cast<char>(capabilities.format_version));
  out.push_back(static_cast<char>(capabilities.kinds.size()));
  for (uint8_t kind : capabilities.kinds) out.push_back(static_cast<char>(kind));
  for (const std::string& id : message_ids) out.append(id);
  return out;
}

absl::StatusOr<ContentCapabilities> DecodeUnsupportedReceiptCapabilities(std::string_view body) {
  if (body.empty() ||
      static_cast<uint8_t>(body[0]) != static_cast<uint8_t>(MessageStatus::kUnsupported)) {
    return absl::DataLossError("not an unsupported receipt");
  }
  const size_t prefix = UnsupportedReceiptPrefix(body);
  if (prefix == 0) return absl::DataLossError("unsupported receipt: bad capabilities");
  ContentCapabilities out{static_cast<uint8_t>(body[1]), {}};
  for (size_t i = 3; i < prefix; ++i) out.kinds.push_back(static_cast<uint8_t>(body[i]));
  return out;
}

std::string EncodeGroupUpdate(const GroupUpdate& update) {
  std::string out = update.group_id;
  PutU16(out, update.title.size());
  out += update.title;
  PutU16(out, update.members.size());
  for (const std::string& m : update.members) {
    PutU16(out, m.size());
    out += m;
  }
  return out;
}

absl::StatusOr<GroupUpdate> DecodeGroupUpdate(std::string_view body) {
  GroupUpdate update;
  if (body.size() < kGroupIdSize + 4) return absl::DataLossError("group update too short");
  update.group_id = std::string(body.substr(0, kGroupIdSize));
  body.remove_prefix(kGroupIdSize);
  if (!GetString(body, update.title) || body.size() < 2) {
    return absl::DataLossError("group update: bad title");
  }
  const size_t count = (static_cast<uint8_t>(body[0]) << 8) | static_cast<uint8_t>(body[1]);
  body.remove_prefix(2);
  for (size_t i = 0; i < count; ++i) {
    std::string member;
    if (!GetString(body, member) || member.empty()) {
      return absl::DataLossError("group update: bad member");
    }
    update.members.push_back(std::move(member));
  }
  if (!body.empty()) return absl::DataLossError("group update: trailing bytes");
  return update;
}

std::string GroupConversation(std::string_view group_id) {
  static const char* kDigits = "0123456789abcdef";
  std::string out = "group:";
  for (unsigned char c : group_id) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string EncodeStoryBody(uint32_t ttl_seconds, std::string_view text) {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((ttl_seconds >> shift) & 0xff));
  }
  out.append(text);
  return out;
}

absl::StatusOr<std::pair<uint32_t, std::string>> DecodeStoryBody(std::string_view body) {
  if (body.size() < 4) return absl::DataLossError("story body too short");
  uint32_t ttl = 0;
  for (int i = 0; i < 4; ++i) ttl = (ttl << 8) | static_cast<uint8_t>(body[i]);
  if (ttl == 0) return absl::DataLossError("story without a time-to-live");
  return std::make_pair(ttl, std::string(body.substr(4)));
}

}  // namespace padlock::client
