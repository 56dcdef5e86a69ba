#include "server/process_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/small_file.h"

namespace asflow {
namespace {

// Seconds since the epoch at which the machine booted (/proc/stat btime).
double BootTime() {
  auto stat = ReadSmallFile("/proc/stat");
  if (!stat.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    double btime = 0;
    if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &btime)) return btime;
  }
  return 0;
}

}  // namespace

ProcessStats ReadProcessStats() {
  ProcessStats s;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  auto stat = ReadSmallFile("/proc/self/stat");
  if (stat.ok()) {
    // Fields after the command name (which may hold spaces, so split after
    // its closing parenthesis): field 3 (state) is the first.
    size_t paren = stat->rfind(')');
    if (paren != std::string::npos && paren + 2 < stat->size()) {
      std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(*stat).substr(paren + 2), ' ');
      auto field = [&](int n) -> double {  // n: the field number in proc(5)
        double v = 0;
        size_t i = static_cast<size_t>(n - 3);
        return i < f.size() && absl::SimpleAtod(f[i], &v) ? v : 0;
      };
      s.cpu_seconds = (field(14) + field(15)) / ticks;
      s.threads = static_cast<int64_t>(field(20));
      s.start_time_seconds = BootTime() + field(22) / ticks;
      s.virtual_bytes = static_cast<int64_t>(field(23));
      s.resident_bytes = static_cast<int64_t>(field(24)) * sysconf(_SC_PAGESIZE);
    }
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] != '.') ++s.open_fds;
    }
    closedir(dir);
    --s.open_fds;  // the directory's own descriptor
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) s.max_fds = static_cast<int64_t>(limit.rlim_cur);
  return s;
}

}  // namespace asflow
