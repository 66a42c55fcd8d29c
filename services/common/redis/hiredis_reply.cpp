#include "services/common/redis/hiredis_reply.h"

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace padlock::redis::internal {

RedisReply FromHiredis(const redisReply* reply) {
  switch (reply->type) {
    case REDIS_REPLY_INTEGER:
      return RedisReply::Integer(reply->integer);
    case REDIS_REPLY_STRING:
      return RedisReply::String(std::string(reply->str, reply->len));
    case REDIS_REPLY_STATUS:
      return RedisReply::Status(std::string(reply->str, reply->len));
    case REDIS_REPLY_ERROR:
      return RedisReply::Error(std::string(reply->str, reply->len));
    case REDIS_REPLY_ARRAY: {
      std::vector<RedisReply> elements;
      elements.reserve(reply->elements);
      for (size_t i = 0; i < reply->elements; ++i) {
        elements.push_back(FromHiredis(reply->element[i]));
      }
      return RedisReply::Array(std::move(elements));
    }
    case REDIS_REPLY_NIL:
    default:
      // RESP2 has no other types; hiredis 0.14 produces none.
      return RedisReply::Nil();
  }
}

absl::StatusOr<RedisReply> ParseResp(std::string_view wire) {
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(),
                                                              &redisReaderFree);
  if (reader == nullptr) return absl::ResourceExhaustedError("redisReaderCreate failed");
  if (redisReaderFeed(reader.get(), wire.data(), wire.size()) != REDIS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("RESP: ", reader->errstr));
  }
  void* raw = nullptr;
  if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) {
    return absl::InvalidArgumentError(absl::StrCat("RESP: ", reader->errstr));
  }
  if (raw == nullptr) return absl::InvalidArgumentError("RESP: incomplete reply");
  std::unique_ptr<redisReply, void (*)(void*)> parsed(static_cast<redisReply*>(raw),
                                                      &freeReplyObject);
  RedisReply result = FromHiredis(parsed.get());
  void* extra = nullptr;
  if (redisReaderGetReply(reader.get(), &extra) != REDIS_OK || extra != nullptr ||
      reader->pos != reader->len) {
    if (extra != nullptr) freeReplyObject(extra);
    return absl::InvalidArgumentError("RESP: bytes after the first reply");
  }
  return result;
}

}  // namespace padlock::redis::internal
