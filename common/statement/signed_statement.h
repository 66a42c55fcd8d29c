#pragma once
// The one byte encoding of every statement a device signs with its identity key (DESIGN.md §3).
// Clients encode and sign with it; services encode the same fields again and verify, so signer
// and verifier agree on every byte. Plain C++ types only: services convert protos to these.
//
// Byte layout (docs/PROTOCOL.md, "Signed statements", has a worked hex example):
//
//   statement := field(label) field(f1) field(f2) ...
//   field(x)  := u32be(len(x)) x          -- 4-byte big-endian length, then the bytes
//   u32 value := field(4 bytes, big-endian), i.e. 00 00 00 04 b3 b2 b1 b0
//   u64 value := field(8 bytes, big-endian), i.e. 00 00 00 08 b7 .. b0
//   list      := u32 value (element count), then each element's fields in order
//
// The label comes first, so a statement made for one purpose never parses as another (the first
// field differs), and no statement can equal a bare 33-byte public key (a key starts with 0x05,
// a statement with 00 00 00 <label length>, and every statement is longer than 33 bytes).
// Because every field carries its length, no two different field lists encode to the same bytes.
//
// Statements and their fields, in order:
//   padlock-register-v1         user_id, u32 device_id, identity_key, u32 registration_id,
//                               u32 signed_prekey_id, signed_prekey_public
//   padlock-login-v1            user_id, u32 device_id, challenge, audience
//   padlock-device-list-v1      user_id, u64 version, u32 count,
//                               count × (u32 device_id, identity_key, u32 registration_id)
//   padlock-identity-change-v1  user_id, u32 device_id, old_identity_key, new_identity_key,
//                               u32 new_registration_id
//
// The encoding checks no field's content (key lengths, user id syntax): callers validate input
// before they encode (see ids.h and signature.h). Thread-safe: all functions are pure.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace padlock::statement {

inline constexpr std::string_view kRegisterLabel = "padlock-register-v1";
inline constexpr std::string_view kLoginLabel = "padlock-login-v1";
inline constexpr std::string_view kDeviceListLabel = "padlock-device-list-v1";
inline constexpr std::string_view kIdentityChangeLabel = "padlock-identity-change-v1";

// Builds one statement field by field. The label is written by the constructor.
// A field longer than 2^32-1 bytes cannot be encoded and aborts the process (every Padlock
// input is bounded far below that by gRPC message limits).
class StatementEncoder {
 public:
  explicit StatementEncoder(std::string_view label);

  // Appends a length-prefixed field holding `bytes` (may be empty).
  StatementEncoder& AddBytes(std::string_view bytes);
  // Same as AddBytes; names the intent for text fields (user ids, audiences).
  StatementEncoder& AddString(std::string_view text);
  // Appends 00 00 00 04 and `value` as 4 bytes big-endian.
  StatementEncoder& AddU32(uint32_t value);
  // Appends 00 00 00 08 and `value` as 8 bytes big-endian.
  StatementEncoder& AddU64(uint64_t value);

  // The statement so far.
  const std::string& bytes() const { return bytes_; }
  // Returns the statement and leaves the encoder empty.
  std::string Finish() && {
    std::string out = std::move(bytes_);
    bytes_.clear();
    return out;
  }

 private:
  std::string bytes_;
};

// Proof of possession sent with Register by a new primary device.
std::string EncodeRegistration(std::string_view user_id, uint32_t device_id,
                               std::string_view identity_key, uint32_t registration_id,
                               uint32_t signed_prekey_id, std::string_view signed_prekey_public);

// Answer to a gateway login challenge; `audience` names the gateway deployment.
std::string EncodeLogin(std::string_view user_id, uint32_t device_id, std::string_view challenge,
                        std::string_view audience);

// One device of a signed device list.
struct DeviceListEntry {
  uint32_t device_id = 0;
  std::string identity_key;  // 33-byte serialized public key
  uint32_t registration_id = 0;

  friend bool operator==(const DeviceListEntry&, const DeviceListEntry&) = default;
};

// The device list an account's primary device signs. `entries` must be in strictly ascending
// device_id order (so signer and verifier produce the same bytes, and no device appears twice);
// otherwise returns InvalidArgument. An empty list encodes (count 0); whether it is acceptable is
// the caller's decision.
absl::StatusOr<std::string> EncodeDeviceList(std::string_view user_id, uint64_t version,
                                             absl::Span<const DeviceListEntry> entries);

// A device's move from `old_identity_key` to `new_identity_key` (reinstall), signed by the old key.
std::string EncodeIdentityChange(std::string_view user_id, uint32_t device_id,
                                 std::string_view old_identity_key,
                                 std::string_view new_identity_key, uint32_t new_registration_id);

}  // namespace padlock::statement
