#include "common/spec_parser.h"

#include <unistd.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/spec_validator.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

std::string DataPath(const std::string& name) {
  return std::string(ASFLOW_TEST_DATA_DIR) + "/spec/" + name;
}

// Parses a file under testdata/spec/ with its bare name as the source name,
// so messages are stable wherever the tree lives.
absl::StatusOr<ParsedFlow> ParseData(const std::string& name) {
  return ParseFlowText(ReadFileOrDie(DataPath(name)), name,
                       SpecFormatForPath(name));
}

absl::StatusOr<ParsedFlow> ParseYaml(const std::string& text) {
  return ParseFlowText(text, "flow.yaml", SpecFormat::kYaml);
}

// The error text of a parse that must fail with InvalidArgument.
std::string YamlError(const std::string& text) {
  absl::StatusOr<ParsedFlow> parsed = ParseYaml(text);
  EXPECT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

// A valid one-task flow with `task_lines` (indented 4) appended to its task.
std::string OneTask(const std::string& task_lines) {
  return "name: demo\n"
         "params: {channel: x}\n"
         "tasks:\n"
         "  - name: t\n" +
         task_lines;
}

// ---------------------------------------------------------------- parsing

TEST(SpecParserTest, ParsesDemoFieldByField) {
  absl::StatusOr<ParsedFlow> parsed = ParseData("good_demo.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const v1::FlowSpec& spec = parsed->spec;
  EXPECT_EQ(spec.name(), "transcripts");
  EXPECT_THAT(spec.params(),
              UnorderedElementsAre(
                  Pair("channel", "https://www.youtube.com/@MrBeast")));
  ASSERT_EQ(spec.tasks_size(), 3);

  const v1::TaskSpec& playlist = spec.tasks(0);
  EXPECT_EQ(playlist.name(), "playlist");
  EXPECT_EQ(playlist.on(), "data/playlist.jsonl.zst");  // `on:` is a key
  EXPECT_THAT(playlist.run(), ElementsAre("yt-dlp", "--dump-json",
                                          "--flat-playlist", "{channel}"));
  EXPECT_FALSE(playlist.has_for_each());

  const v1::TaskSpec& extract = spec.tasks(1);
  EXPECT_EQ(extract.name(), "extract");
  ASSERT_TRUE(extract.has_for_each());
  EXPECT_EQ(extract.for_each().lines_of(), "playlist");
  EXPECT_THAT(extract.for_each().bind(),
              UnorderedElementsAre(Pair("video_id", "id")));
  EXPECT_EQ(extract.on(), "data/transcripts/{video_id}.jsonl.zst");
  EXPECT_THAT(extract.run(),
              ElementsAre("python3", "scripts/transcript.py", "{video_id}"));
  EXPECT_EQ(extract.limit(), 4);
  EXPECT_EQ(extract.rate(), "2/s");
  EXPECT_EQ(extract.timeout().seconds(), 120);
  EXPECT_EQ(extract.timeout().nanos(), 0);
  EXPECT_EQ(extract.retry().attempts(), 1);
  EXPECT_EQ(extract.retry().backoff().seconds(), 2);
  EXPECT_EQ(extract.retry().jitter().seconds(), 1);
  EXPECT_THAT(extract.retry().exit_codes(), ElementsAre(75));
  EXPECT_EQ(extract.skip().stderr(), "ParseError");
  EXPECT_THAT(extract.suppress().exit_codes(), ElementsAre(3));
  EXPECT_EQ(extract.suppress().stderr(), "TranscriptsDisabled");

  const v1::TaskSpec& langs = spec.tasks(2);
  EXPECT_THAT(langs.needs(), ElementsAre("extract"));  // scalar as a list
  EXPECT_THAT(langs.for_each().values(),
              ElementsAre("en", "42",
                          R"({"code":"fr","n":7,"ok":true,"q":"1","none":null})",
                          R"([1,"x"])"));
  EXPECT_THAT(langs.for_each().bind(), UnorderedElementsAre(Pair("lang", "")));
  EXPECT_EQ(langs.handler(), "count_words");
  EXPECT_TRUE(langs.run().empty());
  EXPECT_EQ(langs.pool(), "gpu.box-1");
}

TEST(SpecParserTest, RecordsSourcePositions) {
  absl::StatusOr<ParsedFlow> parsed = ParseData("good_demo.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const SourceMap& where = parsed->where;
  EXPECT_EQ(where.Locate("name"), "good_demo.yaml:2:1");
  EXPECT_EQ(where.Locate("params.channel"), "good_demo.yaml:4:3");
  EXPECT_EQ(where.Locate("tasks[0]"), "good_demo.yaml:6:5");
  EXPECT_EQ(where.Locate("tasks[0].run[3]"), "good_demo.yaml:8:49");
  EXPECT_EQ(where.Locate("tasks[1].for_each.as.video_id"),
            "good_demo.yaml:13:12");
  EXPECT_EQ(where.Locate("tasks[2].needs[0]"), "good_demo.yaml:24:12");
  EXPECT_EQ(where.Locate("tasks[2].for_each.as.lang"), "good_demo.yaml:27:11");
  // Unrecorded paths fall back to their nearest recorded ancestor.
  EXPECT_EQ(where.Locate("tasks[1].skip.signals"), "good_demo.yaml:20:5");
  EXPECT_EQ(where.Locate("nothing.here"), "good_demo.yaml");
}

TEST(SpecParserTest, ParseFlowFileReadsTheFile) {
  absl::StatusOr<ParsedFlow> parsed = ParseFlowFile(DataPath("good_demo.yaml"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->spec.tasks_size(), 3);
  EXPECT_EQ(parsed->where.source, DataPath("good_demo.yaml"));
}

TEST(SpecParserTest, ParseFlowFileErrorsNameTheFile) {
  absl::StatusOr<ParsedFlow> parsed =
      ParseFlowFile(DataPath("bad_unknown_param.yaml"));
  EXPECT_EQ(parsed.status(),
            absl::InvalidArgumentError(
                DataPath("bad_unknown_param.yaml") +
                ":10:5: tasks[1].on: unknown parameter 'vid' (known: "
                "channel, video_id)"));
}

TEST(SpecParserTest, MissingFileIsNotFound) {
  TempDir dir;
  absl::StatusOr<ParsedFlow> parsed = ParseFlowFile(dir.Join("nope.yaml"));
  EXPECT_EQ(parsed.status(),
            absl::NotFoundError(dir.Join("nope.yaml") +
                                ": No such file or directory"));
}

TEST(SpecParserTest, RejectsFilesOver4MiB) {
  TempDir dir;
  std::string big = "name: x\n# " + std::string(kMaxSpecBytes, 'a') + "\n";
  WriteFileOrDie(dir.Join("flow.yaml"), big);
  EXPECT_EQ(ParseFlowFile(dir.Join("flow.yaml")).status(),
            absl::InvalidArgumentError(dir.Join("flow.yaml") +
                                       ": larger than 4 MiB"));
  EXPECT_EQ(ParseFlowText(big, "flow.yaml", SpecFormat::kYaml).status(),
            absl::InvalidArgumentError("flow.yaml: larger than 4 MiB"));
}

TEST(SpecParserTest, FormatFromPath) {
  EXPECT_EQ(SpecFormatForPath("a/flow.yaml"), SpecFormat::kYaml);
  EXPECT_EQ(SpecFormatForPath("flow.yml"), SpecFormat::kYaml);
  EXPECT_EQ(SpecFormatForPath("flow"), SpecFormat::kYaml);
  EXPECT_EQ(SpecFormatForPath("flow.json"), SpecFormat::kJson);
  EXPECT_EQ(SpecFormatForPath("flow.textproto"), SpecFormat::kText);
  EXPECT_EQ(SpecFormatForPath("flow.txtpb"), SpecFormat::kText);
  EXPECT_EQ(SpecFormatForPath("flow.pbtxt"), SpecFormat::kText);
}

TEST(SpecParserTest, UnknownKeyListsKnownOnes) {
  EXPECT_EQ(ParseData("bad_unknown_key.yaml").status().message(),
            "bad_unknown_key.yaml:7:5: tasks[0].limt: unknown field 'limt' "
            "(expected one of: name, run, handler, on, needs, for_each, limit, "
            "rate, pool, timeout, retry, skip, suppress, compression_level, uses, cooldown)");
  EXPECT_EQ(YamlError("name: x\ntask: []\n"),
            "flow.yaml:2:1: task: unknown field 'task' (expected one of: "
            "name, params, tasks, imports, throttle)");
}

TEST(SpecParserTest, ProtoNameOfRenamedFieldIsUnknown) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n"
                              "    for_each: {values: [a], bind: x}\n")),
            "flow.yaml:6:29: tasks[0].for_each.bind: unknown field 'bind' "
            "(expected one of: lines_of, file, values, as)");
}

