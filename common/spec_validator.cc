#include "common/spec_validator.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/safe_path.h"
#include "common/spec_parser.h"
#include "common/template.h"
#include "re2/re2.h"

namespace asflow {
namespace {

// Beyond this many problems the rest are summarised in one line.
constexpr size_t kMaxReported = 100;

bool IsFlowNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

bool IsTaskName(absl::string_view name) {
  if (name.empty()) return false;
  char c0 = name[0];
  if (!((c0 >= 'A' && c0 <= 'Z') || (c0 >= 'a' && c0 <= 'z') || c0 == '_')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return IsFlowNameChar(c) && c != '.';
  });
}

bool IsValidDuration(const google::protobuf::Duration& d) {
  if (d.nanos() <= -1000000000 || d.nanos() >= 1000000000) return false;
  return !((d.seconds() > 0 && d.nanos() < 0) ||
           (d.seconds() < 0 && d.nanos() > 0));
}

std::string FormatProtoDuration(const google::protobuf::Duration& d) {
  return absl::FormatDuration(absl::Seconds(d.seconds()) +
                              absl::Nanoseconds(d.nanos()));
}

// A graph edge: task `from` needs task `to`, written at `path`.
struct Edge {
  int to;
  std::string path;
};

// `path` is `of` or below it ("tasks[0]" -> "tasks[0].run", "tasks[0][1]").
bool Related(const std::string& path, const std::string& of) {
  if (!absl::StartsWith(path, of)) return false;
  return path.size() == of.size() || path[of.size()] == '.' || path[of.size()] == '[';
}

// Collects problems in spec order.
class Validator {
 public:
  Validator(const v1::FlowSpec& spec, const SourceMap* where,
            absl::Span<const std::string> extra_params)
      : spec_(spec), where_(where) {
    for (const auto& [name, value] : spec.params()) params_.insert(name);
    for (const std::string& name : extra_params) params_.insert(name);
  }

  // Leaves out problems at, under or above these paths.
  void SkipAround(std::vector<std::string> paths) { skip_ = std::move(paths); }

  absl::Status Run() {
    CheckTop();
    if (spec_.tasks_size() <= kMaxTasks) {
      IndexTasks();
      for (int i = 0; i < spec_.tasks_size(); ++i) CheckTask(i);
      CheckCycles();
    }
    if (errors_.empty()) return absl::OkStatus();
    if (errors_.size() > kMaxReported) {
      size_t more = errors_.size() - kMaxReported;
      errors_.resize(kMaxReported);
      errors_.push_back(absl::StrCat("... and ", more, " more problems"));
    }
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
  }

 private:
  // Problems that follow from an error the reader already reported.
  std::vector<std::string> skip_;

  void Add(const std::string& path, absl::string_view message) {
    for (const std::string& f : skip_) {
      if (f.empty() || Related(path, f) || Related(f, path)) return;
    }
    std::string location = where_ != nullptr ? where_->Locate(path) : "";
    errors_.push_back(location.empty()
                          ? absl::StrCat(path, ": ", message)
                          : absl::StrCat(location, ": ", path, ": ", message));
  }

