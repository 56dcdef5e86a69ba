#include "server/run_reader.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/run_state.h"

namespace asflow {
namespace {

// Bytes of items a list response may hold: under gRPC's default receive
// limit (4 MiB; asflowctl allows 64) with room for the framing, whatever
// the items hold, so a listing never breaks for good because some runs or
// instances are large.
constexpr size_t kMaxPageBytes = 3 << 20;

// Counts a page's items against kMaxPageBytes; the first item always fits.
class PageBudget {
 public:
  // False (and full() from then on) if an item of `bytes` would pass the
  // budget; the caller stops there.
  bool Take(size_t bytes) {
    if (used_ > 0 && used_ + bytes > kMaxPageBytes) {
      full_ = true;
      return false;
    }
    used_ += bytes;
    return true;
  }
  bool full() const { return full_; }

 private:
  size_t used_ = 0;
  bool full_ = false;
};

}  // namespace

absl::Status RunReader::AddAttempts(const InstanceRecord& row, v1::Instance* instance) const {
  auto stored = store_->ListAttempts(row.run_id, row.seq);
  if (!stored.ok()) return stored.status();
  bool last_stored = false;
  for (Store::StoredAttempt& s : *stored) {
    const AttemptRecord& r = s.record;
    v1::Attempt& a = *instance->add_attempt_history();
    a.set_attempt(r.attempt);
    a.set_started_ms(r.started_ms);
    a.set_finished_ms(r.finished_ms);
    a.set_exit_code(r.exit_code);
    a.set_term_signal(r.term_signal);
    a.set_state(r.state);
    a.set_error(r.error);
    a.set_stderr_tail(std::move(s.record.stderr_tail));
    last_stored = r.started_ms == row.started_ms;
  }
  // A clean success has no row of its own: its instance row says it all.
  if (row.state == v1::DONE && row.attempts > 0 && !last_stored) {
    v1::Attempt& a = *instance->add_attempt_history();
    a.set_attempt(row.attempts);
    a.set_started_ms(row.started_ms);
    a.set_finished_ms(row.finished_ms);
    a.set_exit_code(0);
    a.set_state(v1::DONE);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Run> RunReader::GetRun(int64_t run_id) const {
  if (std::optional<v1::Run> run = hub_->FindRun(run_id)) return *run;
  auto rec = store_->GetRun(run_id);
  if (!rec.ok()) return rec.status();
  return std::move(rec->run);
}

absl::StatusOr<v1::ListRunsResponse> RunReader::ListRuns(const v1::ListRunsRequest& request) const {
  RunQuery query;
  query.limit = request.limit() > 0 ? std::min(request.limit(), 10000) : 50;
  query.flow = request.flow();
  for (int s : request.states()) query.states.push_back(static_cast<v1::RunState>(s));
  if (!request.page_token().empty() && (!absl::SimpleAtoi(request.page_token(), &query.before_id) ||
                                        query.before_id <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("bad page_token '", request.page_token(), "'"));
  }
  auto runs = store_->ListRuns(query);
  if (!runs.ok()) return runs.status();
  v1::ListRunsResponse response;
  PageBudget budget;
  for (RunRecord& rec : *runs) {
    std::optional<v1::Run> fresh = hub_->FindRun(rec.run.id());
    v1::Run run = fresh ? std::move(*fresh) : std::move(rec.run);
    if (!budget.Take(run.ByteSizeLong())) break;
    *response.add_runs() = std::move(run);
  }
  if (response.runs_size() > 0 && (response.runs_size() == query.limit || budget.full())) {
    response.set_next_page_token(absl::StrCat(response.runs().rbegin()->id()));
  }
  return response;
}

absl::StatusOr<v1::ListTasksResponse> RunReader::ListTasks(const v1::ListTasksRequest& request) const {
  InstanceQuery query;
  query.run_id = request.run_id();
  query.task = request.task();
  for (int s : request.states()) query.states.push_back(static_cast<v1::InstanceState>(s));
  query.limit = request.page_size() > 0 ? std::min(request.page_size(), 10000) : 1000;
  if (!request.params().empty()) {
    if (request.task().empty()) return absl::InvalidArgumentError("a params filter needs a task");
    query.params = CanonicalParams({request.params().begin(), request.params().end()});
  }
  if (request.match_size() > 0) {
    if (request.task().empty() || request.match_size() > kMaxParamNeedles) {
      return absl::InvalidArgumentError(
          absl::StrCat("a match filter needs a task and has at most ", kMaxParamNeedles, " terms"));
    }
    for (const std::string& m : request.match()) {
      const size_t eq = m.find('=');
      query.needles.push_back(eq == std::string::npos ? ParamNeedle("", m)
                                                      : ParamNeedle(m.substr(0, eq), m.substr(eq + 1)));
    }
  }
  if (!request.page_token().empty() && !absl::SimpleAtoi(request.page_token(), &query.after_seq)) {
    return absl::InvalidArgumentError(absl::StrCat("bad page_token '", request.page_token(), "'"));
  }
  if (absl::Status s = GetRun(request.run_id()).status(); !s.ok()) return s;
  auto rows = store_->ListInstances(query);
  if (!rows.ok()) return rows.status();
  v1::ListTasksResponse response;
  PageBudget budget;
  for (const InstanceRecord& row : *rows) {
    v1::Instance instance = InstanceToProto(row);
    if (request.with_attempts()) {
      if (absl::Status s = AddAttempts(row, &instance); !s.ok()) return s;
    }
    if (!budget.Take(instance.ByteSizeLong())) break;
    *response.add_instances() = std::move(instance);
  }
  if (response.instances_size() > 0 && (static_cast<int>(rows->size()) == query.limit || budget.full())) {
    response.set_next_page_token(absl::StrCat(response.instances().rbegin()->seq()));
  }
  return response;
}

}  // namespace asflow
