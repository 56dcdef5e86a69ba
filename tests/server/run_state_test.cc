#include "server/run_state.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace asflow {
namespace {

google::protobuf::Map<std::string, std::string> As(std::initializer_list<std::pair<std::string, std::string>> kv) {
  google::protobuf::Map<std::string, std::string> m;
  for (const auto& [k, v] : kv) m[k] = v;
  return m;
}

TEST(BindValueTest, DottedPathsIntoJsonObjects) {
  auto b = BindValue(R"({"id":"F6Pq","meta":{"lang":"en","n":3}})",
                     As({{"video_id", "id"}, {"lang", "meta.lang"}, {"n", "meta.n"}}));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, (Bindings{{"lang", "en"}, {"n", "3"}, {"video_id", "F6Pq"}}));
}

TEST(BindValueTest, WholeValueForScalarsAndPlainStrings) {
  EXPECT_EQ(*BindValue("42", As({{"x", ""}})), (Bindings{{"x", "42"}}));
  EXPECT_EQ(*BindValue("\"quoted\"", As({{"x", ""}})), (Bindings{{"x", "quoted"}}));
  EXPECT_EQ(*BindValue("not json at all", As({{"x", ""}})), (Bindings{{"x", "not json at all"}}));
  EXPECT_EQ(*BindValue(R"({"a":1})", As({{"x", ""}})), (Bindings{{"x", R"({"a":1})"}}));
}

// Values a line may hold, for the tests below that check the no-parse
// paths against nlohmann's (what BindValue and CanonicalParams did before
// they had those paths).
std::vector<std::string> TrickyValues() {
  return {"0", "7", "42", "00", "0123", "-5", "-0", "1.50", "1e2", "999999999999999999",
          "1234567890123456789", "12345678901234567890", "1234567890123456789012345", "true", "false", "null",
          "true ", "null\t", "tru", "nothing", "Infinity", "NaN", "abc def", "abc ", " 42", "42 ", "\"quoted\"",
          "x\"y", "back\\slash", "tab\there", "caf\xc3\xa9", "bad\xff", "{\"a\":1}", "[1,2]", "", " ",
          std::string("nul\0in", 6), std::string("true\0x", 6), std::string("null\0", 5),
          std::string("false\0abc", 9), std::string("7\0", 2), "F6Pq", "data/1.jsonl"};
}

TEST(BindValueTest, WholeValueIsWhatItsJsonWritesBack) {
  using json = nlohmann::json;
  for (const std::string& value : TrickyValues()) {
    json doc = json::parse(value, nullptr, /*allow_exceptions=*/false);
    std::string want = value;
    if (!doc.is_discarded()) {
      want = doc.is_string() ? doc.get<std::string>() : doc.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    auto got = BindValue(value, As({{"x", ""}}));
    if (value.find('\0') != std::string::npos) {
      // Refused, not cut at the NUL (BindValueTest.ValueWithANulIsRefused).
      EXPECT_FALSE(got.ok()) << value;
      continue;
    }
    ASSERT_TRUE(got.ok()) << value;
    EXPECT_EQ(*got, (Bindings{{"x", want}})) << "value [" << value << "]";
  }
}

// Issue 12, defect 6: a NUL reached commands cut ("true\0x" bound as
// "true"; an argument or environment variable ends at it).
TEST(BindValueTest, ValueWithANulIsRefused) {
  for (const std::string& value : {std::string("nul\0in", 6), std::string("true\0x", 6), std::string("7\0", 2)}) {
    auto got = BindValue(value, As({{"x", ""}}));
    ASSERT_FALSE(got.ok()) << value;
    EXPECT_EQ(got.status().message(),
              "the value contains a NUL byte, which no command argument or environment variable can carry");
  }
  auto field = BindValue(R"({"a":"x\u0000y"})", As({{"x", "a"}}));
  ASSERT_FALSE(field.ok());
  EXPECT_EQ(field.status().message(),
            "the value bound to 'x' contains a NUL byte, which no command argument or environment variable can "
            "carry");
}

TEST(CanonicalParamsTest, SameTextAsNlohmannForEveryValue) {
  using json = nlohmann::json;
  for (const std::string& value : TrickyValues()) {
    for (const std::string& key : {std::string("i"), std::string("k\"ey"), value}) {
      std::map<std::string, std::string> params{{key, value}, {"z", "last"}};
      json obj = json::object();
      for (const auto& [k, v] : params) obj[k] = v;
      EXPECT_EQ(CanonicalParams(params), obj.dump(-1, ' ', false, json::error_handler_t::replace))
          << "key [" << key << "] value [" << value << "]";
    }
  }
}

TEST(BindValueTest, MissingFieldNamesFieldAndParameter) {
  auto b = BindValue(R"({"title":"x"})", As({{"video_id", "id"}}));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "field 'id' for parameter 'video_id' not found");
  auto c = BindValue("[1,2]", As({{"video_id", "id"}}));
  EXPECT_EQ(c.status().message(), "field 'id' for parameter 'video_id': value is not a JSON object");
}

