// End-to-end tests of code sessions (FlowService.Session,
// docs/sessions.md): a real asflowd on a temporary socket, and a test
// client that plays the process running the functions, op by op.
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "asflow/v1/service.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/e2e/tcp_fixture.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;

// One code session: sends op batches, reads events one at a time.
class SessionClient {
 public:
  explicit SessionClient(const std::string& target, const std::string& token = "") {
    channel_ = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    stub_ = v1::FlowService::NewStub(channel_);
    if (!token.empty()) ctx_.AddMetadata("authorization", "Bearer " + token);
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stream_ = stub_->Session(&ctx_);
  }
  ~SessionClient() {
    if (stream_ != nullptr) {
      ctx_.TryCancel();
      stream_->Finish();
    }
  }

  bool Send(std::vector<v1::SessionOp> ops) {
    v1::SessionRequest request;
    for (auto& op : ops) *request.add_ops() = std::move(op);
    return stream_->Write(request);
  }
  // The next event; false when the stream ended.
  bool Next(v1::SessionEvent* event) {
    while (pending_.empty()) {
      v1::SessionResponse response;
      if (!stream_->Read(&response)) return false;
      for (auto& e : *response.mutable_events()) pending_.push_back(std::move(e));
    }
    *event = std::move(pending_.front());
    pending_.erase(pending_.begin());
    return true;
  }
  // Reads events until one of `kind` comes; the others are kept in
  // `seen`. False if the stream ends first.
  bool NextOf(v1::SessionEvent::EventCase kind, v1::SessionEvent* event) {
    while (Next(event)) {
      if (event->event_case() == kind) return true;
      seen.push_back(*event);
    }
    return false;
  }
  grpc::Status Finish() {
    stream_->WritesDone();
    v1::SessionResponse rest;
    while (stream_->Read(&rest)) {
    }
    grpc::Status s = stream_->Finish();
    stream_.reset();
    return s;
  }
  void Break() {
    ctx_.TryCancel();
    stream_->Finish();
    stream_.reset();
  }

  std::vector<v1::SessionEvent> seen;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FlowService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionRequest, v1::SessionResponse>> stream_;
  std::vector<v1::SessionEvent> pending_;
};

v1::SessionOp Hello() {
  v1::SessionOp op;
  op.mutable_hello()->set_client("session_test");
  op.mutable_hello()->set_pid(getpid());
  return op;
}
v1::SessionOp OpenRun(int64_t ref, const std::string& workspace, int64_t resume = 0) {
  v1::SessionOp op;
  op.mutable_open_run()->set_ref(ref);
  op.mutable_open_run()->set_flow("transcripts");
  op.mutable_open_run()->set_workspace(workspace);
  op.mutable_open_run()->set_resume_run_id(resume);
  return op;
}
v1::SessionOp Declare(int64_t run, const std::string& name, int limit, const std::string& extra_suppress = "") {
  v1::SessionOp op;
  v1::TaskSpec& spec = *op.mutable_declare_task()->mutable_spec();
  op.mutable_declare_task()->set_run(run);
  spec.set_name(name);
  spec.set_on("data/{video_id}.jsonl.zst");
  spec.set_limit(limit);
  if (!extra_suppress.empty()) spec.mutable_suppress()->add_errors(extra_suppress);
  return op;
}
v1::SessionOp Call(int64_t run, int64_t call_id, const std::string& task, const std::string& video) {
  v1::SessionOp op;
  v1::CallOp& c = *op.mutable_call();
  c.set_run(run);
  c.set_call_id(call_id);
  c.set_task(task);
  (*c.mutable_params())["video_id"] = video;
  c.set_output(absl::StrCat("data/", video, ".jsonl.zst"));
  return op;
}
v1::SessionOp Output(int64_t call_id, const std::string& data) {
  v1::SessionOp op;
  op.mutable_output()->set_call_id(call_id);
  op.mutable_output()->set_data(data);
  return op;
}
v1::SessionOp Ok(int64_t call_id) {
  v1::SessionOp op;
  op.mutable_result()->set_call_id(call_id);
  op.mutable_result()->set_ok(true);
  return op;
}
v1::SessionOp Raised(int64_t call_id, std::vector<std::string> types, const std::string& traceback) {
  v1::SessionOp op;
  op.mutable_result()->set_call_id(call_id);
  for (auto& t : types) op.mutable_result()->add_error_types(t);
  op.mutable_result()->set_error_text(traceback);
  return op;
}
v1::SessionOp Drop(int64_t run, int64_t call_id, const std::string& task, const std::string& video) {
  v1::SessionOp op;
  *op.mutable_drop() = Call(run, call_id, task, video).call();
  return op;
}
v1::SessionOp Withdrawn(int64_t call_id) {
  v1::SessionOp op;
  op.mutable_result()->set_call_id(call_id);
  op.mutable_result()->set_cancelled(true);
  return op;
}
v1::SessionOp Close(int64_t run, v1::RunState state) {
  v1::SessionOp op;
  op.mutable_close_run()->set_run(run);
  op.mutable_close_run()->set_state(state);
  return op;
}

