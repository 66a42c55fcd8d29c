#include "tests/conformance/vectors.h"

#include <signal/curve.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/content.h"
#include "clients/sdk/device_crypto.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/local_store.h"
#include "clients/sdk/messenger.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"
#include "google/protobuf/util/json_util.h"

namespace padlock::vectors {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

std::string Hex(std::string_view bytes) {
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Value Str(std::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}
Value Num(double n) {
  Value v;
  v.set_number_value(n);
  return v;
}
Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}
Value List(const std::vector<Value>& items) {
  Value v;
  for (const Value& item : items) *v.mutable_list_value()->add_values() = item;
  return v;
}
Value Obj(const Struct& s) {
  Value v;
  *v.mutable_struct_value() = s;
  return v;
}

// Field access for decoding; a missing or mistyped field is InvalidArgument.
absl::StatusOr<const Value*> Field(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  if (it == s.fields().end()) return absl::InvalidArgumentError("missing field " + name);
  return &it->second;
}
absl::StatusOr<std::string> GetString(const Struct& s, const std::string& name) {
  absl::StatusOr<const Value*> v = Field(s, name);
  if (!v.ok()) return v.status();
  if ((*v)->kind_case() != Value::kStringValue) {
    return absl::InvalidArgumentError(name + " is not a string");
  }
  return (*v)->string_value();
}
absl::StatusOr<std::string> GetHex(const Struct& s, const std::string& name) {
  absl::StatusOr<std::string> hex = GetString(s, name);
  if (!hex.ok()) return hex.status();
  absl::StatusOr<std::string> bytes = FromHex(*hex);
  if (!bytes.ok()) return absl::InvalidArgumentError(name + ": not hex");
  return bytes;
}
absl::StatusOr<uint64_t> GetNum(const Struct& s, const std::string& name) {
  absl::StatusOr<const Value*> v = Field(s, name);
  if (!v.ok()) return v.status();
  if ((*v)->kind_case() != Value::kNumberValue) {
    return absl::InvalidArgumentError(name + " is not a number");
  }
  return static_cast<uint64_t>((*v)->number_value());
}
absl::StatusOr<std::vector<Value>> GetList(const Struct& s, const std::string& name) {
  absl::StatusOr<const Value*> v = Field(s, name);
  if (!v.ok()) return v.status();
  if ((*v)->kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError(name + " is not a list");
  }
  return std::vector<Value>((*v)->list_value().values().begin(),
                            (*v)->list_value().values().end());
}

#define ASSIGN_OR_RETURN_IMPL(var, expr, tmp) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  var = *std::move(tmp)
#define VEC_CONCAT_INNER(a, b) a##b
#define VEC_CONCAT(a, b) VEC_CONCAT_INNER(a, b)
#define ASSIGN_OR_RETURN(var, expr) \
  ASSIGN_OR_RETURN_IMPL(var, expr, VEC_CONCAT(status_or_, __LINE__))

// A fixed identity key: 32 bytes from `seed`, clamped as Curve25519 private keys are, and its
// 33-byte public key computed by libsignal.
absl::StatusOr<client::IdentityKeyPair> FixedKey(client::SignalContext& context, uint8_t seed) {
  std::string priv(32, '\0');
  for (int i = 0; i < 32; ++i) priv[i] = static_cast<char>((seed * 37 + i * 11 + 5) & 0xff);
  priv[0] = static_cast<char>(static_cast<uint8_t>(priv[0]) & 248);
  priv[31] = static_cast<char>((static_cast<uint8_t>(priv[31]) & 127) | 64);
  ec_private_key* private_key = nullptr;
  if (curve_decode_private_point(&private_key, reinterpret_cast<const uint8_t*>(priv.data()),
                                 priv.size(), context.get()) < 0) {
    return absl::InternalError("curve_decode_private_point");
  }
  ec_public_key* public_key = nullptr;
  const int rc = curve_generate_public_key(&public_key, private_key);
  SIGNAL_UNREF(private_key);
  if (rc < 0) return absl::InternalError("curve_generate_public_key");
  signal_buffer* buffer = nullptr;
  const int rs = ec_public_key_serialize(&buffer, public_key);
  SIGNAL_UNREF(public_key);
  if (rs < 0) return absl::InternalError("ec_public_key_serialize");
  std::string pub(reinterpret_cast<const char*>(signal_buffer_data(buffer)),
                  signal_buffer_len(buffer));
  signal_buffer_free(buffer);
  return client::IdentityKeyPair{pub, priv};
}

// Bit 255 of a signature: the sign of the signer's Edwards public key (docs/PROTOCOL.md).
int SignBit(std::string_view signature) { return (static_cast<uint8_t>(signature[63]) >> 7) & 1; }

// The first fixed key from `seed` on whose Edwards sign bit is `bit`.
absl::StatusOr<client::IdentityKeyPair> FixedKeyWithSignBit(client::SignalContext& context,
                                                           uint8_t seed, int bit) {
  for (int s = seed; s < seed + 64; ++s) {
    ASSIGN_OR_RETURN(client::IdentityKeyPair key, FixedKey(context, static_cast<uint8_t>(s)));
    ASSIGN_OR_RETURN(std::string sig, client::Sign(context, key.private_key, "probe"));
    if (SignBit(sig) == bit) return key;
  }
  return absl::InternalError("no key with the wanted sign bit");
}

std::string Bytes(uint8_t start, size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(start + i);
  return out;
}

}  // namespace

