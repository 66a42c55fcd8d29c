#include "services/gateway/stream_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace padlock::gateway {

StreamMetrics::StreamMetrics(prometheus::Registry* registry) {
  if (registry == nullptr) {
    owned = std::make_unique<prometheus::Registry>();
    registry = owned.get();
  }
  auto counter = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add({});
  };
  auto gauge = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add({});
  };
  streams = gauge("padlock_gateway_streams", "Device streams open on this gateway");
  unacked = gauge("padlock_gateway_unacked_envelopes",
                  "Envelopes pushed on open streams and not acknowledged yet (stream backlog)");
  auto& rejected_family = prometheus::BuildCounter()
                              .Name("padlock_gateway_streams_rejected_total")
                              .Help("Streams refused at connect, by reason")
                              .Register(*registry);
  for (const char* reason : {"unauthenticated", "limit", "draining", "unavailable"}) {
    rejected[reason] = &rejected_family.Add({{"reason", reason}});
  }
  auto& closed_family = prometheus::BuildCounter()
                            .Name("padlock_gateway_streams_closed_total")
                            .Help("Streams closed by the server, by reason")
                            .Register(*registry);
  for (const char* reason : {"displaced", "drain", "revoked", "token_expired", "stale"}) {
    closed[reason] = &closed_family.Add({{"reason", reason}});
  }
  envelopes_in = counter("padlock_gateway_envelopes_in_total",
                         "Device envelopes accepted from senders on streams");
  envelopes_out = counter("padlock_gateway_envelopes_out_total",
                          "Envelopes written to device streams");
  deliver_frames = counter("padlock_gateway_deliver_frames_total", "Deliver frames written");
  server_frames = counter("padlock_gateway_server_frames_total",
                          "Frames written to device streams (all kinds)");
  outcomes_riding = counter("padlock_gateway_send_outcomes_riding_total",
                            "Send outcomes written in send_results (stream revision 2)");
  auto& client_family = prometheus::BuildCounter()
                            .Name("padlock_gateway_client_frames_total")
                            .Help("Frames read from device streams, by kind; riding_ack counts "
                                  "acks that came on another frame (stream revision 2)")
                            .Register(*registry);
  auto client_frame = [&](const char* kind) { return &client_family.Add({{"kind", kind}}); };
  frames_send = client_frame("send");
  frames_ack = client_frame("ack");
  frames_riding_ack = client_frame("riding_ack");
  frames_presence = client_frame("presence");
  frames_ping = client_frame("ping");
  frames_other = client_frame("other");
  direct_pushes = counter("padlock_gateway_wakeup_pushes_total",
                          "Envelopes pushed straight from a wake-up (no inbox read)");
  gap_fills = counter("padlock_gateway_gap_fills_total",
                      "Inbox reads caused by a wake-up out of sequence or a re-subscription");
  inbox_reads = counter("padlock_gateway_inbox_reads_total", "ReadInbox calls");
  inbox_read_failures = counter("padlock_gateway_inbox_read_failures_total",
                                "ReadInbox calls that failed (retried)");
  sends = counter("padlock_gateway_sends_total", "SendRequests received on streams");
  sends_rate_limited = counter("padlock_gateway_sends_rate_limited_total",
                               "SendRequests refused by the per-device rate limit");
  sends_refused = counter("padlock_gateway_sends_refused_total",
                          "SendRequests refused by the gateway (size, draining, bad request)");
  enqueue_failures = counter("padlock_gateway_enqueue_failures_total",
                             "Enqueue batches that failed as a whole (sends refused UNAVAILABLE)");
  acks = counter("padlock_gateway_acks_forwarded_total", "Device acks forwarded to the queue");
  acks_folded = counter("padlock_gateway_acks_folded_total",
                        "Device acks forwarded inside an Enqueue call (riding on sends)");
  ack_failures = counter("padlock_gateway_ack_failures_total",
                         "Ack batches that failed (entries are delivered again later)");
  stream_errors = counter("padlock_gateway_stream_errors_total",
                          "Non-fatal StreamError frames sent to clients");
  push_ack = &prometheus::BuildHistogram()
                  .Name("padlock_gateway_push_to_ack_seconds")
                  .Help("Time from pushing an envelope to its acknowledgement")
                  .Register(*registry)
                  .Add({}, prometheus::Histogram::BucketBoundaries{
                               0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                               0.5, 1, 2.5, 5, 10});
  batch_sends = &prometheus::BuildHistogram()
                     .Name("padlock_gateway_enqueue_batch_sends")
                     .Help("Sends per Enqueue batch to the message-queue")
                     .Register(*registry)
                     .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64,
                                                                        128, 256, 512, 1024});
}

StreamMetrics::~StreamMetrics() = default;

}  // namespace padlock::gateway
