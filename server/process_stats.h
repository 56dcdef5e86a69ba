// The daemon's own process, read from /proc/self for /metrics (the
// process_* metrics every Prometheus client library exports).
#ifndef ASFLOW_SERVER_PROCESS_STATS_H_
#define ASFLOW_SERVER_PROCESS_STATS_H_

#include <cstdint>

namespace asflow {

struct ProcessStats {
  double cpu_seconds = 0;         // user + system
  double start_time_seconds = 0;  // since the Unix epoch
  int64_t resident_bytes = 0;
  int64_t virtual_bytes = 0;
  int64_t open_fds = 0;
  int64_t max_fds = 0;
  int64_t threads = 0;
};

// Reads /proc/self; a field it cannot read stays 0.
ProcessStats ReadProcessStats();

}  // namespace asflow

#endif  // ASFLOW_SERVER_PROCESS_STATS_H_
