#pragma once
// Process metrics with the standard Prometheus client names, read from /proc at each scrape:
//   process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
//   process_open_fds, process_max_fds, process_start_time_seconds, process_threads
// Linux only. A file that cannot be read leaves its metric out of that scrape.

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <vector>

namespace padlock::runtime {

class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace padlock::runtime
