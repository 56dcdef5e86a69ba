#include "server/shared_outputs.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace asflow {

namespace {

bool UsesFlowParam(const TaskRt& task, const std::string& name) {
  return std::find(task.flow_params_used.begin(), task.flow_params_used.end(), name) !=
         task.flow_params_used.end();
}

// The template rendered with flow parameters' values and every other name
// as `other(name)`; its own '*' replaced by `star` if given.
std::string RenderWith(const RunRt& run, const TaskRt& task, const Template& t,
                       std::string (*other)(const std::string&), const char* star) {
  std::map<std::string, std::string> values;
  for (const std::string& name : t.names()) {
    values[name] = UsesFlowParam(task, name) ? run.params.at(name) : other(name);
  }
  std::vector<size_t> stars;
  auto rendered = t.Render([&](absl::string_view name) { return &values.at(std::string(name)); },
                           star != nullptr ? &stars : nullptr);
  std::string out = rendered.ok() ? *rendered : t.text();
  if (rendered.ok()) {
    for (size_t at : stars) out[at] = *star;
  }
  return out;
}

std::string Any(const std::string&) { return std::string(1, kPatternAny); }
std::string Placeholder(const std::string& name) { return absl::StrCat("{", name, "}"); }

// For messages: the pattern with kPatternAny shown as '*'.
std::string Shown(std::string pattern) {
  std::replace(pattern.begin(), pattern.end(), kPatternAny, '*');
  return pattern;
}

}  // namespace

std::string OutputPattern(const RunRt& run, const TaskRt& task) {
  if (task.on == nullptr) return std::string();
  static constexpr char kStar = kPatternAny;
  std::string pattern = RenderWith(run, task, *task.on, Any, &kStar);
  // As NormalizeOutputPath would: no leading "./".
  while (pattern.size() > 2 && pattern[0] == '.' && pattern[1] == '/') pattern.erase(0, 2);
  return pattern;
}

std::string TaskCommand(const RunRt& run, const TaskRt& task) {
  if (!task.spec->handler().empty()) return absl::StrCat("handler ", task.spec->handler());
  std::string command = "argv";
  for (const Template& arg : task.argv) {
    absl::StrAppend(&command, absl::string_view("\0", 1), RenderWith(run, task, arg, Placeholder, nullptr));
  }
  return command;
}

bool PatternsMayMeet(absl::string_view a, absl::string_view b) {
  // Reachability over (i, j): a[0..i) and b[0..j) can render the same
  // text. A kPatternAny may take nothing (i + 1) or the other side's next
  // character (j + 1); two literals must be equal.
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<char>> seen(n + 1, std::vector<char>(m + 1, 0));
  std::vector<std::pair<size_t, size_t>> todo = {{0, 0}};
  seen[0][0] = 1;
  auto visit = [&](size_t i, size_t j) {
    if (i <= n && j <= m && !seen[i][j]) {
      seen[i][j] = 1;
      todo.emplace_back(i, j);
    }
  };
  while (!todo.empty()) {
    auto [i, j] = todo.back();
    todo.pop_back();
    if (i == n && j == m) return true;
    const bool any_a = i < n && a[i] == kPatternAny;
    const bool any_b = j < m && b[j] == kPatternAny;
    if (any_a) {
      visit(i + 1, j);
      if (j < m) visit(i, j + 1);
    }
    if (any_b) {
      visit(i, j + 1);
      if (i < n) visit(i + 1, j);
    }
    if (!any_a && !any_b && i < n && j < m && a[i] == b[j]) visit(i + 1, j + 1);
  }
  return false;
}

std::vector<std::string> SharedOutputWarnings(const RunRt& run, const std::vector<const RunRt*>& active) {
  std::vector<std::string> warnings;
  if (run.code != nullptr || run.request.from_code()) return warnings;
  for (const TaskRt& mine : run.tasks) {
    const std::string pattern = OutputPattern(run, mine);
    if (pattern.empty()) continue;
    const std::string command = TaskCommand(run, mine);
    for (const RunRt* other : active) {
      if (other == &run || other->workspace != run.workspace || other->code != nullptr ||
          other->request.from_code()) {
        continue;
      }
      for (const TaskRt& theirs : other->tasks) {
        const std::string their_pattern = OutputPattern(*other, theirs);
        if (their_pattern.empty() || !PatternsMayMeet(pattern, their_pattern)) continue;
        if (TaskCommand(*other, theirs) == command) continue;  // the same work: shared as usual
        warnings.push_back(absl::StrCat(
            "task ", mine.spec->name(), ": its outputs (", Shown(pattern), ") may be the same files as task ",
            theirs.key, "'s of run ", other->id, " (", Shown(their_pattern),
            "), whose command differs; an output that run makes is not made again: such an instance is "
            "reported cached by run ",
            other->id, " and this task's command does not run for it"));
      }
    }
  }
  return warnings;
}

}  // namespace asflow