TEST(SpecParserTest, DurationsNeedUnits) {
  EXPECT_EQ(ParseData("bad_duration.yaml").status().message(),
            "bad_duration.yaml:5:5: tasks[0].timeout: '120' needs a unit, "
            "e.g. 120s\n"
            "bad_duration.yaml:6:26: tasks[0].retry.backoff: expected a "
            "duration like 120s, 2m or 500ms, got 'soon'");
}

TEST(SpecParserTest, ParsesDurationUnits) {
  absl::StatusOr<ParsedFlow> parsed = ParseYaml(
      OneTask("    run: [echo]\n"
              "    timeout: 2m\n"
              "    retry: {backoff: 500ms, jitter: 1.5s}\n"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const v1::TaskSpec& t = parsed->spec.tasks(0);
  EXPECT_EQ(t.timeout().seconds(), 120);
  EXPECT_EQ(t.retry().backoff().seconds(), 0);
  EXPECT_EQ(t.retry().backoff().nanos(), 500000000);
  EXPECT_EQ(t.retry().jitter().seconds(), 1);
  EXPECT_EQ(t.retry().jitter().nanos(), 500000000);
}

TEST(SpecParserTest, IntegerFieldsCheckTextAndRange) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    limit: abc\n")),
            "flow.yaml:6:5: tasks[0].limit: expected an integer, got 'abc'");
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    limit: 99999999999\n")),
            "flow.yaml:6:5: tasks[0].limit: '99999999999' is out of range");
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n"
                              "    skip: {exit_codes: [1, x]}\n")),
            "flow.yaml:6:28: tasks[0].skip.exit_codes[1]: expected an "
            "integer, got 'x'");
}

TEST(SpecParserTest, BoolFields) {
  absl::StatusOr<ParsedFlow> parsed =
      ParseYaml(OneTask("    run: [echo]\n    skip: {timeout: true}\n"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->spec.tasks(0).skip().timeout());
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    skip: {timeout: maybe}\n")),
            "flow.yaml:6:12: tasks[0].skip.timeout: expected true or false, "
            "got 'maybe'");
}

TEST(SpecParserTest, RunMustBeArgv) {
  EXPECT_EQ(YamlError(OneTask("    run: yt-dlp --dump-json\n")),
            "flow.yaml:5:5: tasks[0].run: expected a list of arguments (argv, "
            "never a shell), got 'yt-dlp --dump-json'; write run: [prog, arg, "
            "...]");
  absl::StatusOr<ParsedFlow> parsed = ParseYaml(OneTask("    run: date\n"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->spec.tasks(0).run(), ElementsAre("date"));
}

TEST(SpecParserTest, UnquotedTemplateInFlowListGetsAHint) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo, {channel}]\n")),
            "flow.yaml:5:17: tasks[0].run[1]: expected a single value, got a "
            "mapping (quote templates: \"{channel}\")");
}