  void CheckTop() {
    if (spec_.name().empty()) {
      Add("name", "is empty; a flow needs a name");
    } else if (!std::all_of(spec_.name().begin(), spec_.name().end(),
                            IsFlowNameChar)) {
      Add("name", absl::StrCat("'", absl::Utf8SafeCEscape(spec_.name()),
                               "' may only use [A-Za-z0-9_.-]"));
    }
    std::vector<std::string> names;
    for (const auto& [name, value] : spec_.params()) names.push_back(name);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      if (!IsValidParamName(name)) {
        Add(absl::StrCat("params.", name),
            absl::StrCat("parameter name '", absl::Utf8SafeCEscape(name),
                         "' must match [A-Za-z_][A-Za-z0-9_]*"));
      }
    }
    for (int i = 0; i < spec_.imports_size(); ++i) {
      const std::string& imp = spec_.imports(i);
      if (imp.empty() || imp.find('\0') != std::string::npos) {
        Add(absl::StrCat("imports[", i, "]"), "must name a flow file (relative to this one)");
      }
    }
    std::vector<std::string> keys;
    for (const auto& [name, key] : spec_.throttle()) keys.push_back(name);
    std::sort(keys.begin(), keys.end());
    for (const std::string& name : keys) {
      const std::string kp = absl::StrCat("throttle.", name);
      const v1::ThrottleKey& key = spec_.throttle().at(name);
      if (!IsPoolName(name)) {
        Add(kp, absl::StrCat("key name '", absl::Utf8SafeCEscape(name), "' may only use [A-Za-z0-9_.-]"));
      }
      if (key.limit() < 0) Add(kp + ".limit", absl::StrCat("must be >= 0 (0: no cap), got ", key.limit()));
      if (absl::StatusOr<RateSpec> rate = ParseRate(key.rate()); !rate.ok()) {
        Add(kp + ".rate", rate.status().message());
      }
    }
    if (spec_.tasks_size() > kMaxTasks) {
      Add("tasks", absl::StrCat(spec_.tasks_size(), " tasks; at most ",
                                kMaxTasks, " are allowed"));
    }
  }

  void IndexTasks() {
    for (int i = 0; i < spec_.tasks_size(); ++i) {
      const std::string& name = spec_.tasks(i).name();
      std::string path = absl::StrCat("tasks[", i, "].name");
      if (name.empty()) {
        Add(path, "is empty; every task needs a name");
        continue;
      }
      if (!spec_.tasks(i).flow().empty()) {
        // Brought in by the client from an imported flow file: FLOW.TASK.
        const std::string& flow = spec_.tasks(i).flow();
        if (flow == spec_.name() || !absl::StartsWith(name, flow + ".") ||
            !std::all_of(flow.begin(), flow.end(), IsFlowNameChar) ||
            !IsTaskName(absl::string_view(name).substr(flow.size() + 1))) {
          Add(path, absl::StrCat("imported task '", absl::Utf8SafeCEscape(name), "' of flow '",
                                 absl::Utf8SafeCEscape(flow), "' must be named ", flow, ".TASK"));
        }
      } else if (!IsTaskName(name)) {
        Add(path, absl::StrCat("'", absl::Utf8SafeCEscape(name),
                               "' must match [A-Za-z_][A-Za-z0-9_-]*"));
      }
      auto [it, inserted] = index_.emplace(name, i);
      if (!inserted) {
        Add(path, absl::StrCat("duplicate task name '", name,
                               "' (first at tasks[", it->second, "])"));
      }
    }
    edges_.resize(spec_.tasks_size());
  }

  // Looks up a task referenced at path; reports unknown names.
  // A FLOW.TASK name not found in a file that still has `imports` is left
  // to the import resolver (common/flow_imports.h): -2, no problem added.
  int FindTask(const std::string& path, const std::string& name) {
    auto it = index_.find(name);
    if (it == index_.end() && spec_.imports_size() > 0 && absl::StrContains(name, '.')) return -2;
    if (it == index_.end()) {
      Add(path, absl::StrCat("unknown task '", name, "'"));
      return -1;
    }
    return it->second;
  }

  // Compiles a template and checks it uses only `known` names.
  bool CheckTemplate(const std::string& path, const std::string& text,
                     const std::vector<std::string>& known) {
    absl::StatusOr<Template> t = Template::Compile(text);
    if (!t.ok()) {
      Add(path, t.status().message());
      return false;
    }
    bool ok = true;
    for (const std::string& name : t->names()) {
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      Add(path, absl::StrCat("unknown parameter '", name, "' (known: ",
                             known.empty() ? "none" : absl::StrJoin(known, ", "),
                             ")"));
      ok = false;
    }
    return ok;
  }

