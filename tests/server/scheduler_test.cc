// The scheduler's rules, pinned exactly: a fake runner, a fake clock, an
// in-memory store and file system (tests/server/scheduler_fakes.h). No
// file, socket, process or sleep; each test drives the scheduler with
// Step() and moves the clock by hand.
#include "server/scheduler.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/spec_parser.h"
#include "google/protobuf/text_format.h"
#include "tests/server/scheduler_fakes.h"

namespace asflow {
namespace {

using ::asflow::testing::FakeClock;
using ::asflow::testing::FakeRunner;
using ::asflow::testing::FakeStore;
using ::asflow::testing::FakeWorkspaceFs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Chained starts (scheduler_chain.cc): the jobs started for session 1,
// each as (call id, the call it is chained after or 0).
std::vector<std::pair<int64_t, int64_t>> Chain(const FakeRunner& runner) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& [id, job] : runner.running()) out.emplace_back(job.call_id, job.after == 0 ? 0 : job.after_call);
  return out;
}

// The id of the job started for call `call_id`; 0 if none runs.
ExecId CallJob(const FakeRunner& runner, int64_t call_id) {
  for (const auto& [id, job] : runner.running()) {
    if (job.call_id == call_id) return id;
  }
  return 0;
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_.AddDir("/ws");
    Boot();
  }
  void TearDown() override { sched_.reset(); }

  // A scheduler over the same store and files: at the start, and for a
  // restart after a crash.
  void Boot() {
    sched_.reset();
    SchedulerOptions options;
    options.allowed_roots = {"/ws"};
    options.user_temp_roots = temp_roots_;
    options.local_slots = 8;
    options.default_limit = 2;
    options.throttle = daemon_keys_;
    sched_ = std::make_unique<Scheduler>(options);
    local_ = std::make_unique<FakeRunner>(&fs_);
    remote_ = std::make_unique<FakeRunner>(&fs_);
    code_ = std::make_unique<FakeRunner>(&fs_);
    local_->SetEvents(sched_->runner_events());
    remote_->SetEvents(sched_->runner_events());
    code_->SetEvents(sched_->runner_events());
    sched_->SetDeps(SchedulerDeps{&store_, &hub_, &clock_, &fs_, local_.get(), remote_.get(), code_.get(),
                                  [this](int64_t session, v1::SessionEvent e) {
                                    sent_.emplace_back(session, std::move(e));
                                  }});
    ASSERT_TRUE(sched_->Resume().ok());
    sched_->Step();
  }

  // Submits a flow file's text in /ws; the run's id, or the error.
  absl::StatusOr<int64_t> TrySubmit(const std::string& yaml, bool keep_going = false,
                                     const std::map<std::string, std::string>& params = {}) {
    auto parsed = ParseFlowText(yaml, "test.yaml", SpecFormat::kYaml);
    if (!parsed.ok()) return parsed.status();
    v1::SubmitFlowRequest request;
    *request.mutable_spec() = parsed->spec;
    request.set_workspace("/ws");
    request.set_keep_going(keep_going);
    for (const auto& [k, v] : params) (*request.mutable_params())[k] = v;
    absl::StatusOr<Scheduler::Submitted> got = absl::UnknownError("not answered");
    sched_->Submit(request, [&](absl::StatusOr<Scheduler::Submitted> s) { got = s; });
    sched_->Step();
    if (!got.ok()) return got.status();
    return got->run_id;
  }
  // The same, with the whole answer (its warnings).
  absl::StatusOr<Scheduler::Submitted> TrySubmitFull(const std::string& yaml,
                                                     const std::map<std::string, std::string>& params = {}) {
    auto parsed = ParseFlowText(yaml, "test.yaml", SpecFormat::kYaml);
    if (!parsed.ok()) return parsed.status();
    v1::SubmitFlowRequest request;
    *request.mutable_spec() = parsed->spec;
    request.set_workspace("/ws");
    for (const auto& [k, v] : params) (*request.mutable_params())[k] = v;
    absl::StatusOr<Scheduler::Submitted> got = absl::UnknownError("not answered");
    sched_->Submit(request, [&](absl::StatusOr<Scheduler::Submitted> s) { got = std::move(s); });
    sched_->Step();
    return got;
  }
  int64_t Submit(const std::string& yaml, bool keep_going = false) {
    absl::StatusOr<int64_t> id = TrySubmit(yaml, keep_going);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : -1;
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    sched_->Step();
  }
  void Cancel(int64_t run) {
    sched_->Cancel(run, [](absl::StatusOr<v1::RunState>) {});
    sched_->Step();
  }
  // The committed state of run `run`.
  v1::RunState RunState(int64_t run) { return store_.Run(run).state(); }
  std::string RunError(int64_t run) { return store_.Run(run).error(); }
  // The committed state of the instance (run, seq).
  v1::InstanceState State(int64_t run, int64_t seq) {
    const InstanceRecord* r = store_.Instance(run, seq);
    return r == nullptr ? v1::INSTANCE_STATE_UNSPECIFIED : r->state;
  }
  const InstanceRecord& Row(int64_t run, int64_t seq) { return *store_.Instance(run, seq); }

  std::vector<std::string> temp_roots_;
  std::map<std::string, v1::ThrottleKey> daemon_keys_;  // asflowd --throttle
  FakeClock clock_;
  FakeStore store_;
  FakeWorkspaceFs fs_;
  EventHub hub_;
  std::unique_ptr<FakeRunner> local_;
  std::unique_ptr<FakeRunner> remote_;
  std::unique_ptr<FakeRunner> code_;
  // What the scheduler sent to code sessions, in order.
  std::vector<std::pair<int64_t, v1::SessionEvent>> sent_;

  // A code session's op, as the SessionHub hands it over.
  void Op(int64_t session, v1::SessionOp op) {
    sched_->session_ops().on_op(session, std::move(op));
    sched_->Step();
  }
  // Session 1 opens run ref 1 in /ws and declares t (`extra` added to its
  // spec in text form); the run's id.
  int64_t OpenCodeRun(const std::string& extra = "") {
    v1::SessionOp open;
    open.mutable_open_run()->set_ref(1);
    open.mutable_open_run()->set_flow("py");
    open.mutable_open_run()->set_workspace("/ws");
    Op(1, open);
    v1::SessionOp declare;
    declare.mutable_declare_task()->set_run(1);
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
        absl::StrCat("name: \"m.t\" on: \"out/{id}.txt\" ", extra), declare.mutable_declare_task()->mutable_spec()));
    Op(1, declare);
    for (const auto& [session, e] : sent_) {
      if (e.has_run_opened()) return e.run_opened().run_id();
    }
    return 0;
  }
  void CallOp(int64_t call_id, const std::string& id) {
    v1::SessionOp call;
    call.mutable_call()->set_run(1);
    call.mutable_call()->set_call_id(call_id);
    call.mutable_call()->set_task("m.t");
    (*call.mutable_call()->mutable_params())["id"] = id;
    call.mutable_call()->set_output(absl::StrCat("out/", id, ".txt"));
    Op(1, call);
  }
  // A code run (OpenCodeRun(`spec`)) on a session that takes chained
  // starts, with calls c1..c`calls` queued; c1 ends well (and short), so c2
  // starts with the rest chained behind it. Returns the run's id.
  int64_t StartChain(int calls, const std::string& spec = "limit: 1") {
    code_->SetChains(true);
    const int64_t run = OpenCodeRun(spec);
    for (int i = 1; i <= calls; ++i) CallOp(i, absl::StrCat("c", i));
    code_->FinishOk(CallJob(*code_, 1), "1");
    sched_->Step();
    return run;
  }
  // The call states sent so far, by call id.
  std::map<int64_t, v1::InstanceState> CallStates() {
    std::map<int64_t, v1::InstanceState> states;
    for (const auto& [session, e] : sent_) {
      if (e.has_call_state()) states[e.call_state().call_id()] = e.call_state().state();
    }
    return states;
  }
  std::unique_ptr<Scheduler> sched_;
};

// Three instances of task t (ids a, b, c), output out/{id}.txt, `extra`
// lines added to the task.
std::string Flow(const std::string& extra, const std::string& name = "f",
                 const std::string& values = "[a, b, c]") {
  return absl::StrCat("name: ", name,
                      "\ntasks:\n  - name: t\n    for_each: {values: ", values,
                      ", as: id}\n    on: out/{id}.txt\n    run: [cmd, \"{id}\"]\n", extra);
}

