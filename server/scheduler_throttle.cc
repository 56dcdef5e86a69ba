// Scheduler: throttle keys, cooldowns, pause and resume (docs/flows.md,
// "Throttle keys"; server/throttle.h keeps the gates' accounting). Runs
// define their flow's keys while active; every task passes through its
// own gate and the keys it uses; what a gate shows while it holds starts
// back reaches the runs' tasks as their `waiting` note.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spec_validator.h"
#include "nlohmann/json.hpp"
#include "server/scheduler.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

constexpr char kPausesMeta[] = "throttle_pauses";

absl::StatusOr<KeyConfig> ToKeyConfig(const v1::ThrottleKey& key) {
  KeyConfig config;
  config.limit = std::max(0, key.limit());
  config.rate = key.rate();
  auto rate = ParseRate(key.rate());
  if (!rate.ok()) return rate.status();
  config.rate_per_second = rate->per_second;
  config.adaptive = rate->adaptive;
  config.max_rate = rate->max_per_second;
  config.min_rate = rate->min_per_second;
  return config;
}

// "extract(video_id=F6Pq…)": each value cut to 8 characters, for notes.
std::string ShortLabel(const std::string& task, const std::string& params_json) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : DecodeParams(params_json)) {
    size_t cut = 0;
    // 8 characters, not bytes: never split a UTF-8 sequence.
    for (int chars = 0; cut < v.size() && chars < 8; ++chars) {
      ++cut;
      while (cut < v.size() && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) ++cut;
    }
    parts.push_back(absl::StrCat(k, "=", v.substr(0, cut), cut < v.size() ? "…" : ""));
  }
  return absl::StrCat(task, "(", absl::StrJoin(parts, ", "), ")");
}

}  // namespace