absl::StatusOr<std::string> EncodeStatementVector(const Struct& vector) {
  ASSIGN_OR_RETURN(std::string type, GetString(vector, "type"));
  ASSIGN_OR_RETURN(const Value* fields_value, Field(vector, "fields"));
  const Struct& f = fields_value->struct_value();
  if (type == "registration") {
    ASSIGN_OR_RETURN(std::string user, GetString(f, "user_id"));
    ASSIGN_OR_RETURN(uint64_t device, GetNum(f, "device_id"));
    ASSIGN_OR_RETURN(std::string key, GetHex(f, "identity_key"));
    ASSIGN_OR_RETURN(uint64_t registration, GetNum(f, "registration_id"));
    ASSIGN_OR_RETURN(uint64_t spk_id, GetNum(f, "signed_prekey_id"));
    ASSIGN_OR_RETURN(std::string spk, GetHex(f, "signed_prekey_public"));
    return statement::EncodeRegistration(user, static_cast<uint32_t>(device), key,
                                         static_cast<uint32_t>(registration),
                                         static_cast<uint32_t>(spk_id), spk);
  }
  if (type == "login") {
    ASSIGN_OR_RETURN(std::string user, GetString(f, "user_id"));
    ASSIGN_OR_RETURN(uint64_t device, GetNum(f, "device_id"));
    ASSIGN_OR_RETURN(std::string challenge, GetHex(f, "challenge"));
    ASSIGN_OR_RETURN(std::string audience, GetString(f, "audience"));
    return statement::EncodeLogin(user, static_cast<uint32_t>(device), challenge, audience);
  }
  if (type == "device_list") {
    ASSIGN_OR_RETURN(std::string user, GetString(f, "user_id"));
    ASSIGN_OR_RETURN(uint64_t version, GetNum(f, "version"));
    ASSIGN_OR_RETURN(std::vector<Value> devices, GetList(f, "devices"));
    std::vector<statement::DeviceListEntry> entries;
    for (const Value& d : devices) {
      ASSIGN_OR_RETURN(uint64_t id, GetNum(d.struct_value(), "device_id"));
      ASSIGN_OR_RETURN(std::string key, GetHex(d.struct_value(), "identity_key"));
      ASSIGN_OR_RETURN(uint64_t registration, GetNum(d.struct_value(), "registration_id"));
      entries.push_back({static_cast<uint32_t>(id), key, static_cast<uint32_t>(registration)});
    }
    return statement::EncodeDeviceList(user, version, entries);
  }
  if (type == "identity_change") {
    ASSIGN_OR_RETURN(std::string user, GetString(f, "user_id"));
    ASSIGN_OR_RETURN(uint64_t device, GetNum(f, "device_id"));
    ASSIGN_OR_RETURN(std::string old_key, GetHex(f, "old_identity_key"));
    ASSIGN_OR_RETURN(std::string new_key, GetHex(f, "new_identity_key"));
    ASSIGN_OR_RETURN(uint64_t registration, GetNum(f, "new_registration_id"));
    return statement::EncodeIdentityChange(user, static_cast<uint32_t>(device), old_key, new_key,
                                           static_cast<uint32_t>(registration));
  }
  if (type == "signed_prekey") {
    // X3DH: the identity key signs the 33-byte serialized prekey itself, not a statement.
    return GetHex(f, "signed_prekey_public");
  }
  return absl::InvalidArgumentError("unknown statement type " + type);
}

