#include "common/flow_imports.h"

#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/spec_validator.h"

namespace asflow {
namespace {

// Most flow files one flow may import, transitively.
constexpr size_t kMaxImportedFiles = 100;

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return path.substr(0, slash + 1);
}

std::string RealPathOf(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

// One flow file in the import graph.
struct Node {
  std::string real;                     // canonical path: one node per file
  std::map<std::string, int> imported;  // flow name -> node, of its imports
  std::map<std::string, int> tasks;     // task name -> index in its spec
};

class Resolver {
 public:
  absl::StatusOr<LoadedFlow> Load(const std::string& path) {
    auto root = Parse(path);
    if (!root.ok()) return root.status();
    flow_files_.emplace(SpecOf(0).name(), 0);
    if (absl::Status s = Visit(0); !s.ok()) return s;
    if (!errors_.empty()) return Errors();
    Flatten();
    if (!errors_.empty()) return Errors();
    // What only the whole can get wrong (two tasks of one output): checked
    // as the daemon will, located in the file each task came from.
    if (absl::Status s = ValidateFlowSpec(out_.spec); !s.ok()) {
      return absl::InvalidArgumentError(out_.LocateLines(s.message()));
    }
    return std::move(out_);
  }

 private:
  absl::Status Errors() const { return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n")); }

  const v1::FlowSpec& SpecOf(int node) const { return out_.files[node]->spec; }
  const SourceMap& WhereOf(int node) const { return out_.files[node]->where; }
  void Add(int node, const std::string& field, absl::string_view message) {
    errors_.push_back(absl::StrCat(WhereOf(node).Locate(field), ": ", field, ": ", message));
  }

  // Parses `path` into a new node. Its own problems as ParseFlowFile says.
  absl::StatusOr<int> Parse(const std::string& path) {
    auto parsed = ParseFlowFile(path);
    if (!parsed.ok()) return parsed.status();
    for (const std::string& w : parsed->warnings) out_.warnings.push_back(w);
    std::vector<std::string> own_problems;
    for (int i = 0; i < parsed->spec.tasks_size(); ++i) {
      if (parsed->spec.tasks(i).flow().empty()) continue;
      const std::string field = absl::StrCat("tasks[", i, "].flow");
      own_problems.push_back(absl::StrCat(parsed->where.Locate(field), ": ", field,
                                          ": not a flow file key (the client sets it on imported tasks)"));
    }
    if (!own_problems.empty()) return absl::InvalidArgumentError(absl::StrJoin(own_problems, "\n"));
    out_.files.push_back(std::make_unique<ParsedFlow>(std::move(*parsed)));
    Node node;
    node.real = RealPathOf(path);
    const v1::FlowSpec& spec = out_.files.back()->spec;
    for (int i = 0; i < spec.tasks_size(); ++i) node.tasks.emplace(spec.tasks(i).name(), i);
    nodes_.push_back(std::move(node));
    paths_.push_back(path);
    const int id = static_cast<int>(nodes_.size()) - 1;
    by_real_[nodes_[id].real] = id;
    return id;
  }

  // Loads the imports of node `n` (depth first), then checks its tasks'
  // references to them.
  absl::Status Visit(int n) {
    stack_.push_back(n);
    const v1::FlowSpec& spec = SpecOf(n);
    for (int j = 0; j < spec.imports_size(); ++j) {
      const std::string field = absl::StrCat("imports[", j, "]");
      const std::string& imp = spec.imports(j);
      const std::string path = imp[0] == '/' ? imp : DirOf(paths_[n]) + imp;
      const std::string real = RealPathOf(path);
      int child;
      if (auto on_stack = std::find_if(stack_.begin(), stack_.end(), [&](int s) { return nodes_[s].real == real; });
          on_stack != stack_.end()) {
        std::vector<std::string> cycle;
        for (auto it = on_stack; it != stack_.end(); ++it) cycle.push_back(paths_[*it]);
        cycle.push_back(path);
        Add(n, field, absl::StrCat("import cycle: ", absl::StrJoin(cycle, " -> ")));
        continue;
      } else if (auto known = by_real_.find(real); known != by_real_.end()) {
        child = known->second;  // imported before, by another file
      } else {
        if (nodes_.size() >= kMaxImportedFiles) {
          Add(n, field, absl::StrCat("more than ", kMaxImportedFiles, " flow files imported"));
          continue;
        }
        auto parsed = Parse(path);
        if (!parsed.ok()) {
          if (absl::IsInvalidArgument(parsed.status()) && absl::StrContains(parsed.status().message(), "\n")) {
            Add(n, field, absl::StrCat("'", imp, "' has problems:\n", parsed.status().message()));
          } else if (absl::IsInvalidArgument(parsed.status()) &&
                     absl::StartsWith(parsed.status().message(), path + ":") &&
                     !absl::StartsWith(parsed.status().message(), path + ": ")) {
            Add(n, field, absl::StrCat("'", imp, "' has a problem:\n", parsed.status().message()));
          } else {
            Add(n, field, absl::StrCat("cannot import '", imp, "': ", parsed.status().message()));
          }
          failed_imports_.insert(n);
          continue;
        }
        child = *parsed;
        if (absl::Status s = Visit(child); !s.ok()) return s;
      }
      const std::string& name = SpecOf(child).name();
      if (name == spec.name()) {
        Add(n, field, absl::StrCat("'", imp, "' is flow '", name, "', this flow's own name: rename one"));
        continue;
      }
      auto [it, inserted] = nodes_[n].imported.emplace(name, child);
      auto [owner, fresh] = flow_files_.emplace(name, child);
      if (!inserted && it->second != child) {
        Add(n, field, absl::StrCat("'", imp, "' is flow '", name, "', as ", paths_[it->second],
                                   " is: a flow name reaches one file"));
      } else if (!fresh && owner->second != child) {
        Add(n, field, absl::StrCat("'", imp, "' is flow '", name, "', as ", paths_[owner->second],
                                   " (imported elsewhere) is: a flow name reaches one file"));
      }
    }
    for (int i = 0; i < spec.tasks_size(); ++i) {
      const v1::TaskSpec& task = spec.tasks(i);
      for (int k = 0; k < task.needs_size(); ++k) {
        CheckReference(n, absl::StrCat("tasks[", i, "].needs[", k, "]"), task.needs(k), false);
      }
      if (!task.for_each().lines_of().empty()) {
        CheckReference(n, absl::StrCat("tasks[", i, "].for_each.lines_of"), task.for_each().lines_of(), true);
      }
    }
    stack_.pop_back();
    return absl::OkStatus();
  }

  // The node and task index a FLOW.TASK reference of node `n` reaches.
  std::optional<std::pair<int, int>> Reach(int n, absl::string_view name) const {
    const size_t dot = name.rfind('.');
    if (dot == absl::string_view::npos) return std::nullopt;
    auto flow = nodes_[n].imported.find(std::string(name.substr(0, dot)));
    if (flow == nodes_[n].imported.end()) return std::nullopt;
    auto task = nodes_[flow->second].tasks.find(std::string(name.substr(dot + 1)));
    if (task == nodes_[flow->second].tasks.end()) return std::nullopt;
    return std::make_pair(flow->second, task->second);
  }

  void CheckReference(int n, const std::string& field, const std::string& name, bool reads_output) {
    const size_t dot = name.rfind('.');
    if (dot == std::string::npos) return;  // its own task: the validator checked it
    const std::string flow = name.substr(0, dot);
    auto imported = nodes_[n].imported.find(flow);
    if (imported == nodes_[n].imported.end()) {
      if (failed_imports_.count(n) > 0) return;  // what it imports is unknown: said above
      std::vector<std::string> flows;
      for (const auto& [f, node] : nodes_[n].imported) flows.push_back(f);
      Add(n, field, absl::StrCat("unknown task '", name, "': no imported flow '", flow, "' (imported: ",
                                 flows.empty() ? "none" : absl::StrJoin(flows, ", "), ")"));
      return;
    }
    auto reached = Reach(n, name);
    if (!reached) {
      std::vector<std::string> tasks;
      for (const auto& [t, i] : nodes_[imported->second].tasks) tasks.push_back(t);
      Add(n, field, absl::StrCat("unknown task '", name, "': flow '", flow, "' (", paths_[imported->second],
                                 ") has ", absl::StrJoin(tasks, ", ")));
      return;
    }
    if (reads_output && SpecOf(reached->first).tasks(reached->second).on().empty()) {
      Add(n, field, absl::StrCat("task '", name, "' has no 'on' output to read"));
    }
  }

  // The qualified name node `n` gives a reference `name` of its own.
  std::string Qualify(int n, const std::string& name) const {
    if (n == 0 || absl::StrContains(name, '.')) return name;
    return absl::StrCat(SpecOf(n).name(), ".", name);
  }

  void Flatten() {
    const v1::FlowSpec& root = SpecOf(0);
    out_.spec = root;
    out_.spec.clear_imports();
    out_.spec.clear_tasks();
    // Imported tasks reached from the flow's own tasks, breadth first.
    std::deque<std::pair<int, int>> todo;
    std::set<std::pair<int, int>> added;
    auto reach_from = [&](int n, const v1::TaskSpec& task) {
      std::vector<std::string> refs(task.needs().begin(), task.needs().end());
      if (!task.for_each().lines_of().empty()) refs.push_back(task.for_each().lines_of());
      for (const std::string& ref : refs) {
        std::optional<std::pair<int, int>> to;
        if (absl::StrContains(ref, '.')) {
          to = Reach(n, ref);
        } else if (n != 0) {
          to = std::make_pair(n, nodes_[n].tasks.at(ref));
        }
        if (to && added.insert(*to).second) todo.push_back(*to);
      }
    };
    for (const v1::TaskSpec& task : root.tasks()) reach_from(0, task);
    std::set<int> used_files;
    std::vector<v1::TaskSpec> imported;
    std::vector<std::pair<int, int>> imported_origin;
    while (!todo.empty()) {
      auto [n, i] = todo.front();
      todo.pop_front();
      used_files.insert(n);
      const v1::TaskSpec& own = SpecOf(n).tasks(i);
      imported.push_back(own);
      v1::TaskSpec* task = &imported.back();
      task->set_name(Qualify(n, own.name()));
      task->set_flow(SpecOf(n).name());
      for (std::string& need : *task->mutable_needs()) need = Qualify(n, need);
      if (!own.for_each().lines_of().empty()) {
        task->mutable_for_each()->set_lines_of(Qualify(n, own.for_each().lines_of()));
      }
      imported_origin.emplace_back(n, i);
      reach_from(n, own);
    }
    // Upstream first, as they run: the tasks reached last (deepest) lead,
    // then the flow's own tasks.
    for (size_t k = imported.size(); k-- > 0;) {
      *out_.spec.add_tasks() = std::move(imported[k]);
      out_.task_origin.push_back(imported_origin[k]);
    }
    for (int i = 0; i < root.tasks_size(); ++i) {
      *out_.spec.add_tasks() = root.tasks(i);
      out_.task_origin.emplace_back(0, i);
    }
    // Their parameters and throttle keys: the importing file's win; two
    // imported files must agree.
    std::map<std::string, int> param_from, key_from;
    for (const auto& [k, v] : root.params()) param_from[k] = 0;
    for (const auto& [k, v] : root.throttle()) key_from[k] = 0;
    for (int n : used_files) {
      const v1::FlowSpec& spec = SpecOf(n);
      std::vector<std::string> names;
      for (const auto& [k, v] : spec.params()) names.push_back(k);
      std::sort(names.begin(), names.end());
      for (const std::string& k : names) {
        auto [it, fresh] = param_from.emplace(k, n);
        if (fresh) {
          (*out_.spec.mutable_params())[k] = spec.params().at(k);
        } else if (it->second != 0 && SpecOf(it->second).params().at(k) != spec.params().at(k)) {
          Add(n, "params." + k, absl::StrCat("'", spec.params().at(k), "' here, '", SpecOf(it->second).params().at(k),
                                             "' in ", paths_[it->second], ": declare '", k, "' in ", paths_[0],
                                             " to choose"));
        }
      }
      names.clear();
      for (const auto& [k, v] : spec.throttle()) names.push_back(k);
      std::sort(names.begin(), names.end());
      for (const std::string& k : names) {
        auto [it, fresh] = key_from.emplace(k, n);
        const v1::ThrottleKey& key = spec.throttle().at(k);
        if (fresh) {
          (*out_.spec.mutable_throttle())[k] = key;
          continue;
        }
        const v1::ThrottleKey& first = out_.spec.throttle().at(k);
        if (first.limit() != key.limit() || first.rate() != key.rate()) {
          Add(n, "throttle." + k, absl::StrCat("defined differently in ", paths_[it->second],
                                               ": a throttle key is defined one way"));
        }
      }
    }
  }

  LoadedFlow out_;
  std::vector<Node> nodes_;
  std::vector<std::string> paths_;  // as reached (relative to the cwd)
  std::map<std::string, int> by_real_;
  std::map<std::string, int> flow_files_;  // flow name -> node
  std::vector<int> stack_;
  std::vector<std::string> errors_;
  std::set<int> failed_imports_;  // nodes with an import that could not be read
};

// "tasks[12].run[0]" -> 12 and ".run[0]".
bool SplitTaskPath(absl::string_view path, int* index, absl::string_view* rest) {
  if (!absl::ConsumePrefix(&path, "tasks[")) return false;
  const size_t close = path.find(']');
  if (close == absl::string_view::npos || !absl::SimpleAtoi(path.substr(0, close), index)) return false;
  *rest = path.substr(close + 1);
  return true;
}

}  // namespace

std::string LoadedFlow::Locate(absl::string_view field_path) const {
  int index = 0;
  absl::string_view rest;
  if (SplitTaskPath(field_path, &index, &rest) && index >= 0 && index < static_cast<int>(task_origin.size())) {
    const auto [file, own] = task_origin[index];
    return files[file]->where.Locate(absl::StrCat("tasks[", own, "]", rest));
  }
  return files.empty() ? std::string() : files[0]->where.Locate(field_path);
}

std::string LoadedFlow::LocateLines(absl::string_view message) const {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(message, '\n')) {
    const size_t colon = line.find(": ");
    const absl::string_view field = line.substr(0, colon == absl::string_view::npos ? 0 : colon);
    const bool is_field = !field.empty() && (absl::StartsWith(field, "tasks[") || absl::StartsWith(field, "throttle.") ||
                                             absl::StartsWith(field, "params."));
    if (!is_field) {
      lines.emplace_back(line);
      continue;
    }
    int index = 0;
    absl::string_view rest;
    std::string shown(line);
    if (SplitTaskPath(field, &index, &rest) && index >= 0 && index < static_cast<int>(task_origin.size())) {
      // Named as its own file names it (imported tasks come first in the
      // spec), with the name of an imported one.
      shown = absl::StrCat("tasks[", task_origin[index].second, "]", rest,
                           task_origin[index].first != 0 ? absl::StrCat(" (", spec.tasks(index).name(), ")") : "",
                           line.substr(field.size()));
    }
    if (task_origin.size() > static_cast<size_t>(files[0]->spec.tasks_size())) {
      // "same output as tasks[3]": an index of the combined spec, which
      // no file has; say the task's name.
      for (size_t pos = shown.find("tasks[", field.size()); pos != std::string::npos;
           pos = shown.find("tasks[", pos + 1)) {
        int other = 0;
        absl::string_view tail;
        if (SplitTaskPath(absl::string_view(shown).substr(pos), &other, &tail) && other >= 0 &&
            other < spec.tasks_size()) {
          const size_t len = shown.size() - pos - tail.size();
          shown.replace(pos, len, absl::StrCat("task '", spec.tasks(other).name(), "'"));
        }
      }
    }
    lines.push_back(absl::StrCat(Locate(field), ": ", shown));
  }
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<LoadedFlow> LoadFlowFile(const std::string& path) { return Resolver().Load(path); }

}  // namespace asflow