  // Workspace-relative path template checks shared by `on` and for_each.file.
  // `dir_ok`: a trailing '/' names a directory output (`on` only).
  void CheckRelativePath(const std::string& path, const std::string& text, bool dir_ok = false) {
    std::string quoted = absl::StrCat("'", absl::Utf8SafeCEscape(text), "'");
    if (absl::StartsWith(text, "/")) {
      Add(path, absl::StrCat("must be relative to the workspace, got ", quoted));
    }
    for (absl::string_view part : absl::StrSplit(text, '/')) {
      if (part == "..") {
        Add(path, absl::StrCat("must not have a '..' component, got ", quoted));
        break;
      }
    }
    if (absl::EndsWith(text, "//") || text == "/" || (!dir_ok && absl::EndsWith(text, "/"))) {
      Add(path, absl::StrCat("must name a file", dir_ok ? " or a directory (one trailing '/')" : "", ", got ", quoted));
    }
  }

  void CheckDuration(const std::string& path,
                     const google::protobuf::Duration& d) {
    if (!IsValidDuration(d)) {
      Add(path, absl::StrCat("invalid duration (seconds ", d.seconds(),
                             ", nanos ", d.nanos(), ")"));
    } else if (d.seconds() < 0 || d.nanos() < 0) {
      Add(path, absl::StrCat("must not be negative, got ",
                             FormatProtoDuration(d)));
    }
  }

  void CheckRegex(const std::string& path, const std::string& pattern) {
    if (pattern.empty()) return;
    RE2::Options options;
    options.set_log_errors(false);
    RE2 re(pattern, options);
    if (!re.ok()) {
      Add(path, absl::StrCat("invalid RE2 regex '", absl::Utf8SafeCEscape(pattern),
                             "': ", re.error()));
    }
  }

