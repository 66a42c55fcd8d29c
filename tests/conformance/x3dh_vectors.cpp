// docs/vectors/x3dh.json: a full X3DH and first message with fixed keys (docs/PROTOCOL.md "Test
// vectors"), made by the SDK (clients/sdk/identity.h, device_crypto.h) through
// libsignal-protocol-c on a seeded random source (deterministic_random.h), and the checks that
// regenerate it and decrypt a (third party's) first message as Bob.

#include <signal/curve.h>
#include <signal/protocol.h>
#include <signal/ratchet.h>
#include <signal/session_pre_key.h>
#include <signal/session_record.h>
#include <signal/session_state.h>
#include <signal/signal_protocol.h>
#include <stdlib.h>

#include <filesystem>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "clients/sdk/content.h"
#include "clients/sdk/device_crypto.h"
#include "clients/sdk/identity.h"
#include "clients/sdk/local_store.h"
#include "clients/sdk/messenger.h"
#include "clients/sdk/signal_handles.h"
#include "padlock/v1/common.pb.h"
#include "services/common/runtime/status_macros.h"
#include "tests/conformance/deterministic_random.h"
#include "tests/conformance/vectors.h"

namespace padlock::vectors {
namespace {

using client::BufferPtr;
using client::SignalPtr;
using google::protobuf::Struct;
using google::protobuf::Value;

// The inputs of the vector. Changing any of them changes every key and byte of x3dh.json.
constexpr char kSeed[] = "padlock x3dh vector v1";
constexpr uint32_t kSignedPreKeyId = 1;
constexpr uint64_t kSignedPreKeyTimestampMs = 1767225600000;  // 2026-01-01T00:00:00Z
constexpr uint32_t kOneTimePreKeyId = 31;
constexpr char kText[] = "hello bob, this is alice";

Value Str(std::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}
Value Hex(std::string_view bytes) { return Str(ToHex(bytes)); }
Value Num(double n) {
  Value v;
  v.set_number_value(n);
  return v;
}
Value Obj(const Struct& s) {
  Value v;
  *v.mutable_struct_value() = s;
  return v;
}
void Set(Struct& s, const std::string& name, Value v) {
  (*s.mutable_fields())[name] = std::move(v);
}

const uint8_t* Bytes(std::string_view s) {
  static const uint8_t kEmpty = 0;
  return s.empty() ? &kEmpty : reinterpret_cast<const uint8_t*>(s.data());
}

// What both sides of the exchange are made from.
struct X3dhKeys {
  client::IdentityKeyPair alice;
  uint32_t alice_registration_id = 0;
  client::IdentityKeyPair bob;
  uint32_t bob_registration_id = 0;
  client::SignedPreKey signed_prekey;
  client::PreKey one_time_prekey;
};

const client::RemoteAddress kAlice{"alice", 1};
const client::RemoteAddress kBob{"bob", 1};

// A folder for the two throw-away local stores, removed on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    char dir_template[] = "/tmp/padlock-x3dh-XXXXXX";
    if (mkdtemp(dir_template) != nullptr) path_ = dir_template;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

absl::StatusOr<std::string> SerializeKey(const ec_public_key* key) {
  signal_buffer* raw = nullptr;
  const int rc = ec_public_key_serialize(&raw, key);
  if (rc < 0) return client::SignalError(rc, "ec_public_key_serialize");
  BufferPtr buffer(raw);
  return client::ToString(buffer.get());
}
absl::StatusOr<std::string> SerializeKey(const ec_private_key* key) {
  signal_buffer* raw = nullptr;
  const int rc = ec_private_key_serialize(&raw, key);
  if (rc < 0) return client::SignalError(rc, "ec_private_key_serialize");
  client::SecretBufferPtr buffer(raw);
  return client::ToString(buffer.get());
}

// The 33-byte public key of a 32-byte private key.
absl::StatusOr<std::string> PublicOf(client::SignalContext& context, std::string_view priv) {
  ec_private_key* raw = nullptr;
  int rc = curve_decode_private_point(&raw, Bytes(priv), priv.size(), context.get());
  if (rc < 0) return absl::InvalidArgumentError("private key does not decode");
  SignalPtr<ec_private_key> key(raw);
  ec_public_key* raw_public = nullptr;
  rc = curve_generate_public_key(&raw_public, key.get());
  if (rc < 0) return client::SignalError(rc, "curve_generate_public_key");
  SignalPtr<ec_public_key> public_key(raw_public);
  return SerializeKey(public_key.get());
}

absl::StatusOr<SignalPtr<ec_key_pair>> KeyPair(client::SignalContext& context,
                                               std::string_view pub, std::string_view priv) {
  ec_public_key* raw_public = nullptr;
  if (curve_decode_point(&raw_public, Bytes(pub), pub.size(), context.get()) < 0) {
    return absl::InvalidArgumentError("public key does not decode");
  }
  SignalPtr<ec_public_key> public_key(raw_public);
  ec_private_key* raw_private = nullptr;
  if (curve_decode_private_point(&raw_private, Bytes(priv), priv.size(), context.get()) < 0) {
    return absl::InvalidArgumentError("private key does not decode");
  }
  SignalPtr<ec_private_key> private_key(raw_private);
  ec_key_pair* raw_pair = nullptr;
  const int rc = ec_key_pair_create(&raw_pair, public_key.get(), private_key.get());
  if (rc < 0) return client::SignalError(rc, "ec_key_pair_create");
  return SignalPtr<ec_key_pair>(raw_pair);
}

// libsignal's stored forms of Bob's prekeys, rebuilt from the keys (for keys read from JSON).
absl::Status FillRecords(client::SignalContext& context, X3dhKeys& keys) {
  {
    const client::SignedPreKey& spk = keys.signed_prekey;
    ASSIGN_OR_RETURN(SignalPtr<ec_key_pair> pair,
                     KeyPair(context, spk.public_key, spk.private_key));
    session_signed_pre_key* raw = nullptr;
    int rc = session_signed_pre_key_create(&raw, spk.id, spk.timestamp_ms, pair.get(),
                                           Bytes(spk.signature), spk.signature.size());
    if (rc < 0) return client::SignalError(rc, "session_signed_pre_key_create");
    SignalPtr<session_signed_pre_key> record(raw);
    signal_buffer* buffer = nullptr;
    rc = session_signed_pre_key_serialize(&buffer, record.get());
    if (rc < 0) return client::SignalError(rc, "session_signed_pre_key_serialize");
    client::SecretBufferPtr bytes(buffer);
    keys.signed_prekey.record = client::ToString(bytes.get());
  }
  const client::PreKey& opk = keys.one_time_prekey;
  ASSIGN_OR_RETURN(SignalPtr<ec_key_pair> pair, KeyPair(context, opk.public_key, opk.private_key));
  session_pre_key* raw = nullptr;
  int rc = session_pre_key_create(&raw, opk.id, pair.get());
  if (rc < 0) return client::SignalError(rc, "session_pre_key_create");
  SignalPtr<session_pre_key> record(raw);
  signal_buffer* buffer = nullptr;
  rc = session_pre_key_serialize(&buffer, record.get());
  if (rc < 0) return client::SignalError(rc, "session_pre_key_serialize");
  client::SecretBufferPtr bytes(buffer);
  keys.one_time_prekey.record = client::ToString(bytes.get());
  return absl::OkStatus();
}

// Bob's bundle as the key-directory serves it.
padlock::v1::PreKeyBundle BobBundle(const X3dhKeys& keys) {
  padlock::v1::PreKeyBundle bundle;
  bundle.mutable_device()->set_user_id(kBob.user_id);
  bundle.mutable_device()->set_device_id(static_cast<uint32_t>(kBob.device_id));
  bundle.set_registration_id(keys.bob_registration_id);
  bundle.set_identity_key(keys.bob.public_key);
  bundle.mutable_signed_prekey()->set_key_id(keys.signed_prekey.id);
  bundle.mutable_signed_prekey()->set_public_key(keys.signed_prekey.public_key);
  bundle.mutable_signed_prekey()->set_signature(keys.signed_prekey.signature);
  bundle.mutable_one_time_prekey()->set_key_id(keys.one_time_prekey.id);
  bundle.mutable_one_time_prekey()->set_public_key(keys.one_time_prekey.public_key);
  return bundle;
}

client::Content FirstContent() {
  return client::Content{client::ContentKind::kText, client::EncodeTextBody(kBob.user_id, kText)};
}

// Alice's session with Bob as libsignal holds it after X3DH (and her first sending-chain step),
// before the first message is encrypted.
absl::StatusOr<Struct> AliceSession(client::SignalContext& context, client::LocalStore& store,
                                    const X3dhKeys& keys) {
  ASSIGN_OR_RETURN(std::optional<std::string> serialized, store.LoadSession(kBob));
  if (!serialized.has_value()) return absl::InternalError("alice has no session with bob");
  session_record* raw_record = nullptr;
  int rc = session_record_deserialize(&raw_record, Bytes(*serialized), serialized->size(),
                                      context.get());
  if (rc < 0) return client::SignalError(rc, "session_record_deserialize");
  SignalPtr<session_record> record(raw_record);
  session_state* state = session_record_get_state(record.get());  // borrowed

  Struct out;
  signal_buffer* raw = nullptr;
  rc = ratchet_root_key_get_key(session_state_get_root_key(state), &raw);
  if (rc < 0) return client::SignalError(rc, "root key");
  client::SecretBufferPtr root(raw);
  Set(out, "root_key", Hex(client::ToString(root.get())));

  ratchet_chain_key* chain = session_state_get_sender_chain_key(state);  // borrowed
  rc = ratchet_chain_key_get_key(chain, &raw);
  if (rc < 0) return client::SignalError(rc, "sending chain key");
  client::SecretBufferPtr chain_key(raw);
  Set(out, "sending_chain_key", Hex(client::ToString(chain_key.get())));
  Set(out, "sending_chain_index", Num(ratchet_chain_key_get_index(chain)));
  ratchet_message_keys message_keys{};
  rc = ratchet_chain_key_get_message_keys(chain, &message_keys);
  if (rc < 0) return client::SignalError(rc, "message keys");
  Struct first_keys;
  auto raw_bytes = [](const uint8_t* data, size_t len) {
    return std::string(reinterpret_cast<const char*>(data), len);
  };
  Set(first_keys, "cipher_key",
      Hex(raw_bytes(message_keys.cipher_key, sizeof(message_keys.cipher_key))));
  Set(first_keys, "mac_key", Hex(raw_bytes(message_keys.mac_key, sizeof(message_keys.mac_key))));
  Set(first_keys, "iv", Hex(raw_bytes(message_keys.iv, sizeof(message_keys.iv))));
  Set(first_keys, "counter", Num(message_keys.counter));
  Set(out, "message_keys", Obj(first_keys));

  // The chain X3DH derived for Bob's signed prekey as his first ratchet key (Alice receives on it
  // until Bob sends from a new ratchet key).
  ec_public_key* raw_spk = nullptr;
  if (curve_decode_point(&raw_spk, Bytes(keys.signed_prekey.public_key),
                         keys.signed_prekey.public_key.size(), context.get()) < 0) {
    return absl::InternalError("signed prekey does not decode");
  }
  SignalPtr<ec_public_key> spk(raw_spk);
  ratchet_chain_key* receiving = session_state_get_receiver_chain_key(state, spk.get());
  if (receiving == nullptr) return absl::InternalError("no receiving chain for bob's prekey");
  rc = ratchet_chain_key_get_key(receiving, &raw);
  if (rc < 0) return client::SignalError(rc, "receiving chain key");
  client::SecretBufferPtr receiving_key(raw);
  Set(out, "receiving_chain_key", Hex(client::ToString(receiving_key.get())));

  ASSIGN_OR_RETURN(std::string ratchet_private,
                   SerializeKey(ec_key_pair_get_private(
                       session_state_get_sender_ratchet_key_pair(state))));
  Set(out, "ratchet_key_private", Hex(ratchet_private));
  return out;
}

// The fields of a PreKeySignalMessage, as libsignal parses them.
absl::StatusOr<Struct> ParseFirstMessage(client::SignalContext& context, std::string_view bytes) {
  pre_key_signal_message* raw = nullptr;
  int rc = pre_key_signal_message_deserialize(&raw, Bytes(bytes), bytes.size(), context.get());
  if (rc < 0) return client::SignalError(rc, "pre_key_signal_message_deserialize");
  SignalPtr<pre_key_signal_message> message(raw);
  Struct out;
  Set(out, "version", Num(pre_key_signal_message_get_message_version(message.get())));
  Set(out, "registration_id", Num(pre_key_signal_message_get_registration_id(message.get())));
  Set(out, "one_time_prekey_id",
      Num(pre_key_signal_message_has_pre_key_id(message.get())
              ? pre_key_signal_message_get_pre_key_id(message.get())
              : 0));
  Set(out, "signed_prekey_id", Num(pre_key_signal_message_get_signed_pre_key_id(message.get())));
  ASSIGN_OR_RETURN(std::string base_key,
                   SerializeKey(pre_key_signal_message_get_base_key(message.get())));
  Set(out, "base_key", Hex(base_key));
  ASSIGN_OR_RETURN(std::string identity_key,
                   SerializeKey(pre_key_signal_message_get_identity_key(message.get())));
  Set(out, "identity_key", Hex(identity_key));
  const signal_message* inner = pre_key_signal_message_get_signal_message(message.get());
  const std::string serialized = client::ToString(ciphertext_message_get_serialized(
      reinterpret_cast<const ciphertext_message*>(inner)));
  Set(out, "signal_message", Hex(serialized));
  ASSIGN_OR_RETURN(std::string ratchet_key,
                   SerializeKey(signal_message_get_sender_ratchet_key(inner)));
  Set(out, "ratchet_key", Hex(ratchet_key));
  Set(out, "counter", Num(signal_message_get_counter(inner)));
  Set(out, "ciphertext", Hex(client::ToString(signal_message_get_body(inner))));
  // The MAC is the last 8 bytes: HMAC-SHA256(mac key, sender identity || receiver identity ||
  // version byte || protobuf), truncated.
  Set(out, "mac", Hex(serialized.substr(serialized.size() - 8)));
  return out;
}

// Decrypts `message` as Bob holding `keys` (in a fresh local store).
absl::StatusOr<client::Content> DecryptAsBob(X3dhKeys keys, std::string_view message) {
  ASSIGN_OR_RETURN(std::unique_ptr<client::SignalContext> context,
                   client::SignalContext::Create());
  RETURN_IF_ERROR(FillRecords(*context, keys));
  ScratchDir dir;
  if (dir.path().empty()) return absl::InternalError("mkdtemp");
  ASSIGN_OR_RETURN(std::unique_ptr<client::LocalStore> store,
                   client::LocalStore::Open(dir.path() + "/bob.db", ""));
  RETURN_IF_ERROR(store->SaveLocalIdentity(keys.bob, keys.bob_registration_id));
  RETURN_IF_ERROR(store->StoreSignedPreKey(keys.signed_prekey.id, keys.signed_prekey.record));
  RETURN_IF_ERROR(store->StorePreKey(keys.one_time_prekey.id, keys.one_time_prekey.record));
  ASSIGN_OR_RETURN(std::unique_ptr<client::DeviceCrypto> crypto,
                   client::DeviceCrypto::Create(*context, *store, kBob));
  return crypto->Decrypt(kAlice, client::Ciphertext{padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE,
                                                    std::string(message)});
}

// ---- Reading a file's inputs ----

absl::StatusOr<const Value*> At(const Struct& s, const std::string& path) {
  const Struct* current = &s;
  const Value* value = nullptr;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? dot : dot - start);
    auto it = current->fields().find(name);
    if (it == current->fields().end()) return absl::InvalidArgumentError("missing " + path);
    value = &it->second;
    if (dot == std::string::npos) return value;
    if (value->kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(path + ": not an object");
    }
    current = &value->struct_value();
    start = dot + 1;
  }
}
absl::StatusOr<std::string> HexAt(const Struct& s, const std::string& path) {
  ASSIGN_OR_RETURN(const Value* v, At(s, path));
  absl::StatusOr<std::string> bytes = FromHex(v->string_value());
  if (!bytes.ok()) return absl::InvalidArgumentError(path + ": not hex");
  return bytes;
}
absl::StatusOr<uint64_t> NumAt(const Struct& s, const std::string& path) {
  ASSIGN_OR_RETURN(const Value* v, At(s, path));
  if (v->kind_case() != Value::kNumberValue) {
    return absl::InvalidArgumentError(path + ": not a number");
  }
  return static_cast<uint64_t>(v->number_value());
}

