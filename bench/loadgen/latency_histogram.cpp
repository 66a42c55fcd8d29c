#include "bench/loadgen/latency_histogram.h"

#include <bit>

namespace padlock::loadgen {

int LatencyHistogram::BucketOf(uint64_t value) {
  if (value < static_cast<uint64_t>(kSub)) return static_cast<int>(value);
  const int exponent = std::bit_width(value) - 1;  // >= kSubBits
  const uint64_t top = value >> (exponent - kSubBits);  // in [kSub, 2 * kSub)
  return (exponent - kSubBits + 1) * kSub + static_cast<int>(top - kSub);
}

double LatencyHistogram::BucketMiddle(int bucket) {
  if (bucket < kSub) return bucket;
  const int exponent = bucket / kSub + kSubBits - 1;
  const uint64_t top = kSub + bucket % kSub;
  const double width = static_cast<double>(uint64_t{1} << (exponent - kSubBits));
  return static_cast<double>(top << (exponent - kSubBits)) + width / 2;
}

void LatencyHistogram::Record(uint64_t nanos) {
  buckets_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(nanos, std::memory_order_relaxed);
  uint64_t max = max_.load(std::memory_order_relaxed);
  while (nanos > max && !max_.compare_exchange_weak(max, nanos, std::memory_order_relaxed)) {
  }
}

uint64_t LatencyHistogram::count() const {
  uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  return total;
}

double LatencyHistogram::PercentileNanos(double percentile) const {
  const uint64_t total = count();
  if (total == 0) return 0;
  // Rank of the record at `percentile` (1-based), at least the first.
  uint64_t rank = static_cast<uint64_t>(percentile / 100.0 * static_cast<double>(total) + 0.5);
  if (rank < 1) rank = 1;
  if (rank > total) rank = total;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i].load(std::memory_order_relaxed);
    if (seen >= rank) return BucketMiddle(i);
  }
  return static_cast<double>(MaxNanos());
}

double LatencyHistogram::MeanNanos() const {
  const uint64_t total = count();
  return total == 0 ? 0 : static_cast<double>(sum_.load(std::memory_order_relaxed)) / total;
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  for (int i = 0; i < kBuckets; ++i) {
    buckets_[i].fetch_add(other.buckets_[i].load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
  }
  sum_.fetch_add(other.sum_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  const uint64_t m = other.MaxNanos();
  uint64_t max = max_.load(std::memory_order_relaxed);
  while (m > max && !max_.compare_exchange_weak(max, m, std::memory_order_relaxed)) {
  }
}

}  // namespace padlock::loadgen
