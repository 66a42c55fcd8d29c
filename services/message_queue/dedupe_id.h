#pragma once
// Keyed identifiers for what the message-queue keeps in Redis about one send, so that Redis never
// holds who wrote to whom: the dedupe record in each recipient device's buckets (`qd0/qd1`) and
// the name of a group/story send's shared payload (`gp:{…}`):
//
//   id = first 16 bytes of HMAC-SHA256(secret, "padlock-dedupe-v1" · 0x00 ·
//                                      u32be(len(sender user)) · sender user ·
//                                      u32be(sender device) · message id)
//
// The same (secret, sender user, sender device, message id) always gives the same id, so a retry
// that lands on another replica finds the first attempt's record: every replica must hold the
// same secret (PADLOCK_DEDUPE_SECRET). Without the secret, an id cannot be tied to a sender, not
// even by trying every known user (which a plain hash would allow). 16 bytes keep collisions out
// of reach (2^-64 for 2^32 sends inside one window) and are smaller than the plain key was.
//
// Immutable after construction; thread-safe.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace padlock::message_queue {

class DedupeIds {
 public:
  static constexpr size_t kIdBytes = 16;
  static constexpr size_t kMinSecretBytes = 32;

  // `secret` is raw bytes, at least kMinSecretBytes (runtime::ParseSecret checks that); an empty
  // `secret` draws a random one for this object only — ids then match within this process alone
  // (unit tests, embedded use), never across replicas. Any other length aborts (a caller bug).
  explicit DedupeIds(std::string secret);

  // The 16-byte (binary) id of one send: the dedupe record's field name in each recipient
  // inbox's buckets; its hex (32 characters) names the send's shared payload, `gp:{<hex>}`.
  std::string ForSend(std::string_view sender_user, uint32_t sender_device,
                      std::string_view message_id) const;

  // Hex of the first 4 bytes of SHA-256("padlock-dedupe-key-id-v1" · secret): tells in logs
  // whether two replicas hold the same secret, without revealing it.
  const std::string& key_id() const { return key_id_; }

 private:
  std::string secret_;
  std::string key_id_;
};

}  // namespace padlock::message_queue
