#include "server/run_metrics.h"

#include <gtest/gtest.h>

namespace asflow {
namespace {

constexpr int64_t kSince = 1'000'000;

v1::Event RunEv(int64_t id, int64_t created_ms, v1::RunState state, int64_t done, int64_t cached, int64_t failed) {
  v1::Event e;
  v1::Run* run = e.mutable_run()->mutable_run();
  run->set_id(id);
  run->set_flow("f");
  run->set_state(state);
  run->set_created_ms(created_ms);
  v1::TaskCounters* t = run->add_tasks();
  t->set_task("t");
  t->set_done(done);
  t->set_cached(cached);
  t->set_failed(failed);
  return e;
}

v1::Event Inst(int64_t run, v1::InstanceEvent::Kind kind, int64_t done, int64_t retrying) {
  v1::Event e;
  e.mutable_instance()->set_kind(kind);
  e.mutable_instance()->mutable_instance()->set_run_id(run);
  e.mutable_instance()->mutable_instance()->set_task("t");
  v1::TaskCounters* c = e.mutable_instance()->mutable_counters();
  c->set_task("t");
  c->set_done(done);
  c->set_retrying(retrying);
  return e;
}

RunMetrics::TaskTotals Totals(const RunMetrics& m) { return m.Tasks()[std::make_pair(std::string("f"), std::string("t"))]; }

TEST(RunMetricsTest, CountsFinishedInstancesFromCounterGrowth) {
  RunMetrics m(absl::FromUnixMillis(kSince));
  m.Observe(RunEv(1, kSince + 1, v1::RUN_RUNNING, 0, 0, 0));
  m.Observe(RunEv(1, kSince + 1, v1::RUN_RUNNING, 0, 40, 0));  // cached in bulk at expansion
  m.Observe(Inst(1, v1::InstanceEvent::STARTED, 0, 0));
  m.Observe(Inst(1, v1::InstanceEvent::QUEUED, 0, 1));  // a retry
  m.Observe(Inst(1, v1::InstanceEvent::STARTED, 0, 0));
  m.Observe(Inst(1, v1::InstanceEvent::FINISHED, 1, 0));
  m.Observe(RunEv(1, kSince + 1, v1::RUN_FAILED, 1, 40, 2));
  auto tasks = m.Tasks();
  ASSERT_EQ(tasks.size(), 1u);
  const RunMetrics::TaskTotals t = Totals(m);
  EXPECT_EQ(t.starts, 2);
  EXPECT_EQ(t.retries, 1);
  EXPECT_EQ(t.finished[0], 1);   // done
  EXPECT_EQ(t.finished[1], 40);  // cached
  EXPECT_EQ(t.finished[4], 2);   // failed
  EXPECT_EQ(m.runs_started(), 1);
  EXPECT_EQ(m.RunsFinished()[v1::RUN_FAILED], 1);
  // Events after the end change nothing.
  m.Observe(RunEv(1, kSince + 1, v1::RUN_FAILED, 1, 40, 2));
  m.Observe(Inst(1, v1::InstanceEvent::FINISHED, 5, 0));
  EXPECT_EQ(m.RunsFinished()[v1::RUN_FAILED], 1);
  EXPECT_EQ(Totals(m).finished[0], 1);
}

TEST(RunMetricsTest, AResumedRunCountsOnlyWhatItDoesFromNowOn) {
  RunMetrics m(absl::FromUnixMillis(kSince));
  m.Observe(RunEv(7, kSince - 5000, v1::RUN_RUNNING, 30, 10, 0));  // before this daemon
  m.Observe(Inst(7, v1::InstanceEvent::FINISHED, 31, 0));
  m.Observe(RunEv(7, kSince - 5000, v1::RUN_SUCCEEDED, 31, 10, 0));
  EXPECT_EQ(Totals(m).finished[0], 1);
  EXPECT_EQ(Totals(m).finished[1], 0);
  EXPECT_EQ(m.runs_started(), 0);
  EXPECT_EQ(m.RunsFinished()[v1::RUN_SUCCEEDED], 1);
}

}  // namespace
}  // namespace asflow
