#include "server/throttle.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace asflow {

std::string KeyConfig::ToString() const {
  std::vector<std::string> parts;
  if (limit > 0) parts.push_back(absl::StrCat("limit: ", limit));
  if (!rate.empty()) parts.push_back(absl::StrCat("rate: ", rate));
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

Gate* Throttle::Make(const std::string& id, const std::string& name, bool is_task) {
  auto& slot = gates_[id];
  if (slot == nullptr) {
    slot = std::make_unique<Gate>();
    slot->name = name;
    slot->is_task = is_task;
  }
  return slot.get();
}

absl::Status Throttle::Define(const std::string& name, const KeyConfig& config, const std::string& owner) {
  Gate* gate = Make(name, name, false);
  if (gate->defined && !(gate->config == config)) {
    const bool held = gate->owner.empty() || gate->refs > 0;
    if (held && gate->owner != owner) {
      return absl::AlreadyExistsError(absl::StrCat(
          "throttle key '", name, "' is already defined ",
          gate->owner.empty() ? "by asflowd (--throttle)" : absl::StrCat("by flow '", gate->owner, "'"), " as ",
          gate->config.ToString(), ", not ", config.ToString(),
          ": define it the same way, drop it here to use that one, or use another name"));
    }
  }
  if (!gate->defined || !(gate->config == config)) ++version_;
  // The daemon's definition stays the daemon's; a flow's same definition
  // merely shares it.
  if (!gate->defined || !gate->owner.empty()) {
    gate->owner = owner;
  }
  gate->defined = true;
  const bool same = gate->config == config;
  gate->config = config;
  if (config.adaptive) {
    if (!same || gate->current_rate <= 0) gate->current_rate = config.max_rate;
    gate->interval = absl::Seconds(1.0 / gate->current_rate);
  } else {
    gate->interval =
        config.rate_per_second > 0 ? absl::Seconds(1.0 / config.rate_per_second) : absl::ZeroDuration();
  }
  if (!owner.empty()) ++gate->refs;
  return absl::OkStatus();
}

void Throttle::Unref(const std::string& name) {
  Gate* gate = FindKey(name);
  if (gate != nullptr && gate->refs > 0) --gate->refs;
}

Gate* Throttle::FindKey(absl::string_view name) {
  auto it = gates_.find(name);
  return it == gates_.end() || !it->second->defined ? nullptr : it->second.get();
}

Gate* Throttle::TaskGate(const std::string& task_key) { return Make(absl::StrCat("task:", task_key), task_key, true); }

Gate* Throttle::Find(absl::string_view name) {
  if (auto key = gates_.find(name); key != gates_.end()) return key->second.get();
  auto it = gates_.find(absl::StrCat("task:", name));
  return it == gates_.end() ? nullptr : it->second.get();
}

absl::Time Throttle::OpensAt(const Gate& g) {
  if (g.config.limit > 0 && g.in_flight >= g.config.limit) return absl::InfiniteFuture();
  absl::Time at = absl::InfinitePast();
  if (g.interval > absl::ZeroDuration()) at = std::max(at, g.next_token);
  at = std::max(at, g.cooldown_until);
  if (g.paused) at = std::max(at, g.paused_until);
  return at;
}

absl::Time Throttle::Acquire(Gate& g, absl::Time now) {
  const absl::Time before = g.next_token;
  ++g.in_flight;
  // Capacity 1, as a task's rate: no burst after idling.
  if (g.interval > absl::ZeroDuration()) g.next_token = std::max(g.next_token, now) + g.interval;
  return before;
}

void Throttle::GiveBack(Gate& g, absl::Time token_before) {
  --g.in_flight;
  g.next_token = token_before;
}

void Throttle::Release(Gate& g) {
  if (g.in_flight > 0) --g.in_flight;
}

void Throttle::SetTaskRate(Gate& g, const KeyConfig& config) {
  if (g.config == config) return;
  g.config = config;
  g.current_rate = config.adaptive ? config.max_rate : 0;
  g.success_streak = 0;
  g.interval = config.adaptive ? absl::Seconds(1.0 / g.current_rate) : absl::ZeroDuration();
  ++version_;
}

void Throttle::Succeeded(Gate& g) {
  g.consecutive_cooldowns = 0;
  if (!g.config.adaptive || g.current_rate >= g.config.max_rate) return;
  if (++g.success_streak < kSpeedUpAfter) return;
  g.success_streak = 0;
  g.current_rate = std::min(g.config.max_rate, g.current_rate + g.config.max_rate * kSpeedUpStep);
  g.interval = absl::Seconds(1.0 / g.current_rate);
  ++version_;
}

bool Throttle::Cooldown(Gate& g, absl::Time until, const std::string& reason, absl::Time now) {
  const bool fresh = !g.Cooling(now);
  if (fresh) ++g.consecutive_cooldowns;
  if (fresh && g.config.adaptive) {
    // Once per cooldown: errors that only extend it were in flight before
    // it began, paced by the rate it already slowed.
    g.current_rate = std::max(g.config.min_rate, g.current_rate * kSlowDown);
    g.success_streak = 0;
    g.interval = absl::Seconds(1.0 / g.current_rate);
  }
  if (fresh || until > g.cooldown_until) {
    g.cooldown_until = until;
    g.cooldown_reason = reason;
    ++version_;
  }
  return fresh;
}

void Throttle::Pause(Gate& g, absl::Time until) {
  g.paused = true;
  g.paused_until = until;
  ++version_;
}

bool Throttle::Resume(Gate& g) {
  if (!g.paused) return false;
  g.paused = false;
  g.paused_until = absl::InfiniteFuture();
  ++version_;
  return true;
}

bool Throttle::Expire(absl::Time now) {
  bool changed = false;
  for (auto& [id, g] : gates_) {
    if (!g->cooldown_reason.empty() && now >= g->cooldown_until) {
      g->cooldown_reason.clear();
      changed = true;
    }
    if (g->paused && now >= g->paused_until) {
      g->paused = false;
      g->paused_until = absl::InfiniteFuture();
      changed = true;
    }
  }
  if (changed) ++version_;
  return changed;
}

absl::Time Throttle::NextExpiry() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, g] : gates_) {
    if (!g->cooldown_reason.empty()) next = std::min(next, g->cooldown_until);
    if (g->paused) next = std::min(next, g->paused_until);
  }
  return next;
}

