// Throttle: the gates every start passes besides its task's own limit and
// rate. A gate is a throttle key (`throttle: {youtube: {limit: 4, rate:
// 2/s}}`, or asflowd --throttle) or a task definition's own gate (for a
// cooldown or a pause of a task that uses no key). A gate has room when
// fewer than its limit are in flight through it, its rate token has come,
// and it is neither cooling down nor paused. Keys are global: every run,
// flow, code session and worker of the daemon shares them.
//
// Pure bookkeeping (no I/O, no clock: time is passed in), so every rule is
// pinned by a unit test with a fake clock. Not thread-safe: owned by the
// scheduler thread. Gates are never removed; pointers to them stay valid
// for the Throttle's lifetime.
#ifndef ASFLOW_SERVER_THROTTLE_H_
#define ASFLOW_SERVER_THROTTLE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace asflow {

// A key's definition.
struct KeyConfig {
  int limit = 0;        // 0: no cap on in-flight instances
  std::string rate;     // as written ("2/s", "auto"); empty: none
  double rate_per_second = 0;  // fixed rate; 0: none
  // `rate: auto`: paced between these, starting at the max (AIMD below).
  bool adaptive = false;
  double max_rate = 0;
  double min_rate = 0;
  bool operator==(const KeyConfig& o) const {
    return limit == o.limit && rate_per_second == o.rate_per_second && adaptive == o.adaptive &&
           max_rate == o.max_rate && min_rate == o.min_rate;
  }
  // "{limit: 4, rate: 2/s}" for messages.
  std::string ToString() const;
};

// One gate and its state. Read by the Plan; changed only through Throttle.
struct Gate {
  std::string name;     // the key's name, or the task definition's key
  bool is_task = false;
  KeyConfig config;
  absl::Duration interval = absl::ZeroDuration();  // 1 / rate
  int in_flight = 0;
  absl::Time next_token = absl::InfinitePast();
  // Cooling down until `cooldown_until` (past: not cooling); why, as shown.
  absl::Time cooldown_until = absl::InfinitePast();
  std::string cooldown_reason;
  int consecutive_cooldowns = 0;  // cooldowns begun since the last success
  // Adaptive pacing: the rate now (interval is 1 / it), and successes
  // since the last step.
  double current_rate = 0;
  int success_streak = 0;
  bool paused = false;
  absl::Time paused_until = absl::InfiniteFuture();  // paused: when it ends
  // Who defined the key: "" the daemon, else the flow; runs holding that
  // definition (a definition with none may be replaced).
  std::string owner;
  int refs = 0;
  bool defined = false;  // a key someone defined (task gates: false)

  bool Cooling(absl::Time now) const { return now < cooldown_until; }
  bool Paused(absl::Time now) const { return paused && now < paused_until; }
};

class Throttle {
 public:
  Throttle() = default;
  Throttle(const Throttle&) = delete;
  Throttle& operator=(const Throttle&) = delete;

  // Defines key `name` for `owner` ("" for the daemon's own keys, else the
  // flow's name), holding a reference until Unref. AlreadyExists saying
  // who defined it and how when it is defined differently by the daemon or
  // by another flow with an active run; the same owner redefines it (a
  // flow resubmitted with another limit: the last wins).
  absl::Status Define(const std::string& name, const KeyConfig& config, const std::string& owner);
  // A run that defined `name` is over.
  void Unref(const std::string& name);
  // The key `name`, or null if nobody defined it.
  Gate* FindKey(absl::string_view name);
  // The gate of key `name`, made (undefined) if nobody defined it yet: a
  // pause restored at start holds before a flow defines the key again.
  Gate* KeyGate(const std::string& name) { return Make(name, name, false); }
  // The gate of task definition `task_key` (made on first use).
  Gate* TaskGate(const std::string& task_key);
  // The gate named `name`: a key (defined or not), or a task definition's
  // gate if one was made; null if neither.
  Gate* Find(absl::string_view name);

