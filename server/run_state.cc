#include "server/run_state.h"
#include "server/run_selection.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/safe_path.h"
#include "common/spec_validator.h"
#include "common/stable_hash.h"
#include "exec/builtins.h"
#include "nlohmann/json.hpp"

namespace asflow {

const std::string& RareString::str() const {
  static const std::string* const kEmpty = new std::string();
  return p_ != nullptr ? *p_ : *kEmpty;
}

using json = nlohmann::json;

bool IsFinal(v1::InstanceState state) {
  switch (state) {
    case v1::DONE:
    case v1::CACHED:
    case v1::SKIPPED:
    case v1::SUPPRESSED:
    case v1::FAILED:
    case v1::CANCELLED:
      return true;
    default:
      return false;
  }
}

void CountState(v1::TaskCounters* c, v1::InstanceState state, int delta) {
  switch (state) {
    case v1::QUEUED: c->set_queued(c->queued() + delta); break;
    case v1::RUNNING: c->set_running(c->running() + delta); break;
    case v1::DONE: c->set_done(c->done() + delta); break;
    case v1::CACHED: c->set_cached(c->cached() + delta); break;
    case v1::SKIPPED: c->set_skipped(c->skipped() + delta); break;
    case v1::SUPPRESSED: c->set_suppressed(c->suppressed() + delta); break;
    case v1::FAILED: c->set_failed(c->failed() + delta); break;
    case v1::CANCELLED: c->set_cancelled(c->cancelled() + delta); break;
    default: break;
  }
}

namespace {

// Printable ASCII other than '"' and '\\': text that JSON writes as is.
bool IsPlainJsonText(absl::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return false;
  }
  return true;
}

}  // namespace

