// Path safety for rendered output paths: they are relative to the run's
// workspace and must stay inside it. Pure string functions; the file system
// side (no symlink followed below the workspace) is common/beneath.h.
// Thread-safe.
#ifndef ASFLOW_COMMON_SAFE_PATH_H_
#define ASFLOW_COMMON_SAFE_PATH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace asflow {

// Normalises a rendered output path relative to the workspace: drops "."
// components and repeated '/'. InvalidArgument (quoting the path) if it is
// empty, absolute, contains NUL, has a ".." component, or ends with '/'.
absl::StatusOr<std::string> NormalizeOutputPath(absl::string_view rel);

// The ".err" path of a suppressed instance: output_path minus the suffixes
// that on_template's file name ends with (the extensions after the last '}'
// of its basename, or all its extensions if the basename has no
// placeholder), plus ".err".
// ErrorPathFor("data/t/a.b.jsonl.zst", "data/t/{id}.jsonl.zst") == "data/t/a.b.err".
std::string ErrorPathFor(absl::string_view output_path,
                         absl::string_view on_template);

// Whether a task's `on` template names a directory output (it ends with
// '/'): the command fills $ASFLOW_OUTPUT_DIR, committed as a whole.
inline bool IsDirectoryOutput(absl::string_view on_template) {
  return !on_template.empty() && on_template.back() == '/';
}

// Replaces each '*' in the file-name part of path (after the last '/') with
// hash; '*' in directory parts is left alone. With `only_at`, only the '*'
// at those offsets (ascending) are candidates: the template's own, not a
// parameter value's.
std::string ExpandStar(absl::string_view path, absl::string_view hash,
                       const std::vector<size_t>* only_at = nullptr);

}  // namespace asflow

#endif  // ASFLOW_COMMON_SAFE_PATH_H_