TEST_F(SchedulerTest, LimitHoldsAcrossTwoRuns) {
  int64_t r1 = Submit(Flow("    limit: 2\n"));
  int64_t r2 = Submit(Flow("    limit: 2\n", "f", "[d, e, f]"));
  // Same flow and task: one task definition, one limit for both runs.
  EXPECT_EQ(local_->running().size(), 2u);
  for (int finished = 0; finished < 4; ++finished) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
    EXPECT_EQ(local_->running().size(), 2u) << "after " << finished + 1 << " finished";
  }
  local_->FinishOk(local_->running().begin()->first);
  local_->FinishOk(local_->running().begin()->first);
  sched_->Step();
  EXPECT_EQ(local_->started().size(), 6u);
  EXPECT_EQ(RunState(r1), v1::RUN_SUCCEEDED);
  EXPECT_EQ(RunState(r2), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, DrainStartsNothingNewAndSaysWhenIdle) {
  int64_t run = Submit(Flow("    limit: 2\n"));
  ASSERT_EQ(local_->running().size(), 2u);
  bool idle = false;
  sched_->Drain([&] { idle = true; });
  sched_->Step();
  EXPECT_FALSE(idle);
  // A finished attempt is recorded as usual, and frees no slot for c.
  local_->FinishOk(local_->running().begin()->first);
  sched_->Step();
  EXPECT_FALSE(idle);
  EXPECT_EQ(local_->started().size(), 2u);
  EXPECT_EQ(State(run, 0), v1::DONE);
  EXPECT_EQ(State(run, 2), v1::QUEUED);
  // New runs are refused meanwhile.
  EXPECT_THAT(TrySubmit(Flow("", "g")).status().message(), HasSubstr("shutting down"));
  local_->FinishOk(local_->running().begin()->first);
  sched_->Step();
  EXPECT_TRUE(idle);
  EXPECT_EQ(local_->started().size(), 2u);
  EXPECT_EQ(RunState(run), v1::RUN_RUNNING);
}

TEST_F(SchedulerTest, RunsShareATaskRoundRobin) {
  Submit(Flow("    limit: 1\n"));
  Submit(Flow("    limit: 1\n", "f", "[d, e, f]"));
  std::vector<std::string> order;
  while (!local_->running().empty()) {
    ASSERT_EQ(local_->running().size(), 1u);
    order.push_back(local_->running().begin()->second.label);
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  // a started before the second run existed; from then on the runs take
  // turns (a run that arrives joins the rotation behind those queued).
  EXPECT_THAT(order, ElementsAre("t(id=a)", "t(id=b)", "t(id=d)", "t(id=c)", "t(id=e)", "t(id=f)"));
}

TEST_F(SchedulerTest, RateSpacesStartsByTheClock) {
  Submit(Flow("    limit: 10\n    rate: 2/s\n"));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)"));
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Milliseconds(500));
  Advance(absl::Milliseconds(499));
  EXPECT_EQ(local_->running().size(), 1u);
  Advance(absl::Milliseconds(1));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)"));
  Advance(absl::Milliseconds(500));
  EXPECT_EQ(local_->running().size(), 3u);
  EXPECT_EQ(Row(1, 2).started_ms - Row(1, 0).started_ms, 1000);
}

TEST_F(SchedulerTest, RetryWaitsBackoffTimesTwoToTheAttemptPlusJitter) {
  int64_t run = Submit(Flow("    retry: {attempts: 2, backoff: 1s, jitter: 500ms, exit_codes: [75]}\n", "f", "[a]"));
  ASSERT_EQ(local_->started().size(), 1u);
  ExecId id = local_->started()[0];
  local_->FinishExit(id, 75, "try later");
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::QUEUED);
  EXPECT_THAT(Row(run, 0).error, HasSubstr("attempt 1 of 3 failed, retrying in "));
  // First retry: 1s * 2^0 + [0, 500ms).
  Advance(absl::Milliseconds(999));
  EXPECT_EQ(local_->started().size(), 1u);
  Advance(absl::Milliseconds(501));
  ASSERT_EQ(local_->started().size(), 2u);
  EXPECT_EQ(Row(run, 0).attempts, 2);
  local_->FinishExit(id, 75);
  sched_->Step();
  // Second: 1s * 2^1 + [0, 500ms).
  Advance(absl::Milliseconds(1999));
  EXPECT_EQ(local_->started().size(), 2u);
  Advance(absl::Milliseconds(501));
  ASSERT_EQ(local_->started().size(), 3u);
  local_->FinishExit(id, 75, "still later");
  sched_->Step();
  // No attempts left: an error no other rule matches fails it.
  EXPECT_EQ(State(run, 0), v1::FAILED);
  EXPECT_EQ(Row(run, 0).attempts, 3);
  EXPECT_EQ(Row(run, 0).error, "exit code 75: still later\nstill later");
  EXPECT_EQ(RunState(run), v1::RUN_FAILED);
}

TEST_F(SchedulerTest, EachAttemptIsRecordedButAQuietSuccessWritesNoRow) {
  const int64_t run = Submit(Flow("    retry: {retries: 1, backoff: 1s, exit_codes: [75]}\n", "f", "[a, b]"));
  const int64_t started = absl::ToUnixMillis(clock_.Now());
  local_->FinishExit(local_->IdOf("t(id=a)"), 75, "busy\n");
  local_->FinishOk(local_->IdOf("t(id=b)"));  // nothing on stderr: its row says it all
  sched_->Step();
  ASSERT_EQ(store_.attempts().size(), 1u);
  Advance(absl::Seconds(1));
  ExecResult ok;
  ok.process.exit_code = 0;
  ok.process.stderr_tail = "fine\n";
  local_->Finish(local_->IdOf("t(id=a)"), ok);
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::DONE);
  ASSERT_EQ(store_.attempts().size(), 2u);
  const AttemptRecord& first = store_.attempts()[0];
  EXPECT_EQ(first.run_id, run);
  EXPECT_EQ(first.seq, 0);
  EXPECT_EQ(first.attempt, 1);
  EXPECT_EQ(first.state, v1::QUEUED);
  EXPECT_EQ(first.exit_code, 75);
  EXPECT_EQ(first.started_ms, started);
  EXPECT_EQ(first.finished_ms, started);
  EXPECT_EQ(first.stderr_tail, "busy\n");
  EXPECT_THAT(first.error, HasSubstr("attempt 1 of 2 failed, retrying in "));
  const AttemptRecord& second = store_.attempts()[1];
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(second.state, v1::DONE);
  EXPECT_EQ(second.exit_code, 0);
  EXPECT_EQ(second.started_ms, started + 1000);
  EXPECT_EQ(second.stderr_tail, "fine\n");
  EXPECT_EQ(second.error, "");
}

TEST_F(SchedulerTest, DirectoryOutputIsTheDirectoryItselfAndRemotePoolsAreRefused) {
  const int64_t run = Submit(
      "name: m\ntasks:\n  - name: t\n    for_each: {values: [a], as: id}\n    on: media/{id}/\n    run: [cmd]\n");
  ASSERT_EQ(local_->running().size(), 1u);
  const ExecJob& job = local_->running().begin()->second;
  EXPECT_EQ(job.output, "media/a");
  EXPECT_TRUE(job.output_dir);
  EXPECT_EQ(Row(run, 0).output, "media/a");
  // Present: cached (the next run of the same flow).
  fs_.Put("/ws/media/b", "");
  const int64_t again = Submit(
      "name: m\ntasks:\n  - name: t\n    for_each: {values: [b], as: id}\n    on: media/{id}/\n    run: [cmd]\n");
  EXPECT_EQ(State(again, 0), v1::CACHED);
  absl::StatusOr<int64_t> remote = TrySubmit(
      "name: r\ntasks:\n  - name: t\n    on: media/x/\n    run: [cmd]\n    pool: crawl\n");
  EXPECT_THAT(remote.status().message(),
              HasSubstr("tasks[0].on: a directory output is written by the daemon's own pool; pool 'crawl' runs on "
                        "remote workers, which cannot ship a directory yet"));
}

// Issue 15 defect 2: a retry went to the back of its task's queue, so with
// a long queue it started long after its backoff ended.
TEST_F(SchedulerTest, ARetryGoesAheadOfInstancesThatNeverStartedOnceItsBackoffEnds) {
  Submit(Flow("    limit: 1\n    retry: {attempts: 2, backoff: 1s, exit_codes: [75]}\n", "f", "[a, b, c, d, e]"));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)"));
  local_->FinishExit(local_->IdOf("t(id=a)"), 75);
  sched_->Step();
  // a waits for its backoff: b takes the slot.
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=b)"));
  local_->FinishOk(local_->IdOf("t(id=b)"));
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=c)"));
  // The backoff ends while c runs; a is next, ahead of d and e.
  Advance(absl::Seconds(1));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=c)"));
  local_->FinishOk(local_->IdOf("t(id=c)"));
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)"));
  // Its second failure waits 2s; d and e go meanwhile.
  local_->FinishExit(local_->IdOf("t(id=a)"), 75);
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=d)"));
  Advance(absl::Seconds(2));
  local_->FinishOk(local_->IdOf("t(id=d)"));
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)"));
  local_->FinishOk(local_->IdOf("t(id=a)"));
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=e)"));
}