absl::StatusOr<X3dhKeys> KeysOf(const Struct& file) {
  X3dhKeys keys;
  ASSIGN_OR_RETURN(keys.alice.public_key, HexAt(file, "alice.identity_public_key"));
  ASSIGN_OR_RETURN(keys.alice.private_key, HexAt(file, "alice.identity_private_key"));
  ASSIGN_OR_RETURN(uint64_t alice_registration, NumAt(file, "alice.registration_id"));
  keys.alice_registration_id = static_cast<uint32_t>(alice_registration);
  ASSIGN_OR_RETURN(keys.bob.public_key, HexAt(file, "bob.identity_public_key"));
  ASSIGN_OR_RETURN(keys.bob.private_key, HexAt(file, "bob.identity_private_key"));
  ASSIGN_OR_RETURN(uint64_t bob_registration, NumAt(file, "bob.registration_id"));
  keys.bob_registration_id = static_cast<uint32_t>(bob_registration);
  ASSIGN_OR_RETURN(uint64_t spk_id, NumAt(file, "bob.signed_prekey.id"));
  keys.signed_prekey.id = static_cast<uint32_t>(spk_id);
  ASSIGN_OR_RETURN(keys.signed_prekey.timestamp_ms, NumAt(file, "bob.signed_prekey.timestamp_ms"));
  ASSIGN_OR_RETURN(keys.signed_prekey.public_key, HexAt(file, "bob.signed_prekey.public_key"));
  ASSIGN_OR_RETURN(keys.signed_prekey.private_key, HexAt(file, "bob.signed_prekey.private_key"));
  ASSIGN_OR_RETURN(keys.signed_prekey.signature, HexAt(file, "bob.signed_prekey.signature"));
  ASSIGN_OR_RETURN(uint64_t opk_id, NumAt(file, "bob.one_time_prekey.id"));
  keys.one_time_prekey.id = static_cast<uint32_t>(opk_id);
  ASSIGN_OR_RETURN(keys.one_time_prekey.public_key, HexAt(file, "bob.one_time_prekey.public_key"));
  ASSIGN_OR_RETURN(keys.one_time_prekey.private_key,
                   HexAt(file, "bob.one_time_prekey.private_key"));
  return keys;
}

