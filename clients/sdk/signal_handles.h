#pragma once
// Owning handles for libsignal-protocol-c objects, so that every early return releases what the
// library handed us. Out-parameters of *_create / *_deserialize / generate_* are ours and go in a
// SignalPtr (released with signal_type_unref, as SIGNAL_UNREF does); getters return borrowed
// pointers that must never be put in one. signal_buffer out-parameters go in a BufferPtr, or a
// SecretBufferPtr (zeroed before free) when they hold private key material.

#include <signal/signal_protocol.h>

#include <memory>
#include <string>

namespace padlock::client {

template <typename T>
struct SignalUnref {
  void operator()(T* object) const {
    // Every libsignal reference-counted type starts with a signal_type_base.
    signal_type_unref(reinterpret_cast<signal_type_base*>(object));
  }
};
template <typename T>
using SignalPtr = std::unique_ptr<T, SignalUnref<T>>;

struct SignalBufferFree {
  void operator()(signal_buffer* buffer) const { signal_buffer_free(buffer); }
};
using BufferPtr = std::unique_ptr<signal_buffer, SignalBufferFree>;

struct SignalBufferBzeroFree {
  void operator()(signal_buffer* buffer) const { signal_buffer_bzero_free(buffer); }
};
using SecretBufferPtr = std::unique_ptr<signal_buffer, SignalBufferBzeroFree>;

// Copies a buffer's bytes into a string.
inline std::string ToString(const signal_buffer* buffer) {
  return std::string(reinterpret_cast<const char*>(signal_buffer_const_data(buffer)),
                     signal_buffer_len(buffer));
}

}  // namespace padlock::client
