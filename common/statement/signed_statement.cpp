#include "common/statement/signed_statement.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace padlock::statement {
namespace {

void AppendBigEndian(std::string& out, uint64_t value, int width) {
  for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

}  // namespace

StatementEncoder::StatementEncoder(std::string_view label) { AddBytes(label); }

StatementEncoder& StatementEncoder::AddBytes(std::string_view bytes) {
  if (bytes.size() > std::numeric_limits<uint32_t>::max()) {
    // Impossible for Padlock inputs (gRPC caps messages far lower); a silent truncation would
    // make two statements collide, so stop loudly instead.
    std::fprintf(stderr, "padlock::statement: field of %zu bytes exceeds the u32 length\n",
                 bytes.size());
    std::abort();
  }
  AppendBigEndian(bytes_, bytes.size(), 4);
  bytes_.append(bytes);
  return *this;
}

StatementEncoder& StatementEncoder::AddString(std::string_view text) { return AddBytes(text); }

StatementEncoder& StatementEncoder::AddU32(uint32_t value) {
  AppendBigEndian(bytes_, 4, 4);
  AppendBigEndian(bytes_, value, 4);
  return *this;
}

StatementEncoder& StatementEncoder::AddU64(uint64_t value) {
  AppendBigEndian(bytes_, 8, 4);
  AppendBigEndian(bytes_, value, 8);
  return *this;
}

std::string EncodeRegistration(std::string_view user_id, uint32_t device_id,
                               std::string_view identity_key, uint32_t registration_id,
                               uint32_t signed_prekey_id, std::string_view signed_prekey_public) {
  StatementEncoder encoder(kRegisterLabel);
  encoder.AddString(user_id)
      .AddU32(device_id)
      .AddBytes(identity_key)
      .AddU32(registration_id)
      .AddU32(signed_prekey_id)
      .AddBytes(signed_prekey_public);
  return std::move(encoder).Finish();
}

std::string EncodeLogin(std::string_view user_id, uint32_t device_id, std::string_view challenge,
                        std::string_view audience) {
  StatementEncoder encoder(kLoginLabel);
  encoder.AddString(user_id).AddU32(device_id).AddBytes(challenge).AddString(audience);
  return std::move(encoder).Finish();
}

absl::StatusOr<std::string> EncodeDeviceList(std::string_view user_id, uint64_t version,
                                             absl::Span<const DeviceListEntry> entries) {
  if (entries.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("device list: too many entries");
  }
  for (size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].device_id <= entries[i - 1].device_id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "device list: device ids must be strictly ascending; entry ", i, " has device ",
          entries[i].device_id, " after device ", entries[i - 1].device_id));
    }
  }
  StatementEncoder encoder(kDeviceListLabel);
  encoder.AddString(user_id).AddU64(version).AddU32(static_cast<uint32_t>(entries.size()));
  for (const DeviceListEntry& entry : entries) {
    encoder.AddU32(entry.device_id).AddBytes(entry.identity_key).AddU32(entry.registration_id);
  }
  return std::move(encoder).Finish();
}

std::string EncodeIdentityChange(std::string_view user_id, uint32_t device_id,
                                 std::string_view old_identity_key,
                                 std::string_view new_identity_key, uint32_t new_registration_id) {
  StatementEncoder encoder(kIdentityChangeLabel);
  encoder.AddString(user_id)
      .AddU32(device_id)
      .AddBytes(old_identity_key)
      .AddBytes(new_identity_key)
      .AddU32(new_registration_id);
  return std::move(encoder).Finish();
}

}  // namespace padlock::statement