TEST(CanonicalParamsTest, SortedKeysAndEscaping) {
  EXPECT_EQ(CanonicalParams({{"b", "2"}, {"a", "x\"y"}}), R"({"a":"x\"y","b":"2"})");
  EXPECT_EQ(CanonicalParams({}), "{}");
  EXPECT_EQ(DecodeParams(R"({"a":"x\"y","b":"2"})"), (Bindings{{"a", "x\"y"}, {"b", "2"}}));
  EXPECT_EQ(InstanceLabel("extract", R"({"video_id":"F6Pq"})"), "extract(video_id=F6Pq)");
}

TEST(BuildRunTest, UnknownOverrideIsRejected) {
  v1::SubmitFlowRequest req;
  req.mutable_spec()->set_name("f");
  (*req.mutable_spec()->mutable_params())["channel"] = "c";
  (*req.mutable_params())["chanel"] = "typo";
  auto run = BuildRun(req, 2);
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().message(), "params.chanel: unknown parameter 'chanel' (the flow does not declare it)");
}

TEST(BuildRunTest, IdentityUsesOnlyReferencedFlowParams) {
  v1::SubmitFlowRequest req;
  v1::FlowSpec* spec = req.mutable_spec();
  spec->set_name("f");
  (*spec->mutable_params())["channel"] = "c";
  (*spec->mutable_params())["unused"] = "u";
  v1::TaskSpec* t = spec->add_tasks();
  t->set_name("playlist");
  t->add_run("echo");
  t->add_run("{channel}");
  v1::TaskSpec* e = spec->add_tasks();
  e->set_name("extract");
  e->add_run("echo");
  e->add_run("{video_id}");
  e->set_on("data/{video_id}.txt");
  e->mutable_for_each()->set_lines_of("playlist");
  (*e->mutable_for_each()->mutable_bind())["video_id"] = "id";
  auto run = BuildRun(req, 3);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ((*run)->tasks[0].flow_params_used, std::vector<std::string>{"channel"});
  EXPECT_TRUE((*run)->tasks[1].flow_params_used.empty());
  EXPECT_EQ((*run)->tasks[1].deps, std::vector<int>{0});
  EXPECT_EQ((*run)->tasks[0].dependents, std::vector<int>{1});
  EXPECT_EQ((*run)->tasks[1].limit, 3);  // the default limit
  EXPECT_EQ((*run)->tasks[1].key, "f.extract");
}

TEST(BuildRunTest, LocalPoolRunsOnlyBuiltinHandlers) {
  v1::SubmitFlowRequest req;
  req.mutable_spec()->set_name("f");
  v1::TaskSpec* t = req.mutable_spec()->add_tasks();
  t->set_name("t");
  t->set_handler("builtin.echo");
  EXPECT_TRUE(BuildRun(req, 2).ok());
  t->set_handler("count_words");
  EXPECT_EQ(BuildRun(req, 2).status().message(),
            "tasks[0].handler: the local pool runs only builtin.noop and builtin.echo, not 'count_words' "
            "(set pool: to a pool whose workers offer it)");
  // A remote pool's workers say which handlers they offer when they join.
  t->set_pool("py");
  auto run = BuildRun(req, 2);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ((*run)->tasks[0].pool, "py");
}

}  // namespace
}  // namespace asflow