TEST_F(SchedulerTest, RulesApplyInOrderRetrySkipSuppressFail) {
  const std::string rules =
      "    retry: {attempts: 1, exit_codes: [2]}\n"
      "    skip: {exit_codes: [2, 3]}\n"
      "    suppress: {exit_codes: [2, 3, 4]}\n"
      "    limit: 10\n";
  int64_t run = Submit(Flow(rules, "f", "[a, b, c, d]"), /*keep_going=*/true);
  ASSERT_EQ(local_->running().size(), 4u);
  local_->FinishExit(local_->IdOf("t(id=a)"), 2);  // retry first...
  local_->FinishExit(local_->IdOf("t(id=b)"), 3);  // skip before suppress
  local_->FinishExit(local_->IdOf("t(id=c)"), 4);  // suppress
  local_->FinishExit(local_->IdOf("t(id=d)"), 5, "boom");  // no rule: fail
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::RUNNING);  // retried at once (no backoff)
  EXPECT_EQ(Row(run, 0).attempts, 2);
  EXPECT_EQ(State(run, 1), v1::SKIPPED);
  EXPECT_EQ(State(run, 2), v1::SUPPRESSED);
  EXPECT_EQ(fs_.Get("/ws/out/c.err"), "exit code 4\n");
  EXPECT_EQ(State(run, 3), v1::FAILED);
  ASSERT_NE(local_->IdOf("t(id=a)"), 0);
  local_->FinishExit(local_->IdOf("t(id=a)"), 2);  // ...then, attempts spent, skip
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::SKIPPED);
  EXPECT_EQ(RunState(run), v1::RUN_FAILED);
  EXPECT_EQ(RunError(run), "t(id=d): exit code 5: boom");
  EXPECT_FALSE(fs_.Has("/ws/out/a.err"));
}

TEST_F(SchedulerTest, ASuppressedErrorThatCannotBeRecordedFails) {
  fs_.FailWritesUnder("/ws/out/");
  int64_t run = Submit(Flow("    suppress: {exit_codes: [4]}\n", "f", "[a]"));
  local_->FinishExit(local_->started()[0], 4);
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::FAILED);
  EXPECT_THAT(Row(run, 0).error, HasSubstr("cannot record the suppressed error: /ws/out/a.err: Permission denied"));
}

TEST_F(SchedulerTest, FailFastCancelsSiblingsAndStartsNothingNew) {
  int64_t run = Submit(Flow("    limit: 2\n", "f", "[a, b, c, d]"));
  ASSERT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)"));
  ExecId b = local_->IdOf("t(id=b)");
  local_->FinishExit(local_->IdOf("t(id=a)"), 1, "unknown");
  sched_->Step();
  EXPECT_EQ(RunState(run), v1::RUN_FAILED);
  EXPECT_EQ(RunError(run), "t(id=a): exit code 1: unknown");
  EXPECT_THAT(local_->cancelled(), ElementsAre(b));
  local_->FinishCancelled(b);
  sched_->Step();
  EXPECT_EQ(local_->started().size(), 2u);  // c and d never start
  EXPECT_EQ(State(run, 1), v1::CANCELLED);
  EXPECT_EQ(State(run, 2), v1::CANCELLED);
  EXPECT_EQ(State(run, 3), v1::CANCELLED);
}

TEST_F(SchedulerTest, KeepGoingLetsTheRestFinish) {
  int64_t run = Submit(Flow("    limit: 2\n", "f", "[a, b, c, d]"), /*keep_going=*/true);
  local_->FinishExit(local_->IdOf("t(id=a)"), 1);
  sched_->Step();
  EXPECT_EQ(RunState(run), v1::RUN_RUNNING);
  EXPECT_THAT(local_->cancelled(), IsEmpty());
  while (!local_->running().empty()) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  EXPECT_EQ(local_->started().size(), 4u);
  EXPECT_EQ(RunState(run), v1::RUN_FAILED);
  EXPECT_EQ(State(run, 3), v1::DONE);
}

TEST_F(SchedulerTest, TwoRunsShareOneExecution) {
  int64_t r1 = Submit(Flow("", "f", "[a]"));
  int64_t r2 = Submit(Flow("", "g", "[a]"));  // another flow, the same output
  ASSERT_EQ(local_->started().size(), 1u);
  EXPECT_EQ(State(r2, 0), v1::RUNNING);
  local_->FinishOk(local_->started()[0], "x\n");
  sched_->Step();
  EXPECT_EQ(State(r1, 0), v1::DONE);
  EXPECT_EQ(State(r2, 0), v1::DONE);
  EXPECT_EQ(RunState(r2), v1::RUN_SUCCEEDED);
}

// Defect 6 of issue 12: two task definitions with different commands that
// render the same output path shared one execution, and the run whose
// command never ran reported its instance done.
TEST_F(SchedulerTest, TwoTaskDefinitionsSharingAnOutputReportCachedByTheOtherRun) {
  int64_t r1 = Submit(Flow("", "f", "[a]"));
  absl::StatusOr<Scheduler::Submitted> second = TrySubmitFull(
      "name: g\ntasks:\n  - name: u\n    for_each: {values: [a], as: id}\n"
      "    on: out/{id}.txt\n    run: [other, \"{id}\"]\n");
  ASSERT_TRUE(second.ok()) << second.status();
  const int64_t r2 = second->run_id;
  ASSERT_EQ(local_->started().size(), 1u);  // r1's command only
  EXPECT_THAT(local_->running().at(local_->started()[0]).process.argv, ElementsAre("cmd", "a"));
  EXPECT_EQ(State(r2, 0), v1::RUNNING);
  EXPECT_EQ(Row(r2, 0).made_by_run, r1);
  local_->FinishOk(local_->started()[0], "x\n");
  sched_->Step();
  EXPECT_EQ(State(r1, 0), v1::DONE);
  EXPECT_EQ(Row(r1, 0).made_by_run, 0);
  EXPECT_EQ(State(r2, 0), v1::CACHED);
  EXPECT_EQ(Row(r2, 0).made_by_run, r1);
  EXPECT_EQ(RunState(r2), v1::RUN_SUCCEEDED);
  EXPECT_EQ(store_.Run(r2).tasks(0).cached(), 1);
  EXPECT_EQ(store_.Run(r2).tasks(0).done(), 0);
  // And the submitter was told when it submitted.
  ASSERT_EQ(second->warnings.size(), 1u);
  EXPECT_EQ(second->warnings[0],
            absl::StrCat("task u: its outputs (out/*.txt) may be the same files as task f.t's of run ", r1,
                         " (out/*.txt), whose command differs; an output that run makes is not made again: such "
                         "an instance is reported cached by run ",
                         r1, " and this task's command does not run for it"));
}

TEST_F(SchedulerTest, TwoTaskDefinitionsSharingAnOutputNameTheOtherRunWhenItsCommandFails) {
  int64_t r1 = Submit(Flow("", "f", "[a]"));
  int64_t r2 = Submit(
      "name: g\ntasks:\n  - name: t\n    for_each: {values: [a], as: id}\n"
      "    on: out/{id}.txt\n    run: [other, \"{id}\"]\n");
  ASSERT_EQ(local_->started().size(), 1u);
  local_->FinishExit(local_->started()[0], 3, "boom");
  sched_->Step();
  EXPECT_EQ(State(r1, 0), v1::FAILED);
  EXPECT_EQ(Row(r1, 0).made_by_run, 0);
  EXPECT_EQ(State(r2, 0), v1::FAILED);
  EXPECT_EQ(Row(r2, 0).made_by_run, r1);
  EXPECT_THAT(Row(r2, 0).error, ::testing::StartsWith(absl::StrCat("run ", r1, "'s command for this output: ")));
  EXPECT_THAT(Row(r1, 0).error, ::testing::Not(HasSubstr("command for this output")));
}

// The same task over other flow parameter values is another command too.
TEST_F(SchedulerTest, OtherFlowParameterValuesForTheSameOutputAreAnotherRunsCommand) {
  const std::string flow =
      "name: f\nparams: {api: x}\ntasks:\n  - name: t\n"
      "    for_each: {values: [a], as: id}\n    on: out/{id}.txt\n    run: [get, \"{api}\", \"{id}\"]\n";
  absl::StatusOr<Scheduler::Submitted> r1 = TrySubmitFull(flow);
  absl::StatusOr<Scheduler::Submitted> r2 = TrySubmitFull(flow, {{"api", "y"}});
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_THAT(r1->warnings, IsEmpty());
  ASSERT_EQ(r2->warnings.size(), 1u);
  EXPECT_THAT(r2->warnings[0], HasSubstr("task t: its outputs (out/*.txt) may be the same files as task f.t's"));
  ASSERT_EQ(local_->started().size(), 1u);
  local_->FinishOk(local_->started()[0]);
  sched_->Step();
  EXPECT_EQ(State(r1->run_id, 0), v1::DONE);
  EXPECT_EQ(State(r2->run_id, 0), v1::CACHED);
  EXPECT_EQ(Row(r2->run_id, 0).made_by_run, r1->run_id);
}