TEST(SpecParserTest, WrongShapes) {
  EXPECT_EQ(YamlError("- a\n- b\n"),
            "flow.yaml:1:1: expected a mapping, got a list");
  EXPECT_EQ(YamlError("name: x\ntasks: {name: a}\n"),
            "flow.yaml:2:1: tasks: expected a list, got a mapping");
  EXPECT_EQ(YamlError("name: [x]\ntasks: []\n"),
            "flow.yaml:1:1: name: expected a single value, got a list");
  EXPECT_EQ(YamlError("name: x\nparams: {a: [1]}\n"),
            "flow.yaml:2:10: params.a: expected a single value, got a list");
  EXPECT_EQ(YamlError("name: x\nparams: [a]\n"),
            "flow.yaml:2:1: params: expected a mapping, got a list");
}

TEST(SpecParserTest, DuplicateKeys) {
  EXPECT_EQ(YamlError("name: x\nname: y\n"),
            "flow.yaml:2:1: name: duplicate key 'name'");
  EXPECT_EQ(YamlError("name: x\nparams: {a: 1, a: 2}\n"),
            "flow.yaml:2:16: params.a: duplicate key 'a'");
}

TEST(SpecParserTest, ParamValuesKeepScalarText) {
  absl::StatusOr<ParsedFlow> parsed = ParseYaml(
      "name: x\n"
      "params: {n: 007, f: 1.50, b: yes, q: \"{x}\", e: }\n"
      "tasks: [{name: t, run: [echo]}]\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->spec.params(),
              UnorderedElementsAre(Pair("n", "007"), Pair("f", "1.50"),
                                   Pair("b", "yes"), Pair("q", "{x}"),
                                   Pair("e", "")));
}

