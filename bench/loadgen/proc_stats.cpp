#include "bench/loadgen/proc_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace padlock::loadgen {
namespace {

std::vector<pid_t> AllPids() {
  std::vector<pid_t> pids;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (dirent* entry = readdir(dir)) {
    int pid = 0;
    if (absl::SimpleAtoi(entry->d_name, &pid) && pid > 0) pids.push_back(pid);
  }
  closedir(dir);
  return pids;
}

bool ReadFile(const std::string& path, std::string& out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream buffer;
  buffer << in.rdbuf();
  out = buffer.str();
  return true;
}

// Socket inodes listening on `port` from one /proc/net/tcp* table.
void ListeningInodes(const std::string& table, int port, std::set<std::string>& inodes) {
  std::string text;
  if (!ReadFile(table, text)) return;
  bool header = true;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (header) {
      header = false;
      continue;
    }
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (f.size() < 10 || f[3] != "0A") continue;  // 0A = TCP_LISTEN
    const size_t colon = f[1].rfind(':');
    if (colon == absl::string_view::npos) continue;
    const std::string hex(f[1].substr(colon + 1));
    if (std::strtol(hex.c_str(), nullptr, 16) == port) inodes.insert(std::string(f[9]));
  }
}

struct Stat {
  pid_t ppid = 0;
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;
};

bool ReadStat(pid_t pid, Stat& stat) {
  std::string text;
  if (!ReadFile(absl::StrCat("/proc/", pid, "/stat"), text)) return false;
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return false;
  std::vector<std::string> f = absl::StrSplit(text.substr(close + 2), ' ');
  // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
  if (f.size() < 15) return false;
  int ppid = 0;
  if (!absl::SimpleAtoi(f[1], &ppid)) return false;
  stat.ppid = ppid;
  return absl::SimpleAtoi(f[11], &stat.utime) && absl::SimpleAtoi(f[12], &stat.stime) &&
         absl::SimpleAtoi(f[13], &stat.cutime) && absl::SimpleAtoi(f[14], &stat.cstime);
}

// VmRSS and VmHWM in KiB (0 when absent, e.g. a zombie).
void ReadMemory(pid_t pid, uint64_t& rss, uint64_t& hwm) {
  rss = hwm = 0;
  std::string text;
  if (!ReadFile(absl::StrCat("/proc/", pid, "/status"), text)) return;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    auto value = [&](absl::string_view key, uint64_t& out) {
      if (!absl::ConsumePrefix(&line, key)) return;
      // "VmRSS:\t   1234 kB"
      std::vector<absl::string_view> f =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (!f.empty()) (void)absl::SimpleAtoi(f[0], &out);
    };
    value("VmRSS:", rss);
    value("VmHWM:", hwm);
  }
}

}  // namespace

absl::StatusOr<pid_t> FindListeningPid(int port) {
  std::set<std::string> inodes;
  ListeningInodes("/proc/net/tcp", port, inodes);
  ListeningInodes("/proc/net/tcp6", port, inodes);
  if (inodes.empty()) return absl::NotFoundError(absl::StrCat("nothing listens on port ", port));
  for (pid_t pid : AllPids()) {
    const std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
    DIR* dir = opendir(fd_dir.c_str());
    if (dir == nullptr) continue;
    bool found = false;
    while (dirent* entry = readdir(dir)) {
      char target[128];
      const std::string link = absl::StrCat(fd_dir, "/", entry->d_name);
      const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
      if (n <= 8) continue;
      const std::string value(target, static_cast<size_t>(n));
      if (value.rfind("socket:[", 0) == 0 &&
          inodes.count(value.substr(8, value.size() - 9)) > 0) {
        found = true;
        break;
      }
    }
    closedir(dir);
    if (found) return pid;
  }
  return absl::NotFoundError(absl::StrCat("no visible process owns the listener on port ", port));
}

absl::StatusOr<ProcessUsage> ReadUsage(pid_t pid, bool tree) {
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  Stat root;
  if (!ReadStat(pid, root)) return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  ProcessUsage usage;
  usage.processes = 1;
  uint64_t ticks = root.utime + root.stime;
  ReadMemory(pid, usage.rss_kib, usage.hwm_kib);
  if (tree) {
    // Reaped children's CPU is in the root's cutime/cstime; live descendants are read one by one.
    ticks += root.cutime + root.cstime;
    std::map<pid_t, Stat> stats;
    for (pid_t p : AllPids()) {
      Stat s;
      if (p != pid && ReadStat(p, s)) stats[p] = s;
    }
    std::set<pid_t> members{pid};
    bool grew = true;
    while (grew) {
      grew = false;
      for (const auto& [p, s] : stats) {
        if (members.count(p) == 0 && members.count(s.ppid) > 0) {
          members.insert(p);
          grew = true;
          ticks += s.utime + s.stime;
          uint64_t rss = 0, hwm = 0;
          ReadMemory(p, rss, hwm);
          usage.rss_kib += rss;
          usage.hwm_kib += hwm;
          ++usage.processes;
        }
      }
    }
  }
  usage.cpu_seconds = static_cast<double>(ticks) / tick;
  return usage;
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

uint64_t SelfHwmKib() {
  uint64_t rss = 0, hwm = 0;
  ReadMemory(getpid(), rss, hwm);
  return hwm;
}

}  // namespace padlock::loadgen