class SessionTest : public TcpE2eTest {
 protected:
  std::string Target() { return "unix:" + socket_; }

  // Opens run 1 on `s` and declares task t.extract (limit `limit`);
  // returns the run id.
  int64_t OpenAndDeclare(SessionClient& s, int limit, const std::string& suppress = "") {
    EXPECT_TRUE(s.Send({Hello(), OpenRun(1, ws_), Declare(1, "t.extract", limit, suppress)}));
    v1::SessionEvent e;
    EXPECT_TRUE(s.NextOf(v1::SessionEvent::kWelcome, &e));
    EXPECT_TRUE(s.NextOf(v1::SessionEvent::kRunOpened, &e));
    int64_t run = e.run_opened().run_id();
    EXPECT_TRUE(s.NextOf(v1::SessionEvent::kTaskDeclared, &e));
    EXPECT_EQ(e.task_declared().error(), "");
    return run;
  }
};

TEST_F(SessionTest, CallsRunWhenTheDaemonSaysAndTheirOutputIsCommitted) {
  StartDaemon();
  SessionClient s(Target());
  int64_t run = OpenAndDeclare(s, 2);
  ASSERT_TRUE(s.Send({Call(1, 1, "t.extract", "a"), Call(1, 2, "t.extract", "b"), Call(1, 3, "t.extract", "c")}));
  std::map<int64_t, v1::InstanceState> states;
  int started = 0;
  v1::SessionEvent e;
  while (states.size() < 3 && s.Next(&e)) {
    if (e.has_start()) {
      ++started;
      int64_t id = e.start().call_id();
      EXPECT_EQ(e.start().attempt(), 1);
      ASSERT_TRUE(s.Send({Output(id, absl::StrCat("{\"line\":1,\"call\":", id, "}\n")), Ok(id)}));
    }
    if (e.has_call_state()) {
      states[e.call_state().call_id()] = e.call_state().state();
      // Told only once committed: the file is there.
      EXPECT_TRUE(FileExists(absl::StrCat(ws_, "/data/", std::string(1, 'a' + e.call_state().call_id() - 1),
                                          ".jsonl.zst")));
    }
  }
  EXPECT_EQ(started, 3);
  EXPECT_EQ(states, (std::map<int64_t, v1::InstanceState>{{1, v1::DONE}, {2, v1::DONE}, {3, v1::DONE}}));
  EXPECT_EQ(Decompress("zstd", ws_ + "/data/b.jsonl.zst"), "{\"line\":1,\"call\":2}\n");
  ASSERT_TRUE(s.Send({Close(1, v1::RUN_SUCCEEDED)}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kRunClosed, &e));
  EXPECT_EQ(e.run_closed().run_id(), run);
  EXPECT_EQ(e.run_closed().state(), v1::RUN_SUCCEEDED);
  EXPECT_TRUE(s.Finish().ok());

  // asflowctl sees it as any run.
  CommandResult runs = Ctl({"runs"});
  EXPECT_THAT(runs.out, HasSubstr("succeeded  transcripts"));
  CommandResult tasks = Ctl({"tasks", absl::StrCat(run)});
  EXPECT_EQ(TableRows(tasks.out).size(), 3u) << tasks.out;

  // A second process: every call is cached, nothing starts.
  SessionClient again(Target());
  OpenAndDeclare(again, 2);
  ASSERT_TRUE(again.Send({Call(1, 7, "t.extract", "a"), Call(1, 8, "t.extract", "c")}));
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(again.NextOf(v1::SessionEvent::kCallState, &e));
    EXPECT_EQ(e.call_state().state(), v1::CACHED);
  }
  for (const auto& ev : again.seen) EXPECT_FALSE(ev.has_start());
}