TEST(SpecParserTest, ValuesBecomeTextOrCompactJson) {
  absl::StatusOr<ParsedFlow> parsed = ParseYaml(OneTask(
      "    run: [echo, \"{v}\"]\n"
      "    for_each:\n"
      "      as: v\n"
      "      values:\n"
      "        - plain text\n"
      "        - \"quoted\"\n"
      "        - {a: [1.5, -2, 1e3, 0x1F, +1, 01, .5, \"3\"], b: {c: False}}\n"
      "        - {s: \"tab\\there \\\"q\\\"\", u: ~, k: 'true'}\n"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(
      parsed->spec.tasks(0).for_each().values(),
      ElementsAre("plain text", "quoted",
                  R"({"a":[1.5,-2,1e3,"0x1F","+1","01",".5","3"],"b":{"c":false}})",
                  R"({"s":"tab\there \"q\"","u":null,"k":"true"})"));
  EXPECT_EQ(YamlError(OneTask("    run: [echo, \"{v}\"]\n"
                              "    for_each: {as: v, values: [a, ~]}\n")),
            "flow.yaml:6:35: tasks[0].for_each.values[1]: expected a value, "
            "got null");
}

TEST(SpecParserTest, SyntaxErrorHasPosition) {
  EXPECT_EQ(ParseData("bad_syntax.yaml").status().message(),
            "bad_syntax.yaml:5:1: invalid YAML: end of sequence flow not found");
}

TEST(SpecParserTest, EmptyAndMultiDocumentFiles) {
  EXPECT_EQ(YamlError(""), "flow.yaml:1:1: empty flow file");
  EXPECT_EQ(YamlError("# only a comment\n"), "flow.yaml:1:1: empty flow file");
  EXPECT_EQ(YamlError("name: a\n---\nname: b\n"),
            "flow.yaml:3:1: more than one YAML document; a flow file holds one");
}

// yaml-cpp 0.7's LoadAll never returns on a document that stops at a ','
// outside a flow collection (it asks for the next document at the same
// token forever, allocating). fuzz_flow_file found it; the input is
// tests/fuzz/regressions/flow_file/yaml-cpp-hang. Each parse runs in a
// child with a 10 s watchdog, so the hang fails the test instead of
// holding it until ctest's timeout.
TEST(SpecParserTest, YamlCppLoadAllHangOnACommaOutsideAFlowCollection) {
  const std::string fuzzed = ReadFileOrDie(std::string(ASFLOW_TEST_DATA_DIR) +
                                           "/../fuzz/regressions/flow_file/yaml-cpp-hang")
                                 .substr(1);  // the fuzz target's format byte
  const std::string inputs[] = {",", "&x ,", "[a], b\n", "name: a\n---\n,\n", fuzzed};
  for (const std::string& text : inputs) {
    ASSERT_EXIT(
        {
          alarm(10);
          _exit(ParseYaml(text).ok() ? 1 : 0);
        },
        ::testing::ExitedWithCode(0), "")
        << text;
  }
  EXPECT_EQ(YamlError(","), "flow.yaml:1:1: invalid YAML: ',' outside a flow collection ([...] or {...})");
  EXPECT_EQ(YamlError("&x ,"), "flow.yaml:1:4: invalid YAML: ',' outside a flow collection ([...] or {...})");
  EXPECT_EQ(YamlError("[a], b\n"), "flow.yaml:1:4: invalid YAML: ',' outside a flow collection ([...] or {...})");
  EXPECT_EQ(YamlError("name: a\n---\n,\n"),
            "flow.yaml:3:1: invalid YAML: ',' outside a flow collection ([...] or {...})");
  EXPECT_EQ(YamlError(fuzzed), "flow.yaml:1:1: invalid YAML: ',' outside a flow collection ([...] or {...})");
  // Commas where YAML allows them are untouched.
  absl::StatusOr<ParsedFlow> ok = ParseYaml(OneTask("    run: [echo, 'a,b', \"c, d\"]\n"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(ok->spec.tasks(0).run(), ElementsAre("echo", "a,b", "c, d"));
}

TEST(SpecParserTest, AliasExpansionIsBounded) {
  // Seven levels of ten aliases each: 10^7 values from a few hundred bytes.
  std::string values = "[&a0 [a, a, a, a, a, a, a, a, a, a]";
  for (int i = 1; i <= 6; ++i) {
    absl::StrAppend(&values, ", &a", i, " [");
    for (int j = 0; j < 10; ++j) absl::StrAppend(&values, j ? ", " : "", "*a", i - 1);
    values += "]";
  }
  values += "]";
  std::string error = YamlError(
      OneTask("    run: [echo]\n    for_each: {as: v, values: " + values + "}\n"));
  EXPECT_THAT(error, HasSubstr(": more than 200000 YAML nodes (alias expansion?)"));
}

TEST(SpecParserTest, ParsesJson) {
  absl::StatusOr<ParsedFlow> json = ParseData("good_demo.json");
  ASSERT_TRUE(json.ok()) << json.status();
  absl::StatusOr<ParsedFlow> yaml = ParseData("good_demo.yaml");
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  EXPECT_EQ(json->spec.name(), yaml->spec.name());
  EXPECT_EQ(json->spec.params().at("channel"), yaml->spec.params().at("channel"));
  ASSERT_EQ(json->spec.tasks_size(), 2);
  EXPECT_EQ(json->spec.tasks(0).SerializeAsString(),
            yaml->spec.tasks(0).SerializeAsString());
  const v1::TaskSpec& extract = json->spec.tasks(1);
  EXPECT_EQ(extract.for_each().lines_of(), "playlist");
  EXPECT_THAT(extract.for_each().bind(),
              UnorderedElementsAre(Pair("video_id", "id")));
  EXPECT_EQ(extract.timeout().seconds(), 120);
  EXPECT_THAT(extract.retry().exit_codes(), ElementsAre(75));
  EXPECT_EQ(json->where.Locate("tasks[1].on"), "good_demo.json:9:6");
}

TEST(SpecParserTest, JsonValidationErrorsHavePositions) {
  absl::StatusOr<ParsedFlow> parsed = ParseFlowText(
      "{\"name\": \"x\",\n"
      " \"tasks\": [{\"name\": \"t\",\n"
      "            \"run\": [\"echo\", \"{nope}\"]}]}\n",
      "flow.json", SpecFormat::kJson);
  EXPECT_EQ(std::string(parsed.status().message()),
            "flow.json:3:29: tasks[0].run[1]: unknown parameter 'nope' "
            "(known: none)");
}

// Issue 15 defect 6: JSON flow files' errors had no line:col.
TEST(SpecParserTest, JsonSyntaxErrorNamesTheFileLineAndColumn) {
  absl::StatusOr<ParsedFlow> parsed =
      ParseFlowText("{\"name\": \"x\",\n \"tasks\": }", "flow.json", SpecFormat::kJson);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()),
              StartsWith("flow.json:2:11: invalid JSON: syntax error while parsing value - unexpected '}'"));
}

// nlohmann's json::parse throws out_of_range, not parse_error, on a number
// too large for a double; only parse_error was caught, so such a .json
// flow file aborted asflowctl (and the daemon, firing a schedule of it).
// fuzz_flow_file found it: tests/fuzz/regressions/flow_file/json-number-overflow.
TEST(SpecParserTest, JsonNumberTooLargeForADoubleIsAnErrorNotAnAbort) {
  absl::StatusOr<ParsedFlow> parsed =
      ParseFlowText("{\"name\": \"x\",\n \"tasks\": [1e999]}", "flow.json", SpecFormat::kJson);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parsed.status().message(), "flow.json:2:16: invalid JSON: number overflow parsing '1e999'");
}

TEST(SpecParserTest, JsonFieldErrorsHavePositions) {
  absl::StatusOr<ParsedFlow> parsed = ParseFlowText(
      "{\"name\": \"x\",\n"
      " \"tasks\": [{\"name\": \"t\", \"limt\": 2,\n"
      "            \"run\": [\"echo\"], \"limit\": \"many\"}]}\n",
      "flow.json", SpecFormat::kJson);
  EXPECT_THAT(std::string(parsed.status().message()),
              StartsWith("flow.json:2:26: tasks[0].limt: unknown field 'limt'"));
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("\nflow.json:3:30: tasks[0].limit: expected an integer, got 'many'"));
}

// Issue 15 defect 6: with several errors, those of form (unknown keys)
// hid those of meaning (unknown template parameters).
TEST(SpecParserTest, FormAndMeaningErrorsAreListedTogether) {
  absl::StatusOr<ParsedFlow> parsed = ParseYaml(
      "name: f\ntasks:\n  - name: t\n    limt: 2\n    run: [echo, \"{nope}\"]\n");
  EXPECT_EQ(std::string(parsed.status().message()),
            "flow.yaml:4:5: tasks[0].limt: unknown field 'limt' (expected one of: name, run, handler, on, needs, "
            "for_each, limit, rate, pool, timeout, retry, skip, suppress, compression_level, uses, cooldown)\n"
            "flow.yaml:5:17: tasks[0].run[1]: unknown parameter 'nope' (known: none)");
}

TEST(SpecParserTest, ParsesProtobufText) {
  absl::StatusOr<ParsedFlow> text = ParseData("good_demo.txtpb");
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<ParsedFlow> yaml = ParseData("good_demo.yaml");
  ASSERT_TRUE(yaml.ok());
  ASSERT_EQ(text->spec.tasks_size(), 2);
  EXPECT_EQ(text->spec.tasks(0).SerializeAsString(),
            yaml->spec.tasks(0).SerializeAsString());
  EXPECT_THAT(text->spec.tasks(1).for_each().bind(),
              UnorderedElementsAre(Pair("video_id", "id")));
  EXPECT_EQ(text->where.Locate("tasks[1].on"), "good_demo.txtpb:11:3");
  EXPECT_EQ(text->where.Locate("tasks[1].for_each.lines_of"),
            "good_demo.txtpb:10:14");
}

