// End-to-end regression tests for what a hostile probe of asflowd found
// (issue 12): each test is named after the defect it pins and fails
// without its fix.
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "asflow/v1/service.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/e2e/e2e_fixture.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

inline const std::string kHostile = ASFLOW_TEST_DATA_DIR "/hostile";

class HostileTest : public E2eTest {};

// Every file below `dir` (recursively, symlinks not followed).
std::vector<std::string> FilesUnder(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_directory(ec)) files.push_back(it->path().string());
  }
  return files;
}

// Issue 12, defect 2: the workspace check ran on the path before the
// temporary was opened and renamed by path, so a directory swapped for a
// symlink for a few milliseconds moved outputs outside the workspace. A
// thread here swaps race/d with a symlink to a directory outside (atomic
// renameat2 RENAME_EXCHANGE, 2 ms swapped, 1 ms not) for the whole of a
// 3,000-instance run, three times over.
TEST_F(HostileTest, SymlinkSwappedInDuringARunWritesNothingOutside) {
  const std::string outside = tmp_.Join("outside");
  std::filesystem::create_directories(outside + "/d");
  StartDaemon();
  for (int rep = 0; rep < 3; ++rep) {
    const std::string dir = absl::StrCat("race", rep);
    const std::string real = ws_ + "/" + dir + "/d";
    const std::string link = ws_ + "/" + dir + "/link";
    std::filesystem::create_directories(real);
    ASSERT_EQ(symlink((outside + "/d").c_str(), link.c_str()), 0);
    std::atomic<bool> stop{false};
    std::atomic<int> swaps{0};
    std::thread swapper([&] {
      while (!stop.load()) {
        if (renameat2(AT_FDCWD, real.c_str(), AT_FDCWD, link.c_str(), RENAME_EXCHANGE) != 0) break;
        usleep(2000);  // the attack's timing, not a wait for the daemon
        if (renameat2(AT_FDCWD, real.c_str(), AT_FDCWD, link.c_str(), RENAME_EXCHANGE) != 0) break;
        ++swaps;
        usleep(1000);
      }
    });
    CommandResult r = Ctl({"run", kHostile + "/race.flow.yaml", "--plain", "--keep-going", "-p", "dir=" + dir},
                          "", 120s);
    stop = true;
    swapper.join();
    SCOPED_TRACE(absl::StrCat("repetition ", rep, ", ", swaps.load(), " swaps"));
    EXPECT_GT(swaps.load(), 20) << "the run ended before the race got going";
    struct stat st;
    ASSERT_EQ(lstat(real.c_str(), &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode)) << "the swapper left the directory swapped";

    EXPECT_EQ(FilesUnder(outside), std::vector<std::string>{}) << r.out;
    // Each instance either wrote its file in the real directory, or failed
    // saying it would not go through the symlink.
    int written = static_cast<int>(FilesUnder(real).size());
    int refused = 0;
    for (const std::string& line : Lines(r.out)) {
      if (absl::StrContains(line, "failed") && absl::StrContains(line, "item(")) {
        EXPECT_THAT(line, HasSubstr("; asflow never follows a symlink below the workspace"));
        ++refused;
      }
    }
    EXPECT_EQ(written + refused, 3000) << r.out.substr(0, 2000);
    for (const std::string& f : FilesUnder(ws_ + "/" + dir)) {
      EXPECT_FALSE(absl::StrContains(f, ".asflow-tmp")) << f;
    }
  }
}

// Issue 12, defect 2, for the readers: a for_each file and `asflowctl cat`
// below the workspace are not read through a symlink either.
TEST_F(HostileTest, ForEachFileAndCatDoNotReadThroughASymlink) {
  const std::string outside = tmp_.Join("outside");
  WriteFileOrDie(outside + "/list.jsonl", "{\"id\":\"a\"}\n");
  WriteFileOrDie(outside + "/secret.txt", "secret\n");
  ASSERT_EQ(symlink(outside.c_str(), (ws_ + "/inputs").c_str()), 0);
  StartDaemon();
  CommandResult run = Ctl({"run", kHostile + "/file_input.flow.yaml", "--plain"});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_THAT(run.out + run.err,
              HasSubstr(absl::StrCat("item: ", ws_, "/inputs/list.jsonl: \"", ws_,
                                     "/inputs\" is a symlink; asflow never follows a symlink below the workspace")));
  EXPECT_FALSE(FileExists(ws_ + "/out"));

  CommandResult cat = Ctl({"cat", "inputs/secret.txt"});
  EXPECT_EQ(cat.exit_code, 2);
  EXPECT_EQ(cat.out, "");
  EXPECT_EQ(cat.err, absl::StrCat("asflowctl: ", ws_, "/inputs/secret.txt: \"", ws_,
                                  "/inputs\" is a symlink; asflow never follows a symlink below the workspace\n"));
  // Named explicitly outside the current directory, a file is the user's
  // choice and read as given.
  CommandResult explicit_cat = Ctl({"cat", outside + "/secret.txt"});
  EXPECT_EQ(explicit_cat.exit_code, 0) << explicit_cat.err;
  EXPECT_EQ(explicit_cat.out, "secret\n");
}

