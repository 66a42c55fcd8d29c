#include "tests/harness/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace padlock::testing {
namespace {

int BindLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int FreeTcpPort() {
  static std::mutex mu;
  static std::set<int> handed_out;
  static std::mt19937 random(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  // Below the kernel's ephemeral range, so that no outgoing connection (of this test or of any
  // other process on the machine: a load generator beside it opens thousands) can take the port
  // between this check and the server's bind. Redis Cluster also listens on port + 10000: keep
  // that below the range too, and free.
  int ephemeral_low = 32768;
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  if (!(range >> ephemeral_low)) ephemeral_low = 32768;
  const int low = 12000;
  const int high = std::min(ephemeral_low - 10000, 22000);
  for (int attempt = 0; high > low && attempt < 1000; ++attempt) {
    const int port = low + static_cast<int>(random() % static_cast<unsigned>(high - low));
    if (handed_out.contains(port)) continue;
    const int fd = BindLoopback(port), bus = BindLoopback(port + 10000);
    if (fd >= 0) ::close(fd);
    if (bus >= 0) ::close(bus);
    if (fd < 0 || bus < 0) continue;
    handed_out.insert(port);
    return port;
  }
  // No room below the ephemeral range on this machine: ask the kernel for one.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    int fd = BindLoopback(0);
    if (fd < 0) continue;
    sockaddr_in addr{};
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    int port = ntohs(addr.sin_port);
    if (port > 55000) continue;
    if (handed_out.insert(port).second) return port;
  }
  std::abort();  // the machine has no free ports: nothing sensible to do in a test
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool TcpPortOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(base && *base ? base : "/tmp", "/padlock-test-XXXXXX");
  char* made = ::mkdtemp(templ.data());
  if (made == nullptr) std::abort();
  path_ = made;
  // Servers started as an unprivileged user (PostgreSQL) must be able to enter it.
  std::filesystem::permissions(path_, std::filesystem::perms::all);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<Subprocess> Subprocess::Start(Options options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("empty argv");
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    std::string key = entry.substr(0, entry.find('='));
    if (options.env.count(key) == 0) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : options.env) env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (auto& s : options.argv) argv.push_back(s.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    ::setpgid(0, 0);
    int out = options.log_path.empty()
                  ? ::open("/dev/null", O_WRONLY)
                  : ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    int in = ::open("/dev/null", O_RDONLY);
    if (in >= 0) ::dup2(in, 0);
    if (!options.working_dir.empty() && ::chdir(options.working_dir.c_str()) != 0) _exit(126);
    if (options.run_as_uid != 0) {
      if (::setgid(options.run_as_gid) != 0 || ::setuid(options.run_as_uid) != 0) _exit(126);
    }
    // A test binary killed by a signal runs no destructors: let its servers die with it.
    // (Set after setuid, which clears it; the getppid check closes the race with a parent that
    // died before the prctl.)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(125);
    ::execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  Subprocess p;
  p.pid_ = pid;
  p.log_path_ = options.log_path;
  return p;
}

Subprocess::Subprocess(Subprocess&& other) noexcept { *this = std::move(other); }

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    Kill();
    pid_ = other.pid_;
    status_ = other.status_;
    exited_ = other.exited_;
    log_path_ = std::move(other.log_path_);
    other.pid_ = -1;
  }
  return *this;
}

Subprocess::~Subprocess() { Kill(); }

bool Subprocess::running() {
  if (pid_ <= 0 || exited_) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
    return false;
  }
  return true;
}

absl::StatusOr<int> Subprocess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("no process");
  if (!WaitFor([&] { return !running(); }, timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " still running"));
  }
  return status_;
}

absl::StatusOr<int> Subprocess::Stop(int signal, absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("no process");
  if (running()) ::kill(pid_, signal);
  return Wait(timeout);
}

void Subprocess::Kill() {
  if (pid_ <= 0) return;
  if (running()) {
    ::kill(-pid_, SIGKILL);  // the whole process group: servers may fork helpers
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    status_ = status;
  }
  pid_ = -1;
}

std::string Subprocess::ReadLog() const {
  if (log_path_.empty()) return "";
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string BuildBinary(const std::string& relative_path) {
  return absl::StrCat(PADLOCK_BINARY_DIR, "/", relative_path);
}

std::string FindProgram(const std::string& name, const std::vector<std::string>& fallback_dirs) {
  const char* path = std::getenv("PATH");
  std::vector<std::string> dirs;
  if (path != nullptr) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) dirs.push_back(dir);
  }
  dirs.insert(dirs.end(), fallback_dirs.begin(), fallback_dirs.end());
  for (const auto& dir : dirs) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace padlock::testing
