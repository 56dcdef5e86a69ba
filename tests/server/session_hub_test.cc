// SessionHub::Holdable: which queued events may wait for the session's next
// write slot (SessionHubOptions::write_spacing, docs/sessions.md "Batching").
#include "server/session_hub.h"

#include <memory>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace asflow {
namespace {

class SessionHubHoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_.SetOpsSink(SessionOpsSink{[](int64_t, v1::SessionOp) {}, [](int64_t) {}});
    v1::SessionHello hello;
    hello.set_chained_starts(true);
    auto session = hub_.Join(hello, "unix:test", [] {}, [] {});
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = std::move(*session);
    EXPECT_FALSE(hub_.Holdable(*session_));  // the welcome
    v1::SessionResponse welcome;
    ASSERT_TRUE(hub_.TakeOutgoing(*session_, &welcome));
    ASSERT_EQ(welcome.events_size(), 1);
    id_ = welcome.events(0).welcome().session_id();
    EXPECT_FALSE(hub_.Holdable(*session_));  // nothing queued
  }
  void TearDown() override {
    hub_.Leave(*session_, "test over");
    hub_.Close();
  }

  ExecJob Job(ExecId id, int64_t call_id, ExecId after = 0, int64_t after_call = 0) {
    ExecJob job;
    job.id = id;
    job.session = id_;
    job.call_id = call_id;
    job.after = after;
    job.after_call = after_call;
    return job;
  }
  // Everything queued, as one message.
  std::vector<v1::SessionEvent::EventCase> Drain() {
    v1::SessionResponse out;
    std::vector<v1::SessionEvent::EventCase> kinds;
    while (hub_.TakeOutgoing(*session_, &out)) {
      for (const v1::SessionEvent& e : out.events()) kinds.push_back(e.event_case());
      out.Clear();
    }
    return kinds;
  }
  v1::SessionEvent CallState(int64_t call_id) {
    v1::SessionEvent e;
    e.mutable_call_state()->set_call_id(call_id);
    e.mutable_call_state()->set_state(v1::DONE);
    return e;
  }

  static RunnerEvents NoScheduler() {
    RunnerEvents events;
    events.on_done = [](ExecResult) {};  // the started calls, lost at Leave
    events.on_handoff = [](ExecId, ExecId) {};
    return events;
  }

  // No scheduler: ops and results go nowhere.
  SessionHub hub_{SessionHubOptions{}, AtomicFileOptions{}, NoScheduler()};
  std::shared_ptr<SessionHub::Session> session_;
  int64_t id_ = 0;
};

TEST_F(SessionHubHoldTest, TheWelcomeAndStartsThatAreNotChainedAreNeverHeld) {
  // (The welcome: SetUp.)
  std::vector<ExecJob> jobs;
  jobs.push_back(Job(1, 101));
  jobs.push_back(Job(2, 102));
  hub_.StartAll(std::move(jobs));
  EXPECT_FALSE(hub_.Holdable(*session_));  // two slots would idle
  EXPECT_EQ(Drain().size(), 2u);
}

TEST_F(SessionHubHoldTest, CallStatesAndChainedStartsWaitWhileCallsAreRunning) {
  std::vector<ExecJob> jobs;
  jobs.push_back(Job(1, 101));
  jobs.push_back(Job(2, 102));
  hub_.StartAll(std::move(jobs));
  Drain();
  hub_.Send(id_, CallState(99));
  EXPECT_TRUE(hub_.Holdable(*session_));
  hub_.Start(Job(3, 103, /*after=*/1, /*after_call=*/101));  // chained after a running call
  EXPECT_TRUE(hub_.Holdable(*session_));
  // Once something that is waited on is queued, nothing waits.
  v1::SessionEvent closed;
  closed.mutable_run_closed()->set_ref(1);
  hub_.Send(id_, closed);
  EXPECT_FALSE(hub_.Holdable(*session_));
  auto kinds = Drain();
  EXPECT_EQ(kinds.size(), 3u);
  // Taken: the count of events waited on went with them.
  hub_.Send(id_, CallState(98));
  EXPECT_TRUE(hub_.Holdable(*session_));
}

TEST_F(SessionHubHoldTest, CancelsAndRevokesGoAtOnce) {
  std::vector<ExecJob> jobs;
  jobs.push_back(Job(1, 101));
  jobs.push_back(Job(2, 102));
  hub_.StartAll(std::move(jobs));
  hub_.Start(Job(3, 103, /*after=*/1, /*after_call=*/101));
  Drain();
  hub_.Revoke(3);  // a pause: it must reach the process before call 101 ends
  EXPECT_FALSE(hub_.Holdable(*session_));
  Drain();
  hub_.Cancel(2);
  EXPECT_FALSE(hub_.Holdable(*session_));
}

TEST_F(SessionHubHoldTest, ASessionWithOneStartedCallIsNeverHeld) {
  hub_.Start(Job(1, 101));
  Drain();
  hub_.Send(id_, CallState(99));  // a sync loop: its caller waits for this
  EXPECT_FALSE(hub_.Holdable(*session_));
}

}  // namespace
}  // namespace asflow