// Two runs of one command (here from two flows) share as they always did:
// no warning, both done.
TEST_F(SchedulerTest, TheSameCommandSharingAnOutputIsNeitherWarnedNorCachedByAnother) {
  absl::StatusOr<Scheduler::Submitted> r1 = TrySubmitFull(Flow("", "f", "[a]"));
  absl::StatusOr<Scheduler::Submitted> r2 = TrySubmitFull(Flow("", "g", "[a]"));
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_THAT(r2->warnings, IsEmpty());
  local_->FinishOk(local_->started()[0]);
  sched_->Step();
  EXPECT_EQ(State(r2->run_id, 0), v1::DONE);
  EXPECT_EQ(Row(r2->run_id, 0).made_by_run, 0);
}

TEST_F(SchedulerTest, CancelledRunLeavesTheSharedExecutionToTheOther) {
  int64_t r1 = Submit(Flow("", "f", "[a]"));
  int64_t r2 = Submit(Flow("", "g", "[a]"));
  Cancel(r1);
  EXPECT_THAT(local_->cancelled(), IsEmpty());  // r2 still needs it
  local_->FinishOk(local_->started()[0]);
  sched_->Step();
  EXPECT_EQ(RunState(r1), v1::RUN_CANCELLED);
  EXPECT_EQ(State(r2, 0), v1::DONE);
}

TEST_F(SchedulerTest, ARunJoiningAKilledExecutionGetsAFreshAttempt) {
  int64_t r1 = Submit(Flow("", "f", "[a]"));
  ExecId id = local_->started()[0];
  Cancel(r1);
  EXPECT_THAT(local_->cancelled(), ElementsAre(id));
  int64_t r2 = Submit(Flow("", "g", "[a]"));  // joins while it is being killed
  EXPECT_EQ(State(r2, 0), v1::QUEUED);
  local_->FinishCancelled(id);
  sched_->Step();
  ASSERT_EQ(local_->started().size(), 2u);  // started again for r2
  EXPECT_EQ(Row(r2, 0).attempts, 1);        // the kill was not an attempt
  local_->FinishOk(id);
  sched_->Step();
  EXPECT_EQ(RunState(r2), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, ALostWorkerRequeuesWithoutAnAttemptAndTheThirdLossFails) {
  int64_t run = Submit(Flow("    pool: crawl\n", "f", "[a]"));
  EXPECT_TRUE(remote_->started().empty());  // no worker in the pool yet
  remote_->SetPoolSlots("crawl", 2);
  sched_->Step();
  ASSERT_EQ(remote_->started().size(), 1u);
  ExecId id = remote_->started()[0];
  remote_->FinishLost(id);
  sched_->Step();
  ASSERT_EQ(remote_->started().size(), 2u);
  EXPECT_EQ(Row(run, 0).attempts, 1);
  remote_->FinishLost(id);
  sched_->Step();
  ASSERT_EQ(remote_->started().size(), 3u);
  EXPECT_EQ(Row(run, 0).attempts, 1);
  remote_->FinishLost(id);
  sched_->Step();
  EXPECT_EQ(remote_->started().size(), 3u);
  EXPECT_EQ(State(run, 0), v1::FAILED);
  EXPECT_THAT(Row(run, 0).error, HasSubstr("lost 3 times, last: worker w1 lost"));
}

TEST_F(SchedulerTest, OutputOrErrFilePresentMeansCached) {
  fs_.Put("/ws/out/a.txt", "done before");
  fs_.Put("/ws/out/b.err", "suppressed before");
  int64_t run = Submit(Flow(""));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=c)"));
  EXPECT_EQ(State(run, 0), v1::CACHED);
  EXPECT_EQ(State(run, 1), v1::CACHED);
  EXPECT_EQ(Row(run, 1).error, "suppressed earlier: out/b.err (asflowctl reset clears it)");
}

// asflowctl run --force / --only (issue 15).
TEST_F(SchedulerTest, ForceRunsInstancesWhoseOutputOrErrExistsAndSuccessDropsTheErr) {
  fs_.Put("/ws/out/a.txt", "done before");
  fs_.Put("/ws/out/b.err", "suppressed before");
  auto parsed = ParseFlowText(Flow(""), "test.yaml", SpecFormat::kYaml);
  ASSERT_TRUE(parsed.ok());
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = parsed->spec;
  request.set_workspace("/ws");
  request.add_force("t");
  sched_->Submit(request, [](absl::StatusOr<Scheduler::Submitted> s) { ASSERT_TRUE(s.ok()) << s.status(); });
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)"));  // the default limit: 2
  // The old output stays until the new one commits (the runner's rename).
  EXPECT_EQ(fs_.Get("/ws/out/a.txt"), "done before");
  while (!local_->running().empty()) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  EXPECT_EQ(local_->started().size(), 3u);  // a and b too, whose output and .err were there
  EXPECT_FALSE(fs_.Has("/ws/out/b.err"));
  EXPECT_EQ(RunState(1), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, OnlyFailsAnUpstreamInstanceWhoseOutputIsMissing) {
  const std::string flow =
      "name: yt\ntasks:\n"
      "  - name: playlist\n    on: data/playlist.jsonl\n    run: [ls]\n"
      "  - name: extract\n    for_each: {lines_of: playlist, as: {video_id: id}}\n"
      "    on: data/{video_id}.txt\n    run: [get, \"{video_id}\"]\n"
      "  - name: other\n    run: [ls]\n";
  auto parsed = ParseFlowText(flow, "test.yaml", SpecFormat::kYaml);
  ASSERT_TRUE(parsed.ok());
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = parsed->spec;
  request.set_workspace("/ws");
  request.add_only("extract");
  sched_->Submit(request, [](absl::StatusOr<Scheduler::Submitted> s) { ASSERT_TRUE(s.ok()) << s.status(); });
  sched_->Step();
  EXPECT_TRUE(local_->started().empty());
  EXPECT_EQ(RunState(1), v1::RUN_FAILED);
  EXPECT_EQ(RunError(1), "playlist(): not run: its output is missing and --only extract does not run playlist "
                         "(run without --only, or add it)");

  fs_.Put("/ws/data/playlist.jsonl", "{\"id\":\"v1\"}\n");
  sched_->Submit(request, [](absl::StatusOr<Scheduler::Submitted> s) { ASSERT_TRUE(s.ok()) << s.status(); });
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("extract(video_id=v1)"));  // not `other`
}

TEST_F(SchedulerTest, SpecWithUnresolvedImportsIsRefused) {
  absl::StatusOr<int64_t> id = TrySubmit("name: f\nimports: [p.flow.yaml]\ntasks:\n  - {name: t, run: [ls]}\n");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().message(),
            "imports: the client resolves imports (asflowctl sends the imported tasks it reached, with their flow); "
            "the daemon reads no flow files");
}

TEST_F(SchedulerTest, LinesOfAnUpstreamOutputBecomeInstances) {
  const std::string flow =
      "name: yt\ntasks:\n"
      "  - name: playlist\n    on: data/playlist.jsonl\n    run: [ls]\n"
      "  - name: extract\n    for_each: {lines_of: playlist, as: {video_id: id}}\n"
      "    on: data/{video_id}.txt\n    run: [get, \"{video_id}\"]\n";
  int64_t run = Submit(flow);
  ASSERT_EQ(local_->started().size(), 1u);
  local_->FinishOk(local_->started()[0], "{\"id\":\"v1\"}\n{\"id\":\"v2\"}\n{\"id\":\"v1\"}\n");
  sched_->Step();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("extract(video_id=v1)", "extract(video_id=v2)"));
  while (!local_->running().empty()) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  EXPECT_EQ(RunState(run), v1::RUN_SUCCEEDED);
}

// Issue 15 defect 3: a flow parameter used in `run` became part of every
// instance's identity and label.
TEST_F(SchedulerTest, FlowParametersOutsideOnAreNotPartOfTheIdentity) {
  const std::string flow =
      "name: f\nparams: {api: \"http://127.0.0.1:8765\"}\ntasks:\n  - name: t\n"
      "    for_each: {values: [a, b], as: id}\n    on: out/{id}.txt\n    run: [get, \"{api}\", \"{id}\"]\n";
  int64_t r1 = Submit(flow);
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)"));
  EXPECT_EQ(Row(r1, 0).params, "{\"id\":\"a\"}");
  EXPECT_THAT(local_->running().at(local_->IdOf("t(id=a)")).process.argv,
              ElementsAre("get", "http://127.0.0.1:8765", "a"));
  local_->FinishOk(local_->IdOf("t(id=a)"));
  local_->FinishOk(local_->IdOf("t(id=b)"));
  sched_->Step();
  // Another api: the same instances, cached.
  absl::StatusOr<int64_t> r2 = TrySubmit(flow, false, {{"api", "http://other"}});
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_THAT(local_->RunningLabels(), IsEmpty());
  EXPECT_EQ(State(*r2, 0), v1::CACHED);
  EXPECT_EQ(Row(*r2, 1).params, "{\"id\":\"b\"}");
  EXPECT_EQ(RunState(*r2), v1::RUN_SUCCEEDED);
}