absl::StatusOr<std::string> EncodeContentBodyVector(const Struct& vector) {
  ASSIGN_OR_RETURN(uint64_t kind, GetNum(vector, "kind"));
  ASSIGN_OR_RETURN(const Value* fields_value, Field(vector, "fields"));
  const Struct& f = fields_value->struct_value();
  auto ids = [&](const std::string& name) -> absl::StatusOr<std::vector<std::string>> {
    ASSIGN_OR_RETURN(std::vector<Value> list, GetList(f, name));
    std::vector<std::string> out;
    for (const Value& v : list) {
      absl::StatusOr<std::string> bytes = FromHex(v.string_value());
      if (!bytes.ok()) return absl::InvalidArgumentError(name + ": not hex");
      out.push_back(*bytes);
    }
    return out;
  };
  switch (static_cast<client::ContentKind>(kind)) {
    case client::ContentKind::kText: {
      ASSIGN_OR_RETURN(std::string to, GetString(f, "to_user_id"));
      ASSIGN_OR_RETURN(std::string text, GetString(f, "text"));
      return client::EncodeTextBody(to, text);
    }
    case client::ContentKind::kReceipt: {
      ASSIGN_OR_RETURN(uint64_t status, GetNum(f, "status"));
      ASSIGN_OR_RETURN(std::vector<std::string> message_ids, ids("message_ids"));
      if (status == static_cast<uint64_t>(client::MessageStatus::kUnsupported)) {
        ASSIGN_OR_RETURN(uint64_t version, GetNum(f, "format_version"));
        ASSIGN_OR_RETURN(std::vector<Value> kinds, GetList(f, "kinds"));
        client::ContentCapabilities capabilities{static_cast<uint8_t>(version), {}};
        for (const Value& k : kinds) {
          capabilities.kinds.push_back(static_cast<uint8_t>(k.number_value()));
        }
        return client::EncodeUnsupportedReceiptBody(capabilities, message_ids);
      }
      return client::EncodeReceiptBody(static_cast<client::MessageStatus>(status), message_ids);
    }
    case client::ContentKind::kTyping: {
      ASSIGN_OR_RETURN(const Value* typing, Field(f, "typing"));
      return std::string(typing->bool_value() ? "1" : "0");
    }
    case client::ContentKind::kGroupKeyDistribution: {
      ASSIGN_OR_RETURN(std::string group_id, GetHex(f, "group_id"));
      ASSIGN_OR_RETURN(std::string distribution, GetHex(f, "distribution"));
      return group_id + distribution;
    }
    case client::ContentKind::kGroupUpdate: {
      client::GroupUpdate update;
      ASSIGN_OR_RETURN(update.group_id, GetHex(f, "group_id"));
      ASSIGN_OR_RETURN(update.title, GetString(f, "title"));
      ASSIGN_OR_RETURN(std::vector<Value> members, GetList(f, "members"));
      for (const Value& m : members) update.members.push_back(m.string_value());
      return client::EncodeGroupUpdate(update);
    }
    case client::ContentKind::kStory: {
      ASSIGN_OR_RETURN(uint64_t ttl, GetNum(f, "ttl_seconds"));
      ASSIGN_OR_RETURN(std::string text, GetString(f, "text"));
      return client::EncodeStoryBody(static_cast<uint32_t>(ttl), text);
    }
    default: {
      // A kind this client does not know: its body is opaque bytes.
      return GetHex(f, "body");
    }
  }
}

