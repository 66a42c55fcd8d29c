#include "services/common/redis/redis_reply.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace padlock::redis {

RedisReply RedisReply::Integer(int64_t value) {
  RedisReply r;
  r.type_ = Type::kInteger;
  r.integer_ = value;
  return r;
}

RedisReply RedisReply::String(std::string value) {
  RedisReply r;
  r.type_ = Type::kString;
  r.str_ = std::move(value);
  return r;
}

RedisReply RedisReply::Status(std::string value) {
  RedisReply r;
  r.type_ = Type::kStatus;
  r.str_ = std::move(value);
  return r;
}

RedisReply RedisReply::Error(std::string message) {
  RedisReply r;
  r.type_ = Type::kError;
  r.str_ = std::move(message);
  return r;
}

RedisReply RedisReply::Array(std::vector<RedisReply> elements) {
  RedisReply r;
  r.type_ = Type::kArray;
  r.elements_ = std::move(elements);
  return r;
}

std::string_view RedisReply::error_code() const {
  if (type_ != Type::kError) return {};
  std::string_view s(str_);
  return s.substr(0, s.find(' '));
}

absl::Status RedisReply::ToStatus() const {
  if (type_ != Type::kError) return absl::OkStatus();
  const std::string_view code = error_code();
  std::string message = absl::StrCat("redis: ", str_);
  if (code == "OOM") return absl::ResourceExhaustedError(message);
  if (code == "BUSY" || code == "LOADING" || code == "MASTERDOWN" || code == "TRYAGAIN" ||
      code == "CLUSTERDOWN" || code == "UNCONFIRMED") {
    return absl::UnavailableError(message);
  }
  if (code == "NOSCRIPT" || code == "WRONGTYPE" || code == "NOPERM" || code == "CROSSSLOT") {
    return absl::FailedPreconditionError(message);
  }
  return absl::InternalError(message);
}

std::string RedisReply::DebugString() const {
  constexpr size_t kMaxShown = 64;
  auto shown = [](const std::string& s) {
    if (s.size() <= kMaxShown) return s;
    return absl::StrCat(s.substr(0, kMaxShown), "...(", s.size(), " bytes)");
  };
  switch (type_) {
    case Type::kNil:
      return "(nil)";
    case Type::kInteger:
      return absl::StrCat("(integer) ", integer_);
    case Type::kString:
      return absl::StrCat("\"", shown(str_), "\"");
    case Type::kStatus:
      return absl::StrCat("+", shown(str_));
    case Type::kError:
      return absl::StrCat("-", shown(str_));
    case Type::kArray:
      return absl::StrCat(
          "[", absl::StrJoin(elements_, ", ",
                             [](std::string* out, const RedisReply& e) {
                               absl::StrAppend(out, e.DebugString());
                             }),
          "]");
  }
  return "(unknown)";
}

bool operator==(const RedisReply& a, const RedisReply& b) {
  return a.type_ == b.type_ && a.integer_ == b.integer_ && a.str_ == b.str_ &&
         a.elements_ == b.elements_;
}

}  // namespace padlock::redis
