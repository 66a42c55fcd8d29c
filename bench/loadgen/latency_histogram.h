#pragma once
// A log-linear latency histogram (32 sub-buckets per power of two: every recorded value lands in
// a bucket at most ~3 % wide) that many threads record into without locks. Values are
// nanoseconds. Percentiles report the middle of the bucket that holds the rank.
//
// Thread-safe: Record may run on any number of threads at once; readers see a value that may
// miss records that race with them (read after the writers are done for exact figures).

#include <array>
#include <atomic>
#include <cstdint>

namespace padlock::loadgen {

class LatencyHistogram {
 public:
  void Record(uint64_t nanos);
  uint64_t count() const;
  // The value below which `percentile` % (0..100) of the records lie; 0 when empty.
  double PercentileNanos(double percentile) const;
  double MeanNanos() const;
  uint64_t MaxNanos() const { return max_.load(std::memory_order_relaxed); }
  // Adds `other`'s records to this one (not atomic as a whole; call when both are quiet).
  void Merge(const LatencyHistogram& other);

 private:
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;
  static int BucketOf(uint64_t value);
  static double BucketMiddle(int bucket);

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
};

}  // namespace padlock::loadgen