TEST(SpecParserTest, ProtobufTextErrors) {
  EXPECT_EQ(std::string(ParseFlowText("name: \"x\"\ntasks { limt: 4 }\n", "flow.txtpb",
                          SpecFormat::kText)
                .status()
                .message()),
            "flow.txtpb:2:13: Message type \"asflow.v1.TaskSpec\" has no field "
            "named \"limt\".");
  EXPECT_EQ(ParseFlowText("name: \"x\"\ntasks { name: \"t\" run: \"a {b\" }\n",
                          "flow.txtpb", SpecFormat::kText)
                .status()
                .message(),
            "flow.txtpb:2:19: tasks[0].run[0]: unclosed '{' at column 3 in "
            "\"a {b\"");
}

// ------------------------------------------------------------- validation

TEST(SpecValidatorTest, DemoIsValid) {
  absl::StatusOr<ParsedFlow> parsed = ParseData("good_demo.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(ValidateFlowSpec(parsed->spec).ok());
}

TEST(SpecValidatorTest, UnknownParameterListsKnownNames) {
  EXPECT_EQ(ParseData("bad_unknown_param.yaml").status().message(),
            "bad_unknown_param.yaml:10:5: tasks[1].on: unknown parameter "
            "'vid' (known: channel, video_id)");
}

TEST(SpecValidatorTest, WithoutSourceMapMessagesHaveNoLocation) {
  v1::FlowSpec spec;
  spec.set_name("x");
  v1::TaskSpec* t = spec.add_tasks();
  t->set_name("t");
  t->add_run("echo");
  t->add_run("{who}");
  EXPECT_EQ(ValidateFlowSpec(spec),
            absl::InvalidArgumentError(
                "tasks[0].run[1]: unknown parameter 'who' (known: none)"));
}

TEST(SpecValidatorTest, ExtraParamsAreKnown) {
  v1::FlowSpec spec;
  spec.set_name("x");
  v1::TaskSpec* t = spec.add_tasks();
  t->set_name("t");
  t->add_run("echo");
  t->add_run("{who}");
  std::vector<std::string> extra = {"who"};
  EXPECT_TRUE(ValidateFlowSpec(spec, nullptr, extra).ok());
}

TEST(SpecValidatorTest, CycleThroughNeedsAndLinesOf) {
  EXPECT_EQ(ParseData("bad_cycle.yaml").status().message(),
            "bad_cycle.yaml:5:13: tasks[0].needs[0]: dependency cycle: "
            "a -> c -> b -> a");
}

TEST(SpecValidatorTest, TwoTaskCycle) {
  EXPECT_EQ(YamlError("name: x\n"
                      "tasks:\n"
                      "  - {name: a, needs: b, run: [echo]}\n"
                      "  - {name: b, needs: a, run: [echo]}\n"),
            "flow.yaml:3:22: tasks[0].needs[0]: dependency cycle: a -> b -> a");
}

TEST(SpecValidatorTest, ReportsEveryProblem) {
  EXPECT_EQ(
      ParseData("bad_many.yaml").status().message(),
      "bad_many.yaml:1:1: name: 'my flow' may only use [A-Za-z0-9_.-]\n"
      "bad_many.yaml:3:11: imports[0]: must name a flow file (relative to this one)\n"
      "bad_many.yaml:5:5: tasks[0].name: '1st' must match "
      "[A-Za-z_][A-Za-z0-9_-]*\n"
      "bad_many.yaml:10:5: tasks[2].name: duplicate task name 'dup' (first at "
      "tasks[1])\n"
      "bad_many.yaml:5:5: tasks[0]: needs exactly one of run or handler, got "
      "both\n"
      "bad_many.yaml:8:5: tasks[1]: needs exactly one of run or handler, got "
      "neither\n"
      "bad_many.yaml:9:5: tasks[1].on: must be relative to the workspace, got "
      "'/abs/out.txt'\n"
      "bad_many.yaml:12:5: tasks[2].on: must not have a '..' component, got "
      "'data/../out.txt'\n"
      "bad_many.yaml:11:13: tasks[2].needs[0]: task 'dup' needs itself\n"
      "bad_many.yaml:11:18: tasks[2].needs[1]: unknown task 'ghost'\n"
      "bad_many.yaml:14:5: tasks[2].limit: must be >= 0, got -1\n"
      "bad_many.yaml:15:5: tasks[2].rate: rate must be > 0, got '0/s' (leave "
      "rate empty for no limit)\n"
      "bad_many.yaml:16:5: tasks[2].pool: 'bad pool' may only use "
      "[A-Za-z0-9_.-]\n"
      "bad_many.yaml:17:5: tasks[2].timeout: must not be negative, got -5s\n"
      "bad_many.yaml:18:13: tasks[2].retry.attempts: must be >= 0, got -1\n"
      "bad_many.yaml:18:27: tasks[2].retry.stderr: invalid RE2 regex 'a(': "
      "missing ): a(\n"
      "bad_many.yaml:19:12: tasks[2].skip.stderr: invalid RE2 regex '[z-a]': "
      "invalid character class range: z-a\n"
      "bad_many.yaml:21:5: tasks[3].for_each: needs exactly one of lines_of, "
      "file or values, got lines_of and file\n"
      "bad_many.yaml:21:64: tasks[3].for_each.as.bad-name: binding name "
      "'bad-name' must match [A-Za-z_][A-Za-z0-9_]*\n"
      "bad_many.yaml:21:64: tasks[3].for_each.as.bad-name: field path 'a..b' "
      "has an empty component\n"
      "bad_many.yaml:21:51: tasks[3].for_each.as.channel: binding 'channel' "
      "shadows a flow parameter");
}

TEST(SpecValidatorTest, FlowName) {
  EXPECT_EQ(YamlError("params: {a: b}\ntasks: [{name: t, run: [echo]}]\n"),
            "flow.yaml: name: is empty; a flow needs a name");
  EXPECT_TRUE(ParseYaml("name: my-flow.v2_x\ntasks: []\n").ok());
}

TEST(SpecValidatorTest, TaskNames) {
  EXPECT_EQ(YamlError("name: x\ntasks: [{run: [echo]}]\n"),
            "flow.yaml:2:9: tasks[0].name: is empty; every task needs a name");
  EXPECT_EQ(YamlError("name: x\ntasks: [{name: a.b, run: [echo]}]\n"),
            "flow.yaml:2:10: tasks[0].name: 'a.b' must match "
            "[A-Za-z_][A-Za-z0-9_-]*");
}

TEST(SpecValidatorTest, ParamNamesAreIdentifiers) {
  EXPECT_EQ(YamlError("name: x\nparams: {my-param: 1}\ntasks: []\n"),
            "flow.yaml:2:10: params.my-param: parameter name 'my-param' must "
            "match [A-Za-z_][A-Za-z0-9_]*");
}

TEST(SpecValidatorTest, EmptyProgram) {
  EXPECT_EQ(YamlError(OneTask("    run: [\"\", x]\n")),
            "flow.yaml:5:11: tasks[0].run[0]: program is empty");
}

TEST(SpecValidatorTest, DirectoryOutputsStayLocalAndAreNoLinesOfInput) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    on: media/\n    pool: crawl\n")),
            "flow.yaml:6:5: tasks[0].on: a directory output is written by the daemon's own pool; pool 'crawl' runs "
            "on remote workers, which cannot ship a directory yet");
  EXPECT_THAT(YamlError("name: x\ntasks:\n  - name: a\n    run: [echo]\n    on: media/\n"
                        "  - name: b\n    for_each: {lines_of: a, as: i}\n    on: 'o/{i}'\n    run: [echo]\n"),
              ::testing::HasSubstr("tasks[1].for_each.lines_of: task 'a' writes a directory ('media/'); lines_of "
                                   "reads a file"));
}

