#pragma once
// Internal to padlock_redis: conversion from hiredis replies. Not for users of the layer (they
// see only RedisReply); tests include it to check the conversion.

#include <string_view>

#include "absl/status/statusor.h"
#include "services/common/redis/redis_reply.h"

struct redisReply;  // hiredis, deliberately not included here

namespace padlock::redis::internal {

// Deep-copies a hiredis reply. `reply` must not be null; hiredis keeps ownership.
RedisReply FromHiredis(const redisReply* reply);

// Parses exactly one complete RESP2 reply from `wire` with hiredis's own reader. InvalidArgument
// when `wire` is malformed, incomplete, or has bytes after the first reply.
absl::StatusOr<RedisReply> ParseResp(std::string_view wire);

}  // namespace padlock::redis::internal