std::string CanonicalParams(const std::map<std::string, std::string>& params) {
  // Plain keys and values (the usual ids, numbers and names) are written
  // directly, byte for byte what nlohmann's dump makes of them; anything
  // else (escapes, UTF-8, invalid UTF-8 replaced) goes through nlohmann.
  // Called once per instance of every expansion.
  size_t size = 2;
  for (const auto& [k, v] : params) {
    if (!IsPlainJsonText(k) || !IsPlainJsonText(v)) {
      json obj = json::object();  // std::map-backed: keys come out sorted
      for (const auto& [k2, v2] : params) obj[k2] = v2;
      return obj.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    size += k.size() + v.size() + 6;
  }
  std::string out;
  out.reserve(size);
  out.push_back('{');
  for (const auto& [k, v] : params) {
    if (out.size() > 1) out.push_back(',');
    absl::StrAppend(&out, "\"", k, "\":\"", v, "\"");
  }
  out.push_back('}');
  return out;
}

std::string ParamNeedle(absl::string_view name, absl::string_view prefix) {
  auto quoted = [](absl::string_view s) {
    return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  };
  std::string value = quoted(prefix);
  value.pop_back();  // the closing quote: a prefix
  if (name.empty()) return absl::StrCat("\":", value);
  return absl::StrCat(quoted(name), ":", value);
}

const std::string* LookupParam(const Bindings& bindings, const std::map<std::string, std::string>& params,
                               absl::string_view name) {
  for (const auto& [k, v] : bindings) {
    if (k == name) return &v;
  }
  auto it = params.find(std::string(name));
  return it == params.end() ? nullptr : &it->second;
}

Bindings DecodeParams(absl::string_view params_json) {
  Bindings out;
  json obj = json::parse(params_json, nullptr, /*allow_exceptions=*/false);
  if (!obj.is_object()) return out;
  for (const auto& [k, v] : obj.items()) {
    out.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

v1::Instance InstanceToProto(const InstanceRecord& row) {
  v1::Instance inst;
  inst.set_run_id(row.run_id);
  inst.set_seq(row.seq);
  inst.set_task(row.task);
  for (const auto& [k, v] : DecodeParams(row.params)) (*inst.mutable_params())[k] = v;
  inst.set_output(row.output);
  inst.set_state(row.state);
  inst.set_error(row.error);
  inst.set_attempts(row.attempts);
  inst.set_started_ms(row.started_ms);
  inst.set_finished_ms(row.finished_ms);
  inst.set_bytes(row.bytes);
  inst.set_lines(row.lines);
  inst.set_made_by_run(row.made_by_run);
  return inst;
}

std::string InstanceLabel(absl::string_view task, absl::string_view params_json) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : DecodeParams(params_json)) parts.push_back(absl::StrCat(k, "=", v));
  return absl::StrCat(task, "(", absl::StrJoin(parts, ", "), ")");
}

std::string ResumeKey(absl::string_view task, absl::string_view params_json) {
  return absl::StrCat(task, "\n", params_json);
}

std::string StoredIdentity(const RunRt& run, absl::string_view task_name, const std::string& params_json) {
  auto t = run.task_index.find(std::string(task_name));
  if (t == run.task_index.end()) return params_json;
  const TaskRt& task = run.tasks[t->second];
  // Rows of a task that uses no flow parameter never carried one.
  if (task.flow_params_used.empty()) return params_json;
  std::map<std::string, std::string> bound;
  bool dropped = false;
  for (auto& [k, v] : DecodeParams(params_json)) {
    if (task.spec->for_each().bind().contains(k)) {
      bound[k] = std::move(v);
    } else {
      dropped = true;
    }
  }
  return dropped ? CanonicalParams(bound) : params_json;
}

namespace {

std::string ScalarText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

namespace {

// Whether a value's text is what binding it whole gives (ScalarText of its
// JSON, or the text itself when it is not JSON), without parsing it: up to
// 18 digits (an integer JSON writes back the same; with a leading zero it
// is not JSON), or text that starts with a letter and does not end in
// white space or hold a NUL (JSON only if exactly true, false or null,
// written back the same).
bool BindsAsItself(absl::string_view value) {
  if (value.empty()) return false;
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (value.size() <= 18 && std::all_of(value.begin(), value.end(), is_digit)) return true;
  // nlohmann's lexer takes a NUL byte for the end of input ("true\0x" is
  // JSON true), so text with one goes through the parser.
  const char last = value.back();
  return is_letter(value.front()) && last != ' ' && last != '\t' && last != '\n' && last != '\r' &&
         value.find('\0') == absl::string_view::npos;
}

// Why no value may hold a NUL: every parameter reaches commands as an
// environment variable (and maybe an argument), C strings that would end
// at it silently.
constexpr absl::string_view kNoNul = "a NUL byte, which no command argument or environment variable can carry";

absl::Status CheckBindingSizes(const Bindings& bindings) {
  for (const auto& [k, v] : bindings) {
    if (v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("the value bound to '", k, "' contains ", kNoNul));
    }
    if (v.size() > kMaxParamValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat("the value bound to '", k, "' is ", v.size(),
                                                     " bytes; at most ", kMaxParamValueBytes, " are allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Bindings> BindValue(absl::string_view value,
                                   const google::protobuf::Map<std::string, std::string>& as) {
  // Raw text with a NUL is no JSON, and no parameter either.
  if (value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("the value contains ", kNoNul));
  }
  // The usual `as: NAME` of lines that are ids or numbers: no parse.
  if (as.size() == 1 && as.begin()->second.empty() && BindsAsItself(value) &&
      value.size() <= kMaxParamValueBytes) {
    return Bindings{{as.begin()->first, std::string(value)}};
  }
  json doc = json::parse(value, nullptr, /*allow_exceptions=*/false);
  bool is_json = !doc.is_discarded();
  Bindings out;
  std::vector<std::string> names;
  for (const auto& [name, path] : as) names.push_back(name);
  std::sort(names.begin(), names.end());  // deterministic order
  for (const std::string& name : names) {
    const std::string& path = as.at(name);
    if (path.empty()) {
      out.emplace_back(name, is_json ? ScalarText(doc) : std::string(value));
      continue;
    }
    if (!is_json || !doc.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field '", path, "' for parameter '", name, "': value is not a JSON object"));
    }
    const json* cur = &doc;
    for (absl::string_view part : absl::StrSplit(path, '.')) {
      if (!cur->is_object()) {
        cur = nullptr;
        break;
      }
      auto it = cur->find(std::string(part));
      if (it == cur->end()) {
        cur = nullptr;
        break;
      }
      cur = &*it;
    }
    if (cur == nullptr || cur->is_null()) {
      return absl::NotFoundError(
          absl::StrCat("field '", path, "' for parameter '", name, "' not found"));
    }
    out.emplace_back(name, ScalarText(*cur));
  }
  if (absl::Status s = CheckBindingSizes(out); !s.ok()) return s;
  return out;
}

absl::Status CheckParamSizes(const std::map<std::string, std::string>& params, absl::string_view field) {
  size_t total = 0;
  for (const auto& [k, v] : params) {
    if (v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".", k, ": the value contains ", kNoNul));
    }
    if (v.size() > kMaxParamValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".", k, ": the value is ", v.size(),
                                                     " bytes; at most ", kMaxParamValueBytes, " are allowed"));
    }
    total += k.size() + v.size();
  }
  if (total > kMaxRunParamsBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", total, " bytes of parameters; at most ",
                                                   kMaxRunParamsBytes, " are allowed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RunRt>> BuildRun(v1::SubmitFlowRequest request, int default_limit) {
  auto run = std::make_unique<RunRt>();
  run->request = std::move(request);
  const v1::FlowSpec& spec = run->request.spec();
  run->flow = spec.name();
  run->workspace = run->request.workspace();
  for (const auto& [k, v] : spec.params()) run->params[k] = v;
  for (const auto& [k, v] : run->request.params()) {
    if (!spec.params().contains(k)) {
      return absl::InvalidArgumentError(absl::StrCat("params.", k, ": unknown parameter '", k,
                                                     "' (the flow does not declare it)"));
    }
    run->params[k] = v;
  }
  if (absl::Status s = CheckParamSizes(run->params, "params"); !s.ok()) return s;
  size_t env_bytes = 0;
  for (const auto& [k, v] : run->request.env()) {
    env_bytes += k.size() + v.size();
    run->env.push_back(absl::StrCat(k, "=", v));
    if (k == "PATH") run->search_path = v;
  }
  if (env_bytes > kMaxRunParamsBytes) {
    return absl::InvalidArgumentError(absl::StrCat("env: ", env_bytes, " bytes of environment; at most ",
                                                   kMaxRunParamsBytes, " are allowed"));
  }
  run->tasks.resize(spec.tasks_size());
  for (int i = 0; i < spec.tasks_size(); ++i) run->task_index[spec.tasks(i).name()] = i;
  if (run->request.from_code()) {
    for (int i = 0; i < spec.tasks_size(); ++i) {
      if (absl::Status s = BuildCodeTask(*run, i, default_limit); !s.ok()) return s;
    }
    return run;
  }
  for (int i = 0; i < spec.tasks_size(); ++i) {
    const v1::TaskSpec& ts = spec.tasks(i);
    TaskRt& task = run->tasks[i];
    task.seen = decltype(task.seen)(0, SeqParams{&run->instances}, SeqParams{&run->instances});
    task.spec = &ts;
    // An imported task's name is already its definition: "playlist.extract".
    task.key = ts.flow().empty() ? absl::StrCat(spec.name(), ".", ts.name()) : ts.name();
    task.limit = ts.limit() > 0 ? ts.limit() : default_limit;
    auto rate = ParseRate(ts.rate());
    if (!rate.ok()) return absl::InvalidArgumentError(absl::StrCat("tasks[", i, "].rate: ", rate.status().message()));
    task.rate = rate->per_second;  // auto: its own gate paces it (Scheduler::SetGates)
    task.pool = ts.pool().empty() ? "local" : ts.pool();
    if (task.pool == "local" && !ts.handler().empty() && !IsBuiltinHandler(ts.handler())) {
      // Other handlers come from remote workers (WorkerHello.handlers).
      return absl::InvalidArgumentError(absl::StrCat(
          "tasks[", i, "].handler: the local pool runs only builtin.noop and builtin.echo, not '",
          ts.handler(), "' (set pool: to a pool whose workers offer it)"));
    }
    auto rules = ErrorRules::Compile(ts);
    if (!rules.ok()) return absl::InvalidArgumentError(absl::StrCat("tasks[", i, "].", rules.status().message()));
    task.rules = *rules;
    task.exec_def = std::make_shared<const ExecDef>(ExecDef{task.key, task.pool, task.rules});
    task.counters.set_task(ts.name());
    task.counters.set_gate(task.key);
    *task.counters.mutable_uses() = ts.uses();
    std::set<std::string> used;
    auto compile = [&](const std::string& text, absl::string_view field) -> absl::StatusOr<Template> {
      auto t = Template::Compile(text);
      if (!t.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tasks[", i, "].", field, ": ", t.status().message()));
      }
      for (const auto& n : t->names()) used.insert(n);
      return t;
    };
    for (int a = 0; a < ts.run_size(); ++a) {
      auto t = compile(ts.run(a), absl::StrCat("run[", a, "]"));
      if (!t.ok()) return t.status();
      task.argv.push_back(std::move(*t));
    }
    if (!ts.on().empty()) {
      auto t = compile(ts.on(), "on");
      if (!t.ok()) return t.status();
      task.on = std::make_unique<Template>(std::move(*t));
      task.output_dir = IsDirectoryOutput(ts.on());
      if (task.output_dir && task.pool != "local") {
        return absl::InvalidArgumentError(absl::StrCat(
            "tasks[", i, "].on: a directory output ('", ts.on(), "') is written by the daemon's own pool; pool '",
            task.pool, "' runs on remote workers, which cannot ship a directory yet"));
      }
    }
    if (!ts.for_each().file().empty()) {
      auto t = Template::Compile(ts.for_each().file());
      if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat("tasks[", i, "].for_each.file: ", t.status().message()));
      task.file = std::make_unique<Template>(std::move(*t));
    }
    for (const auto& n : used) {
      if (run->params.count(n) > 0 && !ts.for_each().bind().contains(n)) task.flow_params_used.push_back(n);
    }
    auto add_dep = [&](const std::string& name, absl::string_view field) -> absl::Status {
      auto it = run->task_index.find(name);
      if (it == run->task_index.end()) {
        return absl::InvalidArgumentError(absl::StrCat("tasks[", i, "].", field, ": unknown task '", name, "'"));
      }
      if (std::find(task.deps.begin(), task.deps.end(), it->second) == task.deps.end()) {
        task.deps.push_back(it->second);
      }
      return absl::OkStatus();
    };
    for (const auto& need : ts.needs()) {
      if (absl::Status s = add_dep(need, "needs"); !s.ok()) return s;
    }
    if (!ts.for_each().lines_of().empty()) {
      if (absl::Status s = add_dep(ts.for_each().lines_of(), "for_each.lines_of"); !s.ok()) return s;
      task.lines_of = run->task_index[ts.for_each().lines_of()];
    }
  }
  for (int i = 0; i < static_cast<int>(run->tasks.size()); ++i) {
    for (int d : run->tasks[i].deps) run->tasks[d].dependents.push_back(i);
  }
  if (absl::Status s = ApplySelection(*run); !s.ok()) return s;
  return run;
}

}  // namespace asflow

