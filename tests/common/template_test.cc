#include "common/template.h"

#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "common/stable_hash.h"

namespace asflow {
namespace {

using ::testing::ElementsAre;

absl::StatusOr<std::string> RenderWith(
    const Template& t, const std::map<std::string, std::string>& params) {
  return t.Render([&](absl::string_view name) -> const std::string* {
    auto it = params.find(std::string(name));
    return it == params.end() ? nullptr : &it->second;
  });
}

std::string CompileError(absl::string_view text) {
  absl::StatusOr<Template> t = Template::Compile(text);
  EXPECT_FALSE(t.ok()) << text;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(t.status().message());
}

TEST(TemplateTest, RendersPlaceholders) {
  absl::StatusOr<Template> t =
      Template::Compile("data/{channel}/{video_id}.{video_id}.jsonl");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->names(), ElementsAre("channel", "video_id"));
  EXPECT_EQ(t->text(), "data/{channel}/{video_id}.{video_id}.jsonl");
  absl::StatusOr<std::string> out =
      RenderWith(*t, {{"channel", "mrbeast"}, {"video_id", "F6Pq"}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "data/mrbeast/F6Pq.F6Pq.jsonl");
}

TEST(TemplateTest, LiteralTextHasNoNames) {
  absl::StatusOr<Template> t = Template::Compile("data/playlist.jsonl.zst");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->names().empty());
  EXPECT_EQ(*RenderWith(*t, {}), "data/playlist.jsonl.zst");
}

TEST(TemplateTest, EmptyTextRendersEmpty) {
  absl::StatusOr<Template> t = Template::Compile("");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*RenderWith(*t, {}), "");
}

TEST(TemplateTest, DoubledBracesAreLiteral) {
  absl::StatusOr<Template> t = Template::Compile("{{\"id\": \"{id}\"}}");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(t->names(), ElementsAre("id"));
  EXPECT_EQ(*RenderWith(*t, {{"id", "x"}}), "{\"id\": \"x\"}");
}

TEST(TemplateTest, ValuesAreNotReExpanded) {
  absl::StatusOr<Template> t = Template::Compile("{a}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*RenderWith(*t, {{"a", "{b}}"}}), "{b}}");
}

TEST(TemplateTest, UnclosedBraceNamesColumn) {
  EXPECT_EQ(CompileError("data/{id.zst"),
            "unclosed '{' at column 6 in \"data/{id.zst\"");
}

TEST(TemplateTest, EmptyNameNamesColumn) {
  EXPECT_EQ(CompileError("a{}b"), "empty parameter name at column 2 in \"a{}b\"");
}

TEST(TemplateTest, StrayClosingBrace) {
  EXPECT_EQ(CompileError("ab}c"), "'}' without '{' at column 3 in \"ab}c\"");
}

TEST(TemplateTest, BadNameCharacters) {
  EXPECT_EQ(CompileError("x/{video-id}"),
            "bad parameter name 'video-id' (expected [A-Za-z_][A-Za-z0-9_]*) "
            "at column 3 in \"x/{video-id}\"");
  EXPECT_EQ(CompileError("{1st}"),
            "bad parameter name '1st' (expected [A-Za-z_][A-Za-z0-9_]*) "
            "at column 1 in \"{1st}\"");
  EXPECT_EQ(CompileError("{a{b}"),
            "bad parameter name 'a{b' (expected [A-Za-z_][A-Za-z0-9_]*) "
            "at column 1 in \"{a{b}\"");
}

TEST(TemplateTest, UnknownParameterAtRender) {
  absl::StatusOr<Template> t = Template::Compile("out/{vid}.json");
  ASSERT_TRUE(t.ok());
  absl::StatusOr<std::string> out = RenderWith(*t, {{"video_id", "x"}});
  EXPECT_EQ(out.status(), absl::InvalidArgumentError(
                              "unknown parameter 'vid' in \"out/{vid}.json\""));
}

TEST(TemplateTest, ValidParamNames) {
  EXPECT_TRUE(IsValidParamName("video_id"));
  EXPECT_TRUE(IsValidParamName("_x9"));
  EXPECT_FALSE(IsValidParamName(""));
  EXPECT_FALSE(IsValidParamName("9x"));
  EXPECT_FALSE(IsValidParamName("a-b"));
}

TEST(StableHashTest, KnownFnv1aValues) {
  // Published FNV-1a 64-bit test vectors.
  EXPECT_EQ(StableHash(""), "cbf29ce484222325");
  EXPECT_EQ(StableHash("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(StableHash("foobar"), "85944171f73967e8");
  EXPECT_NE(StableHash(absl::string_view("extract\0a", 9)), StableHash("extracta"));
}

TEST(TemplateTest, RenderReportsOnlyTheTemplatesOwnStars) {
  auto t = Template::Compile("out/{name}-*.{ext}*");
  ASSERT_TRUE(t.ok());
  std::map<std::string, std::string> values = {{"name", "a*b"}, {"ext", "t*t"}};
  std::vector<size_t> stars;
  auto out = t->Render(
      [&](absl::string_view n) -> const std::string* {
        auto it = values.find(std::string(n));
        return it == values.end() ? nullptr : &it->second;
      },
      &stars);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "out/a*b-*.t*t*");
  EXPECT_THAT(stars, ::testing::ElementsAre(8, 13));
}

}  // namespace
}  // namespace asflow
