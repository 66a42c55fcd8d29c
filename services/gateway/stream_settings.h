#pragma once
// Settings of the device streams and the hub they share (PADLOCK_* variables, gateway_config.h).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "services/common/ratelimit/rate_limiter.h"

namespace padlock::gateway {

struct StreamSettings {
  // This gateway's id in the presence registry (PADLOCK_GATEWAY_ID; default: the host name).
  std::string gateway_id = {};
  // Envelopes pushed and not yet acknowledged, per stream (announced in `connected`).
  uint32_t max_unacked = 256;
  // Streams this gateway holds at most; more are refused with RESOURCE_EXHAUSTED.
  size_t max_streams = 20000;
  // Envelopes and bytes per Deliver frame (a busy device gets batches).
  size_t deliver_batch = 64;
  size_t deliver_batch_bytes = 1 << 20;
  // A SendRequest larger than this (serialized) is refused with INVALID_ARGUMENT, the stream
  // stays open. The transport limit (max_frame_bytes) is higher: beyond it gRPC ends the stream.
  size_t max_send_bytes = 1 << 20;
  size_t max_frame_bytes = 4 << 20;
  // Sends queued per stream before the gateway stops reading that stream's frames.
  size_t max_pending_sends = 256;
  // Per-device send rate (kept in process: a device is on one gateway).
  ratelimit::RateLimit sends_per_device = {.burst = 200, .per_second = 50};
  // Message-queue batches: sends per Enqueue and Enqueue calls in flight.
  size_t max_batch_sends = 1024;
  int max_batches_in_flight = 4;
  size_t max_batch_acks = 1024;
  // Acks that do not ride on a send wait this long for more acks, or for an Enqueue call that
  // carries them, before an Ack call of their own starts (0: at once).
  absl::Duration ack_linger = absl::Milliseconds(5);
  // Deadline of each call to the message-queue and presence.
  absl::Duration call_deadline = absl::Seconds(5);
  // Presence heartbeat period (well under the presence TTL, 60 s by default).
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // Presence watches are renewed this often (the presence service forgets them after 1 h).
  absl::Duration presence_resubscribe = absl::Minutes(30);
  // Users one device may watch.
  size_t max_presence_users = 1000;
  // Retry delay of a failed inbox read.
  absl::Duration read_retry = absl::Milliseconds(500);
};

}  // namespace padlock::gateway