namespace asflow {

void SetInstanceState(RunRt& run, int64_t seq, v1::InstanceState state, bool retrying) {
  InstanceRt& inst = run.instances[seq];
  TaskRt& task = run.tasks[inst.task];
  if (inst.retrying != retrying) {
    task.counters.set_retrying(task.counters.retrying() + (retrying ? 1 : -1));
    inst.retrying = retrying;
  }
  CountState(&task.counters, inst.state, -1);
  CountState(&task.counters, state, +1);
  if (!IsFinal(inst.state) && IsFinal(state)) --task.pending;
  if (state != v1::RUNNING) inst.pgid = 0;
  inst.state = state;
}

namespace {

// The instance's output path from the task's `on`, or why it has none.
absl::StatusOr<std::string> RenderOutput(const RunRt& run, const TaskRt& task, const InstanceRt& inst,
                                         const Bindings& bindings) {
  std::vector<size_t> stars;  // the template's own '*'; a value's stays as it is
  auto rendered =
      task.on->Render([&](absl::string_view name) { return LookupParam(bindings, run.params, name); }, &stars);
  if (!rendered.ok()) return rendered.status();
  std::string path = *rendered;
  if (task.output_dir) {
    // The directory itself; a value that made its last component empty
    // would name its parent.
    path.pop_back();
    if (path.empty() || path.back() == '/') {
      return absl::InvalidArgumentError(absl::StrCat("output path: \"", *rendered, "\" names no directory"));
    }
  }
  if (!stars.empty()) {
    path = ExpandStar(path, StableHash(absl::StrCat(task.spec->name(), "\n", inst.params)), &stars);
  }
  auto rel = NormalizeOutputPath(path);
  if (!rel.ok()) return absl::InvalidArgumentError(absl::StrCat("output path: ", rel.status().message()));
  return rel;
}

}  // namespace

NewInstance AddNewInstance(RunRt& run, int t, const Bindings& bindings, int64_t now_ms) {
  TaskRt& task = run.tasks[t];
  // Its identity is its bindings: flow parameters are the same for every
  // instance of the run, and one that `on` uses changes the output path
  // itself (docs/flows.md).
  std::map<std::string, std::string> identity(bindings.begin(), bindings.end());
  std::string params = CanonicalParams(identity);
  NewInstance out;
  if (task.seen.contains(absl::string_view(params))) return out;  // identical bindings run once

  auto resumed = run.resumed.empty() ? run.resumed.end() : run.resumed.find(ResumeKey(task.spec->name(), params));
  if (resumed != run.resumed.end()) {
    out.seq = resumed->second.seq;
    out.prior = resumed->second.state;
    run.resumed.erase(resumed);
  } else {
    out.seq = run.next_seq++;
  }
  if (out.seq >= static_cast<int64_t>(run.instances.size())) run.instances.resize(out.seq + 1);
  InstanceRt& inst = run.instances[out.seq];
  inst.task = t;
  inst.params = std::move(params);
  task.seen.insert(out.seq);
  task.seqs.push_back(out.seq);
  task.counters.set_total(task.counters.total() + 1);
  ++task.pending;
  SetInstanceState(run, out.seq, v1::QUEUED);
  if (task.on == nullptr) return out;
  absl::StatusOr<std::string> output = RenderOutput(run, task, inst, bindings);
  if (output.ok()) {
    inst.output = std::move(*output);
    return out;
  }
  inst.error = std::string(output.status().message());
  inst.finished_ms = now_ms;
  SetInstanceState(run, out.seq, v1::FAILED);
  if (run.error.empty()) run.error = absl::StrCat(InstanceLabel(task.spec->name(), inst.params), ": ", inst.error.str());
  out.failed = true;
  return out;
}

namespace {

// Marks `t` and everything downstream of it blocked (never expanded).
void Block(RunRt& run, int t) {
  TaskRt& task = run.tasks[t];
  if (task.blocked || task.expanded) return;
  task.blocked = true;
  task.settled = true;
  for (int d : task.dependents) Block(run, d);
}

}  // namespace

std::vector<int> SettleTask(RunRt& run, int t) {
  std::vector<int> ready;
  if (run.state != v1::RUN_RUNNING) return ready;
  TaskRt& task = run.tasks[t];
  if (task.settled || !task.expanded || task.pending > 0) return ready;
  task.settled = true;
  const bool ok = !task.blocked && task.counters.failed() == 0 && task.counters.cancelled() == 0;
  for (int d : task.dependents) {
    TaskRt& dep = run.tasks[d];
    if (dep.expanded || dep.blocked) continue;
    if (!ok) {
      Block(run, d);
      continue;
    }
    bool all_up = std::all_of(dep.deps.begin(), dep.deps.end(), [&](int u) {
      const TaskRt& up = run.tasks[u];
      return up.settled && !up.blocked;
    });
    if (all_up) ready.push_back(d);
  }
  return ready;
}

std::optional<v1::RunState> RunOutcome(const RunRt& run) {
  if (run.state != v1::RUN_RUNNING) return std::nullopt;
  if (!run.error.empty() && !run.request.keep_going()) return v1::RUN_FAILED;
  if (run.code != nullptr) return std::nullopt;
  bool all_settled = std::all_of(run.tasks.begin(), run.tasks.end(), [](const TaskRt& t) { return t.settled; });
  if (!all_settled) return std::nullopt;
  bool failed = !run.error.empty() || std::any_of(run.tasks.begin(), run.tasks.end(), [](const TaskRt& t) {
                  return t.blocked || t.counters.failed() > 0 || t.counters.cancelled() > 0;
                });
  return failed ? v1::RUN_FAILED : v1::RUN_SUCCEEDED;
}

}  // namespace asflow