  void CheckTask(int i) {
    const v1::TaskSpec& task = spec_.tasks(i);
    const std::string p = absl::StrCat("tasks[", i, "]");

    // Names a template of this task may use: flow params plus bindings.
    std::vector<std::string> flow_known(params_.begin(), params_.end());
    std::sort(flow_known.begin(), flow_known.end());
    std::vector<std::string> known = flow_known;
    std::vector<std::string> bindings;
    for (const auto& [name, field] : task.for_each().bind()) {
      bindings.push_back(name);
    }
    std::sort(bindings.begin(), bindings.end());
    for (const std::string& b : bindings) {
      if (!params_.contains(b)) known.push_back(b);
    }
    std::sort(known.begin(), known.end());

    // What runs.
    if (task.run_size() > 0 && !task.handler().empty()) {
      Add(p, "needs exactly one of run or handler, got both");
    } else if (task.run_size() == 0 && task.handler().empty()) {
      Add(p, "needs exactly one of run or handler, got neither");
    }
    for (int j = 0; j < task.run_size(); ++j) {
      std::string rp = absl::StrCat(p, ".run[", j, "]");
      if (j == 0 && task.run(0).empty()) {
        Add(rp, "program is empty");
        continue;
      }
      if (task.run(j).find('\0') != std::string::npos) {
        // exec would see the argument end there.
        Add(rp, "contains a NUL byte, which no command argument can carry");
        continue;
      }
      CheckTemplate(rp, task.run(j), known);
    }

    // Where its output goes.
    if (!task.on().empty()) {
      std::string op = absl::StrCat(p, ".on");
      CheckRelativePath(op, task.on(), /*dir_ok=*/true);
      if (IsDirectoryOutput(task.on()) && !task.pool().empty() && task.pool() != "local") {
        Add(op, absl::StrCat("a directory output is written by the daemon's own pool; pool '", task.pool(),
                             "' runs on remote workers, which cannot ship a directory yet"));
      }
      if (CheckTemplate(op, task.on(), known)) {
        CheckOnDistinguishesInstances(op, task, bindings);
      }
      auto [it, inserted] = on_owner_.emplace(task.on(), i);
      if (!inserted) {
        Add(op, absl::StrCat("same output as tasks[", it->second, "] ('",
                             absl::Utf8SafeCEscape(task.on()), "')"));
      }
    }

    // Dependencies.
    for (int j = 0; j < task.needs_size(); ++j) {
      std::string np = absl::StrCat(p, ".needs[", j, "]");
      if (task.needs(j) == task.name()) {
        Add(np, absl::StrCat("task '", task.name(), "' needs itself"));
        continue;
      }
      int to = FindTask(np, task.needs(j));
      if (to >= 0) edges_[i].push_back(Edge{to, np});
    }

    if (task.has_for_each()) CheckForEach(i, p, flow_known);
    CheckSettings(p, task);
  }

public:
  // A code session's task (docs/sessions.md): its name, output template
  // and settings; the client renders each call's output itself.
  absl::Status RunCodeTask(const v1::TaskSpec& task) {
    const std::string p = "spec";
    if (task.name().empty()) Add(p + ".name", "is empty; a task needs its qualified name");
    if (task.run_size() > 0 || !task.handler().empty() || task.has_for_each() || task.needs_size() > 0 ||
        !task.pool().empty() || task.has_timeout()) {
      Add(p, "a code session's task has no run, handler, for_each, needs, pool or timeout");
    }
    if (!task.on().empty()) CheckRelativePath(p + ".on", task.on());
    CheckSettings(p, task);
    if (errors_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
  }

 private:
  // Limits, compression and error rules of a task at `p`.
  void CheckSettings(const std::string& p, const v1::TaskSpec& task) {
    if (task.compression_level() < 0 || task.compression_level() > 19) {
      Add(p + ".compression_level",
          absl::StrCat("must be 0 (the default) or 1..19 (gzip caps it at 9), got ", task.compression_level()));
    }
    // Limits.
    if (task.limit() < 0) {
      Add(p + ".limit", absl::StrCat("must be >= 0, got ", task.limit()));
    }
    if (absl::StatusOr<RateSpec> rate = ParseRate(task.rate());
        !rate.ok()) {
      Add(p + ".rate", rate.status().message());
    }
    if (!task.pool().empty() && !IsPoolName(task.pool())) {
      Add(p + ".pool", absl::StrCat("'", absl::Utf8SafeCEscape(task.pool()),
                                    "' may only use [A-Za-z0-9_.-]"));
    }
    if (task.has_timeout()) CheckDuration(p + ".timeout", task.timeout());

    // Error rules.
    if (task.has_retry()) {
      const v1::RetryRule& r = task.retry();
      if (r.attempts() < 0) {
        Add(p + ".retry.attempts",
            absl::StrCat("must be >= 0, got ", r.attempts()));
      }
      if (r.retries() < 0) {
        Add(p + ".retry.retries", absl::StrCat("must be >= 0, got ", r.retries()));
      }
      if (r.attempts() != 0 && r.retries() != 0) {
        Add(p + ".retry.attempts", "set retries alone (attempts is its deprecated name)");
      }
      bool any_matcher = r.exit_codes_size() > 0 || r.signals_size() > 0 || !r.stderr().empty() ||
                         r.timeout() || r.errors_size() > 0;
      if (RetriesOf(r) > 0 && !any_matcher) {
        // Unknown errors are never retried silently: say which to retry.
        Add(p + ".retry",
            "retries only the failures a matcher names: add exit_codes, signals, stderr, "
            "timeout or errors");
      }
      if (r.has_backoff()) CheckDuration(p + ".retry.backoff", r.backoff());
      if (r.has_jitter()) CheckDuration(p + ".retry.jitter", r.jitter());
      CheckRegex(p + ".retry.stderr", r.stderr());
      CheckErrors(p + ".retry.errors", task, r.errors());
    }
    for (int j = 0; j < task.uses_size(); ++j) {
      if (!IsPoolName(task.uses(j))) {
        Add(absl::StrCat(p, ".uses[", j, "]"),
            absl::StrCat("'", absl::Utf8SafeCEscape(task.uses(j)), "' is not a throttle key name ([A-Za-z0-9_.-]+)"));
      }
    }
    if (task.has_cooldown()) {
      const v1::CooldownRule& c = task.cooldown();
      if (c.exit_codes_size() == 0 && c.signals_size() == 0 && c.stderr().empty() && !c.timeout() &&
          c.errors_size() == 0) {
        Add(p + ".cooldown", "matches nothing: add stderr (e.g. \"429|Too Many Requests\"), exit_codes, "
                             "signals, timeout or errors");
      }
      if (c.has_duration()) CheckDuration(p + ".cooldown.for", c.duration());
      if (c.max_cooldowns() < 0) {
        Add(p + ".cooldown.max_cooldowns", absl::StrCat("must be >= 0 (0: 5), got ", c.max_cooldowns()));
      }
      CheckRegex(p + ".cooldown.stderr", c.stderr());
      CheckRegex(p + ".cooldown.retry_after", c.retry_after());
      if (!c.retry_after().empty()) {
        RE2 re(c.retry_after(), RE2::Quiet);
        if (re.ok() && re.NumberOfCapturingGroups() != 1) {
          Add(p + ".cooldown.retry_after",
              absl::StrCat("needs exactly one capture group (the seconds or HTTP date), got ",
                           re.NumberOfCapturingGroups(), ", e.g. \"Retry-After: (\\\\d+)\""));
        }
      }
      CheckErrors(p + ".cooldown.errors", task, c.errors());
    }
    CheckRegex(p + ".skip.stderr", task.skip().stderr());
    CheckRegex(p + ".suppress.stderr", task.suppress().stderr());
    CheckErrors(p + ".skip.errors", task, task.skip().errors());
    CheckErrors(p + ".suppress.errors", task, task.suppress().errors());
  }

  // `errors` names exception types ("TranscriptsDisabled",
  // "pkg.mod.Error") that an SDK handler reports; a command reports none,
  // so on a `run:` task the matcher could never match.
  void CheckErrors(const std::string& path, const v1::TaskSpec& task,
                   const google::protobuf::RepeatedPtrField<std::string>& errors) {
    if (errors.empty()) return;
    if (task.run_size() > 0) {
      Add(path, "matches exception types reported by SDK handlers (handler:), never a "
                "command's failure: match its exit_codes or stderr instead");
      return;
    }
    static const LazyRE2 kName = {R"([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)"};
    for (int i = 0; i < errors.size(); ++i) {
      if (!RE2::FullMatch(errors.Get(i), *kName)) {
        Add(absl::StrCat(path, "[", i, "]"),
            absl::StrCat("'", absl::Utf8SafeCEscape(errors.Get(i)),
                         "' is not an exception type name (Name or module.Name)"));
      }
    }
  }

  // A fanned-out task whose `on` uses no binding (and no '*') would have
  // every instance write the same file.
  void CheckOnDistinguishesInstances(const std::string& op,
                                     const v1::TaskSpec& task,
                                     const std::vector<std::string>& bindings) {
    if (bindings.empty()) return;
    absl::string_view base = task.on();
    if (size_t slash = base.rfind('/'); slash != absl::string_view::npos) {
      base = base.substr(slash + 1);
    }
    if (absl::StrContains(base, '*')) return;
    const Template t = *Template::Compile(task.on());
    for (const std::string& b : bindings) {
      if (std::find(t.names().begin(), t.names().end(), b) != t.names().end()) {
        return;
      }
    }
    Add(op, absl::StrCat("uses none of the for_each bindings (",
                         absl::StrJoin(bindings, ", "),
                         "), so every instance would write the same file"));
  }

  void CheckForEach(int i, const std::string& p,
                    const std::vector<std::string>& flow_known) {
    const v1::TaskSpec& task = spec_.tasks(i);
    const v1::ForEach& fe = task.for_each();
    const std::string fp = p + ".for_each";
    std::vector<std::string> sources;
    if (!fe.lines_of().empty()) sources.push_back("lines_of");
    if (!fe.file().empty()) sources.push_back("file");
    if (fe.values_size() > 0) sources.push_back("values");
    if (sources.size() != 1) {
      Add(fp, absl::StrCat("needs exactly one of lines_of, file or values, got ",
                           sources.empty() ? "none"
                                           : absl::StrJoin(sources, " and ")));
    }
    if (!fe.lines_of().empty()) {
      std::string lp = fp + ".lines_of";
      if (fe.lines_of() == task.name()) {
        Add(lp, absl::StrCat("task '", task.name(),
                             "' cannot read its own output"));
      } else if (int from = FindTask(lp, fe.lines_of()); from >= 0) {
        if (spec_.tasks(from).on().empty()) {
          Add(lp, absl::StrCat("task '", fe.lines_of(),
                               "' has no 'on' output to read"));
        } else if (IsDirectoryOutput(spec_.tasks(from).on())) {
          Add(lp, absl::StrCat("task '", fe.lines_of(), "' writes a directory ('",
                               absl::Utf8SafeCEscape(spec_.tasks(from).on()), "'); lines_of reads a file"));
        }
        edges_[i].push_back(Edge{from, lp});
      }
    }
    if (!fe.file().empty()) {
      // The file is read before any binding exists: flow params only.
      CheckRelativePath(fp + ".file", fe.file());
      CheckTemplate(fp + ".file", fe.file(), flow_known);
    }
    if ((!fe.lines_of().empty() || !fe.file().empty()) && fe.bind().empty()) {
      Add(fp + ".as", absl::StrCat(fe.lines_of().empty() ? "file" : "lines_of",
                                   " needs 'as' to bind parameters"));
    }
    std::vector<std::string> names;
    for (const auto& [name, field] : fe.bind()) names.push_back(name);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      std::string bp = absl::StrCat(fp, ".as.", name);
      if (!IsValidParamName(name)) {
        Add(bp, absl::StrCat("binding name '", absl::Utf8SafeCEscape(name),
                             "' must match [A-Za-z_][A-Za-z0-9_]*"));
      } else if (params_.contains(name)) {
        Add(bp, absl::StrCat("binding '", name, "' shadows a flow parameter"));
      }
      const std::string& field = fe.bind().at(name);
      if (!field.empty() &&
          absl::c_any_of(absl::StrSplit(field, '.'),
                         [](absl::string_view s) { return s.empty(); })) {
        Add(bp, absl::StrCat("field path '", absl::Utf8SafeCEscape(field),
                             "' has an empty component"));
      }
    }
  }

