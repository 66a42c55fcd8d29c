// RedisInboxStore against a real redis-server (appendonly yes, appendfsync everysec, as the local
// stack runs it) on this machine: enqueue batches of 1 and 64 one-device sends (one EVALSHA each,
// one pipeline per batch), ReadInbox of 256 entries, cumulative ack of 64 entries (one trim).
// Envelopes carry a 160-byte ciphertext (DESIGN.md §8's chat workload).
//
// Each batch goes to 64 different devices, so a batch is what the service does for one Enqueue
// request of the gateway. Counters: items_per_second = envelopes (or entries) per second.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "padlock/v1/common.pb.h"
#include "services/common/redis/redis_client.h"
#include "services/message_queue/redis_inbox_store.h"
#include "tests/harness/redis_server.h"

namespace {

using padlock::message_queue::AckRequest;
using padlock::message_queue::AppendRequest;
using padlock::message_queue::DeviceKey;
using padlock::message_queue::InboxLimits;
using padlock::message_queue::RedisInboxStore;

padlock::redis::RedisClient* g_redis = nullptr;
RedisInboxStore* g_store = nullptr;
constexpr int kDevices = 1000;

std::string Envelope(uint64_t n) {
  padlock::v1::Envelope e;
  e.set_message_id(absl::StrCat(std::string(8, 'm'), n).substr(0, 16));
  e.mutable_sender()->set_user_id("alice");
  e.mutable_sender()->set_device_id(1);
  e.mutable_recipient()->set_user_id("bob");
  e.mutable_recipient()->set_device_id(1);
  e.set_recipient_registration_id(4242);
  e.set_type(padlock::v1::ENVELOPE_TYPE_MESSAGE);
  e.set_ciphertext(std::string(160, 'c'));
  e.set_expires_at_ms(4'000'000'000'000);
  return e.SerializeAsString();
}

AppendRequest Append(const DeviceKey& device, uint64_t n) {
  AppendRequest r;
  r.device = device;
  r.envelope = Envelope(n);
  r.dedupe_key = absl::StrCat("alice:1:", n);  // distinct: every append is new
  r.expires_at_ms = 4'000'000'000'000;
  return r;
}

void Flush() {
  for (const auto& node : g_redis->ExecuteOnEachMaster(
           padlock::redis::Command::Keyless({"FLUSHALL"}))) {
    if (!node.reply.ok()) std::fprintf(stderr, "FLUSHALL failed\n");
  }
}

// One Append call of `batch` sends, each to one device (devices rotate over kDevices inboxes).
void BM_EnqueueBatch(benchmark::State& state) {
  Flush();
  const int batch = static_cast<int>(state.range(0));
  uint64_t n = 0;
  std::vector<AppendRequest> requests;
  for (auto _ : state) {
    state.PauseTiming();
    requests.clear();
    for (int i = 0; i < batch; ++i, ++n) {
      requests.push_back(Append(DeviceKey{"bob", static_cast<uint32_t>(n % kDevices + 1)}, n));
    }
    state.ResumeTiming();
    auto results = g_store->Append(requests);
    for (const auto& r : results) {
      if (!r.ok()) state.SkipWithError("append failed");
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_EnqueueBatch)->Arg(1)->Arg(64)->UseRealTime();

// ReadInbox of 256 entries from the start of a 256-entry inbox (the read script plus parsing).
void BM_ReadInbox256(benchmark::State& state) {
  Flush();
  const DeviceKey device{"reader", 1};
  std::vector<AppendRequest> requests;
  for (int i = 0; i < 256; ++i) requests.push_back(Append(device, i));
  for (const auto& r : g_store->Append(requests)) {
    if (!r.ok()) state.SkipWithError("fill failed");
  }
  for (auto _ : state) {
    auto page = g_store->Read(device, "", 256);
    if (!page.ok() || page->entries.size() != 256) state.SkipWithError("read failed");
    benchmark::DoNotOptimize(page);
  }
  state.SetItemsProcessed(state.iterations() * 256);
}
BENCHMARK(BM_ReadInbox256)->UseRealTime();

// A cumulative ack of 64 entries (the fill of the 64 entries is not timed).
void BM_CumulativeAck64(benchmark::State& state) {
  Flush();
  const DeviceKey device{"acker", 1};
  uint64_t n = 0;
  std::vector<AppendRequest> requests;
  for (auto _ : state) {
    state.PauseTiming();
    requests.clear();
    for (int i = 0; i < 64; ++i, ++n) requests.push_back(Append(device, n));
    auto results = g_store->Append(requests);
    std::string last;
    for (const auto& r : results) {
      if (r.ok()) last = r->server_id;
    }
    std::vector<AckRequest> ack = {AckRequest{device, last, {}}};
    state.ResumeTiming();
    auto removed = g_store->Ack(ack);
    if (!removed[0].ok() || *removed[0] != 64) state.SkipWithError("ack failed");
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_CumulativeAck64)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // PADLOCK_BENCH_REDIS=host:port runs against an existing server instead (e.g. to read its
  // INFO commandstats afterwards); it is flushed.
  std::unique_ptr<padlock::testing::RedisServer> server;
  padlock::redis::RedisOptions options;
  if (const char* address = std::getenv("PADLOCK_BENCH_REDIS"); address != nullptr) {
    options.addresses = {address};
  } else {
    auto started = padlock::testing::RedisServer::Start(
        {"--appendonly", "yes", "--appendfsync", "everysec"});
    if (!started.ok()) {
      std::fprintf(stderr, "redis-server: %s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    server = *std::move(started);
    options.addresses = {server->address()};
  }
  auto redis = padlock::redis::RedisClient::Create(options);
  if (!redis.ok()) return 1;
  RedisInboxStore store(redis->get(), InboxLimits());
  g_redis = redis->get();
  g_store = &store;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
