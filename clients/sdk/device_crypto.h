#pragma once
// A device's Signal-protocol operations over its LocalStore: X3DH session building from a
// claimed bundle, Double Ratchet encrypt/decrypt for 1:1 messages, and Sender Keys for groups.
// Every plaintext is a Content, padded (content.h) before encryption; the caller sees only the
// wire type and the ciphertext bytes, which is all the server may see.
//
// Status codes (libsignal error → code):
//   SG_ERR_DUPLICATE_MESSAGE                                   → AlreadyExists (replay; drop it)
//   SG_ERR_INVALID_MESSAGE / INVALID_MAC / INVALID_PROTO_BUF /
//   INVALID_VERSION / LEGACY_MESSAGE / INVALID_KEY / bad content → DataLoss (corrupt or forged
//                                                                bytes; the session is unchanged)
//   SG_ERR_UNTRUSTED_IDENTITY                                  → FailedPrecondition (the peer's
//                                                                identity changed: accept first)
//   SG_ERR_NO_SESSION, SG_ERR_INVALID_KEY_ID (prekey gone)     → FailedPrecondition
//   SG_ERR_NOMEM                                               → ResourceExhausted
//   anything else                                              → Internal
// Caller mistakes (malformed bundle, wrong envelope type) → InvalidArgument.
//
// Each call is atomic on the store: one SQLite transaction, committed only when the call
// succeeds, so a failed decrypt (tampered, replayed, undecodable content) changes nothing.
//
// Lifetime: borrows `context` and `store`, which must outlive it. Not thread-safe.

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "clients/sdk/content.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/local_store.h"
#include "padlock/v1/common.pb.h"

namespace padlock::client {

// What goes on the wire: the envelope type and the opaque bytes.
struct Ciphertext {
  padlock::v1::EnvelopeType type = padlock::v1::ENVELOPE_TYPE_UNSPECIFIED;
  std::string bytes;
};

class DeviceCrypto {
 public:
  // `self` is this device's own address (used as the sender in group sessions). The store must
  // already hold the local identity. Internal when libsignal cannot set up.
  static absl::StatusOr<std::unique_ptr<DeviceCrypto>> Create(SignalContext& context,
                                                              LocalStore& store,
                                                              RemoteAddress self);
  ~DeviceCrypto();
  DeviceCrypto(const DeviceCrypto&) = delete;
  DeviceCrypto& operator=(const DeviceCrypto&) = delete;

  // Starts a session with bundle.device() (X3DH). Replaces an existing session with it.
  // InvalidArgument for malformed keys or a bad signed-prekey signature; FailedPrecondition when
  // the bundle's identity key differs from the one trusted for that device.
  absl::Status ProcessPreKeyBundle(const padlock::v1::PreKeyBundle& bundle);

  // Encrypts `content` to `to`: ENVELOPE_TYPE_PREKEY_MESSAGE until the peer has replied, then
  // ENVELOPE_TYPE_MESSAGE. FailedPrecondition when there is no session.
  absl::StatusOr<Ciphertext> Encrypt(const RemoteAddress& to, const Content& content);

  // Decrypts a 1:1 message from `from` (types 2 and 3). A pre-key message starts the session
  // and consumes the one-time prekey it names. Codes as above.
  absl::StatusOr<Content> Decrypt(const RemoteAddress& from, const Ciphertext& ciphertext);

  // Groups (Sender Keys). `group_id` is opaque bytes.
  // This device's sender-key distribution message for the group (wire type 5), creating the
  // sender key on first use. Send it to each member inside a 1:1 message.
  absl::StatusOr<Ciphertext> GroupDistribution(std::string_view group_id);
  // Installs `sender`'s distribution message (type 5) so that its group messages decrypt.
  absl::Status ProcessGroupDistribution(std::string_view group_id, const RemoteAddress& sender,
                                        const Ciphertext& distribution);
  // Encrypts once for the whole group (wire type 4).
  absl::StatusOr<Ciphertext> GroupEncrypt(std::string_view group_id, const Content& content);
  // Decrypts `sender`'s group message. FailedPrecondition when no sender key from `sender`.
  absl::StatusOr<Content> GroupDecrypt(std::string_view group_id, const RemoteAddress& sender,
                                       const Ciphertext& ciphertext);

 private:
  DeviceCrypto(SignalContext& context, LocalStore& store, StoreContextPtr store_context,
               RemoteAddress self);
  template <typename T, typename F>
  absl::StatusOr<T> Transact(F body);

  // The operations themselves, run inside a store transaction by the public methods.
  absl::Status ProcessPreKeyBundleInTx(const padlock::v1::PreKeyBundle& bundle);
  absl::StatusOr<Ciphertext> EncryptInTx(const RemoteAddress& to, const Content& content);
  absl::StatusOr<Content> DecryptInTx(const RemoteAddress& from, const Ciphertext& ciphertext);
  absl::StatusOr<Ciphertext> GroupDistributionInTx(std::string_view group_id);
  absl::Status ProcessGroupDistributionInTx(std::string_view group_id,
                                            const RemoteAddress& sender,
                                            const Ciphertext& distribution);
  absl::StatusOr<Ciphertext> GroupEncryptInTx(std::string_view group_id, const Content& content);
  absl::StatusOr<Content> GroupDecryptInTx(std::string_view group_id, const RemoteAddress& sender,
                                           const Ciphertext& ciphertext);

  SignalContext& context_;
  LocalStore& store_;
  StoreContextPtr store_context_;
  RemoteAddress self_;
};

// Maps a libsignal error code to a Status as documented above.
absl::Status SignalError(int rc, std::string_view what);

}  // namespace padlock::client