  // Reports each cycle through needs and lines_of once, as "a -> b -> a".
  void CheckCycles() {
    const int n = spec_.tasks_size();
    std::vector<int> color(n, 0);  // 0 new, 1 on stack, 2 done
    std::vector<int> stack;
    std::vector<const Edge*> via;  // via[k]: edge from stack[k] to stack[k+1]
    for (int start = 0; start < n; ++start) {
      if (color[start] == 0) Visit(start, color, stack, via);
    }
  }

  void Visit(int u, std::vector<int>& color, std::vector<int>& stack,
             std::vector<const Edge*>& via) {
    color[u] = 1;
    stack.push_back(u);
    for (const Edge& e : edges_[u]) {
      if (color[e.to] == 1) {
        auto pos = std::find(stack.begin(), stack.end(), e.to);
        std::vector<std::string> names;
        for (auto it = pos; it != stack.end(); ++it) {
          names.push_back(spec_.tasks(*it).name());
        }
        names.push_back(spec_.tasks(e.to).name());
        // Point at the edge leaving the cycle's first task.
        size_t k = pos - stack.begin();
        const std::string& path = k < via.size() ? via[k]->path : e.path;
        Add(path, absl::StrCat("dependency cycle: ",
                               absl::StrJoin(names, " -> ")));
      } else if (color[e.to] == 0) {
        via.push_back(&e);
        Visit(e.to, color, stack, via);
        via.pop_back();
      }
    }
    stack.pop_back();
    color[u] = 2;
  }