TEST_F(SessionTest, ExceptionTypesMeetTheRulesAndSuppressWritesTheTraceback) {
  StartDaemon();
  SessionClient s(Target());
  OpenAndDeclare(s, 4, "TranscriptsDisabled");
  ASSERT_TRUE(s.Send({Call(1, 1, "t.extract", "nope")}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
  const std::string traceback =
      "Traceback (most recent call last):\n  File \"x.py\", line 3, in extract\n"
      "youtube_transcript_api._errors.TranscriptsDisabled: no transcript for nope\n";
  ASSERT_TRUE(s.Send({Raised(1, {"youtube_transcript_api._errors.TranscriptsDisabled",
                                 "youtube_transcript_api._errors.CouldNotRetrieveTranscript", "Exception"},
                             traceback)}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kCallState, &e));
  EXPECT_EQ(e.call_state().state(), v1::SUPPRESSED);
  EXPECT_THAT(e.call_state().error(), HasSubstr("TranscriptsDisabled: no transcript for nope"));
  EXPECT_EQ(ReadAll(ws_ + "/data/nope.err"), traceback + "\n");
  EXPECT_FALSE(FileExists(ws_ + "/data/nope.jsonl.zst"));
}

TEST_F(SessionTest, AnUnknownExceptionFailsTheRunFastAndCancelsTheRest) {
  StartDaemon();
  SessionClient s(Target());
  int64_t run = OpenAndDeclare(s, 2);
  ASSERT_TRUE(s.Send({Call(1, 1, "t.extract", "a"), Call(1, 2, "t.extract", "b"), Call(1, 3, "t.extract", "c")}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
  ASSERT_TRUE(s.Send({Raised(1, {"ValueError", "Exception"}, "Traceback...\nValueError: bad id\n")}));
  std::map<int64_t, v1::InstanceState> states;
  bool cancelled_2 = false, closed = false;
  while ((states.size() < 3 || !closed) && s.Next(&e)) {
    if (e.has_cancel()) {
      EXPECT_EQ(e.cancel().call_id(), 2);
      cancelled_2 = true;
      v1::SessionOp stopped;
      stopped.mutable_result()->set_call_id(2);
      stopped.mutable_result()->set_cancelled(true);
      ASSERT_TRUE(s.Send({stopped}));
    }
    if (e.has_start()) ADD_FAILURE() << "started after the failure: " << e.start().call_id();
    if (e.has_call_state()) states[e.call_state().call_id()] = e.call_state().state();
    if (e.has_run_closed()) {
      closed = true;
      EXPECT_EQ(e.run_closed().state(), v1::RUN_FAILED);
      EXPECT_THAT(e.run_closed().error(), HasSubstr("ValueError: bad id"));
    }
  }
  EXPECT_TRUE(cancelled_2);
  EXPECT_EQ(states, (std::map<int64_t, v1::InstanceState>{{1, v1::FAILED}, {2, v1::CANCELLED}, {3, v1::CANCELLED}}));
  CommandResult runs = Ctl({"runs"});
  EXPECT_THAT(runs.out, HasSubstr(absl::StrCat(run, "      failed")));
}

TEST_F(SessionTest, ADroppedCallIsCancelledWithoutFailingTheRunAndFreesItsSlot) {
  StartDaemon();
  SessionClient s(Target());
  int64_t run = OpenAndDeclare(s, 1);
  ASSERT_TRUE(s.Send({Call(1, 1, "t.extract", "a"), Call(1, 2, "t.extract", "b")}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
  EXPECT_EQ(e.start().call_id(), 1);
  // b waits behind a (limit 1); its caller gives up, then a's caller does
  // too while a runs: dropped first, then its stopped result (not judged).
  ASSERT_TRUE(s.Send({Drop(1, 2, "t.extract", "b"), Drop(1, 1, "t.extract", "a"), Output(1, "{}\n"),
                      Withdrawn(1)}));
  // The slot is free again: c starts, and the run is still running.
  ASSERT_TRUE(s.Send({Call(1, 3, "t.extract", "c")}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
  EXPECT_EQ(e.start().call_id(), 3);
  ASSERT_TRUE(s.Send({Output(3, "{}\n"), Ok(3)}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kCallState, &e));
  EXPECT_EQ(e.call_state().call_id(), 3);
  EXPECT_EQ(e.call_state().state(), v1::DONE);
  ASSERT_TRUE(s.Send({Close(1, v1::RUN_SUCCEEDED)}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kRunClosed, &e));
  EXPECT_EQ(e.run_closed().state(), v1::RUN_SUCCEEDED) << e.run_closed().error();
  for (const auto& ev : s.seen) {
    EXPECT_FALSE(ev.has_start() && ev.start().call_id() == 2) << "a dropped call was started";
    EXPECT_FALSE(ev.has_call_state() && ev.call_state().call_id() != 3) << "a dropped call was answered";
  }
  EXPECT_FALSE(FileExists(ws_ + "/data/a.jsonl.zst"));
  CommandResult tasks = Ctl({"tasks", absl::StrCat(run), "--state", "cancelled"});
  EXPECT_EQ(TableRows(tasks.out).size(), 2u) << tasks.out;
}

TEST_F(SessionTest, TheLimitHoldsAcrossTwoProcesses) {
  StartDaemon();
  SessionClient a(Target());
  SessionClient b(Target());
  int64_t run_a = OpenAndDeclare(a, 1);
  int64_t run_b = OpenAndDeclare(b, 1);
  ASSERT_TRUE(a.Send({Call(1, 1, "t.extract", "a1"), Call(1, 2, "t.extract", "a2")}));
  ASSERT_TRUE(b.Send({Call(1, 1, "t.extract", "b1"), Call(1, 2, "t.extract", "b2")}));
  // Each process finishes what it is given; both must get all their calls
  // done through the one slot of t.extract.
  auto serve = [](SessionClient* s) {
    int done = 0;
    v1::SessionEvent e;
    while (done < 2 && s->Next(&e)) {
      if (e.has_start()) s->Send({Output(e.start().call_id(), "x\n"), Ok(e.start().call_id())});
      if (e.has_call_state()) ++done;
    }
    return done;
  };
  std::thread tb([&] { EXPECT_EQ(serve(&b), 2); });
  EXPECT_EQ(serve(&a), 2);
  tb.join();
  // What the daemon recorded: the four runs of t.extract never overlapped.
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (int64_t run : {run_a, run_b}) {
    auto stub = v1::FlowService::NewStub(grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    v1::ListTasksRequest request;
    request.set_run_id(run);
    v1::ListTasksResponse response;
    ASSERT_TRUE(stub->ListTasks(&ctx, request, &response).ok());
    for (const v1::Instance& i : response.instances()) {
      EXPECT_EQ(i.state(), v1::DONE);
      spans.emplace_back(i.started_ms(), i.finished_ms());
    }
  }
  ASSERT_EQ(spans.size(), 4u);
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    EXPECT_LE(spans[i - 1].second, spans[i].first) << "two calls of t.extract ran at once";
  }
}

TEST_F(SessionTest, ACallWhoseOutputAnotherProcessIsMakingJoinsIt) {
  StartDaemon();
  SessionClient a(Target());
  SessionClient b(Target());
  OpenAndDeclare(a, 4);
  OpenAndDeclare(b, 4);
  ASSERT_TRUE(a.Send({Call(1, 1, "t.extract", "same")}));
  v1::SessionEvent e;
  ASSERT_TRUE(a.NextOf(v1::SessionEvent::kStart, &e));
  ASSERT_TRUE(b.Send({Call(1, 5, "t.extract", "same")}));
  ASSERT_TRUE(a.Send({Output(1, "{}\n"), Ok(1)}));
  ASSERT_TRUE(b.NextOf(v1::SessionEvent::kCallState, &e));
  EXPECT_EQ(e.call_state().call_id(), 5);
  EXPECT_EQ(e.call_state().state(), v1::DONE);  // done by a, not started here
  for (const auto& ev : b.seen) EXPECT_FALSE(ev.has_start());
}

TEST_F(SessionTest, AProcessThatReconnectsResumesItsRun) {
  StartDaemon();
  int64_t run = 0;
  {
    SessionClient s(Target());
    run = OpenAndDeclare(s, 4);
    ASSERT_TRUE(s.Send({Call(1, 1, "t.extract", "a"), Call(1, 2, "t.extract", "b")}));
    v1::SessionEvent e;
    ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
    ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
    ASSERT_TRUE(s.Send({Output(1, "x\n"), Ok(1)}));
    ASSERT_TRUE(s.NextOf(v1::SessionEvent::kCallState, &e));
    EXPECT_EQ(e.call_state().call_id(), 1);
    s.Break();  // b was running: lost, its partial output discarded
  }
  SessionClient s(Target());
  ASSERT_TRUE(s.Send({Hello(), OpenRun(9, ws_, run), Declare(9, "t.extract", 4), Call(9, 11, "t.extract", "a"),
                      Call(9, 12, "t.extract", "b")}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kRunOpened, &e)) << (s.seen.empty() ? "" : s.seen.back().DebugString());
  EXPECT_EQ(e.run_opened().run_id(), run);
  std::map<int64_t, v1::InstanceState> states;
  while (states.size() < 2 && s.Next(&e)) {
    if (e.has_start()) {
      EXPECT_EQ(e.start().call_id(), 12);  // only b runs again
      ASSERT_TRUE(s.Send({Output(12, "y\n"), Ok(12)}));
    }
    if (e.has_call_state()) states[e.call_state().call_id()] = e.call_state().state();
  }
  EXPECT_EQ(states, (std::map<int64_t, v1::InstanceState>{{11, v1::DONE}, {12, v1::DONE}}));
  ASSERT_TRUE(s.Send({Close(9, v1::RUN_SUCCEEDED)}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kRunClosed, &e));
  EXPECT_EQ(e.run_closed().state(), v1::RUN_SUCCEEDED);
  CommandResult tasks = Ctl({"tasks", absl::StrCat(run)});
  EXPECT_EQ(TableRows(tasks.out).size(), 2u) << tasks.out;  // the same two instances
}

TEST_F(SessionTest, ARunResumesAfterADaemonRestart) {
  StartDaemon();
  int64_t run = 0;
  {
    SessionClient s(Target());
    run = OpenAndDeclare(s, 4);
    ASSERT_TRUE(s.Send({Call(1, 1, "t.extract", "a"), Call(1, 2, "t.extract", "b")}));
    v1::SessionEvent e;
    ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
    ASSERT_TRUE(s.NextOf(v1::SessionEvent::kStart, &e));
    ASSERT_TRUE(s.Send({Output(1, "x\n"), Ok(1)}));
    ASSERT_TRUE(s.NextOf(v1::SessionEvent::kCallState, &e));
    KillDaemon();
  }
  StartDaemon();
  SessionClient s(Target());
  ASSERT_TRUE(s.Send({Hello(), OpenRun(1, ws_, run), Declare(1, "t.extract", 4), Call(1, 21, "t.extract", "a"),
                      Call(1, 22, "t.extract", "b")}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kRunOpened, &e));
  EXPECT_EQ(e.run_opened().run_id(), run);
  std::map<int64_t, v1::InstanceState> states;
  while (states.size() < 2 && s.Next(&e)) {
    if (e.has_start()) {
      EXPECT_EQ(e.start().call_id(), 22);
      ASSERT_TRUE(s.Send({Ok(22)}));
    }
    if (e.has_call_state()) states[e.call_state().call_id()] = e.call_state().state();
  }
  EXPECT_EQ(states, (std::map<int64_t, v1::InstanceState>{{21, v1::DONE}, {22, v1::DONE}}));
}

TEST_F(SessionTest, ProtocolErrorsAndRefusalsAreNamed) {
  StartDaemon();
  {
    SessionClient s(Target());
    ASSERT_TRUE(s.Send({OpenRun(1, ws_)}));
    v1::SessionEvent e;
    EXPECT_FALSE(s.Next(&e));
    grpc::Status status = s.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "the first op must be hello");
  }
  SessionClient s(Target());
  ASSERT_TRUE(s.Send({Hello(), OpenRun(1, "/elsewhere")}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kRunClosed, &e));
  EXPECT_EQ(e.run_closed().run_id(), 0);
  EXPECT_THAT(e.run_closed().error(), HasSubstr("workspace /elsewhere"));
  v1::SessionOp bad = Declare(1, "", 1);
  ASSERT_TRUE(s.Send({OpenRun(2, ws_), Declare(2, "t.bad", -1), Call(2, 1, "t.bad", "x"), Call(2, 2, "t.none", "x")}));
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kTaskDeclared, &e));
  EXPECT_EQ(e.task_declared().error(), "spec.limit: must be >= 0, got -1");
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kCallState, &e));
  EXPECT_EQ(e.call_state().state(), v1::FAILED);
  EXPECT_EQ(e.call_state().error(), "task t.bad was refused: spec.limit: must be >= 0, got -1");
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kCallState, &e));
  EXPECT_THAT(e.call_state().error(), HasSubstr("task t.none is not declared in run"));
  ASSERT_TRUE(s.Send({Output(99, "x")}));
  EXPECT_FALSE(s.Next(&e));
  grpc::Status status = s.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "output for call 99, which is not started");
}

TEST_F(SessionTest, SessionsOverTcpNeedTheToken) {
  WriteFileOrDie(tmp_.Join("token"), "sess-token\n");
  StartDaemon({"--listen", "127.0.0.1:0", "--token-file", tmp_.Join("token")});
  const std::string target = absl::StrCat("127.0.0.1:", TcpPort());
  {
    SessionClient s(target, "wrong");
    s.Send({Hello()});
    v1::SessionEvent e;
    EXPECT_FALSE(s.Next(&e));
    EXPECT_EQ(s.Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  SessionClient s(target, "sess-token");
  ASSERT_TRUE(s.Send({Hello()}));
  v1::SessionEvent e;
  ASSERT_TRUE(s.NextOf(v1::SessionEvent::kWelcome, &e));
}

}  // namespace
}  // namespace asflow::testing
