#include "services/message_queue/memory_admission.h"

#include <algorithm>
#include <utility>

#include "services/common/runtime/absl_compat.h"

namespace padlock::message_queue {

MemoryAdmission::MemoryAdmission(MemoryAdmissionOptions options) : options_(std::move(options)) {}

void MemoryAdmission::Observe(std::string_view node, uint64_t used_bytes, uint64_t max_bytes) {
  absl::MutexLock lock(&mu_);
  Node& n = nodes_[ToAbsl(node)];
  n.used = used_bytes;
  n.max = max_bytes;
  n.charged = 0;
}

void MemoryAdmission::Charge(std::string_view node, uint64_t bytes) {
  const auto estimate = static_cast<uint64_t>(static_cast<double>(bytes) * options_.bytes_overhead);
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(ToAbsl(node));
  if (it != nodes_.end()) it->second.charged += estimate;
}

MemoryLevel MemoryAdmission::LevelOf(const Node& node) const {
  if (node.max == 0) return MemoryLevel::kNormal;
  const double ratio =
      static_cast<double>(node.used + node.charged) / static_cast<double>(node.max);
  if (ratio >= options_.high_water_ratio) return MemoryLevel::kFull;
  if (ratio >= options_.pressure_ratio) return MemoryLevel::kPressure;
  return MemoryLevel::kNormal;
}

MemoryLevel MemoryAdmission::Level(std::string_view node) const {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(ToAbsl(node));
  return it == nodes_.end() ? MemoryLevel::kNormal : LevelOf(it->second);
}

MemoryLevel MemoryAdmission::WorstLevel() const {
  absl::MutexLock lock(&mu_);
  MemoryLevel worst = MemoryLevel::kNormal;
  for (const auto& [name, node] : nodes_) worst = std::max(worst, LevelOf(node));
  return worst;
}

}  // namespace padlock::message_queue
