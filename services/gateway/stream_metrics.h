#pragma once
// The device streams' Prometheus metrics, registered once per hub and shared by its streams and
// pumps (counters are thread-safe).

#include <map>
#include <memory>
#include <string>

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace padlock::gateway {

struct StreamMetrics {
  // Registers in `registry` (a private one when null).
  explicit StreamMetrics(prometheus::Registry* registry);
  ~StreamMetrics();
  StreamMetrics(const StreamMetrics&) = delete;
  StreamMetrics& operator=(const StreamMetrics&) = delete;

  std::unique_ptr<prometheus::Registry> owned;
  prometheus::Gauge* streams;
  prometheus::Gauge* unacked;
  std::map<std::string, prometheus::Counter*> rejected;
  std::map<std::string, prometheus::Counter*> closed;
  prometheus::Counter* envelopes_in;
  prometheus::Counter* envelopes_out;
  prometheus::Counter* deliver_frames;
  prometheus::Counter* server_frames;
  prometheus::Counter* outcomes_riding;
  // padlock_gateway_client_frames_total by kind (fields, not a map: counted on every frame).
  prometheus::Counter* frames_send;
  prometheus::Counter* frames_ack;
  prometheus::Counter* frames_riding_ack;
  prometheus::Counter* frames_presence;
  prometheus::Counter* frames_ping;
  prometheus::Counter* frames_other;
  prometheus::Counter* direct_pushes;
  prometheus::Counter* gap_fills;
  prometheus::Counter* inbox_reads;
  prometheus::Counter* inbox_read_failures;
  prometheus::Counter* sends;
  prometheus::Counter* sends_rate_limited;
  prometheus::Counter* sends_refused;
  prometheus::Counter* enqueue_failures;
  prometheus::Counter* acks;
  prometheus::Counter* acks_folded;
  prometheus::Counter* ack_failures;
  prometheus::Counter* stream_errors;
  prometheus::Histogram* push_ack;
  prometheus::Histogram* batch_sends;
};

}  // namespace padlock::gateway