std::vector<const Gate*> Throttle::List() const {
  std::vector<const Gate*> out;
  for (const auto& [id, g] : gates_) {
    if (g->defined || g->paused || !g->cooldown_reason.empty() || g->config.adaptive) out.push_back(g.get());
  }
  std::sort(out.begin(), out.end(), [](const Gate* a, const Gate* b) {
    return a->is_task != b->is_task ? !a->is_task : a->name < b->name;
  });
  return out;
}

std::map<std::string, absl::Time> Throttle::Pauses() const {
  std::map<std::string, absl::Time> out;
  for (const auto& [id, g] : gates_) {
    if (g->paused) out[id] = g->paused_until;
  }
  return out;
}

std::string Throttle::Describe(const Gate& g, absl::Time now, absl::TimeZone tz) {
  const std::string who = g.is_task ? absl::StrCat("task ", g.name) : g.name;
  auto at = [&](absl::Time t) { return absl::FormatTime("%H:%M:%S", t, tz); };
  if (g.Paused(now)) {
    return absl::StrCat(who, " paused", g.paused_until == absl::InfiniteFuture() ? "" : " until ",
                        g.paused_until == absl::InfiniteFuture() ? "" : at(g.paused_until), " (asflowctl resume ",
                        g.name, ")");
  }
  if (g.Cooling(now)) {
    return absl::StrCat(who, " cooling down until ", at(g.cooldown_until), " (", g.cooldown_reason, ")");
  }
  if (g.config.adaptive && g.current_rate < g.config.max_rate) {
    return absl::StrCat(who, " paced at ", FormatRate(g.current_rate), " (rate auto, up to ",
                        FormatRate(g.config.max_rate), ")");
  }
  return "";
}

std::string FormatRate(double per_second) {
  return absl::StrCat(absl::StrFormat("%.3g", per_second), "/s");
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  double seconds;
  if (absl::ascii_isdigit(value[0]) && absl::SimpleAtod(value, &seconds)) {
    if (!(seconds >= 0)) return std::nullopt;
    return std::min(absl::Seconds(std::min(seconds, 1e9)), kMaxCooldown);
  }
  // HTTP-date (RFC 9110 5.6.7): IMF-fixdate, then the two obsolete forms.
  // Runs of spaces are folded (asctime pads the day with one).
  std::string text = absl::StrJoin(absl::StrSplit(value, ' ', absl::SkipEmpty()), " ");
  static const char* const kFormats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                         "%a %b %d %H:%M:%S %Y"};
  for (const char* format : kFormats) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(format, text, absl::UTCTimeZone(), &t, &err)) {
      return std::clamp(t - now, absl::ZeroDuration(), kMaxCooldown);
    }
  }
  return std::nullopt;
}

}  // namespace asflow