// Every leaf of `s` by dotted path ("bob.signed_prekey.id").
void Leaves(const Struct& s, const std::string& prefix, std::map<std::string, Value>& out) {
  for (const auto& [name, value] : s.fields()) {
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    if (value.kind_case() == Value::kStructValue) {
      Leaves(value.struct_value(), path, out);
    } else {
      out[path] = value;
    }
  }
}

std::string Show(const Value& v) {
  switch (v.kind_case()) {
    case Value::kStringValue: return v.string_value();
    case Value::kNumberValue: return absl::StrCat(v.number_value());
    case Value::kBoolValue: return v.bool_value() ? "true" : "false";
    default: return "?";
  }
}

}  // namespace

absl::StatusOr<Struct> MakeX3dhVectors() {
  ASSIGN_OR_RETURN(std::unique_ptr<client::SignalContext> context,
                   client::SignalContext::Create());
  DeterministicRandom random(kSeed);
  RETURN_IF_ERROR(random.Install(*context));

  // Every key through the SDK's own generators, in this order (the order fixes the bytes).
  X3dhKeys keys;
  ASSIGN_OR_RETURN(keys.alice, client::GenerateIdentityKeyPair(*context));
  ASSIGN_OR_RETURN(keys.alice_registration_id, client::GenerateRegistrationId(*context));
  ASSIGN_OR_RETURN(keys.bob, client::GenerateIdentityKeyPair(*context));
  ASSIGN_OR_RETURN(keys.bob_registration_id, client::GenerateRegistrationId(*context));
  ASSIGN_OR_RETURN(keys.signed_prekey, client::GenerateSignedPreKey(*context, keys.bob,
                                                                    kSignedPreKeyId,
                                                                    kSignedPreKeyTimestampMs));
  ASSIGN_OR_RETURN(std::vector<client::PreKey> one_time,
                   client::GeneratePreKeys(*context, kOneTimePreKeyId, 1));
  keys.one_time_prekey = one_time.at(0);

  ScratchDir dir;
  if (dir.path().empty()) return absl::InternalError("mkdtemp");
  ASSIGN_OR_RETURN(std::unique_ptr<client::LocalStore> store,
                   client::LocalStore::Open(dir.path() + "/alice.db", ""));
  RETURN_IF_ERROR(store->SaveLocalIdentity(keys.alice, keys.alice_registration_id));
  ASSIGN_OR_RETURN(std::unique_ptr<client::DeviceCrypto> crypto,
                   client::DeviceCrypto::Create(*context, *store, kAlice));

  // X3DH: libsignal draws Alice's base (ephemeral) key, then her first ratchet key, 32 bytes
  // each, and clamps them into private keys.
  const size_t draws_before = random.draws().size();
  RETURN_IF_ERROR(crypto->ProcessPreKeyBundle(BobBundle(keys)));
  if (random.draws().size() != draws_before + 2 || random.draws()[draws_before].size() != 32 ||
      random.draws()[draws_before + 1].size() != 32) {
    return absl::InternalError(absl::StrCat(
        "libsignal drew ", random.draws().size() - draws_before,
        " random values to build the session; expected 2 (base key, ratchet key)"));
  }
  auto clamp = [](std::string key) {
    key[0] = static_cast<char>(static_cast<uint8_t>(key[0]) & 248);
    key[31] = static_cast<char>((static_cast<uint8_t>(key[31]) & 127) | 64);
    return key;
  };
  const std::string base_private = clamp(random.draws()[draws_before]);
  const std::string ratchet_private = clamp(random.draws()[draws_before + 1]);
  ASSIGN_OR_RETURN(std::string base_public, PublicOf(*context, base_private));
  ASSIGN_OR_RETURN(std::string ratchet_public, PublicOf(*context, ratchet_private));
  ASSIGN_OR_RETURN(Struct session, AliceSession(*context, *store, keys));
  if (session.fields().at("ratchet_key_private").string_value() != ToHex(ratchet_private)) {
    return absl::InternalError("alice's ratchet key is not the second draw");
  }
  session.mutable_fields()->erase("ratchet_key_private");

  const client::Content content = FirstContent();
  ASSIGN_OR_RETURN(client::Ciphertext first, crypto->Encrypt(kBob, content));
  if (first.type != padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE) {
    return absl::InternalError("the first message is not a pre-key message");
  }
  if (random.draws().size() != draws_before + 2) {
    return absl::InternalError("libsignal drew random bytes to encrypt");
  }
  ASSIGN_OR_RETURN(Struct parsed, ParseFirstMessage(*context, first.bytes));
  if (parsed.fields().at("base_key").string_value() != ToHex(base_public)) {
    return absl::InternalError("the message's base key is not the first draw's");
  }
  // The vector must be what it claims: Bob, holding only the keys below, reads it.
  ASSIGN_OR_RETURN(client::Content decrypted, DecryptAsBob(keys, first.bytes));
  if (decrypted.kind != content.kind || decrypted.body != content.body) {
    return absl::InternalError("bob does not read the first message");
  }

  Struct alice;
  Set(alice, "user_id", Str(kAlice.user_id));
  Set(alice, "device_id", Num(kAlice.device_id));
  Set(alice, "identity_private_key", Hex(keys.alice.private_key));
  Set(alice, "identity_public_key", Hex(keys.alice.public_key));
  Set(alice, "registration_id", Num(keys.alice_registration_id));
  Set(alice, "base_key_private", Hex(base_private));
  Set(alice, "base_key_public", Hex(base_public));
  Set(alice, "ratchet_key_private", Hex(ratchet_private));
  Set(alice, "ratchet_key_public", Hex(ratchet_public));

  Struct spk;
  Set(spk, "id", Num(keys.signed_prekey.id));
  Set(spk, "timestamp_ms", Num(static_cast<double>(keys.signed_prekey.timestamp_ms)));
  Set(spk, "private_key", Hex(keys.signed_prekey.private_key));
  Set(spk, "public_key", Hex(keys.signed_prekey.public_key));
  Set(spk, "signature", Hex(keys.signed_prekey.signature));
  Struct opk;
  Set(opk, "id", Num(keys.one_time_prekey.id));
  Set(opk, "private_key", Hex(keys.one_time_prekey.private_key));
  Set(opk, "public_key", Hex(keys.one_time_prekey.public_key));
  Struct bob;
  Set(bob, "user_id", Str(kBob.user_id));
  Set(bob, "device_id", Num(kBob.device_id));
  Set(bob, "identity_private_key", Hex(keys.bob.private_key));
  Set(bob, "identity_public_key", Hex(keys.bob.public_key));
  Set(bob, "registration_id", Num(keys.bob_registration_id));
  Set(bob, "signed_prekey", Obj(spk));
  Set(bob, "one_time_prekey", Obj(opk));

  Struct plaintext;
  Set(plaintext, "kind", Num(static_cast<int>(content.kind)));
  Struct fields;
  Set(fields, "to_user_id", Str(kBob.user_id));
  Set(fields, "text", Str(kText));
  Set(plaintext, "fields", Obj(fields));
  Set(plaintext, "body", Hex(content.body));
  ASSIGN_OR_RETURN(std::string padded, client::EncodeContent(content));
  Set(plaintext, "padded", Hex(padded));

  Struct out;
  Set(out, "description",
      Str("Padlock X3DH and first message (docs/PROTOCOL.md 'Test vectors'): alice (device 1) "
          "claims bob's bundle (his identity key, signed prekey and one-time prekey), runs X3DH "
          "with her identity key and base key, and sends plaintext.padded as her first message, "
          "a PreKeySignalMessage (envelope type 3). Every byte follows from the keys: with "
          "alice's base key and first ratchet key as given, an implementation makes exactly "
          "prekey_signal_message. alice_session is her session after X3DH, before encrypting "
          "(root key and sending chain after her first DH ratchet step; the message keys of "
          "message 0; receiving_chain_key = the chain X3DH derives for bob's signed prekey). "
          "parsed = the message's fields."));
  Set(out, "generator", Str("padlock-vectors (tests/conformance)"));
  Set(out, "random",
      Str(absl::StrCat("libsignal-protocol-c with a seeded random source (SHA-256(seed || u64 "
                       "BE block index) blocks, seed '",
                       kSeed,
                       "'); only for regenerating this file: a third party uses the keys")));
  Set(out, "alice", Obj(alice));
  Set(out, "bob", Obj(bob));
  Set(out, "plaintext", Obj(plaintext));
  Set(out, "alice_session", Obj(session));
  Set(out, "envelope_type", Num(static_cast<int>(first.type)));
  Set(out, "prekey_signal_message", Hex(first.bytes));
  Set(out, "parsed", Obj(parsed));
  return out;
}

