#pragma once
// The durability policy's replication acknowledgement (ExecutePipelineAndWait), in a header of its
// own so that logic that only carries the setting (InboxLimits) needs no hiredis.

#include "absl/time/time.h"

namespace padlock::redis {

// Replication acknowledgement for ExecutePipelineAndWait.
struct ReplicaWait {
  int replicas = 0;  // replicas that must confirm; 0 = no WAIT
  // WAIT's own timeout (at least 1 ms; WAIT 0 would block forever). Keep it well below
  // RedisOptions::command_timeout, which bounds the read of WAIT's reply.
  absl::Duration timeout = absl::Milliseconds(100);
};

}  // namespace padlock::redis
