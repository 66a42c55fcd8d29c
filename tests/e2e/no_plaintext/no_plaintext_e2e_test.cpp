// The servers never see plaintext. Two devices with real Signal sessions (X3DH, Double Ratchet,
// Sender Keys from libsignal-protocol-c via the client SDK) talk through the real backend (four
// binaries, Redis, PostgreSQL) with a recording TCP relay in front of the plaintext gateway. After
// a scenario with known plaintexts — 1:1 messages both ways, a sender-key distribution and a group
// message, some held in an offline device's inbox — every byte the gateway received or sent,
// every Redis value and every PostgreSQL row is searched for each plaintext in raw, hex and
// base64 form: none may appear. Every stored inbox payload must parse as a libsignal message of
// the wire type its envelope claims.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/sdk/identity.h"
#include "services/common/redis/redis_client.h"
#include "services/common/statement/signed_statement.h"
#include "tests/e2e/gateway/e2e_client.h"
#include "tests/harness/stack.h"
#include "tests/harness/tcp_proxy.h"
#include "tests/unit/clients/test_device.h"

extern "C" {
#include <signal/protocol.h>
#include <signal/signal_protocol.h>
}

namespace padlock::e2e {
namespace {

using client::Ciphertext;
using client::Content;
using client::ContentKind;
using client::RemoteAddress;

// Each plaintext long and unique enough that an accidental match is impossible.
const std::vector<std::string> kPlaintexts = {
    "Meet me at the old lighthouse at seven, bring the blue folder",
    "The second key is under the third stone of the garden path",
    "Shopping list: saffron, cardamom, orange blossom water, pistachios",
    "Reply from bob: the lighthouse is closed on Tuesdays, try the pier",
    "Group note: quarterly numbers look great, keep them to yourselves",
};

// A user with one real Signal device: its SDK store and crypto, registered through the gateway.
struct Person {
  std::string user;
  std::unique_ptr<client::testing::TestDevice> device;
  std::string token;
};

class NoPlaintextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stack = testing::PadlockStack::Start({});
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    proxy_ = std::make_unique<testing::TcpProxy>(stack_->gateway_port());
    stub_ = pb::Gateway::NewStub(
        grpc::CreateChannel(proxy_->target(), grpc::InsecureChannelCredentials()));
    auto signal = client::SignalContext::Create();
    ASSERT_TRUE(signal.ok());
    signal_ = *std::move(signal);
  }

  std::string Sign(Person& p, const std::string& bytes) {
    auto identity = p.device->store().LoadLocalIdentity();
    EXPECT_TRUE(identity.ok());
    auto signature = client::Sign(*signal_, identity->private_key, bytes);
    EXPECT_TRUE(signature.ok());
    return signature.ok() ? *signature : "";
  }