TEST(SpecValidatorTest, TemplateSyntaxErrorsQuoteTheTemplate) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    on: \"data/{id.zst\"\n")),
            "flow.yaml:6:5: tasks[0].on: unclosed '{' at column 6 in "
            "\"data/{id.zst\"");
}

TEST(SpecValidatorTest, OnMustNameAFileInsideTheWorkspace) {
  // One trailing '/' names a directory output; two name nothing.
  EXPECT_TRUE(ParseYaml(OneTask("    run: [echo]\n    on: data/\n")).ok());
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    on: data//\n")),
            "flow.yaml:6:5: tasks[0].on: must name a file or a directory (one trailing '/'), got 'data//'");
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    on: ../x\n")),
            "flow.yaml:6:5: tasks[0].on: must not have a '..' component, got "
            "'../x'");
  // Dots inside a name are fine.
  EXPECT_TRUE(ParseYaml(OneTask("    run: [echo]\n    on: a..b/x..\n")).ok());
}

TEST(SpecValidatorTest, TwoTasksWithOneOutput) {
  EXPECT_EQ(YamlError("name: x\n"
                      "tasks:\n"
                      "  - {name: a, on: out.txt, run: [echo]}\n"
                      "  - {name: b, on: out.txt, run: [echo]}\n"),
            "flow.yaml:4:15: tasks[1].on: same output as tasks[0] ('out.txt')");
}

TEST(SpecValidatorTest, FanOutOutputMustUseABinding) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo, \"{v}\"]\n"
                              "    for_each: {values: [a, b], as: v}\n"
                              "    on: out/{channel}.txt\n")),
            "flow.yaml:7:5: tasks[0].on: uses none of the for_each bindings "
            "(v), so every instance would write the same file");
  // A '*' in the file name makes each instance's name distinct.
  EXPECT_TRUE(ParseYaml(OneTask("    run: [echo, \"{v}\"]\n"
                                "    for_each: {values: [a, b], as: v}\n"
                                "    on: out/*.txt\n"))
                  .ok());
}

TEST(SpecValidatorTest, ForEachNeedsOneSource) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    for_each: {as: v}\n")),
            "flow.yaml:6:5: tasks[0].for_each: needs exactly one of lines_of, "
            "file or values, got none");
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n"
                              "    for_each: {file: a.jsonl, values: [1]}\n")),
            "flow.yaml:6:5: tasks[0].for_each: needs exactly one of lines_of, "
            "file or values, got file and values\n"
            "flow.yaml:6:5: tasks[0].for_each.as: file needs 'as' to bind "
            "parameters");
}

TEST(SpecValidatorTest, LinesOfChecks) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n"
                              "    for_each: {lines_of: ghost, as: v}\n")),
            "flow.yaml:6:16: tasks[0].for_each.lines_of: unknown task 'ghost'");
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n"
                              "    for_each: {lines_of: t, as: v}\n")),
            "flow.yaml:6:16: tasks[0].for_each.lines_of: task 't' cannot read "
            "its own output");
  EXPECT_EQ(YamlError("name: x\n"
                      "tasks:\n"
                      "  - {name: a, run: [echo]}\n"
                      "  - name: b\n"
                      "    run: [echo]\n"
                      "    for_each: {lines_of: a}\n"),
            "flow.yaml:6:16: tasks[1].for_each.lines_of: task 'a' has no 'on' "
            "output to read\n"
            "flow.yaml:6:5: tasks[1].for_each.as: lines_of needs 'as' to bind "
            "parameters");
}

