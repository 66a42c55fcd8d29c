// Bundle claims per second against one local PostgreSQL (DESIGN §8 target: ≥ 5 000/s).
//
// Starts its own PostgreSQL through the test harness, migrates, loads `--users` accounts with
// `--keys` one-time prekeys each, then runs `--threads` claimers for `--seconds`, each claiming
// one device of a random user through PostgresKeyStore::ClaimBundles (the same transaction the
// service runs: one read of account + devices, one DELETE … SKIP LOCKED … RETURNING), repeated
// `--runs` times; prints each run and the median. Rate limiting (Redis) and gRPC are not included:
// this measures the PostgreSQL part, which is the bottleneck.
//
//   build/bench/key_directory/key_directory_claims_bench --threads=16 --seconds=5 --runs=5
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/postgres/migrations.h"
#include "services/common/postgres/pool.h"
#include "services/key_directory/embedded_migrations.h"
#include "services/key_directory/postgres_key_store.h"
#include "tests/harness/postgres_server.h"

namespace kd = padlock::key_directory;

namespace {

int Flag(int argc, char** argv, const std::string& name, int fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) return std::atoi(arg.c_str() + prefix.size());
  }
  return fallback;
}

std::string FakeKey(std::mt19937_64& rng, size_t size) {
  std::string key(size, '\0');
  for (char& c : key) c = static_cast<char>(rng());
  key[0] = 0x05;
  return key;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = Flag(argc, argv, "threads", 16);
  const int seconds = Flag(argc, argv, "seconds", 5);
  const int runs = Flag(argc, argv, "runs", 5);
  const int users = Flag(argc, argv, "users", 200);
  const int keys = Flag(argc, argv, "keys", 1000);

  auto server = padlock::testing::PostgresServer::Start();
  if (!server.ok()) return Fail(server.status());
  auto db = (*server)->CreateFreshDatabase();
  if (!db.ok()) return Fail(db.status());
  const std::string conninfo = (*server)->ConnInfo(*db);
  if (auto m = padlock::postgres::Migrate({.conninfo = conninfo}, kd::EmbeddedMigrations());
      !m.ok()) {
    return Fail(m.status());
  }
  auto pool = padlock::postgres::Pool::Create(
      {.conninfo = conninfo, .size = threads, .statements = kd::PostgresKeyStore::Statements()});
  if (!pool.ok()) return Fail(pool.status());
  kd::PostgresKeyStore store(pool->get(), nullptr);

  // Load: the store does not check signatures, so random keys of the right shape will do.
  std::mt19937_64 rng(42);
  for (int u = 0; u < users; ++u) {
    const std::string user = absl::StrCat("user", u);
    kd::DeviceKeys primary{.device_id = 1,
                           .identity_key = FakeKey(rng, 33),
                           .registration_id = 1,
                           .signed_prekey = kd::SignedPreKey{1, FakeKey(rng, 33), FakeKey(rng, 64)},
                           .one_time_prekeys = {}};
    kd::DeviceList list{.user_id = user,
                        .version = 1,
                        .entries = {{1, primary.identity_key, 1}},
                        .signature = FakeKey(rng, 64)};
    if (auto s = store.CreateAccount({list, primary}, false); !s.ok()) return Fail(s);
    for (int first = 1; first <= keys; first += 100) {
      std::vector<kd::OneTimePreKey> batch;
      for (int k = first; k < first + 100 && k <= keys; ++k) {
        batch.push_back({static_cast<uint32_t>(k), FakeKey(rng, 33)});
      }
      if (auto s = store.AddPreKeys({user, 1}, std::nullopt, batch, 100000); !s.ok()) {
        return Fail(s.status());
      }
    }
  }
  std::printf("loaded %d users x %d one-time prekeys; %d threads, %d s per run\n", users, keys,
              threads, seconds);

  std::vector<double> rates;
  for (int run = 0; run < runs; ++run) {
    std::atomic<bool> stop{false};
    std::atomic<int64_t> claims{0};
    std::atomic<int64_t> with_key{0};
    std::atomic<int64_t> errors{0};
    std::vector<std::thread> workers;
    const absl::Time start = absl::Now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::mt19937 local(static_cast<unsigned>(t * 7919 + run));
        std::uniform_int_distribution<int> pick(0, users - 1);
        while (!stop.load(std::memory_order_relaxed)) {
          // As the gateway asks: the requester (another user's device 1) must be listed.
          auto result = store.ClaimBundles(absl::StrCat("user", pick(local)), 1,
                                           kd::DeviceAddress{absl::StrCat("user", pick(local)), 1});
          if (!result.ok()) {
            ++errors;
            continue;
          }
          ++claims;
          if (result->bundles[0].one_time_prekey) ++with_key;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::seconds(seconds));  // a benchmark's measuring window
    stop = true;
    for (auto& w : workers) w.join();
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
    const double rate = static_cast<double>(claims.load()) / elapsed;
    rates.push_back(rate);
    std::printf("run %d: %.0f claims/s (%lld with a one-time key, %lld errors)\n", run + 1, rate,
                static_cast<long long>(with_key.load()), static_cast<long long>(errors.load()));
  }
  std::sort(rates.begin(), rates.end());
  std::printf("median: %.0f claims/s\n", rates[rates.size() / 2]);
  return 0;
}