absl::StatusOr<Struct> MakeStatementVectors(client::SignalContext& context) {
  ASSIGN_OR_RETURN(client::IdentityKeyPair alice, FixedKeyWithSignBit(context, 1, 1));
  ASSIGN_OR_RETURN(client::IdentityKeyPair alice_new, FixedKeyWithSignBit(context, 101, 0));
  ASSIGN_OR_RETURN(client::IdentityKeyPair laptop, FixedKey(context, 201));
  ASSIGN_OR_RETURN(client::IdentityKeyPair prekey, FixedKey(context, 221));

  std::vector<Value> vectors;
  auto add = [&](const std::string& name, const std::string& type, const Struct& fields,
                 const client::IdentityKeyPair& signer,
                 const std::string& note) -> absl::Status {
    Struct v;
    (*v.mutable_fields())["name"] = Str(name);
    (*v.mutable_fields())["type"] = Str(type);
    (*v.mutable_fields())["note"] = Str(note);
    (*v.mutable_fields())["fields"] = Obj(fields);
    ASSIGN_OR_RETURN(std::string message, EncodeStatementVector(v));
    ASSIGN_OR_RETURN(std::string signature, client::Sign(context, signer.private_key, message));
    (*v.mutable_fields())["message"] = Str(Hex(message));
    (*v.mutable_fields())["signer_private_key"] = Str(Hex(signer.private_key));
    (*v.mutable_fields())["signer_public_key"] = Str(Hex(signer.public_key));
    (*v.mutable_fields())["signature"] = Str(Hex(signature));
    (*v.mutable_fields())["signature_bit_255"] = Num(SignBit(signature));
    vectors.push_back(Obj(v));
    return absl::OkStatus();
  };

  Struct registration;
  (*registration.mutable_fields())["user_id"] = Str("alice");
  (*registration.mutable_fields())["device_id"] = Num(1);
  (*registration.mutable_fields())["identity_key"] = Str(Hex(alice.public_key));
  (*registration.mutable_fields())["registration_id"] = Num(4821);
  (*registration.mutable_fields())["signed_prekey_id"] = Num(7);
  (*registration.mutable_fields())["signed_prekey_public"] = Str(Hex(prekey.public_key));
  if (absl::Status s = add("registration", "registration", registration, alice,
                           "padlock-register-v1, signed by the identity key it names; this key's "
                           "Edwards sign bit is 1, so bit 255 of every signature is set");
      !s.ok()) {
    return s;
  }
  Struct spk;
  (*spk.mutable_fields())["signed_prekey_public"] = Str(Hex(prekey.public_key));
  if (absl::Status s = add("signed_prekey", "signed_prekey", spk, alice,
                           "X3DH signed prekey: the message is the 33-byte serialized prekey");
      !s.ok()) {
    return s;
  }
  Struct login;
  (*login.mutable_fields())["user_id"] = Str("alice");
  (*login.mutable_fields())["device_id"] = Num(1);
  (*login.mutable_fields())["challenge"] = Str(Hex(Bytes(0, 32)));
  (*login.mutable_fields())["audience"] = Str("padlock");
  if (absl::Status s = add("login", "login", login, alice, "padlock-login-v1"); !s.ok()) return s;
  auto device = [](uint32_t id, const std::string& key, uint32_t registration) {
    Struct d;
    (*d.mutable_fields())["device_id"] = Num(id);
    (*d.mutable_fields())["identity_key"] = Str(Hex(key));
    (*d.mutable_fields())["registration_id"] = Num(registration);
    return Obj(d);
  };
  Struct list1;
  (*list1.mutable_fields())["user_id"] = Str("alice");
  (*list1.mutable_fields())["version"] = Num(1);
  (*list1.mutable_fields())["devices"] = List({device(1, alice.public_key, 4821)});
  if (absl::Status s = add("device_list_v1", "device_list", list1, alice,
                           "padlock-device-list-v1 at registration: only device 1");
      !s.ok()) {
    return s;
  }
  Struct list2;
  (*list2.mutable_fields())["user_id"] = Str("alice");
  (*list2.mutable_fields())["version"] = Num(2);
  (*list2.mutable_fields())["devices"] =
      List({device(1, alice.public_key, 4821), device(2, laptop.public_key, 1177)});
  if (absl::Status s = add("device_list_v2", "device_list", list2, alice,
                           "a linked laptop: version 2, signed by device 1's key (the primary)");
      !s.ok()) {
    return s;
  }
  Struct change;
  (*change.mutable_fields())["user_id"] = Str("alice");
  (*change.mutable_fields())["device_id"] = Num(1);
  (*change.mutable_fields())["old_identity_key"] = Str(Hex(alice.public_key));
  (*change.mutable_fields())["new_identity_key"] = Str(Hex(alice_new.public_key));
  (*change.mutable_fields())["new_registration_id"] = Num(9001);
  if (absl::Status s = add("identity_change", "identity_change", change, alice,
                           "padlock-identity-change-v1, signed by the OLD key");
      !s.ok()) {
    return s;
  }
  Struct list3;
  (*list3.mutable_fields())["user_id"] = Str("alice");
  (*list3.mutable_fields())["version"] = Num(3);
  (*list3.mutable_fields())["devices"] =
      List({device(1, alice_new.public_key, 9001), device(2, laptop.public_key, 1177)});
  if (absl::Status s = add("device_list_after_identity_change", "device_list", list3, alice_new,
                           "the list sent with the identity change, signed by the NEW key; this "
                           "key's Edwards sign bit is 0, so bit 255 of its signatures is clear");
      !s.ok()) {
    return s;
  }

  Struct out;
  (*out.mutable_fields())["description"] =
      Str("Padlock signed statements (docs/PROTOCOL.md 'Signed statements'). message = the "
          "exact statement bytes for type+fields. Signatures are randomized (libsignal "
          "curve_calculate_signature): a verifier must accept them, a signer cannot reproduce "
          "them. Bit 255 of each signature carries the Edwards sign bit of the signer's key.");
  (*out.mutable_fields())["generator"] = Str("padlock-vectors (tests/conformance)");
  (*out.mutable_fields())["vectors"] = List(vectors);
  return out;
}