TEST(SpecValidatorTest, ForEachFileUsesFlowParamsOnly) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo, \"{v}\"]\n"
                              "    for_each: {file: \"in/{v}.jsonl\", as: v}\n")),
            "flow.yaml:6:16: tasks[0].for_each.file: unknown parameter 'v' "
            "(known: channel)");
  EXPECT_EQ(YamlError(OneTask("    run: [echo, \"{v}\"]\n"
                              "    for_each: {file: /etc/x.jsonl, as: v}\n")),
            "flow.yaml:6:16: tasks[0].for_each.file: must be relative to the "
            "workspace, got '/etc/x.jsonl'");
  EXPECT_TRUE(ParseYaml(OneTask("    run: [echo, \"{v}\"]\n"
                                "    for_each: {file: \"in/{channel}.jsonl\", "
                                "as: {v: a.b}}\n"))
                  .ok());
}

TEST(SpecValidatorTest, RateForms) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    rate: 2/sec\n")),
            "flow.yaml:6:5: tasks[0].rate: expected N/s, N/min or N/h with "
            "N > 0, got '2/sec'");
  EXPECT_EQ(*ParseRatePerSecond(""), 0.0);
  EXPECT_EQ(*ParseRatePerSecond("2/s"), 2.0);
  EXPECT_EQ(*ParseRatePerSecond("30/min"), 0.5);
  EXPECT_EQ(*ParseRatePerSecond("1.8/h"), 0.0005);
  EXPECT_FALSE(ParseRatePerSecond("0/min").ok());
  EXPECT_FALSE(ParseRatePerSecond("-1/s").ok());
  EXPECT_FALSE(ParseRatePerSecond("2").ok());
  EXPECT_FALSE(ParseRatePerSecond("/s").ok());
}

TEST(SpecValidatorTest, RetryDurationsMustNotBeNegative) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n"
                              "    retry: {attempts: 1, backoff: -1s, jitter: "
                              "-2ms, exit_codes: [75]}\n")),
            "flow.yaml:6:26: tasks[0].retry.backoff: must not be negative, got "
            "-1s\n"
            "flow.yaml:6:40: tasks[0].retry.jitter: must not be negative, got "
            "-2ms");
}

TEST(SpecValidatorTest, RetryWithoutMatcherIsRejected) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    retry: {attempts: 3}\n")),
            "flow.yaml:6:5: tasks[0].retry: retries only the failures a matcher names: add "
            "exit_codes, signals, stderr, timeout or errors");
}

// A command reports no exception type: `errors` there could never match.
TEST(SpecValidatorTest, ErrorsMatcherOnACommandIsRejected) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    suppress: {errors: [TranscriptsDisabled]}\n")),
            "flow.yaml:6:16: tasks[0].suppress.errors: matches exception types reported by SDK "
            "handlers (handler:), never a command's failure: match its exit_codes or stderr instead");
}

TEST(SpecValidatorTest, ErrorsMatcherNamesExceptionTypes) {
  EXPECT_EQ(YamlError(OneTask("    handler: mymod.extract\n    pool: py\n"
                              "    skip: {errors: [xml.etree.ElementTree.ParseError, \"not a name\", a..b]}\n")),
            "flow.yaml:7:55: tasks[0].skip.errors[1]: 'not a name' is not an exception type name "
            "(Name or module.Name)\n"
            "flow.yaml:7:69: tasks[0].skip.errors[2]: 'a..b' is not an exception type name (Name or "
            "module.Name)");
  EXPECT_TRUE(ParseYaml(OneTask("    handler: mymod.extract\n    pool: py\n"
                                "    retry: {attempts: 1, errors: [ConnectionError]}\n"
                                "    suppress: {errors: [TranscriptsDisabled, yt.errors.VideoUnavailable]}\n"))
                  .ok());
}

TEST(SpecValidatorTest, SuppressRegexIsChecked) {
  EXPECT_EQ(YamlError(OneTask("    run: [echo]\n    suppress: {stderr: \"(?<x\"}\n")),
            "flow.yaml:6:16: tasks[0].suppress.stderr: invalid RE2 regex "
            "'(?<x': invalid perl operator: (?<");
}

TEST(SpecValidatorTest, InvalidDurationFromJson) {
  v1::FlowSpec spec;
  spec.set_name("x");
  v1::TaskSpec* t = spec.add_tasks();
  t->set_name("t");
  t->add_run("echo");
  t->mutable_timeout()->set_seconds(1);
  t->mutable_timeout()->set_nanos(-5);
  EXPECT_EQ(ValidateFlowSpec(spec),
            absl::InvalidArgumentError(
                "tasks[0].timeout: invalid duration (seconds 1, nanos -5)"));
}

TEST(SpecValidatorTest, AtMost1000Tasks) {
  v1::FlowSpec spec;
  spec.set_name("x");
  for (int i = 0; i <= kMaxTasks; ++i) {
    v1::TaskSpec* t = spec.add_tasks();
    t->set_name(absl::StrCat("t", i));
    t->add_run("echo");
  }
  EXPECT_EQ(ValidateFlowSpec(spec),
            absl::InvalidArgumentError(
                "tasks: 1001 tasks; at most 1000 are allowed"));
  spec.mutable_tasks()->RemoveLast();
  EXPECT_TRUE(ValidateFlowSpec(spec).ok());
}

TEST(SpecValidatorTest, ManyProblemsAreCapped) {
  v1::FlowSpec spec;
  spec.set_name("x");
  for (int i = 0; i < 150; ++i) spec.add_tasks()->set_name(absl::StrCat("t", i));
  absl::Status s = ValidateFlowSpec(spec);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("tasks[99]: needs exactly one of run or handler, got "
                        "neither\n... and 50 more problems"));
}

