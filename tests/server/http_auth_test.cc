#include "server/http_auth.h"

#include <gtest/gtest.h>

#include <memory>

#include "tests/test_util.h"

namespace asflow {
namespace {

class HttpAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteFileOrDie(tmp_.Join("token"), "t0k;en =x\n");
    tokens_ = std::move(*TokenCheck::Load(tmp_.Join("token")));
    none_ = std::move(*TokenCheck::Load(""));
  }
  testing::TempDir tmp_;
  std::unique_ptr<TokenCheck> tokens_;
  std::unique_ptr<TokenCheck> none_;
};

TEST_F(HttpAuthTest, BearerHeaderMustMatchExactly) {
  EXPECT_TRUE(HttpAuthorized(*tokens_, {"GET", "Bearer t0k;en =x", "", ""}));
  EXPECT_TRUE(HttpAuthorized(*tokens_, {"POST", "Bearer t0k;en =x", "", ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "Bearer t0k;en =", "", ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "Bearer t0k;en =xx", "", ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "Bearer ", "", ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "bearer t0k;en =x", "", ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "", "", ""}));
}

TEST_F(HttpAuthTest, CookieHoldsThePercentEncodedToken) {
  std::string set = TokenCookie("t0k;en =x", /*tls=*/false);
  EXPECT_EQ(set, "asflow_token=t0k%3Ben%20%3Dx; Path=/; HttpOnly; SameSite=Strict");
  EXPECT_EQ(TokenCookie("abc", /*tls=*/true), "asflow_token=abc; Path=/; HttpOnly; SameSite=Strict; Secure");
  std::string cookie = "theme=dark; asflow_token=t0k%3Ben%20%3Dx; other=1";
  EXPECT_TRUE(HttpAuthorized(*tokens_, {"GET", "", cookie, ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "", "asflow_token=t0k%3Ben", ""}));
  // A wrong bearer header is not rescued by a right cookie.
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"GET", "Bearer nope", cookie, ""}));
}

TEST_F(HttpAuthTest, CookieAloneChangesNothingWithoutTheRequestHeader) {
  std::string cookie = "asflow_token=t0k%3Ben%20%3Dx";
  EXPECT_TRUE(HttpAuthorized(*tokens_, {"HEAD", "", cookie, ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"POST", "", cookie, ""}));
  EXPECT_FALSE(HttpAuthorized(*tokens_, {"POST", "", cookie, "yes"}));
  EXPECT_TRUE(HttpAuthorized(*tokens_, {"POST", "", cookie, "1"}));
}

TEST_F(HttpAuthTest, NoTokenConfiguredLetsEveryoneIn) {
  EXPECT_TRUE(HttpAuthorized(*none_, {"POST", "", "", ""}));
  EXPECT_FALSE(none_->Matches(""));
}

TEST(CookieValueTest, FindsTheNamedCookieOnly) {
  EXPECT_EQ(CookieValue("a=1; asflow_token=xyz; b=2", "asflow_token"), "xyz");
  EXPECT_EQ(CookieValue("asflow_token_old=1", "asflow_token"), "");
  EXPECT_EQ(CookieValue("", "asflow_token"), "");
  EXPECT_EQ(CookieValue("  asflow_token=  ", "asflow_token"), "");
}

TEST(SafeNextPathTest, StaysOnThisSite) {
  EXPECT_EQ(SafeNextPath("/runs/7"), "/runs/7");
  EXPECT_EQ(SafeNextPath("/?state=failed&flow=x"), "/?state=failed&flow=x");
  EXPECT_EQ(SafeNextPath("//evil.example/"), "/");
  EXPECT_EQ(SafeNextPath("/\\evil.example"), "/");
  EXPECT_EQ(SafeNextPath("https://evil.example"), "/");
  EXPECT_EQ(SafeNextPath("runs/7"), "/");
  EXPECT_EQ(SafeNextPath("/a\r\nSet-Cookie: x"), "/");
  EXPECT_EQ(SafeNextPath(""), "/");
}

}  // namespace
}  // namespace asflow