absl::StatusOr<Struct> MakeContentVectors(client::SignalContext& context) {
  const std::string message_id_1 = Bytes(0x10, 16);
  const std::string message_id_2 = Bytes(0x20, 16);
  const std::string group_id = Bytes(0xa0, 16);

  // A real sender-key distribution message, from a throw-away device in a temporary folder.
  char dir_template[] = "/tmp/padlock-vectors-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return absl::InternalError("mkdtemp");
  const std::string db = std::string(dir_template) + "/device.db";
  std::string distribution;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<client::LocalStore> store, client::LocalStore::Open(db, ""));
    ASSIGN_OR_RETURN(client::IdentityKeyPair identity, FixedKey(context, 1));
    if (absl::Status s = store->SaveLocalIdentity(identity, 4821); !s.ok()) return s;
    ASSIGN_OR_RETURN(std::unique_ptr<client::DeviceCrypto> crypto,
                     client::DeviceCrypto::Create(context, *store, {"alice", 1}));
    ASSIGN_OR_RETURN(client::Ciphertext skdm, crypto->GroupDistribution(group_id));
    distribution = skdm.bytes;
  }
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    unlink((db + suffix).c_str());
  }
  rmdir(dir_template);

  std::vector<Value> vectors;
  auto add = [&](const std::string& name, uint8_t kind, const Struct& fields,
                 const std::string& note) -> absl::Status {
    Struct v;
    (*v.mutable_fields())["name"] = Str(name);
    (*v.mutable_fields())["kind"] = Num(kind);
    (*v.mutable_fields())["note"] = Str(note);
    (*v.mutable_fields())["fields"] = Obj(fields);
    ASSIGN_OR_RETURN(std::string body, EncodeContentBodyVector(v));
    ASSIGN_OR_RETURN(std::string padded,
                     client::EncodeContent({static_cast<client::ContentKind>(kind), body}));
    (*v.mutable_fields())["body"] = Str(Hex(body));
    (*v.mutable_fields())["padded"] = Str(Hex(padded));
    vectors.push_back(Obj(v));
    return absl::OkStatus();
  };
  auto ids = [](std::vector<std::string> list) {
    std::vector<Value> out;
    for (const std::string& id : list) out.push_back(Str(Hex(id)));
    return List(out);
  };

  Struct text;
  (*text.mutable_fields())["to_user_id"] = Str("bob");
  (*text.mutable_fields())["text"] = Str("hi bob \xF0\x9F\x91\x8B");
  if (absl::Status s = add("text", 1, text, "u16 BE recipient id length, id, UTF-8 text");
      !s.ok()) {
    return s;
  }
  Struct long_text;
  (*long_text.mutable_fields())["to_user_id"] = Str("bob");
  (*long_text.mutable_fields())["text"] = Str(std::string(100, 'a'));
  if (absl::Status s = add("text_128_bucket", 1, long_text,
                           "105-byte body + 6-byte header: padded to the 128-byte bucket");
      !s.ok()) {
    return s;
  }
  Struct delivered;
  (*delivered.mutable_fields())["status"] = Num(2);
  (*delivered.mutable_fields())["message_ids"] = ids({message_id_1, message_id_2});
  if (absl::Status s = add("receipt_delivered", 2, delivered, "status 2 delivered, two ids");
      !s.ok()) {
    return s;
  }
  Struct read;
  (*read.mutable_fields())["status"] = Num(3);
  (*read.mutable_fields())["message_ids"] = ids({message_id_1});
  if (absl::Status s = add("receipt_read", 2, read, "status 3 read"); !s.ok()) return s;
  Struct unsupported;
  (*unsupported.mutable_fields())["status"] = Num(5);
  (*unsupported.mutable_fields())["format_version"] = Num(1);
  std::vector<Value> kinds;
  for (uint8_t k : client::MessengerCapabilities().kinds) kinds.push_back(Num(k));
  (*unsupported.mutable_fields())["kinds"] = List(kinds);
  (*unsupported.mutable_fields())["message_ids"] = ids({message_id_1});
  if (absl::Status s = add("receipt_unsupported", 2, unsupported,
                           "status 5 unsupported: format version, kind count, kinds, then ids "
                           "(the SDK's own capabilities)");
      !s.ok()) {
    return s;
  }
  Struct typing;
  (*typing.mutable_fields())["typing"] = Bool(true);
  if (absl::Status s = add("typing", 3, typing, "\"1\" typing, \"0\" stopped"); !s.ok()) return s;
  Struct key;
  (*key.mutable_fields())["group_id"] = Str(Hex(group_id));
  (*key.mutable_fields())["distribution"] = Str(Hex(distribution));
  if (absl::Status s = add("group_key_distribution", 5, key,
                           "16-byte group id, then libsignal's sender-key distribution message");
      !s.ok()) {
    return s;
  }
  Struct update;
  (*update.mutable_fields())["group_id"] = Str(Hex(group_id));
  (*update.mutable_fields())["title"] = Str("climbing");
  (*update.mutable_fields())["members"] = List({Str("alice"), Str("bob"), Str("carol")});
  if (absl::Status s = add("group_update", 6, update,
                           "group id, u16 title length, title, u16 member count, u16-length ids");
      !s.ok()) {
    return s;
  }
  Struct story;
  (*story.mutable_fields())["ttl_seconds"] = Num(86400);
  (*story.mutable_fields())["text"] = Str("at the beach");
  if (absl::Status s = add("story", 7, story, "u32 BE time-to-live in seconds, then the text");
      !s.ok()) {
    return s;
  }
  Struct future;
  (*future.mutable_fields())["body"] = Str(Hex("from the future"));
  if (absl::Status s = add("unknown_kind", 0x42, future,
                           "a kind no client knows yet: decodes (it is well-formed), and the "
                           "receiver answers with an unsupported receipt");
      !s.ok()) {
    return s;
  }

  // Contents a receiver must reject as corrupt (DataLoss in the SDK).
  ASSIGN_OR_RETURN(std::string good, client::EncodeContent({client::ContentKind::kText,
                                                            client::EncodeTextBody("bob", "x")}));
  std::vector<Value> rejected;
  auto reject = [&](const std::string& name, std::string bytes) {
    Struct r;
    (*r.mutable_fields())["name"] = Str(name);
    (*r.mutable_fields())["padded"] = Str(Hex(bytes));
    rejected.push_back(Obj(r));
  };
  std::string bad = good;
  bad[0] = 0;
  reject("format_version_0", bad);
  bad = good;
  bad[1] = 0;
  reject("kind_0", bad);
  bad = good;
  bad[5] = 59;
  reject("length_beyond_buffer", bad);
  bad = good;
  bad[63] = 1;
  reject("non_zero_padding", bad);
  reject("not_a_bucket_size", good.substr(0, 48));
  reject("shorter_than_header", good.substr(0, 5));
  std::string big(128, '\0');
  big[0] = 1;
  big[1] = 1;
  big[5] = 10;
  reject("size_not_the_bucket_of_its_length", big);

  Struct out;
  (*out.mutable_fields())["description"] = Str(
      "Padlock padded contents (docs/PROTOCOL.md 'Message content'): body = the body bytes for "
      "kind+fields, padded = what is encrypted (version 1, kind, u32 BE length, body, zero "
      "padding to the bucket). 'rejected' lists contents a receiver must treat as corrupt.");
  (*out.mutable_fields())["generator"] = Str("padlock-vectors (tests/conformance)");
  (*out.mutable_fields())["vectors"] = List(vectors);
  (*out.mutable_fields())["rejected"] = List(rejected);
  return out;
}

