#pragma once
// The pumps that batch the work of many device streams into message-queue calls (on BatchPump):
//  - SendPump: pending sends into MessageQueue.Enqueue (≤ max_batch_sends), at most one batch per
//    stream in flight, so the sends of one device reach the queue in the order it sent them; the
//    acks that rode on those devices' frames go in the same call.
//  - AckPump: all other acks. They linger (StreamSettings::ack_linger) for more acks, and an
//    Enqueue call that starts meanwhile carries them too (TakeLingering); what is left goes into
//    MessageQueue.Ack (≤ max_batch_acks devices). Under sparse traffic most acks are alone, and a
//    call of their own each cost the queue as much as the send did.
// Each call carries at most kMaxAckIdsPerCall individual acked ids. Thread-safe.

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "padlock/v1/message_queue.grpc.pb.h"
#include "services/gateway/batch_pump.h"
#include "services/gateway/linger_timer.h"
#include "services/gateway/stream_metrics.h"
#include "services/gateway/stream_settings.h"
#include "services/gateway/upstream_clients.h"

namespace padlock::gateway {

class DeviceStream;

// Individual acked ids in one Ack or Enqueue call: below the message-queue's limit of 10 000
// (an AckRequest or EnqueueRequest over it fails as a whole with INVALID_ARGUMENT, and one
// device's many out-of-order acks must not fail the other devices' sends batched with them).
inline constexpr size_t kMaxAckIdsPerCall = 8192;

struct AckBatch {
  grpc::ClientContext context;
  padlock::v1::AckRequest request;
  padlock::v1::AckResponse response;
  int attempt = 1;
};

// Every argument must outlive the pump.
class AckPump final : public BatchPump<std::shared_ptr<DeviceStream>, AckBatch> {
 public:
  AckPump(const StreamSettings* settings, InboxClient* queue, StreamMetrics* metrics);
  ~AckPump() override;

  // `stream` has acks: they linger (if configured), then go in an Ack batch.
  void Ready(std::shared_ptr<DeviceStream> stream);

  // Sends `acks` in a batch of their own at once (acks an Enqueue could not apply).
  void Submit(google::protobuf::RepeatedPtrField<padlock::v1::DeviceAck> acks);

  // For the send pump's Fill: moves the waiting acks into `out` while it holds fewer than
  // `max_devices` entries and `*ids` stays within kMaxAckIdsPerCall (counted in `*ids`).
  void TakeLingering(google::protobuf::RepeatedPtrField<padlock::v1::DeviceAck>* out,
                     size_t max_devices, size_t* ids);

 private:
  void Fill(AckBatch& batch, std::deque<std::shared_ptr<DeviceStream>>& ready) override;
  bool Empty(const AckBatch& batch) const override { return batch.request.acks_size() == 0; }
  void Start(std::unique_ptr<AckBatch> batch) override;
  void Complete(AckBatch* raw, const grpc::Status& status);

  const StreamSettings* const settings_;
  InboxClient* const queue_;
  StreamMetrics* const metrics_;
  // Last: destroyed first, so no linger fires into a half-destroyed pump.
  std::unique_ptr<LingerTimer> linger_;  // null without a linger
};

struct SendBatch {
  struct Segment {
    std::shared_ptr<DeviceStream> stream;
    std::vector<uint64_t> request_ids;
  };
  grpc::ClientContext context;
  padlock::v1::EnqueueRequest request;
  padlock::v1::EnqueueResponse response;
  std::vector<Segment> segments;
  // Streams with acks beyond the call's budget: handed to the ack pump once the call started.
  std::vector<std::shared_ptr<DeviceStream>> left_acks;
};

// Every argument must outlive the pump.
class SendPump final : public BatchPump<std::shared_ptr<DeviceStream>, SendBatch> {
 public:
  SendPump(const StreamSettings* settings, InboxClient* queue, StreamMetrics* metrics,
           AckPump* acks);

 private:
  void Fill(SendBatch& batch, std::deque<std::shared_ptr<DeviceStream>>& ready) override;
  bool Empty(const SendBatch& batch) const override { return batch.segments.empty(); }
  void Start(std::unique_ptr<SendBatch> batch) override;
  void Complete(SendBatch* raw, const grpc::Status& status);

  const StreamSettings* const settings_;
  InboxClient* const queue_;
  StreamMetrics* const metrics_;
  AckPump* const acks_;
};

}  // namespace padlock::gateway