// A task without `on` keeps no output to be the same instance by: runs
// whose commands differ by a flow parameter do not share an execution.
TEST_F(SchedulerTest, TasksWithoutOutputShareOnlyWhenTheirFlowParametersAgree) {
  const std::string flow =
      "name: f\nparams: {api: x}\ntasks:\n  - name: t\n"
      "    for_each: {values: [a], as: id}\n    run: [get, \"{api}\", \"{id}\"]\n";
  Submit(flow);
  Submit(flow);
  EXPECT_EQ(local_->started().size(), 1u);  // shared
  ASSERT_TRUE(TrySubmit(flow, false, {{"api", "y"}}).ok());
  EXPECT_EQ(local_->started().size(), 2u);
}

// State files written before issue 15 keyed rows with the flow parameters
// their task used: resumed, they are the same instances (same seq, state).
TEST_F(SchedulerTest, RowsStoredWithFlowParametersResumeAsTheSameInstances) {
  auto parsed = ParseFlowText(
      "name: f\nparams: {api: x}\ntasks:\n  - name: t\n    for_each: {values: [a, b, c], as: id}\n"
      "    on: out/{id}.txt\n    run: [get, \"{api}\", \"{id}\"]\n",
      "test.yaml", SpecFormat::kYaml);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = parsed->spec;
  request.set_workspace("/ws");
  RunRecord rec;
  rec.run.set_flow("f");
  rec.run.set_workspace("/ws");
  rec.run.set_state(v1::RUN_RUNNING);
  rec.request = request.SerializeAsString();
  int64_t run = store_.AddRun(rec);
  auto row = [&](int64_t seq, const std::string& id, v1::InstanceState state) {
    InstanceRecord r;
    r.run_id = run;
    r.seq = seq;
    r.task = "t";
    r.params = absl::StrCat("{\"api\":\"x\",\"id\":\"", id, "\"}");
    r.output = absl::StrCat("out/", id, ".txt");
    r.state = state;
    store_.AddInstance(r);
  };
  row(0, "c", v1::DONE);
  row(1, "a", v1::SKIPPED);
  row(2, "b", v1::QUEUED);
  fs_.Put("/ws/out/c.txt", "c");
  Boot();
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)"));
  EXPECT_EQ(State(run, 0), v1::DONE);
  EXPECT_EQ(Row(run, 2).params, "{\"id\":\"b\"}");
  EXPECT_EQ(store_.Instance(run, 3), nullptr);  // no new seq for any of them
  local_->FinishOk(local_->IdOf("t(id=a)"));
  local_->FinishOk(local_->IdOf("t(id=b)"));
  sched_->Step();
  EXPECT_EQ(RunState(run), v1::RUN_SUCCEEDED);
  EXPECT_EQ(Row(run, 1).state, v1::DONE);
}

TEST_F(SchedulerTest, ARunningInstanceResumesAfterARestart) {
  // What a daemon killed mid-run left: the run, a done instance, a running
  // one (with its process group and temporary), a queued one.
  auto parsed = ParseFlowText(Flow(""), "test.yaml", SpecFormat::kYaml);
  ASSERT_TRUE(parsed.ok());
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = parsed->spec;
  request.set_workspace("/ws");
  RunRecord rec;
  rec.run.set_flow("f");
  rec.run.set_workspace("/ws");
  rec.run.set_state(v1::RUN_RUNNING);
  rec.request = request.SerializeAsString();
  int64_t run = store_.AddRun(rec);
  auto row = [&](int64_t seq, const std::string& id, v1::InstanceState state, int pgid) {
    InstanceRecord r;
    r.run_id = run;
    r.seq = seq;
    r.task = "t";
    r.params = absl::StrCat("{\"id\":\"", id, "\"}");
    r.output = absl::StrCat("out/", id, ".txt");
    r.state = state;
    r.pgid = pgid;
    store_.AddInstance(r);
  };
  row(0, "a", v1::DONE, 0);
  row(1, "b", v1::RUNNING, 4242);
  row(2, "c", v1::QUEUED, 0);
  fs_.Put("/ws/out/a.txt", "a");
  fs_.Put("/ws/out/.b.txt.asflow-tmp", "half");
  ASSERT_TRUE(store_.SetMeta("boot_id", "boot-1").ok());
  Boot();
  EXPECT_THAT(fs_.killed(), ElementsAre(4242));
  EXPECT_FALSE(fs_.Has("/ws/out/.b.txt.asflow-tmp"));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=b)", "t(id=c)"));
  EXPECT_EQ(State(run, 0), v1::DONE);  // kept, not made CACHED
  EXPECT_EQ(State(run, 1), v1::RUNNING);
  local_->FinishOk(local_->IdOf("t(id=b)"));
  local_->FinishOk(local_->IdOf("t(id=c)"));
  sched_->Step();
  EXPECT_EQ(RunState(run), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, NoProcessGroupIsKilledAfterAReboot) {
  auto parsed = ParseFlowText(Flow("", "f", "[a]"), "test.yaml", SpecFormat::kYaml);
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = parsed->spec;
  request.set_workspace("/ws");
  RunRecord rec;
  rec.run.set_state(v1::RUN_RUNNING);
  rec.request = request.SerializeAsString();
  int64_t run = store_.AddRun(rec);
  InstanceRecord r;
  r.run_id = run;
  r.task = "t";
  r.params = "{\"id\":\"a\"}";
  r.output = "out/a.txt";
  r.state = v1::RUNNING;
  r.pgid = 4242;
  store_.AddInstance(r);
  ASSERT_TRUE(store_.SetMeta("boot_id", "boot-0").ok());
  Boot();
  EXPECT_THAT(fs_.killed(), IsEmpty());
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)"));
}

// Issue 13 (and issue 12, defect 3): a write the store loses fails the run
// with the store's error; no event claims the lost state; the scheduler
// goes on, and runs after the store is healthy again complete.
TEST_F(SchedulerTest, ALostWriteFailsTheRunAndNoEventClaimsIt) {
  auto sub = hub_.Subscribe(0, 0, [] {});
  v1::Event e;
  ASSERT_TRUE(hub_.Pop(sub.get(), &e));  // the initial snapshot
  int64_t run = Submit(Flow("    limit: 10\n"));
  ASSERT_EQ(local_->running().size(), 3u);
  local_->FinishOk(local_->IdOf("t(id=a)"));
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::DONE);
  store_.FailNow();
  local_->FinishOk(local_->IdOf("t(id=b)"));
  sched_->Step();
  // b's DONE was not recorded: the run fails, naming the store's error.
  EXPECT_THAT(local_->cancelled(), ElementsAre(local_->IdOf("t(id=c)")));
  std::vector<v1::Event> events;
  while (hub_.Pop(sub.get(), &e)) events.push_back(e);
  std::vector<std::string> finished;
  v1::Run last_run;
  for (const v1::Event& ev : events) {
    if (ev.has_instance() && ev.instance().kind() == v1::InstanceEvent::FINISHED) {
      finished.push_back(ev.instance().instance().params().at("id"));
    }
    if (ev.has_run()) last_run = ev.run().run();
  }
  EXPECT_THAT(finished, ElementsAre("a"));  // b's finish was never committed
  EXPECT_EQ(last_run.state(), v1::RUN_FAILED);
  EXPECT_EQ(last_run.error(), "state not recorded: store /state/fake.db: database or disk is full");
  EXPECT_EQ(store_.Run(run).state(), v1::RUN_RUNNING);  // on disk: resumes at the next start
  hub_.Unsubscribe(sub);

  // The store works again: a new run completes.
  store_.Heal();
  local_->FinishCancelled(local_->IdOf("t(id=c)"));
  int64_t next = Submit(Flow("    limit: 10\n", "g", "[x]"));
  local_->FinishOk(local_->IdOf("t(id=x)"));
  sched_->Step();
  EXPECT_EQ(RunState(next), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, ALostWriteAtTheNthWriteFailsOnlyTheRunsItConcerns) {
  int64_t a = Submit(Flow("    limit: 10\n", "f", "[a]"));
  int64_t b = Submit(Flow("    limit: 10\n", "g", "[b]"));
  store_.FailFrom(store_.writes() + 1);  // the next write: a's instance finishing
  local_->FinishOk(local_->IdOf("t(id=a)"));
  sched_->Step();
  store_.Heal();
  local_->FinishOk(local_->IdOf("t(id=b)"));
  sched_->Step();
  EXPECT_EQ(RunState(a), v1::RUN_RUNNING);  // its failure could not be recorded either
  EXPECT_EQ(RunState(b), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, AStoreThatCannotCreateTheRunRefusesTheSubmission) {
  store_.FailNow();
  absl::StatusOr<int64_t> id = TrySubmit(Flow(""));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().message(), "store /state/fake.db: database or disk is full");
  EXPECT_TRUE(local_->started().empty());
}

TEST_F(SchedulerTest, WorkspaceOutsideTheAllowedRootsIsRefused) {
  fs_.AddDir("/elsewhere");
  auto parsed = ParseFlowText(Flow(""), "test.yaml", SpecFormat::kYaml);
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = parsed->spec;
  request.set_workspace("/elsewhere");
  absl::StatusOr<Scheduler::Submitted> got = absl::UnknownError("");
  sched_->Submit(request, [&](absl::StatusOr<Scheduler::Submitted> s) { got = s; });
  sched_->Step();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(got.status().message(),
            "workspace /elsewhere is outside the roots this daemon allows (/ws); start asflowd with --allow-root");
}

