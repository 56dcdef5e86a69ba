#include "server/event_coalescer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace asflow {
namespace {

v1::Event RunEvent(int64_t id, v1::RunState state, int64_t done = 0) {
  v1::Event e;
  v1::Run* run = e.mutable_run()->mutable_run();
  run->set_id(id);
  run->set_flow("f");
  run->set_state(state);
  v1::TaskCounters* t = run->add_tasks();
  t->set_task("t");
  t->set_total(100);
  t->set_done(done);
  return e;
}

v1::Event Inst(int64_t run, int64_t seq, v1::InstanceEvent::Kind kind, v1::InstanceState state, int64_t done) {
  v1::Event e;
  v1::InstanceEvent* ie = e.mutable_instance();
  ie->set_kind(kind);
  ie->mutable_instance()->set_run_id(run);
  ie->mutable_instance()->set_seq(seq);
  ie->mutable_instance()->set_task("t");
  ie->mutable_instance()->set_state(state);
  ie->mutable_counters()->set_task("t");
  ie->mutable_counters()->set_total(100);
  ie->mutable_counters()->set_done(done);
  return e;
}

// "run 1 done=3", "started 1/5", "finished 1/5 FAILED", "snapshot".
std::vector<std::string> Describe(const EventCoalescer::Flushed& f) {
  std::vector<std::string> out;
  for (const v1::Event& e : f.events) {
    if (e.has_snapshot()) {
      out.push_back("snapshot");
    } else if (e.has_run()) {
      out.push_back("run " + std::to_string(e.run().run().id()) + " done=" +
                    std::to_string(e.run().run().tasks(0).done()));
    } else {
      const v1::InstanceEvent& ie = e.instance();
      std::string kind = ie.kind() == v1::InstanceEvent::FINISHED ? "finished" : ie.kind() == v1::InstanceEvent::STARTED ? "started" : "other";
      out.push_back(kind + " " + std::to_string(ie.instance().run_id()) + "/" + std::to_string(ie.instance().seq()) +
                    (ie.kind() == v1::InstanceEvent::FINISHED ? " " + v1::InstanceState_Name(ie.instance().state()) : "") +
                    (ie.has_counters() ? " +counters" : ""));
    }
  }
  return out;
}

TEST(EventCoalescerTest, ATickOfDoneInstancesIsOneRunEvent) {
  EventCoalescer c({/*run_id=*/1, /*instances=*/true, /*max_problems=*/10});
  c.Add(RunEvent(1, v1::RUN_RUNNING));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"run 1 done=0"}));
  for (int seq = 0; seq < 1000; ++seq) {
    c.Add(Inst(1, seq, v1::InstanceEvent::STARTED, v1::RUNNING, seq));
    c.Add(Inst(1, seq, v1::InstanceEvent::FINISHED, v1::DONE, seq + 1));
  }
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"run 1 done=1000"}));
  EXPECT_TRUE(c.Flush().events.empty());
}

TEST(EventCoalescerTest, RunningInstancesAreToldAndThenEnded) {
  EventCoalescer c({1, true, 10});
  c.Add(RunEvent(1, v1::RUN_RUNNING));
  c.Add(Inst(1, 5, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  c.Add(Inst(1, 6, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"started 1/5", "started 1/6", "run 1 done=0"}));
  c.Add(Inst(1, 5, v1::InstanceEvent::PROGRESS, v1::RUNNING, 0));
  c.Add(Inst(1, 5, v1::InstanceEvent::FINISHED, v1::DONE, 1));
  c.Add(Inst(1, 7, v1::InstanceEvent::STARTED, v1::RUNNING, 1));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"finished 1/5 DONE", "started 1/7", "run 1 done=1"}));
}

TEST(EventCoalescerTest, ProblemsAreSentEachOnceUpToTheLimit) {
  EventCoalescer c({1, true, 2});
  c.Add(RunEvent(1, v1::RUN_RUNNING));
  c.Flush();
  c.Add(Inst(1, 1, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  EXPECT_FALSE(c.Flush().truncated);
  c.Add(Inst(1, 1, v1::InstanceEvent::FINISHED, v1::FAILED, 0));  // told running: also ends that row
  c.Add(Inst(1, 2, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  c.Add(Inst(1, 2, v1::InstanceEvent::FINISHED, v1::SKIPPED, 0));
  c.Add(Inst(1, 3, v1::InstanceEvent::FINISHED, v1::SUPPRESSED, 0));  // over the limit
  EventCoalescer::Flushed f = c.Flush();
  EXPECT_TRUE(f.truncated);
  EXPECT_EQ(Describe(f), (std::vector<std::string>{"finished 1/1 FAILED", "finished 1/2 SKIPPED", "run 1 done=0"}));
}

TEST(EventCoalescerTest, ASnapshotReplacesWhatIsPending) {
  EventCoalescer c({1, true, 10});
  c.Add(RunEvent(1, v1::RUN_RUNNING));
  c.Add(Inst(1, 1, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  v1::Event snap;
  *snap.mutable_snapshot()->add_runs() = RunEvent(1, v1::RUN_RUNNING, 7).run().run();
  v1::Instance* running = snap.mutable_snapshot()->add_running();
  running->set_run_id(1);
  running->set_seq(9);
  c.Add(snap);
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"snapshot"}));
  // Seq 9 was told running by the snapshot: its end is sent.
  c.Add(Inst(1, 9, v1::InstanceEvent::FINISHED, v1::DONE, 8));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"finished 1/9 DONE", "run 1 done=8"}));
}

TEST(EventCoalescerTest, AFinishedRunDropsItsRunningInstances) {
  EventCoalescer c({1, true, 10});
  c.Add(RunEvent(1, v1::RUN_RUNNING));
  c.Add(Inst(1, 1, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  c.Flush();
  c.Add(Inst(1, 1, v1::InstanceEvent::PROGRESS, v1::RUNNING, 0));
  c.Add(RunEvent(1, v1::RUN_CANCELLED, 0));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"run 1 done=0"}));
}

TEST(EventCoalescerTest, RunsOnlyModeFollowsEveryRunsCounters) {
  EventCoalescer c({/*run_id=*/0, /*instances=*/false, 10});
  c.Add(RunEvent(1, v1::RUN_RUNNING));
  c.Add(RunEvent(2, v1::RUN_RUNNING));
  c.Add(Inst(2, 1, v1::InstanceEvent::STARTED, v1::RUNNING, 0));
  c.Add(Inst(2, 1, v1::InstanceEvent::FINISHED, v1::FAILED, 4));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"run 1 done=0", "run 2 done=4"}));
  c.Add(Inst(1, 3, v1::InstanceEvent::FINISHED, v1::DONE, 2));
  EXPECT_EQ(Describe(c.Flush()), (std::vector<std::string>{"run 1 done=2"}));
}

}  // namespace
}  // namespace asflow
