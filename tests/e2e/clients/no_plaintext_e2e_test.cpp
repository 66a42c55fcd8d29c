// No plaintext anywhere but on the devices: a scenario with known, unique plaintexts (1:1 live,
// 1:1 stored for an offline recipient, and a group message) runs through a recording TCP proxy in
// front of the plaintext-gRPC gateway. Then every byte that crossed the proxy, every Redis value
// (read over RESP, byte-exact) and every PostgreSQL row (pg_dump) is searched for each plaintext
// in raw, hex and base64 form; and every stored payload must parse as the libsignal message type
// its envelope claims.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal/protocol.h>
#include <signal/signal_protocol.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/messenger.h"
#include "clients/sdk/signal_handles.h"
#include "gtest/gtest.h"
#include "tests/e2e/clients/e2e_stack.h"
#include "tests/harness/harness.h"
#include "tests/harness/tcp_proxy.h"

namespace padlock::client::e2e {
namespace {

// A minimal RESP client: byte-exact values, unlike redis-cli's text output.
class Resp {
 public:
  struct Reply {
    std::string str;
    std::vector<Reply> elements;
    bool is_array = false;
  };
  explicit Resp(const std::string& address) {
    const size_t colon = address.rfind(':');
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "connect to redis " << address;
    }
  }
  ~Resp() { ::close(fd_); }
  Reply Command(const std::vector<std::string>& args) {
    std::string out = absl::StrCat("*", args.size(), "\r\n");
    for (const std::string& a : args) absl::StrAppend(&out, "$", a.size(), "\r\n", a, "\r\n");
    for (size_t off = 0; off < out.size();) {
      const ssize_t w = ::write(fd_, out.data() + off, out.size() - off);
      if (w <= 0) return {};
      off += static_cast<size_t>(w);
    }
    return Read();
  }