// Issue 12, defect 4: six runs with a 15 MB parameter took the daemon to
// 703 MB and broke `asflowctl runs` for good ("Received message larger than
// max"). Values are bounded at submit, and listings page by size.
TEST_F(HostileTest, LargeParameterValuesAreRefusedAndListingsPageBySize) {
  StartDaemon();
  const std::string flow = kHostile + "/params.flow.yaml";
  CommandResult big = Ctl({"run", flow, "--plain", "-p", "a=" + std::string(70000, 'x')});
  EXPECT_EQ(big.exit_code, 2) << big.out << big.err;
  EXPECT_THAT(big.err, HasSubstr("params.a: the value is 70000 bytes; at most 65536 are allowed"));
  CommandResult many = Ctl({"run", flow, "--plain", "-p", "a=" + std::string(65536, 'a'), "-p",
                            "b=" + std::string(65536, 'b'), "-p", "c=" + std::string(65536, 'c'), "-p",
                            "d=" + std::string(65536, 'd')});
  EXPECT_EQ(many.exit_code, 2) << many.out << many.err;
  EXPECT_THAT(many.err, HasSubstr("params: 262148 bytes of parameters; at most 262144 are allowed"));

  // 20 runs of ~252 KiB of parameters: 5 MB, more than a client with
  // gRPC's default 4 MiB receive limit could take in one message.
  const std::string v(63000, 'v');
  for (int i = 0; i < 20; ++i) {
    CommandResult r = Ctl({"run", flow, "--plain", "-p", "a=" + v, "-p", "b=" + v, "-p", "c=" + v, "-p", "d=" + v});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  auto stub = v1::FlowService::NewStub(
      grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  v1::ListRunsRequest request;
  request.set_limit(100);
  int pages = 0, listed = 0;
  for (;;) {
    grpc::ClientContext ctx;
    v1::ListRunsResponse page;
    grpc::Status status = stub->ListRuns(&ctx, request, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ++pages;
    listed += page.runs_size();
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(listed, 20);
  EXPECT_EQ(pages, 2);
  CommandResult runs = Ctl({"runs", "-n", "50"});
  EXPECT_EQ(runs.exit_code, 0) << runs.err;
  EXPECT_EQ(TableRows(runs.out).size(), 20u) << runs.out.substr(0, 500);

  // Instances whose binding is 60,000 bytes: ListTasks pages by size too.
  std::string lines;
  for (int i = 0; i < 60; ++i) lines += std::string(60000, 'x') + std::to_string(i) + "\n";
  WriteFileOrDie(ws_ + "/big.jsonl", lines);
  CommandResult r = Ctl({"run", kHostile + "/biglines.flow.yaml", "--plain"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  CommandResult tasks = Ctl({"tasks", "21"});
  EXPECT_EQ(tasks.exit_code, 0) << tasks.err;
  EXPECT_EQ(TableRows(tasks.out).size(), 60u);
  // A line over the limit fails the run, naming the file and line.
  WriteFileOrDie(ws_ + "/big.jsonl", "short\n" + std::string(70000, 'y') + "\n");
  CommandResult over = Ctl({"run", kHostile + "/biglines.flow.yaml", "--plain"});
  EXPECT_EQ(over.exit_code, 1) << over.out;
  EXPECT_THAT(over.out + over.err,
              HasSubstr("big.jsonl:2: the value bound to 'v' is 70000 bytes; at most 65536 are allowed"));
}

// Issue 12, defect 3: with its state on a full file system the daemon
// lost 8,515 writes silently and `asflowctl run` exited 0 saying "3000
// done" while the store held 157. Now the run fails naming the store's
// error, the client is told nothing the store does not hold, reads go on,
// and once there is room again a new run completes.
TEST_F(HostileTest, FullStateFileSystemFailsTheRunNamingTheStoreError) {
  const std::string mnt = tmp_.Join("statefs");
  std::filesystem::create_directories(mnt);
  CommandResult m = RunProcess(
      MakeLaunch({"/usr/bin/env", "mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt}, tmp_.path()), 10s);
  if (m.exit_code != 0) GTEST_SKIP() << "cannot mount a 2 MiB tmpfs here (needs root): " << m.err;
  struct Unmount {
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
    std::string path;
  } unmount{mnt};
  state_ = mnt + "/state.db";
  StartDaemon();
  CommandResult r = Ctl({"run", kHostile + "/race.flow.yaml", "--plain", "-p", "dir=full"}, "", 120s);
  EXPECT_EQ(r.exit_code, 1) << r.out.substr(0, 3000);
  EXPECT_THAT(r.out + r.err, HasSubstr("state not recorded: store " + state_));
  EXPECT_THAT(r.out + r.err, HasSubstr("database or disk is full"));
  // Every instance the client saw done is done in the store.
  int told_done = 0;
  for (const std::string& line : Lines(r.out)) {
    if (absl::StartsWith(line, "  done ")) ++told_done;
  }
  CommandResult done = Ctl({"tasks", "1", "--state", "done"});
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_EQ(static_cast<int>(TableRows(done.out).size()), told_done);
  EXPECT_LT(told_done, 3000);
  // Reads go on.
  CommandResult runs = Ctl({"runs"});
  EXPECT_EQ(runs.exit_code, 0) << runs.err;
  // Room again: a new run completes.
  CommandResult grow = RunProcess(
      MakeLaunch({"/usr/bin/env", "mount", "-o", "remount,size=64m", mnt}, tmp_.path()), 10s);
  ASSERT_EQ(grow.exit_code, 0) << grow.err;
  CommandResult again = Ctl({"run", kHostile + "/race.flow.yaml", "--plain", "-p", "n=50", "-p", "dir=after"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(FilesUnder(ws_ + "/after/d").size(), 50u);
  KillDaemon();  // before the mount goes
}

// Issue 12, defect 6: a NUL inside an argument was silently cut (exec
// sees a C string). It is refused wherever it can come from: a literal
// argument and a parameter value at submit, naming the field; a for_each
// line when the run expands it, naming the file and line.
TEST_F(HostileTest, NulInsideAnArgumentOrParameterIsRefused) {
  StartDaemon();
  CommandResult arg = Ctl({"run", kHostile + "/nul_arg.flow.yaml", "--plain"});
  EXPECT_EQ(arg.exit_code, 2) << arg.out << arg.err;
  EXPECT_THAT(arg.err, HasSubstr("tasks[0].run[1]: contains a NUL byte, which no command argument can carry"));
  EXPECT_FALSE(FileExists(ws_ + "/out.txt"));

  WriteFileOrDie(ws_ + "/lines.txt", "one\n");
  // A flow parameter given with a NUL (JSON's \u0000, via a flow file).
  WriteFileOrDie(ws_ + "/nul_param.flow.json",
                 R"({"name": "nul_param", "params": {"p": "x\u0000y"},
                     "tasks": [{"name": "t", "on": "t.txt", "run": ["echo", "{p}"]}]})");
  CommandResult param = Ctl({"run", ws_ + "/nul_param.flow.json", "--plain"});
  EXPECT_EQ(param.exit_code, 2) << param.out << param.err;
  EXPECT_THAT(param.err, HasSubstr("params.p: the value contains a NUL byte, which no command argument or "
                                   "environment variable can carry"));
  EXPECT_FALSE(FileExists(ws_ + "/t.txt"));

  WriteFileOrDie(ws_ + "/lines.txt", std::string("one\ntw\0o\nthree\n", 14));
  CommandResult line = Ctl({"run", kHostile + "/nul_lines.flow.yaml", "--plain"});
  EXPECT_EQ(line.exit_code, 1) << line.out << line.err;
  EXPECT_THAT(line.out + line.err, HasSubstr("lines.txt:2: the value contains a NUL byte, which no command "
                                             "argument or environment variable can carry"));
  for (const std::string& f : FilesUnder(ws_)) EXPECT_THAT(f, Not(HasSubstr("/echo/tw"))) << f;
  EXPECT_EQ(Ctl({"daemon", "status"}).exit_code, 0);
}

// Issue 12, defect 6: a '*' inside a parameter value was replaced by the
// instance's hash like the template's own '*'. Only the template's is.
TEST_F(HostileTest, StarInsideAParameterValueIsNotReplacedByTheHash) {
  StartDaemon();
  CommandResult r = Ctl({"run", kHostile + "/star.flow.yaml", "--plain"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<std::string> files = FilesUnder(ws_ + "/out");
  ASSERT_EQ(files.size(), 1u);
  const std::string name = std::filesystem::path(files[0]).filename().string();
  EXPECT_THAT(name, ::testing::MatchesRegex("a\\*b-[0-9a-f]+\\.txt")) << name;
  EXPECT_EQ(ReadAll(files[0]), "a*b\n");
  // The value's '*' and the template's, both in the file name.
  CommandResult two = Ctl({"run", kHostile + "/star.flow.yaml", "--plain", "-p", "name=*"});
  ASSERT_EQ(two.exit_code, 0) << two.out << two.err;
  EXPECT_EQ(FilesUnder(ws_ + "/out").size(), 2u);
  int starred = 0;
  for (const std::string& f : FilesUnder(ws_ + "/out")) {
    std::string base = std::filesystem::path(f).filename().string();
    if (::testing::Matches(::testing::MatchesRegex("\\*-[0-9a-f]+\\.txt"))(base)) ++starred;
  }
  EXPECT_EQ(starred, 1);
}

// Issue 12, defect 6: control characters and escape sequences from
// parameter values and error text were printed raw to terminals. --plain,
// tasks and show render them escaped (the live view: ProgressViewTest).
TEST_F(HostileTest, ControlCharactersFromValuesAndErrorsAreShownEscaped) {
  StartDaemon();
  const std::string value = "a\x1b]0;pwned\x07" "b";
  CommandResult run = Ctl({"run", kHostile + "/escape.flow.yaml", "--plain", "-p", "v=" + value});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("  failed     t()  exit code 3: "
                                 "a\\x1b]0;pwned\\x07b\\x1b[2J\n"));
  CommandResult tasks = Ctl({"tasks", "1"});
  EXPECT_THAT(tasks.out, HasSubstr(" t() "));  // an instance is its bindings (issue 15)
  EXPECT_THAT(tasks.out, HasSubstr("exit code 3: a\\x1b]0;pwned\\x07b\\x1b[2J"));
  CommandResult show = Ctl({"show", "1", "t"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("t() in run 1 (seq 0)\n"));
  EXPECT_THAT(show.out, HasSubstr("    a\\x1b]0;pwned\\x07b\\x1b[2J\n"));
  for (const CommandResult* r : {&run, &tasks, &show}) {
    for (char c : r->out + r->err) {
      EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 || c == '\n') << static_cast<int>(c) << " in " << r->out;
    }
  }
}

// Watch streams are bounded (--max-watchers, default 1,024): one past the
// limit is refused with a message naming it, and a slot freed is usable
// again.
TEST_F(HostileTest, FromCodeSetByASubmitterIsIgnored) {
  // from_code belongs to runs a code session opens; a SubmitFlow that sets
  // it gets an ordinary flow-file run, its command run as usual.
  StartDaemon();
  auto stub = v1::FlowService::NewStub(
      grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  v1::SubmitFlowRequest request;
  request.set_workspace(ws_);
  request.set_from_code(true);
  request.mutable_spec()->set_name("fromcode");
  v1::TaskSpec* task = request.mutable_spec()->add_tasks();
  task->set_name("hello");
  task->add_run("echo");
  task->add_run("hi");
  task->set_on("out/hello.txt");
  grpc::ClientContext ctx;
  v1::SubmitFlowResponse response;
  grpc::Status status = stub->SubmitFlow(&ctx, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  CommandResult watch = Ctl({"watch", std::to_string(response.run_id()), "--plain"});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_EQ(ReadFileOrDie(ws_ + "/out/hello.txt"), "hi\n");
}

TEST_F(HostileTest, WatchersPastTheLimitAreRefused) {
  StartDaemon({"--max-watchers", "2"});
  auto stub = v1::FlowService::NewStub(grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::Event>>> streams;
  auto open = [&]() {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub->Watch(contexts.back().get(), v1::WatchRequest()));
    v1::Event first;
    return streams.back()->Read(&first);
  };
  ASSERT_TRUE(open());
  ASSERT_TRUE(open());
  EXPECT_FALSE(open());
  grpc::Status refused = streams.back()->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.error_message(), "2 watchers are open; at most 2 are allowed (asflowd --max-watchers)");
  streams.pop_back();
  contexts.pop_back();
  contexts[0]->TryCancel();
  (void)streams[0]->Finish();
  EXPECT_TRUE(WaitFor([&] { return open(); }, 5s));
  for (size_t i = 1; i < contexts.size(); ++i) contexts[i]->TryCancel();
  for (size_t i = 1; i < streams.size(); ++i) (void)streams[i]->Finish();
}

}  // namespace
}  // namespace asflow::testing