  const v1::FlowSpec& spec_;
  const SourceMap* where_;
  absl::flat_hash_set<std::string> params_;
  absl::flat_hash_map<std::string, int> index_;
  absl::flat_hash_map<std::string, int> on_owner_;
  std::vector<std::vector<Edge>> edges_;
  std::vector<std::string> errors_;
};

}  // namespace

int RetriesOf(const v1::RetryRule& rule) { return rule.retries() != 0 ? rule.retries() : rule.attempts(); }

std::vector<std::string> DeprecationWarnings(const v1::FlowSpec& spec, const SourceMap* where) {
  std::vector<std::string> out;
  for (int i = 0; i < spec.tasks_size(); ++i) {
    const v1::RetryRule& r = spec.tasks(i).retry();
    if (r.attempts() <= 0 || r.retries() != 0) continue;
    const std::string path = absl::StrCat("tasks[", i, "].retry.attempts");
    const std::string location = where != nullptr ? where->Locate(path) : "";
    out.push_back(absl::StrCat(location, location.empty() ? "" : ": ", path, ": deprecated: it counts retries (",
                               "attempts: ", r.attempts(), " runs up to ", r.attempts() + 1,
                               " times); write retries: ", r.attempts(), " (same meaning)"));
  }
  return out;
}

bool IsPoolName(absl::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), IsFlowNameChar);
}

