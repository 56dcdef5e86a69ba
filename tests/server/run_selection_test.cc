// ApplySelection (through BuildRun): --force marks, --only holds what the
// named tasks depend on and leaves out the rest; imported tasks keep their
// own task definition key.
#include "server/run_selection.h"

#include <string>

#include "gtest/gtest.h"
#include "server/run_state.h"

namespace asflow {
namespace {

// a -> b (lines_of) -> c (needs); d on its own; playlist.p imported, needed by a.
v1::SubmitFlowRequest Request() {
  v1::SubmitFlowRequest request;
  v1::FlowSpec& spec = *request.mutable_spec();
  spec.set_name("f");
  auto add = [&](const std::string& name) {
    v1::TaskSpec* t = spec.add_tasks();
    t->set_name(name);
    t->add_run("true");
    return t;
  };
  v1::TaskSpec* p = add("playlist.p");
  p->set_flow("playlist");
  p->set_on("p.txt");
  add("a")->set_on("a.txt");
  spec.mutable_tasks(1)->add_needs("playlist.p");
  v1::TaskSpec* b = add("b");
  b->mutable_for_each()->set_lines_of("a");
  (*b->mutable_for_each()->mutable_bind())["x"] = "";  // `as: x`: the whole line
  b->set_on("b/{x}.txt");
  add("c")->add_needs("b");
  add("d");
  request.set_workspace("/ws");
  return request;
}

TEST(RunSelectionTest, ImportedTaskKeepsItsOwnDefinitionKey) {
  auto run = BuildRun(Request(), 4);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ((*run)->tasks[0].key, "playlist.p");
  EXPECT_EQ((*run)->tasks[1].key, "f.a");
}

TEST(RunSelectionTest, ForceMarksOnlyTheNamedTasks) {
  v1::SubmitFlowRequest request = Request();
  request.add_force("a,playlist.p");
  auto run = BuildRun(request, 4);
  ASSERT_TRUE(run.ok()) << run.status();
  std::string forced;
  for (const TaskRt& t : (*run)->tasks) forced += t.force ? "1" : "0";
  EXPECT_EQ(forced, "11000");
  for (const TaskRt& t : (*run)->tasks) EXPECT_FALSE(t.held || t.excluded);
}

TEST(RunSelectionTest, OnlyHoldsUpstreamAndExcludesTheRest) {
  v1::SubmitFlowRequest request = Request();
  request.add_only("b");
  auto run = BuildRun(request, 4);
  ASSERT_TRUE(run.ok()) << run.status();
  const auto& tasks = (*run)->tasks;
  // playlist.p and a are upstream of b: held; c (downstream) and d: out.
  std::string state;
  for (const TaskRt& t : tasks) state += t.excluded ? "x" : t.held ? "h" : "r";
  EXPECT_EQ(state, "hhrxx");
  EXPECT_TRUE(tasks[3].settled && tasks[3].expanded && tasks[3].counters.expanded());
  EXPECT_FALSE(tasks[2].settled);
  EXPECT_EQ(HeldReason(**run, 1),
            "not run: its output is missing and --only b does not run a (run without --only, or add it)");
}

TEST(RunSelectionTest, UnknownNameIsRefusedWithTheTaskList) {
  v1::SubmitFlowRequest request = Request();
  request.add_only("a");
  request.add_force("zz");
  auto run = BuildRun(request, 4);
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().message(), "force[0]: unknown task 'zz' (tasks: playlist.p, a, b, c, d)");
}

}  // namespace
}  // namespace asflow