std::vector<std::string> CheckStatementVectors(const Struct& file) {
  std::vector<std::string> failures;
  absl::StatusOr<std::vector<Value>> vectors = GetList(file, "vectors");
  if (!vectors.ok() || vectors->empty()) return {"statements: no vectors"};
  for (const Value& v : *vectors) {
    const Struct& vector = v.struct_value();
    const std::string name = GetString(vector, "name").value_or("?");
    auto fail = [&](const std::string& what) { failures.push_back(name + ": " + what); };
    absl::StatusOr<std::string> encoded = EncodeStatementVector(vector);
    absl::StatusOr<std::string> message = GetHex(vector, "message");
    absl::StatusOr<std::string> key = GetHex(vector, "signer_public_key");
    absl::StatusOr<std::string> signature = GetHex(vector, "signature");
    if (!encoded.ok() || !message.ok() || !key.ok() || !signature.ok()) {
      fail("malformed vector");
      continue;
    }
    if (*encoded != *message) fail("message is not the encoding of the fields: " + Hex(*encoded));
    if (!statement::VerifySignature(*key, *message, *signature)) {
      fail("signature does not verify (is bit 255 the key's Edwards sign bit?)");
    } else {
      std::string flipped = *signature;
      flipped[63] = static_cast<char>(static_cast<uint8_t>(flipped[63]) ^ 0x80);
      if (statement::VerifySignature(*key, *message, flipped)) fail("verifies with bit 255 flipped");
    }
  }
  return failures;
}

