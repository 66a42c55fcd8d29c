// docs/vectors/*.json against the code: every vector's bytes are rebuilt from its fields with the
// SDK's and the services' encoders and must match exactly; every signature must verify with the
// services' verifier, carry its key's sign bit in bit 255, and fail once that bit is flipped.
// A change to any encoder (one byte of a label, a length's byte order, a bucket) fails here.

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "clients/sdk/content.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "common/statement/signature.h"
#include "gtest/gtest.h"
#include "tests/conformance/vectors.h"

namespace padlock::vectors {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

Struct Load(const std::string& name) {
  std::ifstream in(std::string(PADLOCK_VECTORS_DIR) + "/" + name);
  std::stringstream s;
  s << in.rdbuf();
  EXPECT_FALSE(s.str().empty()) << "cannot read docs/vectors/" << name;
  absl::StatusOr<Struct> parsed = FromJson(s.str());
  EXPECT_TRUE(parsed.ok()) << name << ": " << parsed.status();
  return parsed.ok() ? *parsed : Struct();
}

std::string Str(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? "" : it->second.string_value();
}
std::string HexField(const Struct& s, const std::string& name) {
  absl::StatusOr<std::string> bytes = FromHex(Str(s, name));
  EXPECT_TRUE(bytes.ok()) << name << ": " << bytes.status();
  return bytes.ok() ? *bytes : "";
}
const google::protobuf::RepeatedPtrField<Value>& List(const Struct& s, const std::string& name) {
  static const google::protobuf::ListValue kEmpty;
  auto it = s.fields().find(name);
  return it == s.fields().end() ? kEmpty.values() : it->second.list_value().values();
}

TEST(Vectors, EveryStatementEncodesToItsBytesAndItsSignatureVerifies) {
  const Struct file = Load("statements.json");
  ASSERT_GE(List(file, "vectors").size(), 7);
  absl::StatusOr<std::unique_ptr<client::SignalContext>> context = client::SignalContext::Create();
  ASSERT_TRUE(context.ok()) << context.status();
  bool saw_bit_set = false;
  bool saw_bit_clear = false;
  for (const Value& v : List(file, "vectors")) {
    const Struct& vector = v.struct_value();
    SCOPED_TRACE(Str(vector, "name"));
    absl::StatusOr<std::string> encoded = EncodeStatementVector(vector);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    const std::string message = HexField(vector, "message");
    EXPECT_EQ(ToHex(*encoded), ToHex(message));

    const std::string public_key = HexField(vector, "signer_public_key");
    const std::string private_key = HexField(vector, "signer_private_key");
    const std::string signature = HexField(vector, "signature");
    ASSERT_EQ(signature.size(), 64u);
    EXPECT_TRUE(statement::VerifySignature(public_key, message, signature));
    const int bit = static_cast<uint8_t>(signature[63]) >> 7;
    EXPECT_EQ(bit, static_cast<int>(vector.fields().at("signature_bit_255").number_value()));
    (bit ? saw_bit_set : saw_bit_clear) = true;
    // The sign-bit rule: with bit 255 flipped the signature no longer verifies.
    std::string flipped = signature;
    flipped[63] = static_cast<char>(static_cast<uint8_t>(flipped[63]) ^ 0x80);
    EXPECT_FALSE(statement::VerifySignature(public_key, message, flipped));
    // The private key is the public key's: a fresh signature by it verifies and carries the same
    // sign bit (a property of the key, not of the signature).
    absl::StatusOr<std::string> fresh = client::Sign(**context, private_key, message);
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_TRUE(statement::VerifySignature(public_key, message, *fresh));
    EXPECT_EQ(static_cast<uint8_t>((*fresh)[63]) >> 7, bit);
  }
  EXPECT_TRUE(saw_bit_set) << "no vector shows a key whose sign bit is 1";
  EXPECT_TRUE(saw_bit_clear) << "no vector shows a key whose sign bit is 0";
}

TEST(Vectors, EveryContentEncodesToItsBodyAndPaddedBytes) {
  const Struct file = Load("content.json");
  ASSERT_GE(List(file, "vectors").size(), 9);
  for (const Value& v : List(file, "vectors")) {
    const Struct& vector = v.struct_value();
    SCOPED_TRACE(Str(vector, "name"));
    const int kind = static_cast<int>(vector.fields().at("kind").number_value());
    absl::StatusOr<std::string> body = EncodeContentBodyVector(vector);
    ASSERT_TRUE(body.ok()) << body.status();
    EXPECT_EQ(ToHex(*body), Str(vector, "body"));
    absl::StatusOr<std::string> padded =
        client::EncodeContent({static_cast<client::ContentKind>(kind), *body});
    ASSERT_TRUE(padded.ok()) << padded.status();
    EXPECT_EQ(ToHex(*padded), Str(vector, "padded"));
    absl::StatusOr<client::Content> decoded = client::DecodeContent(HexField(vector, "padded"));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(static_cast<int>(decoded->kind), kind);
    EXPECT_EQ(decoded->body, *body);
  }
}

TEST(Vectors, EveryRejectedContentIsRefusedAsCorrupt) {
  const Struct file = Load("content.json");
  ASSERT_GE(List(file, "rejected").size(), 5);
  for (const Value& v : List(file, "rejected")) {
    SCOPED_TRACE(Str(v.struct_value(), "name"));
    EXPECT_EQ(client::DecodeContent(HexField(v.struct_value(), "padded")).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

// x3dh.json: regenerated by the SDK through libsignal on the seeded random source, it must equal
// the checked-in file key for key and byte for byte; then Bob, holding only the file's keys, must
// read the file's first message.
TEST(Vectors, X3dhFirstMessageIsWhatTheSdkMakesFromTheFixedKeys) {
  const Struct file = Load("x3dh.json");
  absl::StatusOr<Struct> ours = MakeX3dhVectors();
  ASSERT_TRUE(ours.ok()) << ours.status();
  const Struct& message_fields = file.fields().at("parsed").struct_value();
  EXPECT_EQ(Str(*ours, "prekey_signal_message"), Str(file, "prekey_signal_message"));
  EXPECT_EQ(Str(ours->fields().at("parsed").struct_value(), "base_key"),
            Str(message_fields, "base_key"));
  EXPECT_EQ(Str(file.fields().at("alice").struct_value(), "base_key_public"),
            Str(message_fields, "base_key"));
  // Everything else too (keys, session outputs), through the conformance check.
  for (const std::string& failure : CheckX3dhVectors(file)) ADD_FAILURE() << failure;
}

TEST(Vectors, X3dhSeededGenerationIsDeterministic) {
  absl::StatusOr<Struct> first = MakeX3dhVectors();
  absl::StatusOr<Struct> second = MakeX3dhVectors();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(Str(*first, "prekey_signal_message"), Str(*second, "prekey_signal_message"));
  EXPECT_EQ(CheckX3dhVectors(*first), std::vector<std::string>{});
}

// What a third party's output looks like to the check: a message changed in one byte is not ours
// and Bob cannot read it (its MAC fails); a message from other keys is not ours either.
TEST(Vectors, X3dhCheckRejectsAMessageChangedInOneByte) {
  Struct file = Load("x3dh.json");
  std::string message = HexField(file, "prekey_signal_message");
  ASSERT_GT(message.size(), 20u);
  message[message.size() - 12] ^= 0x01;  // inside the ciphertext
  (*file.mutable_fields())["prekey_signal_message"].set_string_value(ToHex(message));
  const std::vector<std::string> failures = CheckX3dhVectors(file);
  bool differs = false;
  bool undecryptable = false;
  for (const std::string& f : failures) {
    differs |= f.rfind("prekey_signal_message: differs from ours", 0) == 0;
    undecryptable |= f.rfind("prekey_signal_message: bob cannot decrypt it", 0) == 0;
  }
  EXPECT_TRUE(differs) << ::testing::PrintToString(failures);
  EXPECT_TRUE(undecryptable) << ::testing::PrintToString(failures);
}

TEST(Vectors, X3dhCheckNamesAPlaintextBobDoesNotGet) {
  Struct file = Load("x3dh.json");
  Struct& plaintext = *(*file.mutable_fields())["plaintext"].mutable_struct_value();
  std::string padded = HexField(plaintext, "padded");
  padded[8] ^= 0x01;
  (*plaintext.mutable_fields())["padded"].set_string_value(ToHex(padded));
  const std::vector<std::string> failures = CheckX3dhVectors(file);
  EXPECT_NE(std::find(failures.begin(), failures.end(),
                      "prekey_signal_message: bob decrypts it, but not to plaintext.padded"),
            failures.end())
      << ::testing::PrintToString(failures);
}

}  // namespace
}  // namespace padlock::vectors
