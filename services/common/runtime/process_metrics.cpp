#include "services/common/runtime/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace padlock::runtime {
namespace {

prometheus::MetricFamily Single(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Seconds since the epoch at boot, from the "btime" line of /proc/stat; 0 when unknown.
double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(6), &value)) return value;
    }
  }
  return 0;
}

int CountOpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count - 1;  // the descriptor of this listing
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;

  // /proc/self/stat: "pid (comm) state ppid ...". comm may hold spaces and parentheses, so split
  // after the last ')'. Fields after it, counted from 3 (state): 14 utime, 15 stime (clock ticks),
  // 20 num_threads, 22 starttime (ticks after boot), 23 vsize (bytes), 24 rss (pages).
  const std::string stat = ReadFile("/proc/self/stat");
  const size_t close_paren = stat.rfind(')');
  if (close_paren != std::string::npos && close_paren + 2 < stat.size()) {
    const std::vector<absl::string_view> fields =
        absl::StrSplit(absl::string_view(stat).substr(close_paren + 2), ' ', absl::SkipEmpty());
    const auto field = [&](size_t number) -> double {
      const size_t index = number - 3;  // fields[0] is field 3
      double value = 0;
      if (index >= fields.size() || !absl::SimpleAtod(fields[index], &value)) return -1;
      return value;
    };
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    const double utime = field(14), stime = field(15), threads = field(20);
    const double start = field(22), vsize = field(23), rss = field(24);
    if (ticks > 0 && utime >= 0 && stime >= 0) {
      families.push_back(Single("process_cpu_seconds_total",
                                "Total user and system CPU time spent in seconds.",
                                MetricType::Counter, (utime + stime) / ticks));
    }
    if (rss >= 0) {
      families.push_back(Single("process_resident_memory_bytes", "Resident memory size in bytes.",
                                MetricType::Gauge, rss * page));
    }
    if (vsize >= 0) {
      families.push_back(Single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                MetricType::Gauge, vsize));
    }
    if (threads >= 0) {
      families.push_back(Single("process_threads", "Number of OS threads in the process.",
                                MetricType::Gauge, threads));
    }
    const double boot = BootTimeSeconds();
    if (ticks > 0 && start >= 0 && boot > 0) {
      families.push_back(Single("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.",
                                MetricType::Gauge, boot + start / ticks));
    }
  }

  const int open_fds = CountOpenFds();
  if (open_fds >= 0) {
    families.push_back(Single("process_open_fds", "Number of open file descriptors.",
                              MetricType::Gauge, open_fds));
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    families.push_back(Single("process_max_fds", "Maximum number of open file descriptors.",
                              MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

}  // namespace padlock::runtime
