#include "client/progress_view.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/terminal.h"
#include "google/protobuf/text_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace asflow {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr int64_t kT0 = 1'700'000'000'000;  // the run's created_ms

absl::Time At(int64_t offset_ms) { return absl::FromUnixMillis(kT0 + offset_ms); }

// An event from text format; `time_ms` is an offset from kT0.
v1::Event Ev(int64_t seq, int64_t time_ms, const std::string& body) {
  v1::Event event;
  if (!google::protobuf::TextFormat::ParseFromString(body, &event)) ADD_FAILURE() << "bad event: " << body;
  event.set_seq(seq);
  event.set_time_ms(kT0 + time_ms);
  return event;
}

// Run 7 of flow "demo" 30 s in: fetch (10 instances, 3 running, 4 done,
// 1 cached) and parse (4 known so far, 1 done).
v1::Event BaseSnapshot() {
  return Ev(10, 30'000, absl::StrCat(R"pb(
    snapshot {
      runs {
        id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb", kT0, R"pb(
        tasks { task: "fetch" total: 10 queued: 2 running: 3 done: 4 cached: 1 expanded: true }
        tasks { task: "parse" total: 4 done: 1 }
      }
      running { run_id: 7 seq: 3 task: "fetch" params { key: "page" value: "1" } state: RUNNING
                started_ms: )pb", kT0 + 20'000, R"pb( bytes: 1234567 lines: 3401 }
      running { run_id: 7 seq: 4 task: "fetch" params { key: "page" value: "2" } state: RUNNING
                started_ms: )pb", kT0 + 25'000, R"pb( }
      running { run_id: 7 seq: 5 task: "fetch" params { key: "page" value: "3" } state: RUNNING
                started_ms: )pb", kT0 + 28'000, R"pb( bytes: 999 lines: 7 }
    })pb"));
}

// Base snapshot, then fetch(page=2) and parse(file=a.txt) finish and
// fetch(page=4) starts.
ProgressView BaseView(ProgressViewOptions options = {}) {
  ProgressView view(7, options);
  view.Apply(BaseSnapshot());
  view.Apply(Ev(11, 36'000, absl::StrCat(R"pb(
    instance {
      kind: FINISHED
      instance { run_id: 7 seq: 4 task: "fetch" params { key: "page" value: "2" } state: DONE
                 started_ms: )pb", kT0 + 25'000, " finished_ms: ", kT0 + 36'000, R"pb( lines: 50 }
      counters { task: "fetch" total: 10 queued: 2 running: 2 done: 5 cached: 1 expanded: true }
    })pb")));
  view.Apply(Ev(12, 40'000, absl::StrCat(R"pb(
    instance {
      kind: FINISHED
      instance { run_id: 7 seq: 20 task: "parse" params { key: "file" value: "a.txt" } state: DONE
                 started_ms: )pb", kT0 + 39'000, " finished_ms: ", kT0 + 40'000, R"pb( lines: 9 }
      counters { task: "parse" total: 4 done: 2 }
    })pb")));
  view.Apply(Ev(13, 41'000, absl::StrCat(R"pb(
    instance {
      kind: STARTED
      instance { run_id: 7 seq: 6 task: "fetch" params { key: "page" value: "4" } state: RUNNING
                 started_ms: )pb", kT0 + 41'000, R"pb( }
      counters { task: "fetch" total: 10 queued: 1 running: 3 done: 5 cached: 1 expanded: true }
    })pb")));
  return view;
}

v1::Event Finished(int64_t seq, int64_t time_ms, const std::string& task, int page, const std::string& counters) {
  return Ev(seq, time_ms, absl::StrCat(R"pb(instance { kind: FINISHED instance { run_id: 7 seq: )pb", 100 + page,
                                       R"pb( task: ")pb", task, R"pb(" params { key: "page" value: ")pb", page,
                                       R"pb(" } state: DONE } counters { )pb", counters, " } }"));
}

int MaxWidth(const std::vector<std::string>& lines) {
  int max = 0;
  for (const std::string& line : lines) max = std::max(max, DisplayWidth(line));
  return max;
}

TEST(ProgressViewTest, WaitsBeforeAnyEvent) {
  ProgressView view(7);
  EXPECT_THAT(view.Render(At(0), 100), ElementsAre("waiting for run 7…"));
  EXPECT_TRUE(view.Summary().empty());
  EXPECT_FALSE(view.finished());
}

TEST(ProgressViewTest, RendersAtWidth100) {
  ProgressView view = BaseView();
  EXPECT_EQ(view.last_seq(), 13);
  EXPECT_THAT(view.Render(At(42'000), 100),
              ElementsAre("demo  run 7  running  0:42  ███████████░░░░░░░░░  57%  8/14+",
                          "  fetch  ████████████░░░░░░░░   60%  6/10  0.1/s  ETA 0:40  1 cached",
                          "  parse  ██████████░░░░░░░░░░   50%  2/4+  0.1/s  ETA --",
                          "    fetch(page=1)  1.2 MB  3401 lines  22.0s",
                          "    fetch(page=3)   999 B     7 lines  14.0s",
                          "    fetch(page=4)     0 B     0 lines   1.0s",
                          "  done       parse(file=a.txt)  1.0s  9 lines",
                          "  done       fetch(page=2)  11.0s  50 lines"));
}

TEST(ProgressViewTest, RendersAtWidth50WithoutRateAndIoColumns) {
  ProgressView view = BaseView();
  std::vector<std::string> lines = view.Render(At(42'000), 50);
  EXPECT_THAT(lines, ElementsAre("demo  run 7  running  0:42  █████░░░░░  57%  8/14+",
                                 "  fetch  ███████████░░░░░░░░   60%  6/10  1 cached",
                                 "  parse  █████████░░░░░░░░░░   50%  2/4+",
                                 "    fetch(page=1)  22.0s",
                                 "    fetch(page=3)  14.0s",
                                 "    fetch(page=4)   1.0s",
                                 "  done       parse(file=a.txt)  1.0s  9 lines",
                                 "  done       fetch(page=2)  11.0s  50 lines"));
  EXPECT_LE(MaxWidth(lines), 50);
}

TEST(ProgressViewTest, RendersAtWidth30WithinWidth) {
  ProgressView view = BaseView();
  std::vector<std::string> lines = view.Render(At(42'000), 30);
  EXPECT_THAT(lines, ElementsAre("demo  run 7  running  0:42  5…",
                                 "  fetch   60%  6/10  1 cached",
                                 "  parse   50%  2/4+",
                                 "    fetch(page=1)  22.0s",
                                 "    fetch(page=3)  14.0s",
                                 "    fetch(page=4)   1.0s",
                                 "  done       parse(file=a.txt…",
                                 "  done       fetch(page=2)  1…"));
  EXPECT_EQ(MaxWidth(lines), 30);
}

TEST(ProgressViewTest, NoLineExceedsAnyWidth) {
  ProgressViewOptions options;
  options.max_running = 2;
  ProgressView view = BaseView(options);
  for (int width = 1; width <= 120; ++width) {
    std::vector<std::string> lines = view.Render(At(42'000), width);
    EXPECT_LE(MaxWidth(lines), width) << "width " << width;
    EXPECT_EQ(lines.size(), 8u) << "width " << width;
  }
}

TEST(ProgressViewTest, TruncatesLongLabelsWithEllipsis) {
  ProgressView view(7);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(
    snapshot {
      runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb", kT0, R"pb(
             tasks { task: "download_everything_from_the_archive" total: 1 running: 1 expanded: true } }
      running { run_id: 7 seq: 1 task: "download_everything_from_the_archive"
                params { key: "url" value: "https://example.org/a/very/long/path/to/a/file.tar.gz" }
                started_ms: )pb", kT0, R"pb( }
    })pb")));
  EXPECT_THAT(view.Render(At(3'000), 60),
              ElementsAre("demo  run 7  running  0:03  ░░░░░░░░░░░░░░░░  0%  0/1",
                          "  download_every…  ░░░░░░░░░░░░░░░░    0%  0/1  --/s  ETA --",
                          "    download_everything_from_the_archiv…  0 B  0 lines  3.0s"));
}

// Issue 12, defect 6: control characters and escape sequences from
// parameter values and error text reached the terminal raw.
TEST(ProgressViewTest, ControlCharactersFromValuesAndErrorsAreShownEscaped) {
  ProgressView view(7);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(
    snapshot {
      runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb", kT0, R"pb(
             tasks { task: "t" total: 2 running: 1 failed: 1 expanded: true } }
      running { run_id: 7 seq: 1 task: "t" params { key: "v" value: "x\033[2Jy" } started_ms: )pb", kT0, R"pb( }
    })pb")));
  view.Apply(Ev(2, 1'000, absl::StrCat(R"pb(
    instance {
      kind: FINISHED
      instance { run_id: 7 seq: 2 task: "t" params { key: "v" value: "\033]0;pwned\007" } state: FAILED
                 error: "exit 1: \033[31mred\r" started_ms: )pb", kT0, " finished_ms: ", kT0 + 1'000, R"pb( }
      counters { task: "t" total: 2 running: 1 failed: 1 expanded: true }
    })pb")));
  std::vector<std::string> lines = view.Render(At(2'000), 100);
  EXPECT_THAT(lines, ::testing::Contains("    t(v=x\\x1b[2Jy)  0 B  0 lines  2.0s"));
  EXPECT_THAT(lines, ::testing::Contains("  failed     t(v=\\x1b]0;pwned\\x07)  exit 1: \\x1b[31mred\\r"));
  for (const std::string& line : lines) {
    for (char c : line) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << line;
  }
}

// Issue 12, defect 6: an instance another run's different command made
// was shown as this run's own work.
TEST(ProgressViewTest, AnInstanceMadeByAnotherRunsCommandSaysWhichRun) {
  ProgressView view(7);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(
    snapshot {
      runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb", kT0, R"pb(
             tasks { task: "t" total: 2 running: 1 expanded: true } }
    })pb")));
  view.Apply(Ev(2, 1'000, absl::StrCat(R"pb(
    instance {
      kind: FINISHED
      instance { run_id: 7 seq: 0 task: "t" params { key: "id" value: "a" } state: CACHED made_by_run: 12
                 output: "out/a.txt" started_ms: )pb", kT0, " finished_ms: ", kT0 + 1'000, R"pb( }
      counters { task: "t" total: 2 running: 1 cached: 1 expanded: true }
    })pb")));
  EXPECT_THAT(view.Render(At(2'000), 100), ::testing::Contains("  cached     t(id=a)  by run 12 (another command)"));
}

TEST(ProgressViewTest, PlainUsesAscii) {
  ProgressViewOptions options;
  options.plain = true;
  options.max_running = 1;
  ProgressView view = BaseView(options);
  EXPECT_THAT(view.Render(At(42'000), 100),
              ElementsAre("demo  run 7  running  0:42  ###########.........  57%  8/14+",
                          "  fetch  ############........   60%  6/10  0.1/s  ETA 0:40  1 cached",
                          "  parse  ##########..........   50%  2/4+  0.1/s  ETA --",
                          "    fetch(page=1)  1.2 MB  3401 lines  22.0s",
                          "    ... and 2 more running",
                          "  done       parse(file=a.txt)  1.0s  9 lines",
                          "  done       fetch(page=2)  11.0s  50 lines"));
  EXPECT_EQ(view.Render(At(42'000), 20)[0], "demo  run 7  runn...");
}

TEST(ProgressViewTest, RateAndEtaFromFinishedEventsInWindow) {
  ProgressViewOptions options;
  options.max_finished = 0;
  ProgressView view(7, options);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(snapshot { runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb",
                                   kT0, R"pb( tasks { task: "fetch" total: 100 expanded: true } } })pb")));
  // Four finish in the first 2 s: the window is the 2 s since the run began.
  for (int i = 1; i <= 4; ++i) {
    view.Apply(Finished(1 + i, i * 500, "fetch", i,
                        absl::StrCat(R"pb(task: "fetch" total: 100 expanded: true done: )pb", i)));
  }
  EXPECT_THAT(view.Render(At(2'000), 100),
              ElementsAre("demo  run 7  running  0:02  ░░░░░░░░░░░░░░░░░░░░  4%  4/100",
                          "  fetch  ░░░░░░░░░░░░░░░░░░░░    4%  4/100  2.0/s  ETA 0:48"));
  // 12 s in, the last 10 s hold only the finishes at 2.0 s... none: 0.5-2.0 s
  // all fall out of (2 s, 12 s].
  EXPECT_THAT(view.Render(At(12'000), 100)[1],
              "  fetch  ░░░░░░░░░░░░░░░░░░░░    4%  4/100  --/s  ETA --");
  // Twenty more finish between 12 s and 14 s: 20 in a 10 s window.
  for (int i = 5; i <= 24; ++i) {
    view.Apply(Finished(1 + i, 12'000 + (i - 4) * 100, "fetch", i,
                        absl::StrCat(R"pb(task: "fetch" total: 100 expanded: true done: )pb", i)));
  }
  EXPECT_THAT(view.Render(At(14'000), 100)[1],
              "  fetch  ████░░░░░░░░░░░░░░░░   24%  24/100  2.0/s  ETA 0:38");
  EXPECT_THAT(view.Render(At(14'500), 100)[1],
              "  fetch  ████░░░░░░░░░░░░░░░░   24%  24/100  2.0/s  ETA 0:38");
  // Fast rates drop the decimal.
  for (int i = 25; i <= 124; ++i) {
    view.Apply(Finished(1 + i, 14'600, "fetch", i, R"pb(task: "fetch" total: 200 expanded: true done: 124)pb"));
  }
  EXPECT_THAT(view.Render(At(15'000), 100)[1],
              "  fetch  ████████████░░░░░░░░   62%  124/200  12/s  ETA 0:07");
}

TEST(ProgressViewTest, SnapshotWithGapReplacesState) {
  ProgressView view = BaseView();
  view.Apply(Ev(90, 60'000, absl::StrCat(R"pb(
    snapshot {
      gap: true
      runs {
        id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb", kT0, R"pb(
        tasks { task: "fetch" total: 10 running: 1 done: 9 expanded: true }
        tasks { task: "parse" total: 12 queued: 3 done: 9 expanded: true }
      }
      runs { id: 8 flow: "other" state: RUN_RUNNING }
      running { run_id: 7 seq: 9 task: "fetch" params { key: "page" value: "10" }
                started_ms: )pb", kT0 + 55'000, R"pb( }
      running { run_id: 8 seq: 1 task: "x" started_ms: )pb", kT0, R"pb( }
    })pb")));
  EXPECT_EQ(view.last_seq(), 90);
  // Rates restart at the snapshot: finishes before it are gone.
  EXPECT_THAT(view.Render(At(61'000), 100),
              ElementsAre("demo  run 7  running  1:01  ████████████████░░░░  81%  18/22",
                          "  fetch  ██████████████████░░   90%  9/10  --/s  ETA --",
                          "  parse  ███████████████░░░░░   75%  9/12  --/s  ETA --",
                          "    fetch(page=10)  0 B  0 lines  6.0s",
                          "  parse: 3 queued, none running (waiting for a pool slot, limit or rate)",
                          "  done       parse(file=a.txt)  1.0s  9 lines",
                          "  done       fetch(page=2)  11.0s  50 lines"));
}

TEST(ProgressViewTest, RunningLongestFirstAndMoreLine) {
  ProgressViewOptions options;
  options.max_running = 2;
  options.max_finished = 0;
  ProgressView view(7, options);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(snapshot { runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb",
                                   kT0, R"pb( tasks { task: "t" total: 4 running: 4 expanded: true } } })pb")));
  const int64_t starts[] = {3'000, 1'000, 4'000, 2'000};
  for (int i = 0; i < 4; ++i) {
    view.Apply(Ev(2 + i, starts[i], absl::StrCat(R"pb(instance { kind: STARTED instance { run_id: 7 seq: )pb", i,
                                                 R"pb( task: "t" params { key: "i" value: ")pb", i,
                                                 R"pb(" } started_ms: )pb", kT0 + starts[i],
                                                 R"pb( } counters { task: "t" total: 4 running: 4 expanded: true } })pb")));
  }
  view.Apply(Ev(6, 5'000, R"pb(instance { kind: PROGRESS instance { run_id: 7 seq: 3 task: "t" bytes: 2500000 lines: 12 }
                             counters { task: "t" total: 4 running: 4 expanded: true } })pb"));
  EXPECT_THAT(view.Render(At(10'000), 80),
              ElementsAre("demo  run 7  running  0:10  ░░░░░░░░░░░░░░░░░░░░  0%  0/4",
                          "  t  ░░░░░░░░░░░░░░░░░░░░    0%  0/4  --/s  ETA --",
                          "    t(i=1)     0 B   0 lines  9.0s",
                          "    t(i=3)  2.5 MB  12 lines  8.0s",
                          "    … and 2 more running"));
}

TEST(ProgressViewTest, RetryNoteUntilRestarted) {
  ProgressViewOptions options;
  options.max_finished = 0;
  ProgressView view(7, options);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(snapshot { runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb",
                                   kT0, R"pb( tasks { task: "fetch" total: 2 running: 1 done: 1 expanded: true } } })pb")));
  view.Apply(Ev(2, 5'000, R"pb(instance { kind: QUEUED
                              instance { run_id: 7 seq: 1 task: "fetch" params { key: "page" value: "2" }
                                         attempts: 1 error: "HTTP 503\nretry-after: 2" }
                              counters { task: "fetch" total: 2 queued: 1 retrying: 1 done: 1 expanded: true } })pb"));
  EXPECT_THAT(view.Render(At(6'000), 100),
              ElementsAre("demo  run 7  running  0:06  ██████████░░░░░░░░░░  50%  1/2",
                          "  fetch  ██████████░░░░░░░░░░   50%  1/2  --/s  ETA --  1 retrying",
                          "  fetch: 1 waiting to retry",
                          "  retry fetch(page=2): HTTP 503"));
  view.Apply(Ev(3, 7'000, absl::StrCat(R"pb(instance { kind: STARTED
                              instance { run_id: 7 seq: 1 task: "fetch" params { key: "page" value: "2" }
                                         attempts: 2 started_ms: )pb", kT0 + 7'000, R"pb( }
                              counters { task: "fetch" total: 2 running: 1 done: 1 expanded: true } })pb")));
  EXPECT_THAT(view.Render(At(8'000), 100),
              ElementsAre("demo  run 7  running  0:08  ██████████░░░░░░░░░░  50%  1/2",
                          "  fetch  ██████████░░░░░░░░░░   50%  1/2  --/s  ETA --",
                          "    fetch(page=2)  0 B  0 lines  1.0s"));
}

TEST(ProgressViewTest, NotExpandedTaskShowsPlusAndNoEta) {
  ProgressView view(7);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(snapshot { runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb",
                                   kT0, R"pb( tasks { task: "list" total: 1 done: 1 expanded: true }
                                               tasks { task: "get" total: 12 running: 0 queued: 12 } } })pb")));
  EXPECT_THAT(view.Render(At(1'000), 100),
              ElementsAre("demo  run 7  running  0:01  █░░░░░░░░░░░░░░░░░░░  7%  1/13+",
                          "  list  ████████████████████  100%    1/1  --/s  ETA 0:00",
                          "  get   ░░░░░░░░░░░░░░░░░░░░    0%  0/12+  --/s  ETA --",
                          "  get: 12 queued, none running (waiting for a pool slot, limit or rate)"));
}

TEST(ProgressViewTest, SaysWhenNoWorkerServesTheTasksPool) {
  ProgressView view(7);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(snapshot { runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb",
                                   kT0, R"pb( tasks { task: "gpu" total: 4 queued: 4 expanded: true
                                                      waiting: "no worker connected to pool 'gpu'" } } })pb")));
  EXPECT_THAT(view.Render(At(1'000), 100),
              ElementsAre("demo  run 7  running  0:01  ░░░░░░░░░░░░░░░░░░░░  0%  0/4",
                          "  gpu  ░░░░░░░░░░░░░░░░░░░░    0%  0/4  --/s  ETA --",
                          "  gpu: 4 queued, none running: no worker connected to pool 'gpu'"));
}

TEST(ProgressViewTest, IgnoresOtherRuns) {
  ProgressView view(7);
  view.Apply(Ev(1, 0, R"pb(run { run { id: 8 flow: "other" state: RUN_FAILED } })pb"));
  view.Apply(Ev(2, 0, R"pb(instance { kind: STARTED instance { run_id: 8 seq: 1 task: "x" } })pb"));
  EXPECT_FALSE(view.run().has_value());
  EXPECT_EQ(view.last_seq(), 2);
}

// Issue 15 defect 6: the error was in the last frame and again in the
// summary printed under it.
TEST(ProgressViewTest, FinishedRunShowsFinalDurationAndLeavesTheErrorToTheSummary) {
  ProgressView view(7);
  view.Apply(Ev(5, 9'000, absl::StrCat(R"pb(run { run {
      id: 7 flow: "demo" state: RUN_FAILED created_ms: )pb", kT0, " finished_ms: ", kT0 + 125'000, R"pb(
      error: "fetch(page=3): exit status 1\nTraceback"
      tasks { task: "fetch" total: 3 done: 2 failed: 1 queued: 0 expanded: true } } })pb")));
  view.Apply(Ev(6, 9'500, R"pb(instance { kind: STARTED instance { run_id: 7 seq: 1 task: "fetch" } })pb"));  // stale
  EXPECT_TRUE(view.finished());
  EXPECT_THAT(view.Render(At(500'000), 100),
              ElementsAre("demo  run 7  failed  2:05  ████████████████████  100%  3/3",
                          "  fetch  ████████████████████  100%  3/3  --/s  ETA 0:00  1 failed"));
  EXPECT_THAT(view.Summary().back(), "error: fetch(page=3): exit status 1");
}

// Issue 15 defect 6: a cancelled run showed a full 100% bar.
TEST(ProgressViewTest, CancelledRunShowsWhatWasDoneNotAFullBar) {
  ProgressView view(7);
  view.Apply(Ev(5, 9'000, absl::StrCat(R"pb(run { run {
      id: 7 flow: "demo" state: RUN_CANCELLED created_ms: )pb", kT0, " finished_ms: ", kT0 + 10'000, R"pb(
      error: "cancelled"
      tasks { task: "fetch" total: 10 done: 3 cancelled: 7 expanded: true } } })pb")));
  EXPECT_THAT(view.Render(At(500'000), 100),
              ElementsAre("demo  run 7  cancelled  0:10  ██████░░░░░░░░░░░░░░  30%  3/10",
                          "  fetch  ██████░░░░░░░░░░░░░░   30%  3/10  --/s  ETA --  7 cancelled"));
}

// Issue 15 defect 6: early ETAs ran ~40% high: the rate counted the time
// before the task's first start (its upstream task running) as idle.
TEST(ProgressViewTest, RateCountsFromTheTasksFirstStart) {
  ProgressViewOptions options;
  options.max_finished = 0;
  ProgressView view(7, options);
  view.Apply(Ev(1, 0, absl::StrCat(R"pb(snapshot { runs { id: 7 flow: "demo" state: RUN_RUNNING created_ms: )pb",
                                   kT0, R"pb( tasks { task: "fetch" total: 100 expanded: true } } })pb")));
  // The playlist took 8 s; fetch starts then, and 4 finish by 10 s.
  view.Apply(Ev(2, 8'000, R"pb(instance { kind: STARTED instance { run_id: 7 seq: 1 task: "fetch" }
                                  counters { task: "fetch" total: 100 running: 1 expanded: true } })pb"));
  for (int i = 1; i <= 4; ++i) {
    view.Apply(Finished(2 + i, 8'000 + i * 500, "fetch", i,
                        absl::StrCat(R"pb(task: "fetch" total: 100 expanded: true done: )pb", i)));
  }
  // 4 in the 2 s since the first start: 2/s, 96 left: 48 s (not 0.4/s
  // and 4 minutes, counting from the run's start).
  EXPECT_THAT(view.Render(At(10'000), 100)[1], "  fetch  ░░░░░░░░░░░░░░░░░░░░    4%  4/100  2.0/s  ETA 0:48");
}

TEST(ProgressViewTest, SummaryOfSucceededRun) {
  ProgressView view = BaseView();
  view.Apply(Ev(20, 50'000, absl::StrCat(R"pb(run { run {
      id: 7 flow: "demo" state: RUN_SUCCEEDED created_ms: )pb", kT0, " finished_ms: ", kT0 + 50'000, R"pb(
      tasks { task: "fetch" total: 10 done: 7 cached: 1 skipped: 2 expanded: true }
      tasks { task: "parse" total: 1234 done: 1234 expanded: true } } })pb")));
  EXPECT_THAT(view.Summary(),
              ElementsAre("run 7 succeeded in 50.0s (flow demo)",
                          "  task   total  done  cached  skipped  suppressed  failed  cancelled",
                          "  fetch     10     7       1        2           0       0          0",
                          "  parse   1234  1234       0        0           0       0          0"));
}

TEST(ProgressViewTest, SummaryOfFailedRun) {
  ProgressView view(7);
  view.Apply(Ev(5, 9'000, absl::StrCat(R"pb(run { run {
      id: 7 flow: "demo" state: RUN_FAILED created_ms: )pb", kT0, " finished_ms: ", kT0 + 125'000, R"pb(
      error: "fetch(page=3): exit status 1\nTraceback"
      tasks { task: "fetch" total: 3 done: 1 failed: 1 suppressed: 1 expanded: true }
      tasks { task: "a_long_task_name" total: 5 cancelled: 5 expanded: true } } })pb")));
  EXPECT_THAT(view.Summary(),
              ElementsAre("run 7 failed in 2m05s (flow demo)",
                          "  task              total  done  cached  skipped  suppressed  failed  cancelled",
                          "  fetch                 3     1       0        0           1       1          0",
                          "  a_long_task_name      5     0       0        0           0       0          5",
                          "error: fetch(page=3): exit status 1"));
}

TEST(ProgressViewTest, FormatsBytesClockAndWidth) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(999), "999 B");
  EXPECT_EQ(FormatBytes(1'000), "1.0 kB");
  EXPECT_EQ(FormatBytes(1'234'567), "1.2 MB");
  EXPECT_EQ(FormatBytes(999'999), "1.0 MB");
  EXPECT_EQ(FormatBytes(5'000'000'000), "5.0 GB");
  EXPECT_EQ(FormatClock(42), "0:42");
  EXPECT_EQ(FormatClock(725), "12:05");
  EXPECT_EQ(FormatClock(3723), "1:02:03");
  EXPECT_EQ(DisplayWidth("a█░…"), 4);
}

// Captures what a TTY would receive.
class FakeTerminal : public Terminal {
 public:
  void Write(const std::string& bytes) override { writes.push_back(bytes); }
  int Width() override { return width; }
  int Height() override { return height; }

  std::vector<std::string> writes;
  int width = 80;
  int height = 0;
};

class TerminalRendererTest : public ::testing::Test {
 protected:
  TerminalRendererTest()
      : renderer_(&terminal_, [this](absl::Time now, int width) {
          widths_.push_back(width);
          return frame_;
        }) {}

  FakeTerminal terminal_;
  std::vector<std::string> frame_;
  std::vector<int> widths_;
  TerminalRenderer renderer_;
};

TEST_F(TerminalRendererTest, FirstFrameHidesCursorAndWritesEveryLine) {
  frame_ = {"a", "b"};
  renderer_.Draw(At(0));
  EXPECT_THAT(terminal_.writes, ElementsAre("\x1b[?25la\x1b[K\nb\x1b[K\n"));
  EXPECT_THAT(widths_, ElementsAre(79));
}

TEST_F(TerminalRendererTest, SecondFrameRewritesOnlyChangedLines) {
  frame_ = {"head 1", "same", "same too", "tail 1"};
  renderer_.Draw(At(0));
  frame_ = {"head 2", "same", "same too", "tail 2", "new"};
  renderer_.Draw(At(1'000));
  ASSERT_EQ(terminal_.writes.size(), 2u);
  EXPECT_EQ(terminal_.writes[1], "\x1b[4Ahead 2\x1b[K\n\x1b[2Btail 2\x1b[K\nnew\x1b[K\n");
  // Trailing unchanged lines: step over them to below the frame.
  frame_ = {"head 3", "same", "same too", "tail 2", "new"};
  renderer_.Draw(At(2'000));
  EXPECT_EQ(terminal_.writes[2], "\x1b[5Ahead 3\x1b[K\n\x1b[4B");
}

TEST_F(TerminalRendererTest, ShorterFrameErasesLeftovers) {
  frame_ = {"a", "b", "c"};
  renderer_.Draw(At(0));
  frame_ = {"a"};
  renderer_.Draw(At(1'000));
  EXPECT_EQ(terminal_.writes[1], "\x1b[3A\x1b[1B\x1b[J");
  frame_ = {};
  renderer_.Draw(At(2'000));
  EXPECT_EQ(terminal_.writes[2], "\x1b[1A\x1b[J");
}

TEST_F(TerminalRendererTest, UnchangedFrameWritesNothing) {
  frame_ = {"a", "b"};
  renderer_.Draw(At(0));
  renderer_.Draw(At(1'000));
  EXPECT_EQ(terminal_.writes.size(), 1u);
}

TEST_F(TerminalRendererTest, RedrawsAtMostEvery100Ms) {
  frame_ = {"1"};
  EXPECT_TRUE(renderer_.MaybeDraw(At(0)));
  frame_ = {"2"};
  EXPECT_FALSE(renderer_.MaybeDraw(At(50)));
  EXPECT_FALSE(renderer_.MaybeDraw(At(99)));
  EXPECT_TRUE(renderer_.MaybeDraw(At(100)));
  frame_ = {"3"};
  EXPECT_FALSE(renderer_.MaybeDraw(At(150)));
  renderer_.Draw(At(160));  // the final frame is never held back
  EXPECT_THAT(terminal_.writes, ElementsAre("\x1b[?25l1\x1b[K\n", "\x1b[1A2\x1b[K\n", "\x1b[1A3\x1b[K\n"));
}

TEST_F(TerminalRendererTest, ClearErasesFrameAndNextDrawRepaints) {
  frame_ = {"a", "b"};
  renderer_.Draw(At(0));
  renderer_.Clear();
  renderer_.Draw(At(1'000));
  EXPECT_THAT(terminal_.writes, ElementsAre("\x1b[?25la\x1b[K\nb\x1b[K\n", "\x1b[2A\x1b[J", "a\x1b[K\nb\x1b[K\n"));
}

TEST_F(TerminalRendererTest, CloseShowsCursorOnce) {
  frame_ = {"a"};
  renderer_.Draw(At(0));
  renderer_.Close();
  renderer_.Close();
  EXPECT_THAT(terminal_.writes, ElementsAre("\x1b[?25la\x1b[K\n", "\x1b[?25h"));
}

TEST_F(TerminalRendererTest, WidthChangeRepaintsEverything) {
  frame_ = {"a", "b"};
  renderer_.Draw(At(0));
  terminal_.width = 40;
  renderer_.Draw(At(1'000));
  EXPECT_EQ(terminal_.writes[1], "\x1b[2A\x1b[Ja\x1b[K\nb\x1b[K\n");
  EXPECT_THAT(widths_, ElementsAre(79, 39));
}

TEST_F(TerminalRendererTest, ClipsFrameToTerminalHeight) {
  terminal_.height = 3;
  frame_ = {"a", "b", "c", "d"};
  renderer_.Draw(At(0));
  EXPECT_THAT(terminal_.writes, ElementsAre("\x1b[?25la\x1b[K\nb\x1b[K\n"));
}

TEST(TerminalRendererDestructorTest, RestoresCursor) {
  FakeTerminal terminal;
  {
    TerminalRenderer renderer(&terminal, [](absl::Time, int) { return std::vector<std::string>{"x"}; });
    renderer.Draw(At(0));
  }
  EXPECT_THAT(terminal.writes, ElementsAre("\x1b[?25lx\x1b[K\n", "\x1b[?25h"));
}

}  // namespace
}  // namespace asflow