absl::StatusOr<double> ParseRatePerSecond(absl::string_view rate) {
  if (rate.empty()) return 0.0;
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected N/s, N/min or N/h with N > 0, got '", absl::Utf8SafeCEscape(rate),
        "'"));
  };
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(rate, absl::MaxSplits('/', 1));
  double n;
  if (parts.first.empty() || !absl::ascii_isdigit(parts.first[0]) ||
      !absl::SimpleAtod(parts.first, &n) || !std::isfinite(n)) {
    return bad();
  }
  double per;
  if (parts.second == "s") {
    per = 1;
  } else if (parts.second == "min") {
    per = 60;
  } else if (parts.second == "h") {
    per = 3600;
  } else {
    return bad();
  }
  if (n <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rate must be > 0, got '", absl::Utf8SafeCEscape(rate),
        "' (leave rate empty for no limit)"));
  }
  return n / per;
}

absl::StatusOr<RateSpec> ParseRate(absl::string_view rate) {
  RateSpec spec;
  absl::string_view text = absl::StripAsciiWhitespace(rate);
  if (!absl::ConsumePrefix(&text, "auto")) {
    auto fixed = ParseRatePerSecond(rate);
    if (!fixed.ok()) return fixed.status();
    spec.per_second = *fixed;
    return spec;
  }
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("'", absl::Utf8SafeCEscape(rate), "': ", why,
                                                   "; expected auto or auto(max: 5/s, min: 0.1/s)"));
  };
  spec.adaptive = true;
  spec.max_per_second = kAutoMaxRate;
  spec.min_per_second = kAutoMinRate;
  text = absl::StripAsciiWhitespace(text);
  if (!text.empty()) {
    if (!absl::ConsumePrefix(&text, "(") || !absl::ConsumeSuffix(&text, ")")) return bad("bounds go in ( )");
    for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits(absl::ByAnyChar(":="), 1));
      absl::string_view name = absl::StripAsciiWhitespace(kv.first);
      auto value = ParseRatePerSecond(absl::StripAsciiWhitespace(kv.second));
      if (!value.ok() || *value == 0) return bad(absl::StrCat(name, ": ", value.ok() ? "needs a rate" : value.status().message()));
      if (name == "max") {
        spec.max_per_second = *value;
      } else if (name == "min") {
        spec.min_per_second = *value;
      } else {
        return bad(absl::StrCat("unknown bound '", absl::Utf8SafeCEscape(name), "'"));
      }
    }
  }
  if (spec.min_per_second > spec.max_per_second) return bad("min is above max");
  return spec;
}

absl::Status ValidateFlowSpec(const v1::FlowSpec& spec, const SourceMap* where,
                              absl::Span<const std::string> extra_params) {
  return Validator(spec, where, extra_params).Run();
}

absl::Status ValidateFlowSpecBeside(const v1::FlowSpec& spec, const SourceMap* where,
                                    const std::vector<std::string>& form_error_paths) {
  Validator validator(spec, where, {});
  validator.SkipAround(form_error_paths);
  return validator.Run();
}

absl::Status ValidateCodeTask(const v1::TaskSpec& task) {
  return Validator(v1::FlowSpec(), nullptr, {}).RunCodeTask(task);
}

}  // namespace asflow
