#pragma once
// The libsignal-protocol-c crypto provider on OpenSSL 3, and a context that uses it.
//
// The provider supplies: secure random bytes (RAND_bytes); HMAC-SHA256 init/update/final/cleanup
// (an empty key is valid); SHA-512 init/update/final/cleanup, where final re-initialises the
// context so that it can be reused (libsignal's fingerprint code relies on it); AES-CBC with PKCS#5
// padding and AES-CTR without padding, encrypt and decrypt, 128/192/256-bit keys and 16-byte IVs.
// Callbacks return 0 on success and a negative SG_ERR_* code on failure (SG_ERR_INVAL for an
// unknown cipher, a bad key or IV length; SG_ERR_UNKNOWN when OpenSSL fails, e.g. bad CBC
// padding on decrypt). Every callback is thread-safe; a single HMAC or digest context must not be
// used by two threads at once.

#include <signal/signal_protocol.h>

#include <memory>
#include <mutex>

#include "absl/status/statusor.h"

namespace padlock::client {

// Returns the provider (all callbacks set, user_data null). Cheap; the result may be copied.
signal_crypto_provider OpenSslCryptoProvider();

// Owns a signal_context with OpenSslCryptoProvider() and recursive locking functions installed,
// so one context may be shared by threads. Destroys the context on destruction; every libsignal
// object made with it must be released first. Not copyable or movable (libsignal keeps a pointer
// to this object as the context's user data).
class SignalContext {
 public:
  // Returns Internal when libsignal cannot create or configure the context.
  static absl::StatusOr<std::unique_ptr<SignalContext>> Create();

  ~SignalContext();
  SignalContext(const SignalContext&) = delete;
  SignalContext& operator=(const SignalContext&) = delete;

  // The context, valid for this object's lifetime.
  signal_context* get() const { return context_; }

 private:
  SignalContext() = default;
  static void Lock(void* user_data);
  static void Unlock(void* user_data);

  std::recursive_mutex mutex_;
  signal_context* context_ = nullptr;
};

}  // namespace padlock::client