TEST_F(SchedulerTest, PrivateDirectoriesInTemporaryRootsAreWorkspacesToo) {
  temp_roots_ = {"/tmp"};
  Boot();
  fs_.AddPrivateDir("/tmp/pytest-of-me");
  fs_.AddPrivateDir("/tmp/pytest-of-me/test0");
  fs_.AddDir("/tmp/shared");  // not private: anyone may write it
  fs_.AddDir("/tmp/shared/ws");
  auto submit = [&](const std::string& ws) {
    auto parsed = ParseFlowText(Flow("", "f", "[a]"), "test.yaml", SpecFormat::kYaml);
    v1::SubmitFlowRequest request;
    *request.mutable_spec() = parsed->spec;
    request.set_workspace(ws);
    absl::StatusOr<Scheduler::Submitted> got = absl::UnknownError("");
    sched_->Submit(request, [&](absl::StatusOr<Scheduler::Submitted> s) { got = s; });
    sched_->Step();
    return got.status();
  };
  EXPECT_TRUE(submit("/tmp/pytest-of-me/test0").ok());
  absl::Status refused = submit("/tmp/shared/ws");
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.message(), HasSubstr("is in /tmp but not in a directory private to this user"));
}

TEST_F(SchedulerTest, CodeCallsAreCachedQueuedUnderTheLimitAndAnsweredOnceCommitted) {
  fs_.Put("/ws/out/old.txt", "there before");
  int64_t run = OpenCodeRun("limit: 1");
  ASSERT_GT(run, 0);
  CallOp(1, "old");
  CallOp(2, "a");
  CallOp(3, "b");
  CallOp(4, "a");  // the same call again: one instance
  EXPECT_EQ(CallStates(), (std::map<int64_t, v1::InstanceState>{{1, v1::CACHED}}));
  ASSERT_EQ(code_->running().size(), 1u);
  const ExecJob& job = code_->running().begin()->second;
  EXPECT_EQ(job.session, 1);
  EXPECT_EQ(job.call_id, 2);
  EXPECT_EQ(job.pool, "code");
  code_->FinishOk(job.id, "A");
  sched_->Step();
  EXPECT_EQ(CallStates(), (std::map<int64_t, v1::InstanceState>{{1, v1::CACHED}, {2, v1::DONE}, {4, v1::DONE}}));
  ASSERT_EQ(code_->running().size(), 1u);  // b, now that a is done
  EXPECT_EQ(code_->running().begin()->second.call_id, 3);
  EXPECT_EQ(RunState(run), v1::RUN_RUNNING);  // a code run ends when closed
}

TEST_F(SchedulerTest, ALostWriteNeverAnswersACall) {
  OpenCodeRun();
  CallOp(1, "a");
  ASSERT_EQ(code_->running().size(), 1u);
  store_.FailNow();
  code_->FinishOk(code_->running().begin()->first);
  sched_->Step();
  EXPECT_EQ(CallStates().count(1), 0u);  // DONE was never committed
  bool closed = false;
  for (const auto& [session, e] : sent_) {
    if (e.has_run_closed()) {
      closed = true;
      EXPECT_EQ(e.run_closed().state(), v1::RUN_FAILED);
      EXPECT_THAT(e.run_closed().error(), HasSubstr("database or disk is full"));
    }
  }
  EXPECT_TRUE(closed);
}

TEST_F(SchedulerTest, ACodeRunWhoseProcessDoesNotComeBackFails) {
  int64_t run = OpenCodeRun();
  CallOp(1, "a");
  ASSERT_EQ(code_->running().size(), 1u);
  sched_->session_ops().on_ended(1);
  code_->FinishLost(code_->running().begin()->first);
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::QUEUED);
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Seconds(60));
  Advance(absl::Seconds(59));
  EXPECT_EQ(RunState(run), v1::RUN_RUNNING);
  EXPECT_EQ(code_->started().size(), 1u);  // not started again while detached
  Advance(absl::Seconds(1));
  EXPECT_EQ(RunState(run), v1::RUN_FAILED);
  EXPECT_EQ(RunError(run), "its process went away (no session came back within 1m)");
  EXPECT_EQ(State(run, 0), v1::CANCELLED);
}

}  // namespace
}  // namespace asflow

namespace asflow {
namespace {

// Flow `name` with throttle key yt {limit: 2} (`key` replaces it) and task
// t over `values` using it, `extra` lines added to the task.
std::string KeyFlow(const std::string& extra, const std::string& name = "f", const std::string& values = "[a, b, c]",
                    const std::string& key = "{yt: {limit: 2}}") {
  return absl::StrCat("name: ", name, "\nthrottle: ", key, "\ntasks:\n  - name: t\n    for_each: {values: ", values,
                      ", as: id}\n    on: out/{id}.txt\n    run: [cmd, \"{id}\"]\n    limit: 10\n    uses: [yt]\n",
                      extra);
}

// The `waiting` note of task t of run `run`, as last committed.
std::string Waiting(FakeStore& store, int64_t run) {
  for (const v1::TaskCounters& t : store.Run(run).tasks()) {
    if (t.task() == "t") return t.waiting();
  }
  return "<no task t>";
}

std::string At(absl::Time t) { return absl::FormatTime("%H:%M:%S", t, absl::LocalTimeZone()); }

TEST_F(SchedulerTest, AThrottleKeyCapsTwoFlowsTogether) {
  int64_t r1 = Submit(KeyFlow(""));
  int64_t r2 = Submit(KeyFlow("", "g", "[d, e, f]"));
  // Two task definitions (f.t, g.t), each with limit 10: the key holds both.
  EXPECT_EQ(local_->running().size(), 2u);
  for (int finished = 0; finished < 4; ++finished) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
    EXPECT_EQ(local_->running().size(), 2u) << "after " << finished + 1 << " finished";
  }
  while (!local_->running().empty()) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  EXPECT_EQ(local_->started().size(), 6u);
  EXPECT_EQ(RunState(r1), v1::RUN_SUCCEEDED);
  EXPECT_EQ(RunState(r2), v1::RUN_SUCCEEDED);
}

TEST_F(SchedulerTest, AKeyOfTheDaemonIsSharedByFlowsThatDoNotDefineIt) {
  v1::ThrottleKey key;
  key.set_limit(1);
  daemon_keys_["yt"] = key;
  Boot();
  Submit(KeyFlow("", "f", "[a, b]", "{}"));
  Submit(KeyFlow("", "g", "[c, d]", "{}"));
  EXPECT_EQ(local_->running().size(), 1u);
  // A flow may define it again only the same way.
  EXPECT_TRUE(TrySubmit(KeyFlow("", "h", "[e]", "{yt: {limit: 1}}")).ok());
  EXPECT_EQ(TrySubmit(KeyFlow("", "k", "[e]", "{yt: {limit: 3}}")).status().message(),
            "throttle.yt: throttle key 'yt' is already defined by asflowd (--throttle) as {limit: 1}, not "
            "{limit: 3}: define it the same way, drop it here to use that one, or use another name");
}

TEST_F(SchedulerTest, UnknownAndConflictingKeysAreRefusedNamingTheField) {
  EXPECT_EQ(TrySubmit(KeyFlow("", "f", "[a]", "{other: {limit: 1}}")).status().message(),
            "tasks[0].uses[0]: unknown throttle key 'yt' (this flow defines: other; asflowd --throttle: none)");
  Submit(KeyFlow(""));  // f defines yt {limit: 2} while its run is active
  EXPECT_EQ(TrySubmit(KeyFlow("", "g", "[d]", "{yt: {limit: 3, rate: 1/s}}")).status().message(),
            "throttle.yt: throttle key 'yt' is already defined by flow 'f' as {limit: 2}, not {limit: 3, "
            "rate: 1/s}: define it the same way, drop it here to use that one, or use another name");
  // A refused submission holds nothing: f's run ends, and g may redefine it.
  while (!local_->running().empty()) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  EXPECT_TRUE(TrySubmit(KeyFlow("", "g", "[d]", "{yt: {limit: 3, rate: 1/s}}")).ok());
}

const char kCooldown[] =
    "    cooldown: {stderr: \"429|Too Many Requests\", for: 60s, retry_after: \"Retry-After: (\\\\S.*)\"}\n";

TEST_F(SchedulerTest, ACooldownRequeuesWithoutAnAttemptAndHoldsTheKeyForEveryRun) {
  int64_t r1 = Submit(KeyFlow(kCooldown, "f", "[a, b, c]", "{yt: {limit: 3}}"));
  int64_t r2 = Submit(KeyFlow(kCooldown, "g", "[d]", "{yt: {limit: 3}}"));
  ASSERT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)", "t(id=c)"));
  const absl::Time t0 = clock_.Now();
  local_->FinishExit(local_->IdOf("t(id=a)"), 1, "HTTP Error 429\nRetry-After: 2\n");
  sched_->Step();
  EXPECT_EQ(State(r1, 0), v1::QUEUED);
  const std::string note = absl::StrCat("yt cooling down until ", At(t0 + absl::Seconds(2)), " (429 from t(id=a))");
  EXPECT_EQ(Waiting(store_, r1), note);
  EXPECT_EQ(Waiting(store_, r2), note);  // another flow's run waits too
  EXPECT_EQ(Row(r1, 0).error,
            absl::StrCat(note, "; queued again, not counted as an attempt: exit code 1: Retry-After: 2"));
  // b was in flight: its 429 extends the cooldown to its later end (5 s
  // from now, +1 s), never adds one to the other.
  clock_.Advance(absl::Seconds(1));
  local_->FinishExit(local_->IdOf("t(id=b)"), 1, "429 Too Many Requests\nRetry-After: 5\n");
  sched_->Step();
  EXPECT_EQ(sched_->NextWakeup(), t0 + absl::Seconds(6));
  local_->FinishOk(local_->IdOf("t(id=c)"));
  sched_->Step();
  Advance(absl::Milliseconds(4999));
  EXPECT_TRUE(local_->running().empty());
  Advance(absl::Milliseconds(1));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)", "t(id=b)", "t(id=d)"));
  EXPECT_EQ(Waiting(store_, r1), "");
  while (!local_->running().empty()) {
    local_->FinishOk(local_->running().begin()->first);
    sched_->Step();
  }
  EXPECT_EQ(RunState(r1), v1::RUN_SUCCEEDED);
  EXPECT_EQ(RunState(r2), v1::RUN_SUCCEEDED);
  EXPECT_EQ(Row(r1, 0).attempts, 1);
  EXPECT_EQ(Row(r1, 1).attempts, 1);
}

