#include "services/common/redis/connection.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/redis/hiredis_reply.h"

namespace padlock::redis::internal {
namespace {

timeval ClampedTimeval(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  return absl::ToTimeval(d);
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const NodeAddress& address,
                                                             const ConnectionSettings& settings) {
  const std::string name = address.ToString();
  redisContext* context = redisConnectWithTimeout(address.host.c_str(), address.port,
                                                  ClampedTimeval(settings.connect_timeout));
  if (context == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis ", name, ": cannot allocate a context"));
  }
  if (context->err != 0) {
    std::string message = absl::StrCat("redis ", name, ": connect: ", context->errstr);
    redisFree(context);
    return absl::UnavailableError(message);
  }
  std::unique_ptr<Connection> connection(new Connection(context, name));
  if (redisSetTimeout(context, ClampedTimeval(settings.command_timeout)) != REDIS_OK) {
    return connection->Failure("set timeout");
  }
  // Detects a peer that vanished without a FIN (host crash) on connections that sit idle.
  redisEnableKeepAlive(context);
  if (!settings.password.empty()) {
    if (absl::Status s = connection->Append({"AUTH", settings.password}); !s.ok()) return s;
    absl::StatusOr<RedisReply> reply = connection->Read();
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      return absl::UnavailableError(absl::StrCat("redis ", name, ": AUTH refused: ", reply->str()));
    }
  }
  return connection;
}

Connection::Connection(redisContext* context, std::string address)
    : context_(context), address_(std::move(address)) {}

Connection::~Connection() { redisFree(context_); }

int Connection::fd() const { return context_->fd; }

bool Connection::broken() const { return context_->err != 0; }

absl::Status Connection::Failure(const char* what) const {
  return absl::UnavailableError(absl::StrCat(
      "redis ", address_, ": ", what, ": ", context_->err != 0 ? context_->errstr : "failed"));
}

absl::Status Connection::Append(const std::vector<std::string>& argv) {
  argv_scratch_.clear();
  length_scratch_.clear();
  for (const std::string& arg : argv) {
    argv_scratch_.push_back(arg.data());
    length_scratch_.push_back(arg.size());
  }
  if (redisAppendCommandArgv(context_, static_cast<int>(argv.size()), argv_scratch_.data(),
                             length_scratch_.data()) != REDIS_OK) {
    return Failure("append");
  }
  return absl::OkStatus();
}

absl::Status Connection::Flush() {
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(context_, &done) != REDIS_OK) return Failure("write");
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisReply> Connection::Read() {
  void* raw = nullptr;
  if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) return Failure("read");
  ReplyPtr reply(static_cast<redisReply*>(raw));
  return FromHiredis(reply.get());
}

absl::Status Connection::ReadAvailable() {
  if (redisBufferRead(context_) != REDIS_OK) return Failure("read");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<RedisReply>> Connection::NextBuffered() {
  void* raw = nullptr;
  if (redisGetReplyFromReader(context_, &raw) != REDIS_OK) return Failure("parse");
  if (raw == nullptr) return std::optional<RedisReply>();
  ReplyPtr reply(static_cast<redisReply*>(raw));
  return std::optional<RedisReply>(FromHiredis(reply.get()));
}

bool Connection::PeerClosed() const {
  if (context_->err != 0 || context_->fd < 0) return true;
  pollfd p{};
  p.fd = context_->fd;
  p.events = POLLIN;
  if (::poll(&p, 1, 0) <= 0) return false;  // nothing pending: the connection looks healthy
  // Readable on an idle connection means EOF, an error, or bytes nobody asked for; none of
  // them leaves the connection usable.
  return true;
}

}  // namespace padlock::redis::internal
