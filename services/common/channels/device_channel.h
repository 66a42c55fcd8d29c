#pragma once
// Names of the per-device Redis keys and the device channel, and publishing on the channel.
//
// Every key of one device carries the same hash tag `{<user_id>:<device_id>}`, so that the
// device's inbox, sequence counter and channel live on one Redis Cluster shard and one script may
// touch them all (channel and keys passed together in KEYS). User ids never contain '{', '}' or
// ':' (E.164 or [a-z0-9._-]), so the tag is unambiguous.
//
// The channel carries serialized padlock.v1.DeviceChannelEvent messages (wake-ups, presence
// events, displacement, revocation, prekeys low), read by the gateway that holds the device's
// stream. Sharded pub/sub (SPUBLISH) on standalone Redis and on a Cluster alike.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "padlock/v1/common.pb.h"
#include "services/common/redis/redis_client.h"

namespace padlock::channels {

// "{alice:2}"
std::string DeviceHashTag(std::string_view user_id, uint32_t device_id);
// "ch:{alice:2}": the device channel.
std::string DeviceChannel(std::string_view user_id, uint32_t device_id);
// "q:{alice:2}": the device's inbox stream (message-queue).
std::string InboxKey(std::string_view user_id, uint32_t device_id);
// "seq:{alice:2}": the device's inbox sequence counter (message-queue).
std::string SequenceKey(std::string_view user_id, uint32_t device_id);
// "qm:{alice:2}": the device's inbox metadata hash (byte count, cumulative-ack floor).
std::string InboxMetaKey(std::string_view user_id, uint32_t device_id);
// "qd0:{alice:2}" / "qd1:{alice:2}": the device's two dedupe buckets, by `parity` (0 or 1).
std::string InboxDedupeKey(std::string_view user_id, uint32_t device_id, int64_t parity);
// Every Redis key the message-queue keeps for one device, all with the device's hash tag (so one
// DEL removes them on one shard): InboxKey, SequenceKey, InboxMetaKey and both InboxDedupeKeys
// (docs/MESSAGE_QUEUE.md). Deleting them purges the device.
std::vector<std::string> DeviceInboxKeys(std::string_view user_id, uint32_t device_id);
// "push:{alice:2}": the device's Web Push subscription (gateway; a serialized
// padlock.v1.PushSubscription with a TTL, docs/PUSH.md). Not one of the inbox keys: the
// message-queue's purge leaves it; the key-directory deletes it with the device.
std::string PushSubscriptionKey(std::string_view user_id, uint32_t device_id);
// "pn:{alice:2}": the push coalescing mark, "1" with a TTL of the push interval. The enqueue
// script sets it (SET NX PX) when an envelope reached no gateway and the device has a push
// subscription, and asks for a push only when it could set it: at most one push per device per
// interval, cluster-wide. The gateway deletes it when the device connects, so the next message
// after a connect pushes again (docs/PUSH.md).
std::string PushCoalesceKey(std::string_view user_id, uint32_t device_id);
// "{alice}": the per-user hash tag (keys that concern a user as a whole).
std::string UserHashTag(std::string_view user_id);

// SPUBLISHes `event` on the device's channel. Returns the number of subscribers that received it
// (0: no gateway holds the device right now). Unavailable when Redis cannot be reached.
absl::StatusOr<int64_t> PublishDeviceEvent(redis::RedisClient& redis, std::string_view user_id,
                                           uint32_t device_id,
                                           const padlock::v1::DeviceChannelEvent& event);

}  // namespace padlock::channels
