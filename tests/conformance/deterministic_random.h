#pragma once
// A seeded, deterministic random source for libsignal-protocol-c — for the X3DH test vector
// (docs/vectors/x3dh.json) and its checks only. The shipping client never uses it: the SDK's
// SignalContext draws from OpenSSL's RAND_bytes (clients/sdk/crypto_provider.cpp), and nothing
// under clients/ includes this file.
//
// libsignal takes every random byte it needs (key pairs, registration ids, the XEdDSA nonce
// input) from the crypto provider's random_func. Install() replaces that one callback of a
// SignalContext with this source, so the same calls on the same seed make the same keys and
// messages. The stream is SHA-256(seed || u64 BE block index) for block index 0, 1, 2, …,
// concatenated; each draw takes the next bytes of it. Every draw is recorded, so a generator can
// name the ephemeral keys libsignal made from them (it clamps a 32-byte draw into a private key).
//
// Not thread-safe; one context and one thread at a time.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "clients/sdk/crypto_provider.h"

namespace padlock::vectors {

class DeterministicRandom {
 public:
  explicit DeterministicRandom(std::string seed) : seed_(std::move(seed)) {}
  DeterministicRandom(const DeterministicRandom&) = delete;
  DeterministicRandom& operator=(const DeterministicRandom&) = delete;

  // Makes `context` draw its randomness from this source (its other callbacks stay OpenSSL's).
  // This object must outlive every later use of the context. Internal when libsignal refuses.
  absl::Status Install(client::SignalContext& context);

  // Every draw so far, in order, as the bytes handed out.
  const std::vector<std::string>& draws() const { return draws_; }

 private:
  static int Fill(uint8_t* data, size_t len, void* user_data);
  void Next(uint8_t* data, size_t len);

  std::string seed_;
  uint64_t block_index_ = 0;
  std::string pending_;  // bytes of the current block not handed out yet
  std::vector<std::string> draws_;
};

}  // namespace padlock::vectors
