// Micro-benchmarks of the foundation's per-request costs: the login signature check (one per
// login), statement encoding, Redis Cluster slot routing (one per command) and a JSON log line.
// The end-to-end load generator comes with the gateway; these numbers say what the building blocks
// cost on their own. Run: build/bench/padlock_foundation_bench --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true (report medians; the machine is noisy).

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "clients/sdk/crypto_provider.h"
#include "clients/sdk/identity.h"
#include "common/statement/signature.h"
#include "common/statement/signed_statement.h"
#include "services/common/redis/cluster_slots.h"
#include "services/common/runtime/logging.h"

namespace {

using padlock::client::SignalContext;

struct Keys {
  std::unique_ptr<SignalContext> context;
  padlock::client::IdentityKeyPair identity;
};

Keys& SharedKeys() {
  static Keys* keys = [] {
    auto* k = new Keys;
    auto context = SignalContext::Create();
    if (!context.ok()) std::abort();
    k->context = std::move(*context);
    auto identity = padlock::client::GenerateIdentityKeyPair(*k->context);
    if (!identity.ok()) std::abort();
    k->identity = std::move(*identity);
    return k;
  }();
  return *keys;
}

void BM_EncodeLoginStatement(benchmark::State& state) {
  const std::string challenge(32, 'c');
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        padlock::statement::EncodeLogin("alice", 1, challenge, "padlock.example"));
  }
}
BENCHMARK(BM_EncodeLoginStatement);

void BM_EncodeDeviceList5(benchmark::State& state) {
  std::vector<padlock::statement::DeviceListEntry> entries;
  for (uint32_t id = 1; id <= 5; ++id) {
    entries.push_back({.device_id = id, .identity_key = std::string(33, '\x05'),
                       .registration_id = 1000 + id});
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(padlock::statement::EncodeDeviceList("alice", 7, entries));
  }
}
BENCHMARK(BM_EncodeDeviceList5);

void BM_VerifyLoginSignature(benchmark::State& state) {
  Keys& keys = SharedKeys();
  const std::string message =
      padlock::statement::EncodeLogin("alice", 1, std::string(32, 'c'), "padlock.example");
  auto signature = padlock::client::Sign(*keys.context, keys.identity.private_key, message);
  if (!signature.ok()) std::abort();
  for (auto _ : state) {
    bool ok = padlock::statement::VerifySignature(keys.identity.public_key, message, *signature);
    if (!ok) state.SkipWithError("signature did not verify");
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_VerifyLoginSignature);

void BM_SignLoginStatement(benchmark::State& state) {
  Keys& keys = SharedKeys();
  const std::string message =
      padlock::statement::EncodeLogin("alice", 1, std::string(32, 'c'), "padlock.example");
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        padlock::client::Sign(*keys.context, keys.identity.private_key, message));
  }
}
BENCHMARK(BM_SignLoginStatement);

void BM_KeySlotHashTagged(benchmark::State& state) {
  const std::string key = "q:{+4915112345678:3}";
  for (auto _ : state) benchmark::DoNotOptimize(padlock::redis::KeySlot(key));
}
BENCHMARK(BM_KeySlotHashTagged);

void BM_FormatLogLine(benchmark::State& state) {
  const absl::Time now = absl::Now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(padlock::runtime::FormatLogLine(
        now, padlock::runtime::LogLevel::kInfo, "gateway", "device connected",
        {{"user", "3f2a9c0d11e4b7a8"}, {"device", int64_t{2}}, {"epoch", int64_t{17}}}));
  }
}
BENCHMARK(BM_FormatLogLine);

}  // namespace

BENCHMARK_MAIN();