std::vector<std::string> CheckContentVectors(const Struct& file) {
  std::vector<std::string> failures;
  absl::StatusOr<std::vector<Value>> vectors = GetList(file, "vectors");
  if (!vectors.ok() || vectors->empty()) return {"content: no vectors"};
  for (const Value& v : *vectors) {
    const Struct& vector = v.struct_value();
    const std::string name = GetString(vector, "name").value_or("?");
    auto fail = [&](const std::string& what) { failures.push_back(name + ": " + what); };
    absl::StatusOr<uint64_t> kind = GetNum(vector, "kind");
    absl::StatusOr<std::string> body = EncodeContentBodyVector(vector);
    absl::StatusOr<std::string> given_body = GetHex(vector, "body");
    absl::StatusOr<std::string> given_padded = GetHex(vector, "padded");
    if (!kind.ok() || !body.ok() || !given_body.ok() || !given_padded.ok()) {
      fail("malformed vector");
      continue;
    }
    if (*body != *given_body) fail("body is not the encoding of the fields: " + Hex(*body));
    absl::StatusOr<std::string> padded =
        client::EncodeContent({static_cast<client::ContentKind>(*kind), *body});
    if (!padded.ok() || *padded != *given_padded) fail("padded is not the padded body");
    absl::StatusOr<client::Content> decoded = client::DecodeContent(*given_padded);
    if (!decoded.ok() || static_cast<uint64_t>(decoded->kind) != *kind ||
        decoded->body != *given_body) {
      fail("padded does not decode to kind and body");
    }
  }
  absl::StatusOr<std::vector<Value>> rejected = GetList(file, "rejected");
  if (rejected.ok()) {
    for (const Value& v : *rejected) {
      const std::string name = GetString(v.struct_value(), "name").value_or("?");
      absl::StatusOr<std::string> padded = GetHex(v.struct_value(), "padded");
      if (!padded.ok() || client::DecodeContent(*padded).status().code() !=
                              absl::StatusCode::kDataLoss) {
        failures.push_back("rejected " + name + ": not refused as corrupt");
      }
    }
  }
  return failures;
}

std::string ToHex(std::string_view bytes) { return Hex(bytes); }

absl::StatusOr<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("odd number of hex digits");
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexDigit(hex[2 * i]);
    const int lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("not a hex digit");
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string ToJson(const Struct& s) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(s, &out, options);
  return out;
}

absl::StatusOr<Struct> FromJson(const std::string& json) {
  Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  if (!status.ok()) return absl::InvalidArgumentError(std::string(status.message()));
  return s;
}

}  // namespace padlock::vectors