  // Registers a fresh device as `user` (device 1) through the gateway and logs it in.
  Person Register(const std::string& user) {
    Person p;
    p.user = user;
    p.device = std::make_unique<client::testing::TestDevice>(
        *signal_, absl::StrCat(dir_.path(), "/", user, ".db"), RemoteAddress{user, 1}, 20);
    const pb::PreKeyBundle own = p.device->ClaimBundle();  // our public keys, as others see them
    pb::RegisterRequest request;
    request.set_user_id(user);
    request.set_identity_key(own.identity_key());
    request.set_registration_id(own.registration_id());
    *request.mutable_signed_prekey() = own.signed_prekey();
    for (const auto& key : p.device->pre_keys()) {
      auto* k = request.add_one_time_prekeys();
      k->set_key_id(key.id);
      k->set_public_key(key.public_key);
    }
    statement::DeviceListEntry entry{1, own.identity_key(), own.registration_id()};
    auto list_bytes = statement::EncodeDeviceList(user, 1, {entry});
    EXPECT_TRUE(list_bytes.ok());
    auto* list = request.mutable_device_list();
    list->mutable_list()->set_user_id(user);
    list->mutable_list()->set_version(1);
    auto* e = list->mutable_list()->add_devices();
    e->set_device_id(1);
    e->set_identity_key(own.identity_key());
    e->set_registration_id(own.registration_id());
    list->set_signature(Sign(p, *list_bytes));
    request.set_registration_signature(
        Sign(p, statement::EncodeRegistration(user, 1, own.identity_key(), own.registration_id(),
                                              own.signed_prekey().key_id(),
                                              own.signed_prekey().public_key())));
    pb::RegisterResponse response;
    grpc::ClientContext context;
    grpc::Status status = stub_->Register(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    // Log in: challenge, sign the login statement, token.
    pb::GetChallengeRequest challenge_request;
    challenge_request.mutable_device()->set_user_id(user);
    challenge_request.mutable_device()->set_device_id(1);
    pb::GetChallengeResponse challenge;
    grpc::ClientContext c1;
    EXPECT_TRUE(stub_->GetChallenge(&c1, challenge_request, &challenge).ok());
    pb::LoginRequest login;
    *login.mutable_device() = challenge_request.device();
    login.set_challenge(challenge.challenge());
    login.set_signature(
        Sign(p, statement::EncodeLogin(user, 1, challenge.challenge(), challenge.audience())));
    pb::LoginResponse session;
    grpc::ClientContext c2;
    status = stub_->Login(&c2, login, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    p.token = session.token();
    return p;
  }

  // Claims `to`'s bundle through the gateway and starts a session with it.
  void StartSession(Person& from, const Person& to) {
    pb::GatewayClaimBundlesRequest request;
    request.set_user_id(to.user);
    pb::ClaimBundlesResponse response;
    grpc::ClientContext context;
    Authorize(context, from.token);
    ASSERT_TRUE(stub_->ClaimBundles(&context, request, &response).ok());
    ASSERT_EQ(response.bundles_size(), 1);
    ASSERT_TRUE(from.device->crypto().ProcessPreKeyBundle(response.bundles(0)).ok());
  }

  pb::OutgoingMessage Encrypted(Person& from, const Person& to, const Content& content) {
    auto ciphertext = from.device->crypto().Encrypt({to.user, 1}, content);
    EXPECT_TRUE(ciphertext.ok()) << ciphertext.status();
    pb::OutgoingMessage message;
    message.set_message_id(MessageId(absl::StrCat(from.user, content.body)));
    auto* r = message.add_recipients();
    r->mutable_device()->set_user_id(to.user);
    r->mutable_device()->set_device_id(1);
    r->set_registration_id(to.device->ClaimBundle().registration_id());
    r->set_type(ciphertext->type);
    r->set_ciphertext(ciphertext->bytes);
    return message;
  }

  void MustSend(DeviceConn& conn, const pb::OutgoingMessage& message) {
    auto result = conn.Result(conn.Send(message));
    ASSERT_TRUE(result.has_value());
    ASSERT_TRUE(result->has_accepted()) << result->DebugString();
  }

  // Every value Redis holds, as one blob per key.
  std::vector<std::string> RedisValues() {
    redis::RedisOptions options;
    options.addresses = {stack_->redis_addresses()};
    auto client = redis::RedisClient::Create(options);
    EXPECT_TRUE(client.ok());
    std::vector<std::string> blobs;
    auto keys = stack_->AllRedisKeys();
    EXPECT_TRUE(keys.ok());
    for (const std::string& key : *keys) {
      auto type = (*client)->Execute(redis::Command::Keyed({"TYPE", key}, 1, true));
      std::string blob = key;
      auto flatten = [&](const redis::RedisReply& reply, auto&& self) -> void {
        blob += reply.str();
        for (const auto& element : reply.elements()) self(element, self);
      };
      const std::string t = type.ok() ? type->str() : "";
      std::vector<std::string> command;
      if (t == "string") command = {"GET", key};
      if (t == "hash") command = {"HGETALL", key};
      if (t == "stream") command = {"XRANGE", key, "-", "+"};
      if (t == "set") command = {"SMEMBERS", key};
      if (t == "zset") command = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
      if (t == "list") command = {"LRANGE", key, "0", "-1"};
      EXPECT_FALSE(command.empty()) << "unexpected type " << t << " of " << key;
      if (command.empty()) continue;
      auto value = (*client)->Execute(redis::Command::Keyed(command, 1, true));
      EXPECT_TRUE(value.ok());
      if (value.ok()) flatten(*value, flatten);
      blobs.push_back(std::move(blob));
    }
    return blobs;
  }

  // Every stored inbox envelope parses as the libsignal message its type claims.
  void ExpectStoredPayloadsAreSignalMessages(const std::string& user, size_t expected) {
    redis::RedisOptions options;
    options.addresses = {stack_->redis_addresses()};
    auto client = redis::RedisClient::Create(options);
    ASSERT_TRUE(client.ok());
    auto entries = (*client)->Execute(
        redis::Command::Keyed({"XRANGE", absl::StrCat("q:{", user, ":1}"), "-", "+"}, 1, true));
    ASSERT_TRUE(entries.ok());
    ASSERT_EQ(entries->elements().size(), expected);
    for (const auto& entry : entries->elements()) {
      const auto& fields = entry.elements().at(1).elements();
      pb::Envelope envelope;
      for (size_t i = 0; i + 1 < fields.size(); i += 2) {
        if (fields[i].str() == "e") {
          ASSERT_TRUE(envelope.ParseFromString(fields[i + 1].str()));
        }
      }
      const std::string& c = envelope.ciphertext();
      const auto* data = reinterpret_cast<const uint8_t*>(c.data());
      signal_context* context = signal_->get();
      int rc = -1;
      if (envelope.type() == pb::ENVELOPE_TYPE_PREKEY_MESSAGE) {
        pre_key_signal_message* m = nullptr;
        rc = pre_key_signal_message_deserialize(&m, data, c.size(), context);
        if (m) SIGNAL_UNREF(m);
      } else if (envelope.type() == pb::ENVELOPE_TYPE_MESSAGE) {
        signal_message* m = nullptr;
        rc = signal_message_deserialize(&m, data, c.size(), context);
        if (m) SIGNAL_UNREF(m);
      } else {
        ADD_FAILURE() << "unexpected stored type " << envelope.type();
      }
      EXPECT_EQ(rc, 0) << "stored payload of type " << envelope.type()
                       << " does not parse as that libsignal message";
    }
  }

  std::string PostgresDump() {
    const std::string out = absl::StrCat(dir_.path(), "/dump.sql");
    const std::string command = absl::StrCat("pg_dump --data-only --inserts -d '",
                                             stack_->postgres_dsn(), "' > ", out);
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    FILE* f = std::fopen(out.c_str(), "rb");
    std::string dump;
    char buffer[65536];
    size_t n;
    while (f && (n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) dump.append(buffer, n);
    if (f) std::fclose(f);
    EXPECT_NE(dump.find("INSERT INTO"), std::string::npos) << "empty dump";
    return dump;
  }

  // The forms a leak could take: raw, hex (both cases), base64 (standard and URL-safe) at each
  // of the three alignments (edges trimmed, as they depend on neighbouring bytes).
  static std::vector<std::string> Forms(const std::string& plaintext) {
    std::vector<std::string> forms = {plaintext, absl::BytesToHexString(plaintext)};
    std::string upper = forms[1];
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    forms.push_back(upper);
    for (int shift = 0; shift < 3; ++shift) {
      const std::string shifted = std::string(static_cast<size_t>(shift), '\0') + plaintext;
      for (const std::string& b64 :
           {absl::Base64Escape(shifted), absl::WebSafeBase64Escape(shifted)}) {
        forms.push_back(b64.substr(4, b64.size() - 8));
      }
    }
    return forms;
  }


 public:
  // "<plaintext> as <form>" for every plaintext form found in `haystack`.
  static std::vector<std::string> FindLeaks(const std::string& haystack) {
    std::vector<std::string> leaks;
    for (const std::string& plaintext : kPlaintexts) {
      for (const std::string& form : Forms(plaintext)) {
        if (haystack.find(form) != std::string::npos) {
          leaks.push_back(absl::StrCat("\"", plaintext, "\" as ", form));
        }
      }
    }
    return leaks;
  }

  static void ExpectNoPlaintext(const std::string& where, const std::string& haystack) {
    for (const std::string& leak : FindLeaks(haystack)) ADD_FAILURE() << where << " contains " << leak;
  }

 protected:
  testing::TempDir dir_;
  std::unique_ptr<testing::PadlockStack> stack_;
  std::unique_ptr<testing::TcpProxy> proxy_;
  std::unique_ptr<pb::Gateway::Stub> stub_;
  std::unique_ptr<client::SignalContext> signal_;
};

// The detector itself: a plaintext hidden in each form, at each base64 alignment, inside other
// bytes, is found.
TEST(NoPlaintextDetector, FindsEveryForm) {
  const std::string p = kPlaintexts[0];
  for (const std::string& leak :
       {p, absl::BytesToHexString(p), absl::Base64Escape(p), absl::Base64Escape("x" + p),
        absl::WebSafeBase64Escape("xy" + p)}) {
    EXPECT_FALSE(NoPlaintextTest::FindLeaks("\x01junk" + leak + "tail").empty()) << leak;
  }
  EXPECT_TRUE(NoPlaintextTest::FindLeaks(absl::Base64Escape(std::string(4096, '\x7f'))).empty());
}

TEST_F(NoPlaintextTest, ServersSeeOnlyCiphertext) {
  Person alice = Register("alice");
  Person bob = Register("bob");
  auto a = DeviceConn::Open(*stub_, alice.token);
  ASSERT_TRUE(a->WaitConnected());

  // bob is offline: alice's first three messages wait in his inbox (pre-key messages: X3DH).
  StartSession(alice, bob);
  for (int i = 0; i < 3; ++i) {
    MustSend(*a, Encrypted(alice, bob, {ContentKind::kText, kPlaintexts[i]}));
  }
  ExpectStoredPayloadsAreSignalMessages("bob", 3);
  for (const std::string& blob : RedisValues()) ExpectNoPlaintext("a Redis value", blob);

  // bob comes online, decrypts them in order, and replies (a ratchet message).
  auto b = DeviceConn::Open(*stub_, bob.token);
  ASSERT_TRUE(b->WaitConnected());
  ASSERT_TRUE(b->WaitEnvelopes(3));
  for (int i = 0; i < 3; ++i) {
    const pb::Envelope e = b->Envelopes()[i];
    EXPECT_EQ(e.type(), pb::ENVELOPE_TYPE_PREKEY_MESSAGE);
    auto content = bob.device->crypto().Decrypt({alice.user, 1}, {e.type(), e.ciphertext()});
    ASSERT_TRUE(content.ok()) << content.status();
    EXPECT_EQ(content->body, kPlaintexts[i]);
  }
  MustSend(*b, Encrypted(bob, alice, {ContentKind::kText, kPlaintexts[3]}));
  ASSERT_TRUE(a->WaitEnvelopes(1));
  const pb::Envelope reply = a->Envelopes()[0];
  EXPECT_EQ(reply.type(), pb::ENVELOPE_TYPE_MESSAGE);
  auto decrypted = alice.device->crypto().Decrypt({bob.user, 1}, {reply.type(), reply.ciphertext()});
  ASSERT_TRUE(decrypted.ok()) << decrypted.status();
  EXPECT_EQ(decrypted->body, kPlaintexts[3]);

  // A group: alice's sender key travels inside a 1:1 message, then one group message.
  auto distribution = alice.device->crypto().GroupDistribution("team");
  ASSERT_TRUE(distribution.ok());
  MustSend(*a, Encrypted(alice, bob, {ContentKind::kGroupKeyDistribution, distribution->bytes}));
  auto group = alice.device->crypto().GroupEncrypt("team", {ContentKind::kText, kPlaintexts[4]});
  ASSERT_TRUE(group.ok());
  pb::OutgoingMessage group_message;
  group_message.set_message_id(MessageId("group-1"));
  group_message.set_shared_ciphertext(group->bytes);
  group_message.set_shared_type(group->type);
  auto* r = group_message.add_recipients();
  r->mutable_device()->set_user_id(bob.user);
  r->mutable_device()->set_device_id(1);
  r->set_registration_id(bob.device->ClaimBundle().registration_id());
  MustSend(*a, group_message);
  ASSERT_TRUE(b->WaitEnvelopes(5));
  const pb::Envelope key_envelope = b->Envelopes()[3];
  auto key_content =
      bob.device->crypto().Decrypt({alice.user, 1}, {key_envelope.type(), key_envelope.ciphertext()});
  ASSERT_TRUE(key_content.ok()) << key_content.status();
  ASSERT_EQ(key_content->kind, ContentKind::kGroupKeyDistribution);
  ASSERT_TRUE(bob.device->crypto()
                  .ProcessGroupDistribution("team", {alice.user, 1},
                                            {distribution->type, key_content->body})
                  .ok());
  const pb::Envelope group_envelope = b->Envelopes()[4];
  EXPECT_EQ(group_envelope.type(), pb::ENVELOPE_TYPE_SENDER_KEY_MESSAGE);
  auto group_content = bob.device->crypto().GroupDecrypt(
      "team", {alice.user, 1}, {group_envelope.type(), group_envelope.ciphertext()});
  ASSERT_TRUE(group_content.ok()) << group_content.status();
  EXPECT_EQ(group_content->body, kPlaintexts[4]);

  // Everything the servers saw or kept.
  ExpectNoPlaintext("bytes sent to the gateway", proxy_->ClientBytes());
  ExpectNoPlaintext("bytes sent by the gateway", proxy_->ServerBytes());
  EXPECT_GT(proxy_->ClientBytes().size(), 1000u);  // the relay really carried the traffic
  for (const std::string& blob : RedisValues()) ExpectNoPlaintext("a Redis value", blob);
  ExpectNoPlaintext("PostgreSQL", PostgresDump());
}

}  // namespace
}  // namespace padlock::e2e