namespace asflow {

std::string CodeIdentity(absl::string_view task, absl::string_view params_json, absl::string_view output) {
  return absl::StrCat(task, "\n", params_json, "\n", output);
}

absl::Status BuildCodeTask(RunRt& run, int t, int default_limit) {
  const v1::TaskSpec& ts = run.request.spec().tasks(t);
  TaskRt& task = run.tasks[t];
  if (task.spec == nullptr) {
    task.seen = decltype(task.seen)(0, SeqParams{&run.instances}, SeqParams{&run.instances});
  }
  task.spec = &ts;
  task.key = ts.name();
  task.limit = ts.limit() > 0 ? ts.limit() : default_limit;
  auto rate = ParseRate(ts.rate());
  if (!rate.ok()) return absl::InvalidArgumentError(absl::StrCat("spec.rate: ", rate.status().message()));
  task.rate = rate->per_second;  // auto: its own gate paces it (Scheduler::SetGates)
  task.pool = "code";
  auto rules = ErrorRules::Compile(ts);
  if (!rules.ok()) return absl::InvalidArgumentError(absl::StrCat("spec.", rules.status().message()));
  task.rules = *rules;
  task.exec_def = std::make_shared<const ExecDef>(ExecDef{task.key, task.pool, task.rules});
  task.counters.set_task(ts.name());
  task.counters.set_gate(task.key);
  *task.counters.mutable_uses() = ts.uses();
  return absl::OkStatus();
}

NewInstance AddCodeInstance(RunRt& run, int t, std::string params_json, std::string output) {
  TaskRt& task = run.tasks[t];
  NewInstance out;
  const std::string identity = CodeIdentity(task.spec->name(), params_json, output);
  auto resumed = run.resumed.empty() ? run.resumed.end() : run.resumed.find(identity);
  if (resumed != run.resumed.end()) {
    out.seq = resumed->second.seq;
    out.prior = resumed->second.state;
    run.resumed.erase(resumed);
  } else {
    out.seq = run.next_seq++;
  }
  if (out.seq >= static_cast<int64_t>(run.instances.size())) run.instances.resize(out.seq + 1);
  InstanceRt& inst = run.instances[out.seq];
  inst.task = t;
  inst.params = std::move(params_json);
  inst.output = std::move(output);
  task.seqs.push_back(out.seq);
  task.counters.set_total(task.counters.total() + 1);
  ++task.pending;
  SetInstanceState(run, out.seq, v1::QUEUED);
  run.code->by_identity[identity] = out.seq;
  return out;
}

}  // namespace asflow