 private:
  bool Fill(size_t n) {
    while (buf_.size() - pos_ < n) {
      char tmp[65536];
      const ssize_t r = ::read(fd_, tmp, sizeof tmp);
      if (r <= 0) return false;
      buf_.append(tmp, static_cast<size_t>(r));
    }
    return true;
  }
  std::string Line() {
    for (;;) {
      const size_t end = buf_.find("\r\n", pos_);
      if (end != std::string::npos) {
        std::string line = buf_.substr(pos_, end - pos_);
        pos_ = end + 2;
        return line;
      }
      if (!Fill(buf_.size() - pos_ + 1)) return "";
    }
  }
  Reply Read() {
    Reply reply;
    const std::string line = Line();
    if (line.empty()) return reply;
    const long n = std::strtol(line.c_str() + 1, nullptr, 10);
    switch (line[0]) {
      case '$':
        if (n >= 0 && Fill(static_cast<size_t>(n) + 2)) {
          reply.str = buf_.substr(pos_, static_cast<size_t>(n));
          pos_ += static_cast<size_t>(n) + 2;
        }
        break;
      case '*':
        reply.is_array = true;
        for (long i = 0; i < n; ++i) reply.elements.push_back(Read());
        break;
      default:  // +simple, -error, :integer
        reply.str = line.substr(1);
    }
    return reply;
  }
  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;
};

void Flatten(const Resp::Reply& r, std::string& out) {
  out += r.str;
  out.push_back('\n');
  for (const Resp::Reply& e : r.elements) Flatten(e, out);
}

// Every form in which `plaintext` could sit in a byte blob without real encryption.
std::vector<std::string> Forms(const std::string& plaintext) {
  std::vector<std::string> forms{plaintext, absl::BytesToHexString(plaintext)};
  std::string upper = forms[1];
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  forms.push_back(upper);
  // Base64 at each of the three alignments, trimmed to the characters that depend only on the
  // plaintext.
  for (int k = 0; k < 3; ++k) {
    for (bool web : {false, true}) {
      std::string encoded;
      const std::string input = std::string(static_cast<size_t>(k), '\0') + plaintext;
      if (web) {
        absl::WebSafeBase64Escape(input, &encoded);
      } else {
        absl::Base64Escape(input, &encoded);
      }
      const size_t skip = k == 0 ? 0 : static_cast<size_t>((k * 4 + 2) / 3) + 1;
      if (encoded.size() > skip + 8) {
        forms.push_back(encoded.substr(skip, encoded.size() - skip - 4));
      }
    }
  }
  return forms;
}

using Kind = MessengerEvent::Kind;

TEST(NoPlaintextE2eTest, ServersSeeOnlyCiphertextThatParsesAsItsClaimedType) {
  testing::PadlockStack* stack = SharedStack();
  ASSERT_NE(stack, nullptr);
  padlock::testing::TcpProxy proxy(stack->gateway_port());
  padlock::testing::TempDir dir;
  auto open = [&](const std::string& user) {
    MessengerOptions options;
    options.home = dir.path() + "/" + user;
    options.gateway.target = absl::StrCat("127.0.0.1:", proxy.port());
    auto m = Messenger::Open(options);
    EXPECT_TRUE(m.ok()) << m.status();
    EXPECT_TRUE((*m)->Register(user).ok());
    EXPECT_TRUE((*m)->Connect(absl::Seconds(20)).ok());
    return *std::move(m);
  };
  const std::string alice_id = UniqueUser("np-alice");
  const std::string bob_id = UniqueUser("np-bob");
  const std::string carol_id = UniqueUser("np-carol");
  auto alice = open(alice_id);
  auto bob = open(bob_id);
  auto carol = open(carol_id);

  const std::string live = "PLAINTEXT-LIVE-7f3a9c1e-delivered-while-online";
  const std::string stored = "PLAINTEXT-STORED-b81d44e0-waits-in-redis";
  const std::string grouped = "PLAINTEXT-GROUP-5c2e9f7a-one-shared-ciphertext";
  ASSERT_TRUE(alice->SendText(bob_id, live, absl::Seconds(20)).ok());
  auto await_text = [](Messenger& m, const std::string& text) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      for (const MessengerEvent& e : m.Pump(absl::Milliseconds(200))) {
        if (e.kind == Kind::kMessage && e.text == text) return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(await_text(*bob, live));
  absl::StatusOr<std::string> group = alice->CreateGroup("np", {bob_id, carol_id});
  ASSERT_TRUE(group.ok()) << group.status();
  bob->Disconnect();
  carol->Disconnect();
  ASSERT_TRUE(alice->SendText(bob_id, stored, absl::Seconds(20)).ok());
  ASSERT_TRUE(alice->SendGroupText(*group, grouped, absl::Seconds(20)).ok());

  // Redis, byte-exact, while bob and carol are offline (their envelopes wait there).
  Resp redis(stack->redis_addresses());
  std::string redis_bytes;
  std::vector<padlock::v1::Envelope> envelopes;
  std::vector<std::string> shared_payloads;
  Resp::Reply keys = redis.Command({"KEYS", "*"});
  ASSERT_FALSE(keys.elements.empty());
  for (const Resp::Reply& key : keys.elements) {
    const std::string type = redis.Command({"TYPE", key.str}).str;
    Resp::Reply value;
    if (type == "string") value = redis.Command({"GET", key.str});
    if (type == "hash") value = redis.Command({"HGETALL", key.str});
    if (type == "list") value = redis.Command({"LRANGE", key.str, "0", "-1"});
    if (type == "set") value = redis.Command({"SMEMBERS", key.str});
    if (type == "zset") value = redis.Command({"ZRANGE", key.str, "0", "-1", "WITHSCORES"});
    if (type == "stream") value = redis.Command({"XRANGE", key.str, "-", "+"});
    redis_bytes += key.str + "\n";
    Flatten(value, redis_bytes);
    if (type == "stream" && key.str.rfind("q:", 0) == 0) {
      for (const Resp::Reply& entry : value.elements) {  // [id, [field, value, ...]]
        if (entry.elements.size() < 2) continue;
        const auto& fields = entry.elements[1].elements;
        for (size_t i = 0; i + 1 < fields.size(); i += 2) {
          if (fields[i].str != "e") continue;
          padlock::v1::Envelope envelope;
          EXPECT_TRUE(envelope.ParseFromString(fields[i + 1].str)) << key.str;
          envelopes.push_back(envelope);
        }
      }
    }
    if (type == "hash" && key.str.rfind("gp:", 0) == 0) {
      for (size_t i = 0; i + 1 < value.elements.size(); i += 2) {
        if (value.elements[i].str == "d") shared_payloads.push_back(value.elements[i + 1].str);
      }
    }
  }
  EXPECT_FALSE(envelopes.empty());
  EXPECT_FALSE(shared_payloads.empty());

  // PostgreSQL, every row of every table.
  const std::string dump_path = dir.path() + "/pg.sql";
  absl::StatusOr<padlock::testing::Subprocess> dump = padlock::testing::Subprocess::Start(
      {.argv = {"/usr/lib/postgresql/15/bin/pg_dump", "--data-only", "--inserts",
                "--dbname=" + stack->postgres_dsn()},
       .log_path = dump_path});
  ASSERT_TRUE(dump.ok()) << dump.status();
  absl::StatusOr<int> dumped = dump->Wait(absl::Seconds(60));
  ASSERT_TRUE(dumped.ok() && *dumped == 0) << dump->ReadLog();
  const std::string postgres_bytes = dump->ReadLog();
  EXPECT_NE(postgres_bytes.find(alice_id), std::string::npos);  // the dump is real

  const std::string wire = proxy.ClientBytes() + proxy.ServerBytes();
  EXPECT_GT(wire.size(), 1000u);
  // The searches can fail: what does travel in clear is found in each blob.
  EXPECT_NE(wire.find(bob_id), std::string::npos);
  EXPECT_NE(redis_bytes.find("q:{" + bob_id + ":1}"), std::string::npos);
  for (size_t k = 0; k < 6; ++k) {
    std::string encoded;
    absl::Base64Escape(std::string(k, 'z') + live + "tail", &encoded);
    bool found = false;
    for (const std::string& form : Forms(live)) {
      found = found || encoded.find(form) != std::string::npos;
    }
    EXPECT_TRUE(found) << "base64 forms miss alignment " << k;
  }
  for (const std::string& plaintext : {live, stored, grouped}) {
    for (const std::string& form : Forms(plaintext)) {
      EXPECT_EQ(wire.find(form), std::string::npos) << "gateway traffic holds " << plaintext;
      EXPECT_EQ(redis_bytes.find(form), std::string::npos) << "Redis holds " << plaintext;
      EXPECT_EQ(postgres_bytes.find(form), std::string::npos) << "PostgreSQL holds " << plaintext;
    }
  }

  // Every stored payload is a libsignal message of the type its envelope claims.
  auto context = SignalContext::Create();
  ASSERT_TRUE(context.ok());
  signal_context* ctx = (*context)->get();
  auto data = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  int checked = 0;
  for (const padlock::v1::Envelope& e : envelopes) {
    if (e.ciphertext().empty()) continue;  // a shared payload, checked below
    switch (e.type()) {
      case padlock::v1::ENVELOPE_TYPE_PREKEY_MESSAGE: {
        pre_key_signal_message* m = nullptr;
        EXPECT_EQ(pre_key_signal_message_deserialize(&m, data(e.ciphertext()),
                                                     e.ciphertext().size(), ctx),
                  0);
        SignalPtr<pre_key_signal_message> owned(m);
        break;
      }
      case padlock::v1::ENVELOPE_TYPE_MESSAGE: {
        signal_message* m = nullptr;
        EXPECT_EQ(signal_message_deserialize(&m, data(e.ciphertext()), e.ciphertext().size(), ctx),
                  0);
        SignalPtr<signal_message> owned(m);
        break;
      }
      default:
        ADD_FAILURE() << "unexpected 1:1 envelope type " << e.type();
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
  for (const std::string& payload : shared_payloads) {
    sender_key_message* m = nullptr;
    EXPECT_EQ(sender_key_message_deserialize(&m, data(payload), payload.size(), ctx), 0);
    SignalPtr<sender_key_message> owned(m);
  }

  // And the devices do have the plaintexts.
  ASSERT_TRUE(bob->Connect(absl::Seconds(20)).ok());
  EXPECT_TRUE(await_text(*bob, grouped));
  bool bob_has_stored = false;
  absl::StatusOr<std::vector<HistoryMessage>> history = bob->store().ListMessages(alice_id);
  ASSERT_TRUE(history.ok());
  for (const HistoryMessage& m : *history) {
    if (m.body == stored) bob_has_stored = true;
  }
  EXPECT_TRUE(bob_has_stored);
}

}  // namespace
}  // namespace padlock::client::e2e