std::vector<std::string> CheckX3dhVectors(const Struct& file) {
  std::vector<std::string> failures;
  absl::StatusOr<Struct> ours = MakeX3dhVectors();
  if (!ours.ok()) return {absl::StrCat("cannot regenerate ours: ", ours.status().ToString())};

  // 1. The same keys, plaintext and message bytes as ours (our SDK made them from these keys).
  //    alice_session and parsed are optional in a third party's file: compared when present.
  std::map<std::string, Value> expected;
  std::map<std::string, Value> given;
  Leaves(*ours, "", expected);
  Leaves(file, "", given);
  for (const auto& [path, value] : expected) {
    if (path == "description" || path == "generator" || path == "random") continue;
    const bool optional = path.rfind("alice_session.", 0) == 0 || path.rfind("parsed.", 0) == 0;
    auto it = given.find(path);
    if (it == given.end()) {
      if (!optional) failures.push_back(path + ": missing");
      continue;
    }
    if (Show(it->second) != Show(value)) {
      failures.push_back(absl::StrCat(path, ": differs from ours: ", Show(value)));
    }
  }

  // 2. Bob, holding the file's keys, decrypts the file's message to the file's plaintext, and the
  //    message names alice's identity key and base key. What a peer needs from a first message.
  absl::StatusOr<X3dhKeys> keys = KeysOf(file);
  absl::StatusOr<std::string> message = HexAt(file, "prekey_signal_message");
  absl::StatusOr<uint64_t> kind = NumAt(file, "plaintext.kind");
  absl::StatusOr<std::string> body = HexAt(file, "plaintext.body");
  absl::StatusOr<std::string> padded = HexAt(file, "plaintext.padded");
  if (!keys.ok() || !message.ok() || !kind.ok() || !body.ok() || !padded.ok()) {
    failures.push_back(absl::StrCat(
        "malformed: ", (!keys.ok() ? keys.status() : !message.ok() ? message.status()
                        : !kind.ok() ? kind.status() : !body.ok() ? body.status()
                        : padded.status()).ToString()));
    return failures;
  }
  absl::StatusOr<client::Content> decrypted = DecryptAsBob(*keys, *message);
  if (!decrypted.ok()) {
    failures.push_back(absl::StrCat("prekey_signal_message: bob cannot decrypt it: ",
                                    decrypted.status().ToString()));
  } else {
    absl::StatusOr<std::string> repadded = client::EncodeContent(*decrypted);
    if (static_cast<uint64_t>(decrypted->kind) != *kind || decrypted->body != *body ||
        !repadded.ok() || *repadded != *padded) {
      failures.push_back("prekey_signal_message: bob decrypts it, but not to plaintext.padded");
    }
  }
  absl::StatusOr<std::unique_ptr<client::SignalContext>> context =
      client::SignalContext::Create();
  if (context.ok()) {
    absl::StatusOr<Struct> parsed = ParseFirstMessage(**context, *message);
    absl::StatusOr<std::string> base_key = HexAt(file, "alice.base_key_public");
    if (!parsed.ok()) {
      failures.push_back("prekey_signal_message: does not parse: " + parsed.status().ToString());
    } else {
      if (parsed->fields().at("identity_key").string_value() != ToHex(keys->alice.public_key)) {
        failures.push_back("prekey_signal_message: identity key is not alice.identity_public_key");
      }
      if (!base_key.ok() || parsed->fields().at("base_key").string_value() != ToHex(*base_key)) {
        failures.push_back("prekey_signal_message: base key is not alice.base_key_public");
      }
    }
  }
  return failures;
}

}  // namespace padlock::vectors
