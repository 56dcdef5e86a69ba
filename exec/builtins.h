// The built-in handlers: run without a process, by the daemon's in-process
// pool and by every asflow-worker, so they measure asflow's own cost.
// Defined once here; flow files name them in `handler:`.
#ifndef ASFLOW_EXEC_BUILTINS_H_
#define ASFLOW_EXEC_BUILTINS_H_

#include "absl/strings/string_view.h"

namespace asflow {

// Writes nothing.
inline constexpr char kBuiltinNoop[] = "builtin.noop";
// Writes the instance's parameters (its JSON) and a newline.
inline constexpr char kBuiltinEcho[] = "builtin.echo";

inline bool IsBuiltinHandler(absl::string_view handler) {
  return handler == kBuiltinNoop || handler == kBuiltinEcho;
}

}  // namespace asflow

#endif  // ASFLOW_EXEC_BUILTINS_H_
