#include "bench/loadgen/loadgen.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/loadgen/device_stream.h"
#include "bench/loadgen/h2_transport.h"
#include "common/statement/signature.h"
#include "services/common/runtime/json_string.h"

namespace padlock::loadgen {
namespace {

double Seconds(uint64_t nanos) { return static_cast<double>(nanos) / 1e9; }

void SleepSeconds(double s) {
  if (s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

std::string RandomPrefix() {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string p = "lg";
  for (int i = 0; i < 8; ++i) p += kChars[rd() % 36];
  return p + "-";
}

// The local stack of scripts/padlock (docs/OPERATIONS.md ports). Redis as a tree: its AOF
// rewrites run in child processes, and their CPU is part of what an envelope costs.
std::vector<WatchSpec> DefaultWatch() {
  return {{.name = "gateway", .port = 7400},
          {.name = "presence", .port = 7410},
          {.name = "message-queue", .port = 7420},
          {.name = "key-directory", .port = 7430},
          {.name = "redis", .port = 7379, .tree = true},
          {.name = "postgres", .port = 7432, .tree = true}};
}

// Raises the descriptor limit to the hard limit: one socket per device.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet), start_(NowNanos()) {}
  template <typename... Args>
  void operator()(const absl::FormatSpec<Args...>& format, const Args&... args) const {
    if (quiet_) return;
    std::fprintf(stderr, "[loadgen %7.2fs] %s\n", Seconds(NowNanos() - start_),
                 absl::StrFormat(format, args...).c_str());
  }

 private:
  bool quiet_;
  uint64_t start_;
};

struct Watched {
  WatchSpec spec;
  pid_t pid = 0;
  ProcessUsage start;
};

class Runner {
 public:
  explicit Runner(const Options& options) : options_(options), progress_(options.quiet) {}
  ~Runner() { Teardown(); }

  absl::StatusOr<Report> Execute();

 private:
  absl::Status Setup(int count);
  // Opens the streams of devices [first, last) with at most connect_parallel being set up at once
  // and waits until each got `connected` and `queue_empty`.
  absl::Status ConnectDevices(size_t first, size_t last);
  void StartWatching();
  void StartMeasuring();
  void StopMeasuring();
  void DrainAndCount();
  void Teardown();
  void StartAckFlusher();
  // Resend mode: the thread that calls Device::Tick (reconnects, timed retries).
  void StartResender();
  void RunChat();
  void RunOpen();
  // sparse: the idle phase, then RunOpen.
  void RunSparse();
  void RunGroup();
  absl::Status RunBacklog();
  absl::Status RunIdle();
  void RunClaims();
  // The load phase of chat, group and claims: warm-up then the measured window; with
  // Options::count, the measured window lasts until that many sends were issued (at most
  // ready_timeout_seconds, in case a closed loop stalls on a lost envelope).
  void LoadWindow();
  uint32_t RandomOther(uint32_t self);
  // A stream for device `i` on the chosen transport.
  std::unique_ptr<StreamTransport> NewStream(size_t i);

  const Options& options_;
  Progress progress_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  RunState run_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<Watched> watched_;
  Report report_;
  uint64_t window_start_ = 0, window_end_ = 0;
  double self_cpu_start_ = 0;
  AccountOptions account_options_;
  std::thread flusher_;
  std::thread resender_;
  std::atomic<bool> stop_flusher_{false};
  bool torn_down_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
  // After run_: destroyed (its loops stopped) before the devices its streams belong to.
  std::unique_ptr<H2Client> h2_;
};

std::unique_ptr<StreamTransport> Runner::NewStream(size_t i) {
  Device* device = run_.devices[i].get();
  if (h2_ != nullptr) return h2_->NewStream(device);
  return MakeGrpcStreamTransport(device, channels_[i]);
}

void Runner::LoadWindow() {
  if (options_.count == 0) {
    SleepSeconds(options_.warmup_seconds);
    StartMeasuring();
    SleepSeconds(options_.duration_seconds);
    StopMeasuring();
    return;
  }
  StartMeasuring();
  const uint64_t t0 = NowNanos();
  // Every send issued and answered (claims) or received (envelopes), so that the window counts
  // all of them.
  auto finished = [&] { return run_.SendsExhausted() && run_.in_flight.load() == 0; };
  while (!finished() && Seconds(NowNanos() - t0) < options_.ready_timeout_seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  StopMeasuring();
  if (!run_.SendsExhausted()) {
    report_.notes.push_back(absl::StrCat("only ", run_.issued.load(), " of ", options_.count,
                                         " sends issued within ", options_.ready_timeout_seconds,
                                         "s"));
  }
}

uint32_t Runner::RandomOther(uint32_t self) {
  const uint32_t n = static_cast<uint32_t>(run_.devices.size());
  uint32_t to = static_cast<uint32_t>(rng_() % (n - 1));
  return to >= self ? to + 1 : to;
}

absl::Status Runner::Setup(int count) {
  if (!options_.tls_ca_file.empty()) {
    std::ifstream in(options_.tls_ca_file);
    if (!in) return absl::InvalidArgumentError("cannot read --tls-ca " + options_.tls_ca_file);
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials_ = grpc::SslCredentials(ssl);
  } else {
    credentials_ = grpc::InsecureChannelCredentials();
  }
  RaiseDescriptorLimit();
  AccountOptions& account_options = account_options_;
  account_options = AccountOptions{.target = options_.target,
                                 .credentials = credentials_,
                                 .tls_server_name = options_.tls_server_name,
                                 .user_prefix = options_.user_prefix.empty() ? RandomPrefix()
                                                                             : options_.user_prefix,
                                 .threads = options_.setup_threads};
  const uint64_t t0 = NowNanos();
  absl::StatusOr<std::vector<DeviceAccount>> accounts = RegisterAccounts(account_options, count);
  if (!accounts.ok()) return accounts.status();
  const uint64_t t1 = NowNanos();
  progress_("registered %d users (%s*) in %.2fs, %.0f/s", count, account_options.user_prefix,
            Seconds(t1 - t0), count / std::max(1e-9, Seconds(t1 - t0)));
  if (absl::Status s = LogIn(account_options, *accounts); !s.ok()) return s;
  const uint64_t t2 = NowNanos();
  progress_("logged in %d devices in %.2fs, %.0f/s", count, Seconds(t2 - t1),
            count / std::max(1e-9, Seconds(t2 - t1)));
  if (options_.scenario == "claims") {
    if (absl::Status s = PublishOneTimePreKeys(account_options, *accounts, options_.prekeys);
        !s.ok()) {
      return s;
    }
    progress_("uploaded %d one-time prekeys for each of %d devices in %.2fs", options_.prekeys,
              count, Seconds(NowNanos() - t2));
  }
  run_.ack_every = std::max(1, options_.ack_every);
  run_.monitor = options_.monitor;
  run_.resend = options_.reconnect_and_resend;
  run_.resend_deadline_nanos =
      static_cast<uint64_t>(std::max(0.0, options_.resend_deadline_seconds) * 1e9);
  run_.new_stream = [this](Device* device) { return NewStream(device->index()); };
  run_.log_in = [this](DeviceAccount& account) {
    std::vector<DeviceAccount> one = {account};
    absl::Status s = LogIn(account_options_, one);
    if (s.ok()) account.token = one[0].token;
    return s;
  };
  run_.stream_revision = static_cast<uint32_t>(std::max(1, options_.stream_revision));
  run_.payload_bytes = static_cast<size_t>(std::max<int>(options_.payload_bytes,
                                                         static_cast<int>(kPayloadHeader)));
  for (size_t i = 0; i < accounts->size(); ++i) {
    run_.devices.push_back(
        std::make_unique<Device>(&run_, static_cast<uint32_t>(i), std::move((*accounts)[i])));
  }
  if (options_.scenario == "claims") {
    // No device streams.
  } else if (options_.transport == "h2") {
    // A connection per device, opened by its stream.
    absl::StatusOr<std::unique_ptr<H2Client>> h2 =
        H2Client::Create(options_.target, options_.h2_threads);
    if (!h2.ok()) return h2.status();
    h2_ = std::move(*h2);
  } else {
    // A channel per device with a distinct argument: one TCP connection each.
    channels_.resize(run_.devices.size());
    const int64_t salt = static_cast<int64_t>(getpid()) << 32;
    for (size_t i = 0; i < channels_.size(); ++i) {
      channels_[i] = DedicatedChannel(options_.target, credentials_,
                                      salt + static_cast<int64_t>(i), options_.tls_server_name);
    }
  }
  report_.setup_seconds = Seconds(NowNanos() - t0);
  return absl::OkStatus();
}

absl::Status Runner::ConnectDevices(size_t first, size_t last) {
  const uint64_t t0 = NowNanos();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(options_.ready_timeout_seconds);
  int base_settled, base_ready;
  {
    std::lock_guard<std::mutex> lock(run_.mutex);
    base_settled = run_.settled;
    base_ready = run_.ready;
  }
  const int total = static_cast<int>(last - first);
  const int parallel = std::max(1, options_.connect_parallel);
  size_t next = first;
  std::unique_lock<std::mutex> lock(run_.mutex);
  while (true) {
    const int settled = run_.settled - base_settled;
    while (next < last && static_cast<int>(next - first) - settled < parallel) {
      lock.unlock();
      run_.devices[next]->Connect(NewStream(next));
      ++next;
      lock.lock();
    }
    if (run_.settled - base_settled >= total) break;
    if (run_.changed.wait_until(lock, deadline) == std::cv_status::timeout &&
        run_.settled - base_settled < total) {
      return absl::DeadlineExceededError(absl::StrCat(
          run_.ready - base_ready, " of ", total, " streams ready after ",
          options_.ready_timeout_seconds, "s; first failure: ", run_.first_failure));
    }
  }
  const int ready = run_.ready - base_ready;
  lock.unlock();
  if (ready < total) {
    return absl::UnavailableError(absl::StrCat(total - ready, " of ", total,
                                               " streams failed to connect: ",
                                               run_.first_failure));
  }
  report_.setup_seconds += Seconds(NowNanos() - t0);
  progress_("%d streams connected and drained (queue_empty) in %.2fs", total,
            Seconds(NowNanos() - t0));
  return absl::OkStatus();
}

void Runner::StartAckFlusher() {
  flusher_ = std::thread([this] {
    const int flush_ms = options_.ack_flush_ms >= 0 ? options_.ack_flush_ms
                         : options_.stream_revision >= 2 ? 250
                                                         : 50;
    // Each device is flushed once per period, a tenth of them every tenth of it: flushing all at
    // once sent a burst of lone acks (one per device) that showed in the tail latency.
    constexpr size_t kSlices = 10;
    const auto slice = std::chrono::microseconds(std::max(1, flush_ms) * 1000 / kSlices);
    for (size_t tick = 0; !stop_flusher_.load(); ++tick) {
      std::this_thread::sleep_for(slice);
      for (size_t i = tick % kSlices; i < run_.devices.size(); i += kSlices) {
        run_.devices[i]->FlushAck();
      }
    }
  });
}

void Runner::StartResender() {
  if (!run_.resend) return;
  resender_ = std::thread([this] {
    // Reconnect backoffs start at 50 ms: a 10 ms tick keeps them within a fifth of that.
    while (!stop_flusher_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const uint64_t now = NowNanos();
      for (auto& device : run_.devices) device->Tick(now);
    }
  });
}

void Runner::StartWatching() {
  const std::vector<WatchSpec> specs = options_.watch.empty() ? DefaultWatch() : options_.watch;
  for (const WatchSpec& spec : specs) {
    Watched w;
    w.spec = spec;
    w.pid = spec.pid;
    if (w.pid == 0) {
      absl::StatusOr<pid_t> pid = FindListeningPid(spec.port);
      if (!pid.ok()) {
        report_.notes.push_back(absl::StrCat("not measured: ", spec.name, " (",
                                             pid.status().message(), ")"));
        continue;
      }
      w.pid = *pid;
    }
    watched_.push_back(w);
  }
}

void Runner::StartMeasuring() {
  for (Watched& w : watched_) {
    absl::StatusOr<ProcessUsage> usage = ReadUsage(w.pid, w.spec.tree);
    if (usage.ok()) w.start = *usage;
  }
  self_cpu_start_ = SelfCpuSeconds();
  run_.delivered_in_window = 0;
  window_start_ = NowNanos();
  run_.recording = true;
}

void Runner::StopMeasuring() {
  run_.recording = false;
  window_end_ = NowNanos();
  const double self_cpu = SelfCpuSeconds() - self_cpu_start_;
  report_.measured_seconds = Seconds(window_end_ - window_start_);
  report_.delivered_in_window = run_.delivered_in_window.load();
  const double delivered = static_cast<double>(report_.delivered_in_window);
  report_.delivered_per_second = delivered / std::max(1e-9, report_.measured_seconds);
  auto per_envelope = [&](double cpu) { return delivered > 0 ? cpu * 1e6 / delivered : 0.0; };
  double services = 0;
  for (Watched& w : watched_) {
    absl::StatusOr<ProcessUsage> usage = ReadUsage(w.pid, w.spec.tree);
    if (!usage.ok()) {
      report_.notes.push_back(absl::StrCat(w.spec.name, " (pid ", w.pid, ") exited"));
      continue;
    }
    ProcessReport p{.name = w.spec.name,
                    .pid = w.pid,
                    .processes = usage->processes,
                    .cpu_seconds = usage->cpu_seconds - w.start.cpu_seconds,
                    .hwm_kib = usage->hwm_kib,
                    .rss_kib = usage->rss_kib};
    p.cpu_us_per_envelope = per_envelope(p.cpu_seconds);
    p.cpu_percent = 100 * p.cpu_seconds / std::max(1e-9, report_.measured_seconds);
    services += p.cpu_seconds;
    report_.processes.push_back(p);
  }
  report_.services_cpu_us_per_envelope = per_envelope(services);
  report_.generator = ProcessReport{.name = "padlock-loadgen",
                                    .pid = getpid(),
                                    .processes = 1,
                                    .cpu_seconds = self_cpu,
                                    .hwm_kib = SelfHwmKib()};
  if (absl::StatusOr<ProcessUsage> self = ReadUsage(getpid(), false); self.ok()) {
    report_.generator.rss_kib = self->rss_kib;
  }
  report_.generator.cpu_us_per_envelope = per_envelope(self_cpu);
  report_.generator.cpu_percent = 100 * self_cpu / std::max(1e-9, report_.measured_seconds);
  const LatencyHistogram& h = run_.latency;
  report_.latency_ms_p50 = h.PercentileNanos(50) / 1e6;
  report_.latency_ms_p90 = h.PercentileNanos(90) / 1e6;
  report_.latency_ms_p99 = h.PercentileNanos(99) / 1e6;
  report_.latency_ms_p999 = h.PercentileNanos(99.9) / 1e6;
  report_.latency_ms_mean = h.MeanNanos() / 1e6;
  report_.latency_ms_max = static_cast<double>(h.MaxNanos()) / 1e6;
}

void Runner::DrainAndCount() {
  run_.sending = false;
  const uint64_t t0 = NowNanos();
  // Until every envelope arrived and every send has its result (a delivery can overtake the
  // send_result of its own send).
  auto busy = [&] { return run_.in_flight.load() > 0 || run_.awaiting_result.load() > 0; };
  while (busy() && Seconds(NowNanos() - t0) < options_.drain_seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (busy()) {
    report_.notes.push_back(absl::StrCat(run_.in_flight.load(), " sends still in flight and ",
                                         run_.awaiting_result.load(), " without a result after ",
                                         options_.drain_seconds, "s drain"));
  }
  progress_("drained in %.2fs (%d still in flight)", Seconds(NowNanos() - t0),
            static_cast<int>(run_.in_flight.load()));
  if (run_.resend) run_.StopGapTracking(NowNanos());
  for (auto& device : run_.devices) {
    report_.losses += device->CountLosses();
    if (run_.resend) report_.unaccepted += device->CountUnaccepted();
  }
}

void Runner::Teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  run_.sending = false;
  run_.shutting_down = true;
  stop_flusher_ = true;
  if (flusher_.joinable()) flusher_.join();
  // Before the closes: no reconnect may start once they began.
  if (resender_.joinable()) resender_.join();
  int started = 0;
  for (auto& device : run_.devices) {
    if (device->connect_started_nanos() != 0) {
      device->Close();
      ++started;
    }
  }
  std::unique_lock<std::mutex> lock(run_.mutex);
  // The gateway ends a half-closed stream; whatever is left after a grace period is cancelled.
  if (!run_.changed.wait_for(lock, std::chrono::seconds(3), [&] { return run_.done >= started; })) {
    lock.unlock();
    for (auto& device : run_.devices) {
      if (device->connect_started_nanos() != 0) device->Cancel();
    }
    lock.lock();
    run_.changed.wait_for(lock, std::chrono::seconds(30), [&] { return run_.done >= started; });
  }
  lock.unlock();
  h2_.reset();  // stops its loops; whatever is left ends as CANCELLED (shutting_down: not counted)
}

void Runner::RunChat() {
  run_.closed_loop = true;
  run_.sending = true;
  for (uint32_t w = 0; w < static_cast<uint32_t>(options_.window); ++w) {
    for (auto& device : run_.devices) {
      if (!run_.TakeSend()) break;
      device->SendTo(RandomOther(device->index()), NowNanos());
    }
  }
  progress_("chat: %zu devices × window %d; warm-up %.1fs", run_.devices.size(), options_.window,
            options_.warmup_seconds);
  LoadWindow();
}

void Runner::RunOpen() {
  run_.sending = true;
  const double rate = std::max(1.0, options_.rate);
  const uint64_t start = NowNanos();
  // With a count: no warm-up, and the pacer stops once `count` envelopes were offered (or after
  // ready_timeout_seconds, which a pacer that offers on schedule cannot reach first).
  const bool counted = options_.count > 0;
  const uint64_t warm =
      start + static_cast<uint64_t>((counted ? 0 : options_.warmup_seconds) * 1e9);
  const uint64_t end =
      warm + static_cast<uint64_t>(
                 (counted ? options_.ready_timeout_seconds : options_.duration_seconds) * 1e9);
  uint64_t issued = 0;
  bool measuring = false;
  const uint32_t n = static_cast<uint32_t>(run_.devices.size());
  progress_("open: %.0f envelopes/s over %u devices; warm-up %.1fs", rate, n,
            options_.warmup_seconds);
  while (true) {
    const uint64_t now = NowNanos();
    if (!measuring && now >= warm) {
      StartMeasuring();
      measuring = true;
    }
    if (now >= end) break;
    const uint64_t due = static_cast<uint64_t>(Seconds(now - start) * rate);
    if (counted && issued >= options_.count) break;
    while (issued < due && (!counted || issued < options_.count)) {
      // The scheduled time, not the time we got to it: a late pacer shows as latency.
      const uint64_t scheduled = start + static_cast<uint64_t>(issued / rate * 1e9);
      const uint32_t from = static_cast<uint32_t>(issued % n);
      run_.devices[from]->SendTo(RandomOther(from), scheduled);
      ++issued;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  StopMeasuring();
  report_.offered_rate = rate;
}

void Runner::RunSparse() {
  progress_("sparse: %zu streams idle for %.1fs", run_.devices.size(), options_.idle_hold_seconds);
  StartMeasuring();
  SleepSeconds(options_.idle_hold_seconds);
  StopMeasuring();
  report_.idle_seconds = report_.measured_seconds;
  report_.idle_processes = std::move(report_.processes);
  report_.processes.clear();
  for (const ProcessReport& p : report_.idle_processes) {
    report_.idle_stack_cpu_percent += p.cpu_percent;
  }
  progress_("sparse: idle stack CPU %.2f%% of a core", report_.idle_stack_cpu_percent);
  RunOpen();
}

void Runner::RunGroup() {
  const uint32_t senders = static_cast<uint32_t>(std::max(1, options_.group_senders));
  for (uint32_t i = senders; i < run_.devices.size(); ++i) run_.group_members.push_back(i);
  run_.closed_loop = true;
  run_.sending = true;
  for (int w = 0; w < options_.window; ++w) {
    for (uint32_t s = 0; s < senders; ++s) {
      if (run_.TakeSend()) run_.devices[s]->SendGroup(NowNanos());
    }
  }
  progress_("group: %u sender(s) × window %d, %zu members each; warm-up %.1fs", senders,
            options_.window, run_.group_members.size(), options_.warmup_seconds);
  LoadWindow();
}

absl::Status Runner::RunBacklog() {
  // Device 0 sends, device 1 is offline until the backlog is queued.
  run_.release = Release::kOnAccepted;
  run_.closed_loop = false;
  run_.sending = true;
  const int total = options_.backlog_messages;
  const int window = std::max(1, options_.window);
  Device& sender = *run_.devices[0];
  const uint64_t t0 = NowNanos();
  int queued = 0;
  while (queued < total) {
    while (queued < total && run_.in_flight.load() < window) {
      sender.SendTo(1, NowNanos());
      ++queued;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (Seconds(NowNanos() - t0) > options_.ready_timeout_seconds) {
      return absl::DeadlineExceededError("backlog: queueing took too long");
    }
  }
  while (run_.in_flight.load() > 0 && Seconds(NowNanos() - t0) < options_.ready_timeout_seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  report_.backlog_queue_seconds = Seconds(NowNanos() - t0);
  report_.backlog_messages = static_cast<uint64_t>(total);
  progress_("backlog: queued %d envelopes (%" PRIu64 " accepted) in %.2fs", total,
            run_.accepted.load(), report_.backlog_queue_seconds);
  // The drain: connect the receiver and time until every accepted envelope arrived.
  StartMeasuring();
  Device& receiver = *run_.devices[1];
  receiver.Connect(NewStream(1));
  const uint64_t expected = run_.accepted.load();
  const uint64_t c0 = NowNanos();
  while (receiver.received() < expected &&
         Seconds(NowNanos() - c0) < options_.ready_timeout_seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  StopMeasuring();
  const uint64_t last = receiver.last_receipt_nanos();
  report_.backlog_drain_seconds =
      last > receiver.connect_started_nanos() ? Seconds(last - receiver.connect_started_nanos()) : 0;
  report_.backlog_drain_per_second =
      report_.backlog_drain_seconds > 0 ? receiver.received() / report_.backlog_drain_seconds : 0;
  return absl::OkStatus();
}

absl::Status Runner::RunIdle() {
  pid_t gateway = 0;
  for (const Watched& w : watched_) {
    if (w.spec.name == "gateway") gateway = w.pid;
  }
  if (gateway == 0) return absl::NotFoundError("idle-conns: the gateway process was not found");
  absl::StatusOr<ProcessUsage> before = ReadUsage(gateway, false);
  if (!before.ok()) return before.status();
  report_.gateway_rss_before_kib = before->rss_kib;
  if (absl::Status s = ConnectDevices(0, run_.devices.size()); !s.ok()) return s;
  StartMeasuring();
  SleepSeconds(options_.idle_hold_seconds);
  StopMeasuring();
  absl::StatusOr<ProcessUsage> after = ReadUsage(gateway, false);
  if (!after.ok()) return after.status();
  report_.gateway_rss_after_kib = after->rss_kib;
  report_.gateway_kib_per_connection =
      (static_cast<double>(after->rss_kib) - static_cast<double>(before->rss_kib)) /
      static_cast<double>(run_.devices.size());
  return absl::OkStatus();
}

// Why `response` is not the bundle of `target` as it registered (empty when it is).
std::string BundleDefect(const v1::ClaimBundlesResponse& response, const DeviceAccount& target) {
  if (response.bundles_size() != 1) {
    return absl::StrCat(response.bundles_size(), " bundles for one device");
  }
  const v1::PreKeyBundle& b = response.bundles(0);
  if (b.device().user_id() != target.user_id || b.device().device_id() != target.device_id) {
    return absl::StrCat("bundle of ", b.device().user_id(), "/", b.device().device_id());
  }
  if (b.registration_id() != target.registration_id) return "registration id differs";
  if (b.identity_key() != target.identity_public) return "identity key differs";
  if (!statement::VerifySignedPreKey(b.identity_key(), b.signed_prekey().public_key(),
                                     b.signed_prekey().signature())) {
    return "signed prekey signature does not verify";
  }
  if (response.device_list().list().user_id() != target.user_id) {
    return "device list of another user";
  }
  return "";
}

void Runner::RunClaims() {
  const int claimers = std::max(1, options_.window);
  const uint32_t n = static_cast<uint32_t>(run_.devices.size());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> without_prekey{0};
  std::vector<std::thread> threads;
  // Claimer channels: distinct from the devices' (which stay unused here), one TCP connection
  // each, like claims from many clients.
  const int64_t salt = (static_cast<int64_t>(getpid()) << 32) + (int64_t{1} << 31);
  // Claim k: target k mod n, requester the target's (1 + (k / n) mod (n - 1))-th successor.
  // Each round of n claims claims every device once and has every device claim once, so no
  // bucket sees more than its share (a random pick can pile onto one target's limit).
  std::atomic<uint64_t> next{0};
  for (int c = 0; c < claimers; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::Gateway::NewStub(
          DedicatedChannel(options_.target, credentials_, salt + c, options_.tls_server_name));
      while (!stop.load(std::memory_order_relaxed)) {
        // In flight from before the send is taken until it is answered (LoadWindow waits for 0).
        run_.in_flight.fetch_add(1);
        absl::Cleanup answered = [&] { run_.in_flight.fetch_sub(1); };
        if (!run_.TakeSend()) break;
        const uint64_t k = next.fetch_add(1, std::memory_order_relaxed);
        const uint32_t to = static_cast<uint32_t>(k % n);
        const uint32_t from = static_cast<uint32_t>((to + 1 + (k / n) % (n - 1)) % n);
        const DeviceAccount& requester = run_.devices[from]->account();
        const DeviceAccount& target = run_.devices[to]->account();
        v1::GatewayClaimBundlesRequest request;
        request.set_user_id(target.user_id);
        request.set_device_id(target.device_id);
        v1::ClaimBundlesResponse response;
        const uint64_t first = NowNanos();
        uint64_t t0 = first;
        run_.sent.fetch_add(1, std::memory_order_relaxed);
        grpc::Status status;
        // Resend mode: a claim whose outcome is unknown or that was asked to wait is made again,
        // with backoff (or the server's retry-after), until answered or the deadline.
        for (int attempt = 0;; ++attempt) {
          grpc::ClientContext context;
          context.AddMetadata("authorization", "Bearer " + requester.token);
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          t0 = NowNanos();
          response.Clear();
          status = stub->ClaimBundles(&context, request, &response);
          const grpc::StatusCode code = status.error_code();
          const bool retryable = code == grpc::StatusCode::UNAVAILABLE ||
                                 code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                                 code == grpc::StatusCode::DEADLINE_EXCEEDED ||
                                 code == grpc::StatusCode::ABORTED;
          if (status.ok() || !run_.resend || !retryable ||
              NowNanos() - first > run_.resend_deadline_nanos) {
            break;
          }
          run_.retried_refusals.fetch_add(1, std::memory_order_relaxed);
          run_.resent.fetch_add(1, std::memory_order_relaxed);
          int64_t wait_ms = std::min<int64_t>(int64_t{100} << std::min(attempt, 4), 2000);
          const auto& trailers = context.GetServerTrailingMetadata();
          if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
            int64_t server_ms = 0;
            if (absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()),
                                 &server_ms) &&
                server_ms > 0) {
              wait_ms = server_ms;
            }
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        }
        const uint64_t t1 = NowNanos();
        if (!status.ok()) {
          run_.refused.fetch_add(1, std::memory_order_relaxed);
          run_.NoteFailure(absl::StrCat("claim of ", target.user_id, " by ", requester.user_id,
                                        ": ", static_cast<int>(status.error_code()), " ",
                                        status.error_message()));
          continue;
        }
        if (const std::string defect = BundleDefect(response, target); !defect.empty()) {
          run_.mismatched.fetch_add(1, std::memory_order_relaxed);
          run_.NoteFailure(absl::StrCat("claim of ", target.user_id, ": ", defect));
          continue;
        }
        run_.accepted.fetch_add(1, std::memory_order_relaxed);
        run_.received.fetch_add(1, std::memory_order_relaxed);
        if (run_.monitor != nullptr) {
          run_.monitor->NoteAccepted(t0, t1);
          run_.monitor->NoteReceived(1, t0, t1);
        }
        run_.NoteGap(run_.last_accept_nanos, run_.longest_accept_gap, t1);
        run_.NoteGap(run_.last_receipt_nanos, run_.longest_receipt_gap, t1);
        if (!response.bundles(0).has_one_time_prekey()) without_prekey.fetch_add(1);
        if (run_.recording.load(std::memory_order_relaxed)) {
          run_.latency.Record(t1 - t0);
          run_.delivered_in_window.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  progress_("claims: %d claimers over %u devices; warm-up %.1fs", claimers, n,
            options_.warmup_seconds);
  LoadWindow();
  stop = true;
  for (std::thread& t : threads) t.join();
  if (run_.resend) run_.StopGapTracking(NowNanos());
  report_.claims_without_prekey = without_prekey.load();
  if (report_.claims_without_prekey > 0) {
    report_.notes.push_back(absl::StrCat(report_.claims_without_prekey,
                                         " claims answered without a one-time prekey"));
  }
}

absl::StatusOr<Report> Runner::Execute() {
  const std::string& s = options_.scenario;
  if (s != "chat" && s != "open" && s != "group" && s != "backlog" && s != "idle-conns" &&
      s != "claims" && s != "sparse") {
    return absl::InvalidArgumentError("unknown scenario " + s);
  }
  int devices = options_.devices;
  if (s == "backlog") devices = 2;
  if (devices < 2) return absl::InvalidArgumentError("at least 2 devices");
  report_.scenario = s;
  report_.target = options_.target;
  report_.tls = !options_.tls_ca_file.empty();
  report_.transport = options_.transport;
  report_.devices = devices;
  report_.window = options_.window;
  report_.warmup_seconds = options_.warmup_seconds;
  report_.command = options_.command;
  if (s != "backlog" && s != "idle-conns") run_.send_limit = options_.count;
  StartWatching();
  if (absl::Status st = Setup(devices); !st.ok()) return st;
  if (s == "idle-conns") {
    if (absl::Status st = RunIdle(); !st.ok()) return st;
  } else if (s == "claims") {
    // No streams: claims are unary calls.
    if (run_.resend) run_.StartGapTracking(NowNanos());
    RunClaims();
  } else if (s == "backlog") {
    // Only the sender connects now; the receiver connects for the drain.
    if (absl::Status st = ConnectDevices(0, 1); !st.ok()) return st;
    StartAckFlusher();
    if (absl::Status st = RunBacklog(); !st.ok()) return st;
    DrainAndCount();
  } else {
    if (absl::Status st = ConnectDevices(0, run_.devices.size()); !st.ok()) return st;
    StartAckFlusher();
    StartResender();
    if (run_.resend) run_.StartGapTracking(NowNanos());
    if (s == "chat") RunChat();
    if (s == "open") RunOpen();
    if (s == "sparse") RunSparse();
    if (s == "group") RunGroup();
    DrainAndCount();
  }
  report_.sent = run_.sent.load();
  report_.accepted = run_.accepted.load();
  report_.refused = run_.refused.load();
  report_.mismatched = run_.mismatched.load();
  report_.received = run_.received.load();
  report_.redelivered = run_.redelivered.load();
  report_.inbox_gaps = run_.inbox_gaps.load();
  report_.stream_errors = run_.stream_errors.load();
  report_.unparsable = run_.unparsable.load();
  report_.repeated_acks = run_.repeated_acks.load();
  report_.reconnect_and_resend = run_.resend;
  report_.resent = run_.resent.load();
  report_.retried_refusals = run_.retried_refusals.load();
  report_.reconnects = run_.reconnects.load();
  report_.relogins = run_.relogins.load();
  report_.inbox_conflicts = run_.inbox_conflicts.load();
  report_.longest_accept_gap_seconds = Seconds(run_.longest_accept_gap.load());
  report_.longest_delivery_gap_seconds = Seconds(run_.longest_receipt_gap.load());
  if (options_.monitor != nullptr) report_.recoveries = options_.monitor->Recoveries();
  Teardown();
  // Failures counted only while the run was live (Teardown's own closes are expected).
  report_.stream_failures = run_.stream_failures.load();
  report_.duplicates = run_.duplicates.load();
  {
    std::lock_guard<std::mutex> lock(run_.mutex);
    report_.first_failure = run_.first_failure;
  }
  return report_;
}

// ----- flags -----

bool ParseBool(const std::string& v) { return v.empty() || v == "1" || v == "true"; }

absl::StatusOr<std::vector<WatchSpec>> ParseWatch(const std::string& value, bool by_pid) {
  std::vector<WatchSpec> specs;
  for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(item, ':');
    WatchSpec spec;
    int number = 0;
    if (f.size() < 2 || f.size() > 3 || !absl::SimpleAtoi(f[1], &number) || number <= 0 ||
        (f.size() == 3 && f[2] != "tree")) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad watch entry '", item, "' (want name:", by_pid ? "pid" : "port",
                       "[:tree])"));
    }
    spec.name = f[0];
    (by_pid ? spec.pid : spec.port) = number;
    spec.tree = f.size() == 3;
    specs.push_back(spec);
  }
  return specs;
}

}  // namespace

std::string Usage() {
  return R"(padlock-loadgen — drives devices through the real gateway (docs/PERFORMANCE.md)

  --scenario=chat|open|group|backlog|idle-conns|claims|sparse   (default chat)
  --target=HOST:PORT        gateway (default 127.0.0.1:7400)
  --tls-ca=FILE             TLS with these PEM roots (default plaintext)
  --tls-server-name=NAME    name to verify in the gateway's certificate
  --transport=h2|grpc       device streams over epoll + nghttp2 (h2, default; plaintext only)
                            or the gRPC C++ callback client (grpc; TLS needs it). Unary calls
                            (register, log in, claims) always use gRPC stubs
  --h2-threads=T            h2: event-loop threads, each owning devices i mod T (default 1)
  --devices=N               devices, one user and one TCP connection each (default 1000;
                            group: senders + members, e.g. 257; backlog: always 2)
  --window=W                envelopes in flight per device (chat), group sends per sender,
                            sends awaiting acceptance (backlog), claimers (claims) (default 1)
  --rate=R                  open, sparse: envelopes per second offered in total (10000)
  --warmup=S --duration=S   seconds before and of the measured window (default 5, 10)
  --count=N                 chat, open, group, claims: issue exactly N sends (claims) in all,
                            then stop; replaces --warmup/--duration (the same work at any
                            speed, what tests use; default 0: run for the duration)
  --drain=S                 wait this long for in-flight envelopes before counting losses (15)
  --ack-every=K             ack once K envelopes are unacknowledged at the end of a Deliver
                            frame (default 16); --ack-flush-ms=T acks the rest every T ms
                            (default 50 with --stream-revision=1, 250 with 2)
  --stream-revision=R       device stream revision asked for (default 2: send outcomes batched,
                            acks ride on sends; 1: a frame per outcome and per ack)
  --payload=BYTES           opaque payload size (default 160)
  --backlog=M               backlog: envelopes queued before the drain (default 100000)
  --group-senders=G         group: sending devices (default 1)
  --prekeys=K               claims: one-time prekeys each device uploads first (default 50)
  --idle-hold=S             idle-conns: seconds to hold the streams before reading RSS;
                            sparse: seconds of the idle phase before the open loop (5)
  --setup-threads=T --connect-parallel=P --ready-timeout=S   set-up (8, 256, 180)
  --user-prefix=P           user ids P0, P1, ... (default lg<random>-)
  --watch=name:port[:tree],...   processes to measure, found by listening port
  --watch-pid=name:pid[:tree],... processes to measure by pid
                            (default: gateway:7400,presence:7410,message-queue:7420,
                             key-directory:7430,redis:7379:tree,postgres:7432:tree)
  --reconnect-and-resend    chat, open, group, claims: behave as a real client under faults:
                            reconnect broken streams (backoff + jitter, log in again if the
                            token is refused) and resend every send not yet accepted with the
                            same message id; retry UNAVAILABLE / RESOURCE_EXHAUSTED (after its
                            retry-after) / DEADLINE_EXCEEDED / ABORTED. Redeliveries after a
                            reconnect are counted apart, not as duplicates; every send must end
                            accepted and received. Reports the longest gaps without accepts and
                            deliveries (what the fault suite tests/chaos runs)
  --resend-deadline=S       give a send up when not accepted S seconds after its first try (120)
  --json=FILE               also write the report as JSON
  --quiet                   no progress lines
)";
}

absl::StatusOr<Options> ParseFlags(int argc, char** argv) {
  Options o;
  std::vector<std::string> words;
  for (int i = 0; i < argc; ++i) words.emplace_back(argv[i]);
  o.command = absl::StrJoin(words, " ");
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument " + arg);
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    auto number = [&](auto& out) -> absl::Status {
      double v = 0;
      if (!absl::SimpleAtod(value, &v) || v < 0) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, ": not a number: ", value));
      }
      out = static_cast<std::remove_reference_t<decltype(out)>>(v);
      return absl::OkStatus();
    };
    absl::Status s = absl::OkStatus();
    if (name == "scenario") o.scenario = value;
    else if (name == "target") o.target = value;
    else if (name == "tls-ca") o.tls_ca_file = value;
    else if (name == "tls-server-name") o.tls_server_name = value;
    else if (name == "transport") o.transport = value;
    else if (name == "h2-threads") s = number(o.h2_threads);
    else if (name == "devices") s = number(o.devices);
    else if (name == "window") s = number(o.window);
    else if (name == "rate") s = number(o.rate);
    else if (name == "warmup") s = number(o.warmup_seconds);
    else if (name == "duration") s = number(o.duration_seconds);
    else if (name == "count") s = number(o.count);
    else if (name == "drain") s = number(o.drain_seconds);
    else if (name == "ack-every") s = number(o.ack_every);
    else if (name == "ack-flush-ms") s = number(o.ack_flush_ms);
    else if (name == "stream-revision") s = number(o.stream_revision);
    else if (name == "payload") s = number(o.payload_bytes);
    else if (name == "backlog") s = number(o.backlog_messages);
    else if (name == "group-senders") s = number(o.group_senders);
    else if (name == "prekeys") s = number(o.prekeys);
    else if (name == "idle-hold") s = number(o.idle_hold_seconds);
    else if (name == "setup-threads") s = number(o.setup_threads);
    else if (name == "connect-parallel") s = number(o.connect_parallel);
    else if (name == "ready-timeout") s = number(o.ready_timeout_seconds);
    else if (name == "user-prefix") o.user_prefix = value;
    else if (name == "json") o.json_path = value;
    else if (name == "quiet") o.quiet = ParseBool(value);
    else if (name == "reconnect-and-resend") o.reconnect_and_resend = ParseBool(value);
    else if (name == "resend-deadline") s = number(o.resend_deadline_seconds);
    else if (name == "watch" || name == "watch-pid") {
      absl::StatusOr<std::vector<WatchSpec>> specs = ParseWatch(value, name == "watch-pid");
      if (!specs.ok()) return specs.status();
      o.watch.insert(o.watch.end(), specs->begin(), specs->end());
    } else if (name == "help") {
      return absl::InvalidArgumentError("help");
    } else {
      return absl::InvalidArgumentError("unknown flag --" + name);
    }
    if (!s.ok()) return s;
  }
  if (o.window < 1) return absl::InvalidArgumentError("--window must be at least 1");
  if (o.transport != "h2" && o.transport != "grpc") {
    return absl::InvalidArgumentError("--transport: h2 or grpc, not " + o.transport);
  }
  if (o.transport == "h2" && !o.tls_ca_file.empty()) {
    return absl::InvalidArgumentError("--transport=h2 is plaintext only: use --transport=grpc "
                                      "with --tls-ca");
  }
  if (o.h2_threads < 1) return absl::InvalidArgumentError("--h2-threads must be at least 1");
  if (o.prekeys > 100) return absl::InvalidArgumentError("--prekeys: at most 100 (one upload)");
  return o;
}

absl::StatusOr<Report> Run(const Options& options) {
  // gRPC locks absl::Mutex on every call; Debian's Abseil then runs its deadlock-cycle bookkeeping
  // (GraphCycles::GetId showed at 2 % of the generator's profile). A benchmark client does not
  // need it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Runner runner(options);
  return runner.Execute();
}

// ----- output -----

std::string FormatTable(const Report& r) {
  std::string out;
  absl::StrAppendFormat(&out, "scenario %s: %d devices, window %d%s, target %s%s, transport %s\n",
                        r.scenario, r.devices, r.window,
                        r.offered_rate > 0 ? absl::StrFormat(", offered %.0f/s", r.offered_rate)
                                           : std::string(),
                        r.target, r.tls ? " (TLS)" : " (plaintext)", r.transport);
  absl::StrAppendFormat(&out, "set-up %.2fs, warm-up %.1fs, measured %.2fs\n", r.setup_seconds,
                        r.warmup_seconds, r.measured_seconds);
  if (r.scenario == "sparse") {
    absl::StrAppendFormat(&out, "idle phase %.2fs: stack CPU %.2f%% of one core (", r.idle_seconds,
                          r.idle_stack_cpu_percent);
    std::vector<std::string> parts;
    for (const ProcessReport& p : r.idle_processes) {
      parts.push_back(absl::StrFormat("%s %.2f%%", p.name, p.cpu_percent));
    }
    absl::StrAppend(&out, absl::StrJoin(parts, ", "), ")\n");
  }
  if (r.scenario == "idle-conns") {
    absl::StrAppendFormat(&out,
                          "gateway RSS %" PRIu64 " KiB before, %" PRIu64
                          " KiB with %d streams: %.1f KiB per connection\n",
                          r.gateway_rss_before_kib, r.gateway_rss_after_kib, r.devices,
                          r.gateway_kib_per_connection);
  } else {
    absl::StrAppendFormat(&out, "delivered %" PRIu64 " in window: %.0f %s/s\n",
                          r.delivered_in_window, r.delivered_per_second,
                          r.scenario == "claims" ? "claims" : "envelopes");
    absl::StrAppendFormat(&out,
                          "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  mean %.3f  "
                          "max %.3f\n",
                          r.latency_ms_p50, r.latency_ms_p90, r.latency_ms_p99, r.latency_ms_p999,
                          r.latency_ms_mean, r.latency_ms_max);
  }
  if (r.scenario == "backlog") {
    absl::StrAppendFormat(&out,
                          "backlog %" PRIu64 " queued in %.2fs; drained in %.3fs: %.0f/s\n",
                          r.backlog_messages, r.backlog_queue_seconds, r.backlog_drain_seconds,
                          r.backlog_drain_per_second);
  }
  absl::StrAppendFormat(&out,
                        "sent %" PRIu64 ", accepted %" PRIu64 ", received %" PRIu64
                        "; losses %" PRIu64 ", duplicates %" PRIu64 " (redelivered %" PRIu64
                        "), refused %" PRIu64 ", mismatched %" PRIu64 ", inbox gaps %" PRIu64
                        ", stream errors %" PRIu64 ", stream failures %" PRIu64
                        ", unparsable %" PRIu64 ", repeated acks %" PRIu64 "\n",
                        r.sent, r.accepted, r.received, r.losses, r.duplicates, r.redelivered,
                        r.refused, r.mismatched, r.inbox_gaps, r.stream_errors,
                        r.stream_failures, r.unparsable, r.repeated_acks);
  if (r.reconnect_and_resend) {
    absl::StrAppendFormat(&out,
                          "reconnect-and-resend: resent %" PRIu64 ", retried refusals %" PRIu64
                          ", reconnects %" PRIu64 ", log-ins again %" PRIu64
                          ", unaccepted %" PRIu64 ", inbox conflicts %" PRIu64
                          "; longest gap without an accepted send %.3fs, without a delivery "
                          "%.3fs\n",
                          r.resent, r.retried_refusals, r.reconnects, r.relogins, r.unaccepted,
                          r.inbox_conflicts, r.longest_accept_gap_seconds,
                          r.longest_delivery_gap_seconds);
  }
  for (const FaultRecovery& f : r.recoveries) {
    absl::StrAppendFormat(&out,
                          "fault %s: restored after %.3fs; first accepted send after %.3fs, first "
                          "delivery after %.3fs (-1: none)\n",
                          f.fault, f.restored_after, f.first_accepted_after,
                          f.first_delivered_after);
  }
  if (!r.first_failure.empty()) absl::StrAppend(&out, "first failure: ", r.first_failure, "\n");
  absl::StrAppendFormat(&out, "\n%-16s %8s %10s %8s %12s %12s %12s\n", "process", "pid",
                        "cpu s", "cpu %", "µs/envelope", "peak RSS KiB", "RSS KiB");
  auto row = [&](const ProcessReport& p) {
    absl::StrAppendFormat(&out, "%-16s %8d %10.2f %8.1f %12.2f %12" PRIu64 " %12" PRIu64 "\n",
                          p.name, p.pid, p.cpu_seconds, p.cpu_percent, p.cpu_us_per_envelope,
                          p.hwm_kib, p.rss_kib);
  };
  for (const ProcessReport& p : r.processes) row(p);
  absl::StrAppendFormat(&out, "%-16s %8s %10s %8s %12.2f\n", "services+stores", "", "", "",
                        r.services_cpu_us_per_envelope);
  row(r.generator);
  for (const std::string& note : r.notes) absl::StrAppend(&out, "note: ", note, "\n");
  return out;
}

namespace {
using runtime::JsonString;

std::string JsonProcess(const ProcessReport& p) {
  return absl::StrFormat(
      "{\"name\": %s, \"pid\": %d, \"processes\": %d, \"cpu_seconds\": %.4f, "
      "\"cpu_percent\": %.2f, \"cpu_us_per_envelope\": %.4f, \"peak_rss_kib\": %" PRIu64
      ", \"rss_kib\": %" PRIu64 "}",
      JsonString(p.name), p.pid, p.processes, p.cpu_seconds, p.cpu_percent,
      p.cpu_us_per_envelope, p.hwm_kib, p.rss_kib);
}
}  // namespace

std::string FormatJson(const Report& r) {
  std::vector<std::string> processes;
  for (const ProcessReport& p : r.processes) processes.push_back(JsonProcess(p));
  std::vector<std::string> notes;
  for (const std::string& n : r.notes) notes.push_back(JsonString(n));
  std::string out = "{\n";
  auto field = [&](const std::string& name, const std::string& value) {
    absl::StrAppend(&out, "  ", JsonString(name), ": ", value, ",\n");
  };
  auto num = [](double v) { return absl::StrFormat("%.6g", v); };
  auto count = [](uint64_t v) { return absl::StrCat(v); };
  field("scenario", JsonString(r.scenario));
  field("command", JsonString(r.command));
  field("target", JsonString(r.target));
  field("tls", r.tls ? "true" : "false");
  field("transport", JsonString(r.transport));
  field("devices", count(static_cast<uint64_t>(r.devices)));
  field("window", count(static_cast<uint64_t>(r.window)));
  field("offered_rate", num(r.offered_rate));
  field("setup_seconds", num(r.setup_seconds));
  field("warmup_seconds", num(r.warmup_seconds));
  field("measured_seconds", num(r.measured_seconds));
  field("delivered_in_window", count(r.delivered_in_window));
  field("delivered_per_second", num(r.delivered_per_second));
  field("latency_ms", absl::StrFormat("{\"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, "
                                      "\"p999\": %.4f, \"mean\": %.4f, \"max\": %.4f}",
                                      r.latency_ms_p50, r.latency_ms_p90, r.latency_ms_p99,
                                      r.latency_ms_p999, r.latency_ms_mean, r.latency_ms_max));
  field("sent", count(r.sent));
  field("accepted", count(r.accepted));
  field("received", count(r.received));
  field("losses", count(r.losses));
  field("duplicates", count(r.duplicates));
  field("redelivered", count(r.redelivered));
  field("refused", count(r.refused));
  field("mismatched", count(r.mismatched));
  field("inbox_gaps", count(r.inbox_gaps));
  field("stream_errors", count(r.stream_errors));
  field("stream_failures", count(r.stream_failures));
  field("unparsable", count(r.unparsable));
  field("repeated_acks", count(r.repeated_acks));
  field("first_failure", JsonString(r.first_failure));
  field("clean", r.Clean() ? "true" : "false");
  field("processes", "[" + absl::StrJoin(processes, ", ") + "]");
  field("services_cpu_us_per_envelope", num(r.services_cpu_us_per_envelope));
  field("generator", JsonProcess(r.generator));
  std::vector<std::string> idle;
  for (const ProcessReport& p : r.idle_processes) idle.push_back(JsonProcess(p));
  field("idle_seconds", num(r.idle_seconds));
  field("idle_processes", "[" + absl::StrJoin(idle, ", ") + "]");
  field("idle_stack_cpu_percent", num(r.idle_stack_cpu_percent));
  field("gateway_rss_before_kib", count(r.gateway_rss_before_kib));
  field("gateway_rss_after_kib", count(r.gateway_rss_after_kib));
  field("gateway_kib_per_connection", num(r.gateway_kib_per_connection));
  field("backlog_messages", count(r.backlog_messages));
  field("backlog_queue_seconds", num(r.backlog_queue_seconds));
  field("backlog_drain_seconds", num(r.backlog_drain_seconds));
  field("backlog_drain_per_second", num(r.backlog_drain_per_second));
  field("claims_without_prekey", count(r.claims_without_prekey));
  field("reconnect_and_resend", r.reconnect_and_resend ? "true" : "false");
  field("resent", count(r.resent));
  field("retried_refusals", count(r.retried_refusals));
  field("reconnects", count(r.reconnects));
  field("relogins", count(r.relogins));
  field("unaccepted", count(r.unaccepted));
  field("inbox_conflicts", count(r.inbox_conflicts));
  field("longest_accept_gap_seconds", num(r.longest_accept_gap_seconds));
  field("longest_delivery_gap_seconds", num(r.longest_delivery_gap_seconds));
  std::vector<std::string> recoveries;
  for (const FaultRecovery& f : r.recoveries) {
    recoveries.push_back(absl::StrFormat(
        "{\"fault\": %s, \"restored_after_seconds\": %.4f, "
        "\"first_accepted_after_seconds\": %.4f, \"first_delivered_after_seconds\": %.4f}",
        JsonString(f.fault), f.restored_after, f.first_accepted_after, f.first_delivered_after));
  }
  field("recoveries", "[" + absl::StrJoin(recoveries, ", ") + "]");
  absl::StrAppend(&out, "  \"notes\": [", absl::StrJoin(notes, ", "), "]\n}\n");
  return out;
}

}  // namespace padlock::loadgen
