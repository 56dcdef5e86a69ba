#include "server/expansion.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/safe_path.h"

namespace asflow {
namespace {

// Every non-empty line of `source` as a binding.
absl::Status AddLines(const RunRt& run, const v1::ForEach& fe, absl::string_view name, LineSource& source,
                      int64_t max_instances, const std::function<void(const Bindings&)>& add) {
  std::string line;
  for (;;) {
    auto more = source.Next(&line);
    if (!more.ok()) return more.status();
    if (!*more) return absl::OkStatus();
    if (line.empty()) continue;
    auto bound = BindValue(line, fe.bind());
    if (!bound.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", source.line_number(), ": ", bound.status().message()));
    }
    add(*bound);
    if (run.next_seq > max_instances) {
      return absl::ResourceExhaustedError(absl::StrCat("more than ", max_instances, " instances"));
    }
  }
}

}  // namespace

absl::Status ForEachBinding(const RunRt& run, int t, Workspace& ws, int64_t max_instances,
                            const std::function<void(const Bindings&)>& add) {
  const TaskRt& task = run.tasks[t];
  const v1::ForEach& fe = task.spec->for_each();
  if (!fe.lines_of().empty()) {
    const TaskRt& up = run.tasks[task.lines_of];
    for (int64_t seq : up.seqs) {
      const InstanceRt& inst = run.instances[seq];
      if ((inst.state != v1::DONE && inst.state != v1::CACHED) || inst.output.empty()) continue;
      auto lines = ws.OpenLines(inst.output);
      if (!lines.ok()) {
        if (absl::IsNotFound(lines.status())) continue;  // cached by its .err
        return lines.status();
      }
      if (absl::Status s = AddLines(run, fe, inst.output, **lines, max_instances, add); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (task.file != nullptr) {
    auto rendered = task.file->Render([&](absl::string_view name) { return LookupParam({}, run.params, name); });
    if (!rendered.ok()) return rendered.status();
    auto rel = NormalizeOutputPath(*rendered);
    if (!rel.ok()) return rel.status();
    auto lines = ws.OpenLines(*rel);
    if (!lines.ok()) return lines.status();
    return AddLines(run, fe, *rel, **lines, max_instances, add);
  }
  if (fe.values_size() > 0) {
    for (int i = 0; i < fe.values_size(); ++i) {
      auto bound = BindValue(fe.values(i), fe.bind());
      if (!bound.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("for_each.values[", i, "]: ", bound.status().message()));
      }
      add(*bound);
    }
    return absl::OkStatus();
  }
  add({});
  return absl::OkStatus();
}

}  // namespace asflow