absl::Status Scheduler::DefineDaemonKeys() {
  for (const auto& [name, key] : options_.throttle) {
    auto config = ToKeyConfig(key);
    if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat("--throttle ", name, ": ", config.status().message()));
    if (absl::Status s = throttle_.Define(name, *config, ""); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Scheduler::AcquireKeys(RunRt& run) {
  const v1::FlowSpec& spec = run.request.spec();
  std::vector<std::string> names;
  for (const auto& [name, key] : spec.throttle()) names.push_back(name);
  std::sort(names.begin(), names.end());
  std::vector<std::string> errors;
  for (const std::string& name : names) {
    auto config = ToKeyConfig(spec.throttle().at(name));
    absl::Status s = config.ok() ? throttle_.Define(name, *config, run.flow) : config.status();
    if (s.ok()) {
      run.keys_held.push_back(name);
    } else {
      errors.push_back(absl::StrCat("throttle.", name, ": ", s.message()));
    }
  }
  for (int i = 0; i < spec.tasks_size(); ++i) {
    if (absl::Status s = CheckUses(run, spec.tasks(i), absl::StrCat("tasks[", i, "]")); !s.ok()) {
      errors.push_back(std::string(s.message()));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  ReleaseKeys(run);
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

absl::Status Scheduler::CheckUses(const RunRt& run, const v1::TaskSpec& task, const std::string& path) {
  std::vector<std::string> errors;
  for (int j = 0; j < task.uses_size(); ++j) {
    const std::string& name = task.uses(j);
    // The flow's own keys and the daemon's: never one another flow happens
    // to have defined right now.
    const Gate* key = throttle_.FindKey(name);
    if (run.request.spec().throttle().contains(name) || (key != nullptr && key->owner.empty())) continue;
    std::vector<std::string> own, daemon;
    for (const auto& [k, v] : run.request.spec().throttle()) own.push_back(k);
    for (const Gate* g : throttle_.List()) {
      if (!g->is_task && g->defined && g->owner.empty()) daemon.push_back(g->name);
    }
    std::sort(own.begin(), own.end());
    errors.push_back(absl::StrCat(path, ".uses[", j, "]: unknown throttle key '", name, "' (this flow defines: ",
                                  own.empty() ? "none" : absl::StrJoin(own, ", "), "; asflowd --throttle: ",
                                  daemon.empty() ? "none" : absl::StrJoin(daemon, ", "), ")"));
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

void Scheduler::ReleaseKeys(RunRt& run) {
  for (const std::string& name : run.keys_held) throttle_.Unref(name);
  run.keys_held.clear();
}

void Scheduler::SetGates(const RunRt& run, int t) {
  const TaskRt& task = run.tasks[t];
  Gate* own = throttle_.TaskGate(task.key);
  // A task's `rate: auto` paces through its own gate; a fixed rate stays
  // the plan's token bucket.
  KeyConfig pace;
  if (auto rate = ParseRate(task.spec->rate()); rate.ok() && rate->adaptive) {
    pace.rate = task.spec->rate();
    pace.adaptive = true;
    pace.max_rate = rate->max_per_second;
    pace.min_rate = rate->min_per_second;
  }
  throttle_.SetTaskRate(*own, pace);
  std::vector<Gate*> gates{own};
  for (const std::string& name : task.spec->uses()) {
    if (Gate* key = throttle_.FindKey(name)) gates.push_back(key);
  }
  plan_.SetTaskGates(task.key, std::move(gates));
}

std::vector<Gate*> Scheduler::CoolingGates(const std::string& task_key) const {
  std::vector<Gate*> gates = plan_.GatesOf(task_key);
  // Its keys if it uses any, else the task's own gate (always first).
  if (gates.size() > 1) gates.erase(gates.begin());
  return gates;
}

void Scheduler::BeginCooldown(const Exec& exec, AttemptOutcome& outcome) {
  const auto& [run_id, seq] = exec.waiters.front();
  const RunRt& run = *runs_.at(run_id);
  const InstanceRt& inst = run.instances[seq];
  const std::string reason =
      absl::StrCat(outcome.cooldown_cause, " from ", ShortLabel(run.tasks[inst.task].spec->name(), inst.params));
  const absl::Time now = deps_.clock->Now();
  std::vector<std::string> notes;
  for (Gate* gate : CoolingGates(exec.def->task_key)) {
    if (throttle_.Cooldown(*gate, outcome.cooldown_until, reason, now)) {
      spdlog::warn("{} cooling down for {} ({}; {} in a row)", gate->name,
                   absl::FormatDuration(absl::Trunc(gate->cooldown_until - now, absl::Milliseconds(1))), reason,
                   gate->consecutive_cooldowns);
    }
    notes.push_back(Throttle::Describe(*gate, now, absl::LocalTimeZone()));
  }
  outcome.error = absl::StrCat(absl::StrJoin(notes, "; "), "; queued again, not counted as an attempt: ",
                               outcome.error.substr(0, outcome.error.find('\n')));
  RevokeSuccessors();
}

void Scheduler::AfterAttempt(const Exec& exec, const AttemptOutcome& outcome) {
  if (outcome.kind == AttemptOutcome::Kind::kFinal && outcome.state == v1::DONE) {
    for (Gate* gate : plan_.GatesOf(exec.def->task_key)) throttle_.Succeeded(*gate);
  } else if (outcome.cooldown_cap) {
    // The run fails; anything after starts counting again.
    for (Gate* gate : CoolingGates(exec.def->task_key)) Throttle::ResetCooldowns(*gate);
  }
}

void Scheduler::FillCooldownContext(const Exec& exec, AttemptContext& ctx) const {
  for (const Gate* gate : CoolingGates(exec.def->task_key)) {
    ctx.cooling = ctx.cooling || gate->Cooling(ctx.now);
    ctx.consecutive_cooldowns = std::max(ctx.consecutive_cooldowns, gate->consecutive_cooldowns);
  }
}

std::string Scheduler::ThrottleWaiting(const TaskRt& task, absl::Time now) const {
  std::vector<std::string> notes;
  for (const Gate* gate : plan_.GatesOf(task.key)) {
    std::string note = Throttle::Describe(*gate, now, absl::LocalTimeZone());
    if (!note.empty()) notes.push_back(std::move(note));
  }
  return absl::StrJoin(notes, "; ");
}

void Scheduler::RefreshThrottleNotes(absl::Time now) {
  const bool expired = throttle_.Expire(now);
  if (!expired && throttle_.version() == shown_throttle_version_) return;
  shown_throttle_version_ = throttle_.version();
  for (auto& [id, run] : runs_) {
    if (UpdateWaiting(*run)) recorder_->Run(*run);
  }
}

v1::ThrottleStatus Scheduler::GateStatus(const Gate& gate, absl::Time now) const {
  v1::ThrottleStatus st;
  st.set_name(gate.name);
  st.set_is_task(gate.is_task);
  st.set_limit(gate.config.limit);
  st.set_in_flight(gate.in_flight);
  st.set_rate(gate.config.rate);
  if (gate.config.adaptive) st.set_effective_rate(gate.current_rate);
  st.set_state(gate.Paused(now) ? "paused" : gate.Cooling(now) ? "cooling down" : "open");
  st.set_note(Throttle::Describe(gate, now, absl::LocalTimeZone()));
  if (gate.Cooling(now)) {
    st.set_cooldown_until_ms(absl::ToUnixMillis(gate.cooldown_until));
    st.set_cooldown_reason(gate.cooldown_reason);
  }
  st.set_consecutive_cooldowns(gate.consecutive_cooldowns);
  if (gate.Paused(now) && gate.paused_until != absl::InfiniteFuture()) {
    st.set_paused_until_ms(absl::ToUnixMillis(gate.paused_until));
  }
  st.set_queued(plan_.QueuedThrough(&gate));
  if (!gate.is_task) st.set_defined_by(gate.owner.empty() ? "asflowd" : absl::StrCat("flow ", gate.owner));
  return st;
}

void Scheduler::ListThrottle(std::function<void(v1::ListThrottleResponse)> done) {
  Post([this, done = std::move(done)] {
    const absl::Time now = deps_.clock->Now();
    v1::ListThrottleResponse response;
    for (const Gate* gate : throttle_.List()) *response.add_keys() = GateStatus(*gate, now);
    done(std::move(response));
  });
}

absl::StatusOr<Gate*> Scheduler::ResolveTarget(const std::string& target) {
  if (Gate* key = throttle_.FindKey(target)) return key;
  // A task: "flow.task" (a code task's qualified name is its key too), or
  // the name of a task some active run has.
  std::vector<std::string> keys;
  for (const auto& [id, run] : runs_) {
    for (const TaskRt& task : run->tasks) {
      if (task.spec == nullptr) continue;
      if ((task.key == target || task.spec->name() == target) &&
          std::find(keys.begin(), keys.end(), task.key) == keys.end()) {
        keys.push_back(task.key);
      }
    }
  }
  if (keys.size() > 1) {
    std::sort(keys.begin(), keys.end());
    return absl::InvalidArgumentError(absl::StrCat("'", target, "' is a task of several flows (",
                                                   absl::StrJoin(keys, ", "), "): name one as flow.task"));
  }
  if (keys.size() == 1) return throttle_.TaskGate(keys[0]);
  if (Gate* gate = throttle_.Find(target)) return gate;  // a task gate already known
  if (target.find('.') != std::string::npos && IsPoolName(target)) {
    // "flow.task" of a flow not running now: paused before it starts.
    return throttle_.TaskGate(target);
  }
  std::vector<std::string> known;
  for (const Gate* g : throttle_.List()) {
    if (!g->is_task) known.push_back(g->name);
  }
  return absl::NotFoundError(absl::StrCat("no throttle key or task named '", target, "' (keys: ",
                                          known.empty() ? "none" : absl::StrJoin(known, ", "),
                                          "; a task is named flow.task, or by its name while a run has it)"));
}

absl::Status Scheduler::SavePauses() {
  nlohmann::json pauses = nlohmann::json::object();
  for (const auto& [id, until] : throttle_.Pauses()) {
    pauses[id] = until == absl::InfiniteFuture() ? 0 : absl::ToUnixMillis(until);
  }
  return deps_.store->SetMeta(kPausesMeta, pauses.dump());
}

absl::Status Scheduler::LoadPauses() {
  auto text = deps_.store->GetMeta(kPausesMeta);
  if (!text.ok()) return text.status();
  if (text->empty()) return absl::OkStatus();
  nlohmann::json pauses = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!pauses.is_object()) {
    spdlog::error("stored pauses unreadable, ignored: {}", *text);
    return absl::OkStatus();
  }
  const absl::Time now = deps_.clock->Now();
  for (const auto& [id, until_ms] : pauses.items()) {
    if (!until_ms.is_number_integer()) continue;
    const int64_t ms = until_ms.get<int64_t>();
    const absl::Time until = ms == 0 ? absl::InfiniteFuture() : absl::FromUnixMillis(ms);
    if (until <= now) continue;
    // A key's pause holds even before a flow defines the key again.
    Gate* gate = id.rfind("task:", 0) == 0 ? throttle_.TaskGate(id.substr(5)) : throttle_.KeyGate(id);
    throttle_.Pause(*gate, until);
    spdlog::info("{} stays paused{}", gate->name, ms == 0 ? "" : " until then");
  }
  return absl::OkStatus();
}

void Scheduler::Pause(std::string target, absl::Duration duration,
                      std::function<void(absl::StatusOr<v1::ThrottleStatus>)> done) {
  Post([this, target = std::move(target), duration, done = std::move(done)] {
    auto gate = ResolveTarget(target);
    if (!gate.ok()) return done(gate.status());
    const absl::Time now = deps_.clock->Now();
    throttle_.Pause(**gate, duration > absl::ZeroDuration() ? now + duration : absl::InfiniteFuture());
    RevokeSuccessors();
    if (absl::Status s = SavePauses(); !s.ok()) return done(s);
    spdlog::info("{} paused{}", (*gate)->name,
                 duration > absl::ZeroDuration() ? absl::StrCat(" for ", absl::FormatDuration(duration)) : "");
    // Answered once the chained calls it revoked can no longer begin.
    AfterRevokesSettle([done = std::move(done), status = GateStatus(**gate, now)] { done(status); });
  });
}

void Scheduler::Unpause(std::string target, std::function<void(absl::StatusOr<v1::ResumeResponse>)> done) {
  Post([this, target = std::move(target), done = std::move(done)] {
    auto gate = ResolveTarget(target);
    if (!gate.ok()) return done(gate.status());
    v1::ResumeResponse response;
    response.set_was_paused(throttle_.Resume(**gate));
    if (absl::Status s = SavePauses(); !s.ok()) return done(s);
    if (response.was_paused()) spdlog::info("{} resumed", (*gate)->name);
    *response.mutable_status() = GateStatus(**gate, deps_.clock->Now());
    done(std::move(response));
  });
}

}  // namespace asflow