TEST_F(SchedulerTest, ACooldownWithoutKeysHoldsItsTaskAndRetryAfterMayBeAnHttpDate) {
  const std::string rules =
      "    limit: 1\n"
      "    cooldown: {exit_codes: [75], for: 30s, retry_after: \"Retry-After: (.*)\"}\n"
      "    retry: {attempts: 3, exit_codes: [75]}\n";
  int64_t run = Submit(Flow(rules, "f", "[a]"));
  // The fake clock starts at Tue, 14 Nov 2023 22:13:20 GMT.
  local_->FinishExit(local_->IdOf("t(id=a)"), 75, "Retry-After: Tue, 14 Nov 2023 22:15:20 GMT");
  sched_->Step();
  // Cooldown before retry: no attempt counted, the task held 120 s.
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Seconds(120));
  EXPECT_THAT(Waiting(store_, run), HasSubstr("task f.t cooling down until "));
  Advance(absl::Seconds(119));
  EXPECT_TRUE(local_->running().empty());
  Advance(absl::Seconds(1));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=a)"));
  // Without a Retry-After, `for` applies.
  local_->FinishExit(local_->IdOf("t(id=a)"), 75, "busy");
  sched_->Step();
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Seconds(30));
  Advance(absl::Seconds(30));
  local_->FinishOk(local_->IdOf("t(id=a)"));
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::DONE);
  EXPECT_EQ(Row(run, 0).attempts, 1);
}

TEST_F(SchedulerTest, TheCooldownCapFailsTheRunAsAnUnknownErrorWould) {
  int64_t run = Submit(KeyFlow("    cooldown: {stderr: \"429\", for: 10s, max_cooldowns: 2}\n", "f", "[a]"));
  for (int i = 0; i < 2; ++i) {
    local_->FinishExit(local_->IdOf("t(id=a)"), 1, "429");
    sched_->Step();
    EXPECT_EQ(State(run, 0), v1::QUEUED) << i;
    Advance(absl::Seconds(10));
  }
  local_->FinishExit(local_->IdOf("t(id=a)"), 1, "429");
  sched_->Step();
  EXPECT_EQ(State(run, 0), v1::FAILED);
  EXPECT_EQ(Row(run, 0).error,
            "cooldown cap reached: 2 cooldowns in a row without a success (max_cooldowns: 2); exit code 1: 429\n429");
  EXPECT_EQ(RunState(run), v1::RUN_FAILED);
}

TEST_F(SchedulerTest, ASuccessStartsTheCooldownCountAgain) {
  int64_t run = Submit(KeyFlow("    cooldown: {stderr: \"429\", for: 10s, max_cooldowns: 1}\n", "f", "[a, b]",
                               "{yt: {limit: 1}}"));
  local_->FinishExit(local_->IdOf("t(id=a)"), 1, "429");
  sched_->Step();
  Advance(absl::Seconds(10));
  ASSERT_EQ(local_->running().size(), 1u);
  local_->FinishOk(local_->running().begin()->first);
  sched_->Step();
  // One cooldown after a success is the first of its series again.
  ASSERT_EQ(local_->running().size(), 1u);
  local_->FinishExit(local_->running().begin()->first, 1, "429");
  sched_->Step();
  EXPECT_EQ(std::min(State(run, 0), State(run, 1)), v1::QUEUED);  // the other is DONE
  EXPECT_EQ(std::max(State(run, 0), State(run, 1)), v1::DONE);
  EXPECT_EQ(RunState(run), v1::RUN_RUNNING);
}

TEST_F(SchedulerTest, APauseHoldsNewStartsAndSurvivesARestart) {
  int64_t run = Submit(KeyFlow("", "f", "[a, b, c]", "{yt: {limit: 1}}"));
  absl::StatusOr<v1::ThrottleStatus> paused = absl::UnknownError("not answered");
  sched_->Pause("yt", absl::ZeroDuration(), [&](absl::StatusOr<v1::ThrottleStatus> s) { paused = s; });
  sched_->Step();
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), "paused");
  EXPECT_EQ(paused->in_flight(), 1);
  EXPECT_EQ(paused->queued(), 2);
  EXPECT_EQ(Waiting(store_, run), "yt paused (asflowctl resume yt)");
  // What runs finishes; nothing new starts.
  local_->FinishOk(local_->IdOf("t(id=a)"));
  sched_->Step();
  EXPECT_TRUE(local_->running().empty());
  Boot();  // a restart: the run resumes, the pause holds
  EXPECT_TRUE(local_->running().empty());
  absl::StatusOr<v1::ResumeResponse> resumed = absl::UnknownError("not answered");
  sched_->Unpause("yt", [&](absl::StatusOr<v1::ResumeResponse> r) { resumed = r; });
  sched_->Step();
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_TRUE(resumed->was_paused());
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=b)"));
}

TEST_F(SchedulerTest, ATimedPauseOfATaskEndsByItself) {
  int64_t run = Submit(Flow("    limit: 1\n"));
  absl::StatusOr<v1::ThrottleStatus> paused = absl::UnknownError("not answered");
  sched_->Pause("t", absl::Minutes(10), [&](absl::StatusOr<v1::ThrottleStatus> s) { paused = s; });
  sched_->Step();
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->name(), "f.t");
  local_->FinishOk(local_->IdOf("t(id=a)"));
  sched_->Step();
  EXPECT_EQ(Waiting(store_, run),
            absl::StrCat("task f.t paused until ", At(clock_.Now() + absl::Minutes(10)), " (asflowctl resume f.t)"));
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Minutes(10));
  Advance(absl::Minutes(10));
  EXPECT_THAT(local_->RunningLabels(), ElementsAre("t(id=b)"));
  EXPECT_EQ(Waiting(store_, run), "");
  absl::StatusOr<v1::ThrottleStatus> unknown = absl::UnknownError("not answered");
  sched_->Pause("nope", absl::ZeroDuration(), [&](absl::StatusOr<v1::ThrottleStatus> s) { unknown = s; });
  sched_->Step();
  EXPECT_EQ(unknown.status().message(),
            "no throttle key or task named 'nope' (keys: none; a task is named flow.task, or by its name while a run "
            "has it)");
}

