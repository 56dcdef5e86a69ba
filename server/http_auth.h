// Who may use asflowd's HTTP listener (--http): the same bearer token as
// the gRPC API, sent as "Authorization: Bearer TOKEN" (scripts, curl,
// Prometheus) or as the asflow_token cookie that the token prompt page
// sets (browsers: EventSource cannot send headers). A request that the
// cookie alone authorises and that changes something (not GET/HEAD) must
// also carry the header "X-Asflow-Request: 1", which a cross-site form or
// image cannot send. Pure functions; thread-safe.
#ifndef ASFLOW_SERVER_HTTP_AUTH_H_
#define ASFLOW_SERVER_HTTP_AUTH_H_

#include <string>

#include "absl/strings/string_view.h"
#include "server/listener.h"

namespace asflow {

inline constexpr char kTokenCookie[] = "asflow_token";
inline constexpr char kRequestHeader[] = "X-Asflow-Request";

// What a request presents.
struct HttpCredentials {
  std::string method;         // "GET", "POST", ...
  std::string authorization;  // the Authorization header, or ""
  std::string cookie;         // the Cookie header, or ""
  std::string request_header; // X-Asflow-Request, or ""
};

// True if `creds` may be served: no token is required (mutual TLS or
// --insecure decided at the listener), or the bearer token matches, or the
// cookie matches (and, for a method that changes state, X-Asflow-Request
// is present). Tokens are compared in constant time.
bool HttpAuthorized(const TokenCheck& tokens, const HttpCredentials& creds);

// The value of cookie `name` in a Cookie header ("a=1; b=2"), or "".
std::string CookieValue(absl::string_view header, absl::string_view name);

// The Set-Cookie header value that stores `token` for the whole site:
// HttpOnly (no script reads it), SameSite=Strict (no other site sends it),
// Secure when served over TLS; a session cookie.
std::string TokenCookie(absl::string_view token, bool tls);

// `next` if it is a path on this site ("/runs/7"), else "/": the login
// form never redirects elsewhere.
std::string SafeNextPath(absl::string_view next);

}  // namespace asflow

#endif  // ASFLOW_SERVER_HTTP_AUTH_H_
