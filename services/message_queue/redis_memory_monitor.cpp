#include "services/message_queue/redis_memory_monitor.h"

#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/runtime/absl_compat.h"
#include "services/common/runtime/logging.h"

namespace padlock::message_queue {
namespace {

// The value of `name:` on its own line of an INFO reply.
bool InfoField(std::string_view info, std::string_view name, uint64_t* value) {
  size_t pos = 0;
  while (pos < info.size()) {
    size_t end = info.find('\n', pos);
    if (end == std::string_view::npos) end = info.size();
    std::string_view line = info.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        line[name.size()] == ':') {
      return absl::SimpleAtoi(ToAbsl(line.substr(name.size() + 1)), value);
    }
    pos = end + 1;
  }
  return false;
}

}  // namespace

absl::StatusOr<RedisMemory> ParseInfoMemory(std::string_view info) {
  RedisMemory memory;
  if (!InfoField(info, "used_memory", &memory.used_bytes)) {
    return absl::InvalidArgumentError("INFO memory: no used_memory");
  }
  if (!InfoField(info, "maxmemory", &memory.max_bytes)) {
    return absl::InvalidArgumentError("INFO memory: no maxmemory");
  }
  return memory;
}

RedisMemoryMonitor::RedisMemoryMonitor(redis::RedisClient* redis, prometheus::Registry* metrics,
                                       MemoryAdmission* admission)
    : redis_(redis),
      admission_(admission),
      ratio_(&prometheus::BuildGauge()
                  .Name("padlock_redis_memory_used_ratio")
                  .Help("used_memory / maxmemory of each Redis master (0 when maxmemory is not "
                        "set); at 1 a noeviction Redis refuses new messages")
                  .Register(*metrics)),
      used_(&prometheus::BuildGauge()
                 .Name("padlock_redis_memory_used_bytes")
                 .Help("used_memory of each Redis master (INFO memory)")
                 .Register(*metrics)),
      max_(&prometheus::BuildGauge()
                .Name("padlock_redis_memory_max_bytes")
                .Help("maxmemory of each Redis master (0 = no limit)")
                .Register(*metrics)),
      level_(&prometheus::BuildGauge()
                  .Name("padlock_redis_memory_admission_level")
                  .Help("memory admission of new messages, worst master: 0 normal, 1 pressure "
                        "(inboxes above PADLOCK_INBOX_PRESSURE_BYTES refused), 2 full (every new "
                        "message refused)")
                  .Register(*metrics)
                  .Add({})) {}

RedisMemoryMonitor::~RedisMemoryMonitor() { Stop(); }

absl::Status RedisMemoryMonitor::PollOnce() {
  absl::Status first;
  for (const redis::NodeReply& node : redis_->ExecuteOnEachMaster(
           redis::Command::Keyless({"INFO", "memory"}, /*idempotent=*/true))) {
    absl::StatusOr<RedisMemory> memory =
        !node.reply.ok()          ? absl::StatusOr<RedisMemory>(node.reply.status())
        : node.reply->is_error()  ? absl::StatusOr<RedisMemory>(node.reply->ToStatus())
        : !node.reply->is_string() ? absl::StatusOr<RedisMemory>(
                                         absl::InternalError("INFO memory: not a string"))
                                   : ParseInfoMemory(node.reply->str());
    if (!memory.ok()) {
      if (first.ok()) {
        first = absl::Status(memory.status().code(),
                             absl::StrCat("redis ", node.address, ": ", memory.status().message()));
      }
      continue;
    }
    if (admission_ != nullptr) {
      admission_->Observe(node.address, memory->used_bytes, memory->max_bytes);
    }
    const prometheus::Labels labels = {{"node", node.address}};
    used_->Add(labels).Set(static_cast<double>(memory->used_bytes));
    max_->Add(labels).Set(static_cast<double>(memory->max_bytes));
    ratio_->Add(labels).Set(memory->max_bytes == 0 ? 0.0
                                                   : static_cast<double>(memory->used_bytes) /
                                                         static_cast<double>(memory->max_bytes));
  }
  if (admission_ != nullptr) {
    const MemoryLevel level = admission_->WorstLevel();
    if (last_level_.exchange(level) != level) {
      runtime::LogWarn("redis memory admission changed",
                       {{"level", level == MemoryLevel::kNormal     ? "normal"
                                  : level == MemoryLevel::kPressure ? "pressure"
                                                                    : "full"}});
    }
    level_->Set(static_cast<double>(level));
  }
  return first;
}

void RedisMemoryMonitor::Start(absl::Duration interval) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (thread_.joinable()) return;
    stopping_ = false;
  }
  thread_ = std::thread([this, interval] {
    bool failing = false;  // log transitions only, not every poll while Redis is down
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      lock.unlock();
      absl::Status s = PollOnce();
      if (!s.ok() && !failing) runtime::LogWarn("redis memory poll failed", {{"error", s}});
      failing = !s.ok();
      lock.lock();
      wake_.wait_for(lock, absl::ToChronoMilliseconds(interval), [this] { return stopping_; });
    }
  });
}

void RedisMemoryMonitor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace padlock::message_queue