TEST_F(SchedulerTest, ACodeTaskUsesTheDaemonsKeyWithFlowFileRuns) {
  v1::ThrottleKey key;
  key.set_limit(1);
  daemon_keys_["yt"] = key;
  Boot();
  Submit(KeyFlow("", "f", "[a, b]", "{}"));  // a flow file's run holds yt's one place
  ASSERT_EQ(local_->running().size(), 1u);
  int64_t run = OpenCodeRun("limit: 5 uses: \"yt\"");
  ASSERT_GT(run, 0);
  CallOp(1, "x");
  EXPECT_TRUE(code_->running().empty());  // the code session waits for the key too
  local_->FinishOk(local_->running().begin()->first);
  sched_->Step();
  // Round-robin across the two task definitions waiting on the key.
  EXPECT_EQ(code_->running().size() + local_->running().size(), 1u);
  // A key nobody defined is refused when the task is declared.
  v1::SessionOp declare;
  declare.mutable_declare_task()->set_run(1);
  declare.mutable_declare_task()->mutable_spec()->set_name("m.u");
  declare.mutable_declare_task()->mutable_spec()->add_uses("nope");
  Op(1, declare);
  ASSERT_TRUE(sent_.back().second.has_task_declared());
  EXPECT_EQ(sent_.back().second.task_declared().error(),
            "spec.uses[0]: unknown throttle key 'nope' (this flow defines: none; asflowd --throttle: yt)");
}

}  // namespace
TEST_F(SchedulerTest, ChainedCallsStartAheadAndTakeTheSlotOnlyWhenHandedIt) {
  code_->SetChains(true);
  int64_t run = OpenCodeRun("limit: 1");
  for (int i = 1; i <= 4; ++i) CallOp(i, absl::StrCat("c", i));
  // c1 started before the others were queued: nothing chained after it.
  ASSERT_EQ(Chain(*code_), (std::vector<std::pair<int64_t, int64_t>>{{1, 0}}));
  code_->FinishOk(CallJob(*code_, 1), "1");
  sched_->Step();
  // c1 was short: c2 starts with c3 and c4 chained behind it, in one batch.
  EXPECT_EQ(Chain(*code_), (std::vector<std::pair<int64_t, int64_t>>{{2, 0}, {3, 2}, {4, 3}}));
  EXPECT_EQ(State(run, 1), v1::RUNNING);
  EXPECT_EQ(State(run, 2), v1::QUEUED);  // chained, not begun: the limit is c2's
  EXPECT_EQ(State(run, 3), v1::QUEUED);
  const ExecId c2 = CallJob(*code_, 2), c3 = CallJob(*code_, 3);
  code_->Handoff(c2, c3);
  code_->FinishOk(c2, "2");
  sched_->Step();
  EXPECT_EQ(State(run, 1), v1::DONE);
  EXPECT_EQ(State(run, 2), v1::RUNNING);
  EXPECT_EQ(Row(run, 2).attempts, 1);
  EXPECT_EQ(State(run, 3), v1::QUEUED);
  CallOp(5, "c5");  // queued behind the chain, and chained at the next handoff
  EXPECT_EQ(code_->running().size(), 2u);
  code_->Handoff(c3, CallJob(*code_, 4));
  code_->FinishOk(c3, "3");
  sched_->Step();
  EXPECT_EQ(State(run, 3), v1::RUNNING);
  // c4 holds the slot now (its job still says what it was chained after).
  EXPECT_EQ(Chain(*code_), (std::vector<std::pair<int64_t, int64_t>>{{4, 3}, {5, 4}}));
  EXPECT_EQ(State(run, 4), v1::QUEUED);
}

TEST_F(SchedulerTest, AChainedCallThatNeverBeganIsQueuedAgainNotCountedAsAnAttempt) {
  int64_t run = StartChain(3, "limit: 1 retry { retries: 1 exit_codes: 1 }");
  ASSERT_EQ(Chain(*code_), (std::vector<std::pair<int64_t, int64_t>>{{2, 0}, {3, 2}}));
  // c2 fails: its process answers c3 cancelled instead of running it.
  const ExecId c3 = CallJob(*code_, 3);
  code_->FinishExit(CallJob(*code_, 2), 1, "boom");
  code_->FinishCancelled(c3);
  sched_->Step();
  EXPECT_EQ(Row(run, 2).error, "");  // never began: no attempt, no error
  // c3 is queued again; it runs (before or after c2's retry) as its first
  // attempt, not chained.
  for (int i = 0; i < 3 && CallJob(*code_, 3) == 0; ++i) {
    ASSERT_EQ(code_->running().size(), 1u);
    code_->FinishOk(code_->running().begin()->first, "x");
    Advance(absl::Minutes(1));
  }
  const ExecId again = CallJob(*code_, 3);
  ASSERT_NE(again, 0);
  EXPECT_EQ(code_->running().at(again).attempt, 1);
  EXPECT_EQ(code_->running().at(again).after, 0);
}

TEST_F(SchedulerTest, AnotherRunWaitingRevokesChainedCalls) {
  StartChain(3);
  ASSERT_EQ(code_->running().size(), 2u);
  const ExecId c3 = CallJob(*code_, 3);
  // A second run of the same flow queues the task: the chain stands down.
  v1::SessionOp open;
  open.mutable_open_run()->set_ref(2);
  open.mutable_open_run()->set_flow("py");
  open.mutable_open_run()->set_workspace("/ws");
  Op(1, open);
  v1::SessionOp declare;
  declare.mutable_declare_task()->set_run(2);
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString("name: \"m.t\" on: \"out/{id}.txt\" limit: 1",
                                                            declare.mutable_declare_task()->mutable_spec()));
  Op(1, declare);
  v1::SessionOp call;
  call.mutable_call()->set_run(2);
  call.mutable_call()->set_call_id(10);
  call.mutable_call()->set_task("m.t");
  (*call.mutable_call()->mutable_params())["id"] = "other";
  call.mutable_call()->set_output("out/other.txt");
  Op(1, call);
  EXPECT_THAT(code_->cancelled(), ::testing::Contains(c3));
  EXPECT_THAT(code_->cancelled(), ::testing::Not(::testing::Contains(CallJob(*code_, 2))));
  EXPECT_EQ(code_->revoked(), code_->cancelled());  // taken back only if not begun
}

TEST_F(SchedulerTest, DrainingRevokesChainedCalls) {
  StartChain(3);
  const ExecId c2 = CallJob(*code_, 2), c3 = CallJob(*code_, 3);
  sched_->Drain([] {});
  sched_->Step();
  EXPECT_EQ(code_->cancelled(), std::vector<ExecId>{c3});  // c2 runs to its end
  EXPECT_EQ(code_->revoked(), std::vector<ExecId>{c3});    // a revoke, not a cancel
  EXPECT_NE(c2, 0);
}

// A pause answers only once no call it held back can still begin: each
// chained call it revoked has stood down or begun (the pause test of
// python/tests/test_e2e_throttle.py released the running call as soon as
// the pause answered, and the chained call after it began).
TEST_F(SchedulerTest, APauseAnswersOnceTheChainedCallsItRevokedStoodDownOrBegan) {
  StartChain(4);
  ASSERT_EQ(Chain(*code_), (std::vector<std::pair<int64_t, int64_t>>{{2, 0}, {3, 2}, {4, 3}}));
  const ExecId c2 = CallJob(*code_, 2), c3 = CallJob(*code_, 3), c4 = CallJob(*code_, 4);
  bool answered = false;
  absl::StatusOr<v1::ThrottleStatus> paused = absl::UnknownError("not answered");
  sched_->Pause("m.t", absl::ZeroDuration(), [&](absl::StatusOr<v1::ThrottleStatus> s) {
    answered = true;
    paused = s;
  });
  sched_->Step();
  EXPECT_THAT(code_->revoked(), ::testing::UnorderedElementsAre(c3, c4));
  EXPECT_FALSE(answered);  // c3 and c4 could still begin
  // c3 had begun when the revoke reached its process: it runs in c2's slot.
  code_->Handoff(c2, c3);
  code_->FinishOk(c2, "2");
  sched_->Step();
  EXPECT_FALSE(answered);  // c4 could still begin after c3
  code_->FinishCancelled(c4);  // it had not: it stands down
  sched_->Step();
  ASSERT_TRUE(answered);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), "paused");
  // From the answer on nothing of the task begins.
  code_->FinishOk(c3, "3");
  sched_->Step();
  EXPECT_TRUE(code_->running().empty());
}

TEST_F(SchedulerTest, APauseWhoseRevokesGoUnansweredAnswersAfterFiveSeconds) {
  StartChain(3);
  ASSERT_EQ(code_->running().size(), 2u);
  bool answered = false;
  sched_->Pause("m.t", absl::ZeroDuration(), [&](absl::StatusOr<v1::ThrottleStatus> s) { answered = s.ok(); });
  sched_->Step();
  EXPECT_EQ(code_->revoked().size(), 1u);
  EXPECT_EQ(sched_->NextWakeup(), clock_.Now() + absl::Seconds(5));
  Advance(absl::Milliseconds(4999));
  EXPECT_FALSE(answered);
  Advance(absl::Milliseconds(1));
  EXPECT_TRUE(answered);
  // Nothing chained: a pause answers at once.
  code_->FinishCancelled(CallJob(*code_, 3));
  sched_->Step();
  bool again = false;
  sched_->Pause("m.t", absl::ZeroDuration(), [&](absl::StatusOr<v1::ThrottleStatus> s) { again = s.ok(); });
  sched_->Step();
  EXPECT_TRUE(again);
}

TEST_F(SchedulerTest, ASessionThatDoesNotChainGetsOneStartAtATime) {
  OpenCodeRun("limit: 1");
  for (int i = 1; i <= 3; ++i) CallOp(i, absl::StrCat("c", i));
  code_->FinishOk(CallJob(*code_, 1), "1");
  sched_->Step();
  EXPECT_EQ(Chain(*code_), (std::vector<std::pair<int64_t, int64_t>>{{2, 0}}));
}

}  // namespace asflow