// Issue 15 defect 5: `attempts: 3` meant 4 tries. `retries` says so; the
// old name still works, with a warning at its location.
TEST(SpecParserTest, RetryAttemptsIsADeprecatedNameOfRetries) {
  const std::string head =
      "name: f\ntasks:\n  - name: t\n    run: [x]\n    retry: {exit_codes: [75], ";
  absl::StatusOr<ParsedFlow> old = ParseYaml(head + "attempts: 3}\n");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(RetriesOf(old->spec.tasks(0).retry()), 3);
  EXPECT_THAT(old->warnings,
              ElementsAre("flow.yaml:5:31: tasks[0].retry.attempts: deprecated: it counts retries (attempts: 3 "
                          "runs up to 4 times); write retries: 3 (same meaning)"));
  absl::StatusOr<ParsedFlow> now = ParseYaml(head + "retries: 3}\n");
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(RetriesOf(now->spec.tasks(0).retry()), 3);
  EXPECT_TRUE(now->warnings.empty());
  EXPECT_EQ(ParseYaml(head + "retries: 3, attempts: 3}\n").status().message(),
            "flow.yaml:5:43: tasks[0].retry.attempts: set retries alone (attempts is its deprecated name)");
  EXPECT_EQ(ParseYaml(head + "retries: -1}\n").status().message(),
            "flow.yaml:5:31: tasks[0].retry.retries: must be >= 0, got -1");
}

}  // namespace
}  // namespace asflow

namespace asflow {
namespace {

TEST(ThrottleSpecTest, KeysUsesAndCooldownParse) {
  auto parsed = ParseFlowText(
      "name: f\n"
      "throttle: {youtube: {limit: 4, rate: 2/s}}\n"
      "tasks:\n"
      "  - name: t\n"
      "    run: [echo]\n"
      "    uses: [youtube]\n"
      "    cooldown: {stderr: \"429\", for: 90s, retry_after: \"Retry-After: (\\\\d+)\", max_cooldowns: 3}\n",
      "f.yaml", SpecFormat::kYaml);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->spec.throttle().at("youtube").limit(), 4);
  EXPECT_EQ(parsed->spec.throttle().at("youtube").rate(), "2/s");
  EXPECT_EQ(parsed->spec.tasks(0).uses(0), "youtube");
  EXPECT_EQ(parsed->spec.tasks(0).cooldown().duration().seconds(), 90);
  EXPECT_EQ(parsed->spec.tasks(0).cooldown().retry_after(), "Retry-After: (\\d+)");
  EXPECT_EQ(parsed->spec.tasks(0).cooldown().max_cooldowns(), 3);
}

TEST(ThrottleSpecTest, BadKeysAndCooldownsAreReportedAtTheirPosition) {
  auto parsed = ParseFlowText(
      "name: f\n"
      "throttle: {\"you tube\": {limit: -1, rate: fast}}\n"
      "tasks:\n"
      "  - name: t\n"
      "    run: [echo]\n"
      "    uses: [\"a/b\"]\n"
      "    cooldown: {for: 10s, retry_after: \"(a)(b)\"}\n",
      "f.yaml", SpecFormat::kYaml);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(std::string(parsed.status().message()),
            "f.yaml:2:12: throttle.you tube: key name 'you tube' may only use [A-Za-z0-9_.-]\n"
            "f.yaml:2:25: throttle.you tube.limit: must be >= 0 (0: no cap), got -1\n"
            "f.yaml:2:36: throttle.you tube.rate: expected N/s, N/min or N/h with N > 0, got 'fast'\n"
            "f.yaml:6:12: tasks[0].uses[0]: 'a/b' is not a throttle key name ([A-Za-z0-9_.-]+)\n"
            "f.yaml:7:5: tasks[0].cooldown: matches nothing: add stderr (e.g. \"429|Too Many Requests\"), "
            "exit_codes, signals, timeout or errors\n"
            "f.yaml:7:26: tasks[0].cooldown.retry_after: needs exactly one capture group (the seconds or HTTP "
            "date), got 2, e.g. \"Retry-After: (\\\\d+)\"");
}

TEST(ThrottleSpecTest, DaemonFlagReadsAsAFlowsThrottle) {
  auto keys = ParseThrottleFlag("youtube: {limit: 4, rate: 2/s}");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->at("youtube").limit(), 4);
  EXPECT_EQ(ParseThrottleFlag("youtube: {limit: 4, rate: often}").status().message(),
            "--throttle 'youtube: {limit: 4, rate: often}': throttle.youtube.rate: expected N/s, N/min or N/h "
            "with N > 0, got 'often'");
  EXPECT_EQ(ParseThrottleFlag("").status().message(), "--throttle '': expected NAME: {limit: N, rate: R/s}");
}

}  // namespace
}  // namespace asflow

namespace asflow {
namespace {

TEST(RateTest, AutoAndItsBounds) {
  auto plain = ParseRate("auto");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->adaptive);
  EXPECT_EQ(plain->max_per_second, 5);
  EXPECT_EQ(plain->min_per_second, 0.1);
  auto bounded = ParseRate("auto(max: 2/s, min: 6/min)");
  ASSERT_TRUE(bounded.ok()) << bounded.status();
  EXPECT_EQ(bounded->max_per_second, 2);
  EXPECT_EQ(bounded->min_per_second, 0.1);
  EXPECT_EQ(ParseRate("auto(min=1/s)")->max_per_second, 5);
  EXPECT_EQ(ParseRate("3/s")->per_second, 3);
  EXPECT_FALSE(ParseRate("3/s")->adaptive);
  EXPECT_EQ(ParseRate("auto(max: 1/s, min: 2/s)").status().message(),
            "'auto(max: 1/s, min: 2/s)': min is above max; expected auto or auto(max: 5/s, min: 0.1/s)");
  EXPECT_EQ(ParseRate("auto(top: 1/s)").status().message(),
            "'auto(top: 1/s)': unknown bound 'top'; expected auto or auto(max: 5/s, min: 0.1/s)");
}

}  // namespace
}  // namespace asflow
