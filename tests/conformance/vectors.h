#pragma once
// Test vectors of the client contract (docs/PROTOCOL.md, docs/vectors/*.json): how they are made
// (padlock-vectors) and how they are checked against the code (contract_unit_test). A vector names
// its inputs as JSON fields; the functions here rebuild the bytes from those fields with the same
// encoders the SDK and the services use, so a vector that no longer matches the code fails.
//
// JSON is read and written with protobuf's google.protobuf.Struct (numbers are doubles: every
// integer in a vector is below 2^53). Binary values are lowercase hex strings.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clients/sdk/crypto_provider.h"
#include "google/protobuf/struct.pb.h"

namespace padlock::vectors {

// statements.json: every signed statement (and the signed prekey), each with its fields, the
// exact statement bytes, and the signer's keys and a signature made by our code.
absl::StatusOr<google::protobuf::Struct> MakeStatementVectors(client::SignalContext& context);
// content.json: one padded content per kind, the unsupported receipt, a kind from the future,
// and contents a receiver must reject.
absl::StatusOr<google::protobuf::Struct> MakeContentVectors(client::SignalContext& context);
// x3dh.json: a full X3DH and first message with fixed keys — Alice's identity, registration id,
// base (ephemeral) key and first ratchet key; Bob's identity, registration id, signed prekey (with
// its signature) and one-time prekey; a padded text; the PreKeySignalMessage; Alice's root key,
// chain keys and first message keys. Made by the SDK through libsignal-protocol-c on a seeded
// random source (deterministic_random.h), so every call returns the same bytes. Internal when
// libsignal draws randomness other than as expected, or Bob cannot read the result.
absl::StatusOr<google::protobuf::Struct> MakeX3dhVectors();

// The statement bytes a vector's `type` and `fields` encode to (the services' encoders).
// InvalidArgument for an unknown type or a missing field.
absl::StatusOr<std::string> EncodeStatementVector(const google::protobuf::Struct& vector);
// The body bytes a content vector's `kind` and `fields` encode to (the SDK's body encoders).
absl::StatusOr<std::string> EncodeContentBodyVector(const google::protobuf::Struct& vector);

// Conformance: checks a statements.json / content.json in the vectors' format — the checked-in
// ones, or ones a third-party implementation wrote from its own encoders and signer — against
// this code: every `message` / `body` / `padded` must equal what our encoders make from the
// fields, every signature must verify with the services' verifier (and fail with bit 255
// flipped), every `rejected` content must be refused. Returns one line per failure (empty: all
// conform).
std::vector<std::string> CheckStatementVectors(const google::protobuf::Struct& file);
std::vector<std::string> CheckContentVectors(const google::protobuf::Struct& file);
// x3dh.json: every key, the plaintext and the message bytes must equal what MakeX3dhVectors makes
// (alice_session and parsed too, when present), and Bob, holding the file's own keys, must
// decrypt the file's prekey_signal_message to its plaintext.padded; the message must carry
// alice's identity key and base key. A third party keeps our keys and writes its own message.
std::vector<std::string> CheckX3dhVectors(const google::protobuf::Struct& file);

// Lowercase hex ⇄ bytes. FromHex: InvalidArgument for odd length or a non-hex digit.
std::string ToHex(std::string_view bytes);
absl::StatusOr<std::string> FromHex(std::string_view hex);

std::string ToJson(const google::protobuf::Struct& s);
absl::StatusOr<google::protobuf::Struct> FromJson(const std::string& json);

}  // namespace padlock::vectors
