// asflowctl logs: the stderr of a run's instances (FlowService.Logs), and
// LogPrinter, which turns the chunks of several instances into whole,
// prefixed lines (docs/cli.md, "logs").
#ifndef ASFLOW_CLIENT_LOGS_COMMAND_H_
#define ASFLOW_CLIENT_LOGS_COMMAND_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "asflow/v1/service.pb.h"
#include "rpc/channel.h"

namespace asflow {

// Prints chunks as lines. With `prefix`, each line starts with the
// instance that wrote it ("extract(video_id=a) | ", "#2" after the label
// for a later attempt); without, a line "== attempt N ==" marks a change
// of attempt. A chunk's partial last line waits for the rest of it (other
// instances' lines go first); stored tails and Flush end theirs. With
// `escape` (a terminal), control characters are shown, not obeyed. Not
// thread-safe.
class LogPrinter {
 public:
  LogPrinter(bool prefix, bool escape) : prefix_(prefix), escape_(escape) {}
  // The text to print for `chunk`.
  std::string Add(const v1::LogChunk& chunk);
  // What is left of unfinished lines, each ended.
  std::string Flush();
  // From now on every line is prefixed (a second instance showed up).
  void set_prefix(bool prefix) { prefix_ = prefix; }
  bool prefix() const { return prefix_; }

 private:
  using Key = std::tuple<int64_t, int64_t, int32_t>;  // run, seq, attempt
  std::string Line(const v1::LogChunk& chunk, absl::string_view text) const;

  bool prefix_;
  const bool escape_;
  std::map<Key, std::string> partial_;
  std::map<Key, v1::LogChunk> heads_;  // the chunk that names each key
  bool any_ = false;
  Key last_{-1, -1, -1};
};

// Prints run `run_id`'s instances' stderr (of `task` and bindings matching
// `params`, each "name=start" or "start", when given); with `follow`,
// until the run ends. Exit code as the other commands.
int LogsCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                const std::vector<std::string>& params, bool follow);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_LOGS_COMMAND_H_