  // When `gate` may start something: InfinitePast if now-ish, a time if it
  // waits for its rate token, a cooldown or a timed pause, InfiniteFuture
  // if it waits for one in flight to finish or an open-ended pause. It has
  // room at `now` iff OpensAt <= now.
  static absl::Time OpensAt(const Gate& gate);
  // A start through `gate` at `now`: one more in flight, its rate token
  // spent. Returns the token time before, for GiveBack.
  static absl::Time Acquire(Gate& gate, absl::Time now);
  // An acquired start did not happen: in flight and token given back.
  static void GiveBack(Gate& gate, absl::Time token_before);
  // One in flight finished.
  static void Release(Gate& gate);

  // A cooldown rule matched an attempt through `gate`: it starts nothing
  // until `until`. A cooldown under way is extended to the later end, never
  // stacked, and does not count as a new one. Returns true if a new
  // cooldown began.
  bool Cooldown(Gate& gate, absl::Time until, const std::string& reason, absl::Time now);
  // An attempt through `gate` succeeded: the consecutive cooldown count
  // starts again, and an adaptive rate eases back up (one step per
  // kSpeedUpAfter successes in a row).
  void Succeeded(Gate& gate);
  // The cooldown cap failed an instance: the count starts again.
  static void ResetCooldowns(Gate& gate) { gate.consecutive_cooldowns = 0; }
  // Sets the rate of a task's own gate (`rate: auto` of a task; a fixed
  // rate stays the plan's). Keeps the pace reached if the bounds are the
  // same.
  void SetTaskRate(Gate& gate, const KeyConfig& config);
  // Pauses the gate (until `until`; InfiniteFuture: until Resume).
  void Pause(Gate& gate, absl::Time until);
  // Ends a pause; false if it was not paused.
  bool Resume(Gate& gate);

  // Ends the cooldowns and timed pauses that are over at `now`; true if
  // any did (what the gates show changed).
  bool Expire(absl::Time now);
  // When the next cooldown or timed pause ends; InfiniteFuture if none.
  absl::Time NextExpiry() const;
  // Bumped by every change of what a gate shows (cooldown, pause,
  // definition): the scheduler redraws the runs' `waiting` when it moves.
  uint64_t version() const { return version_; }

  // Every defined key, then every task gate that is paused or cooling,
  // sorted by name.
  std::vector<const Gate*> List() const;
  // Paused gates: name -> pause end (InfiniteFuture: open-ended).
  std::map<std::string, absl::Time> Pauses() const;

  // What the gate shows while it holds starts back: "youtube cooling down
  // until 12:03:10 (429 from extract(video_id=F6Pq…))", "youtube paused
  // (asflowctl resume youtube)"; empty when open. Times in `tz`.
  static std::string Describe(const Gate& gate, absl::Time now, absl::TimeZone tz);

 private:
  Gate* Make(const std::string& id, const std::string& name, bool is_task);

  // Keys by name and task gates by "task:" + task key, in one table.
  absl::flat_hash_map<std::string, std::unique_ptr<Gate>> gates_;
  uint64_t version_ = 0;
};

// The wait a Retry-After value asks for: seconds ("120", "1.5") or an HTTP
// date ("Wed, 21 Oct 2015 07:28:00 GMT"; also the RFC 850 and asctime
// forms HTTP allows), relative to `now`; nullopt if it is neither. A date
// in the past is a zero wait; waits are capped at kMaxCooldown.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value, absl::Time now);

// The longest cooldown honoured (a garbage Retry-After cannot park a key
// for years).
inline constexpr absl::Duration kMaxCooldown = absl::Hours(24);

// Adaptive pacing (AIMD): each new cooldown multiplies the rate by
// kSlowDown (the interval doubles) down to the min; every kSpeedUpAfter
// successes in a row add max x kSpeedUpStep back, up to the max.
inline constexpr double kSlowDown = 0.5;
inline constexpr int kSpeedUpAfter = 10;
inline constexpr double kSpeedUpStep = 0.1;

// "2/s", "0.156/s": a rate for messages.
std::string FormatRate(double per_second);

}  // namespace asflow

#endif  // ASFLOW_SERVER_THROTTLE_H_
