#include "server/http_server.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/small_file.h"
#include "httplib.h"
#include "server/event_stream.h"
#include "server/http_api.h"
#include "server/http_auth.h"
#include "server/http_routes.h"
#include "server/prometheus_text.h"
#include "server/web_assets.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

std::string HtmlEscape(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}, {"'", "&#39;"}});
}

// What every answer carries: no sniffing, no framing, scripts and styles
// from this origin only (the pages load nothing from elsewhere).
httplib::Headers SecurityHeaders() {
  return {
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      {"Content-Security-Policy",
       "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"},
  };
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options, const ListenOptions& tls,
                                                              const HttpBackends& backends) {
  TcpListenerTerms terms{"--http", "callers", "--token-file", "see and cancel runs"};
  if (absl::Status s = CheckTcpAddress(terms, options.address, tls); !s.ok()) return s;
  size_t colon = options.address.rfind(':');
  std::string host = options.address.substr(0, colon);
  int port = -1;
  if (!absl::SimpleAtoi(options.address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http ", options.address, ": bad port"));
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const bool use_tls = !tls.tls_cert.empty();
  std::unique_ptr<HttpServer> s(new HttpServer(options, backends, use_tls));
  if (use_tls) {
    // Readable files first, for a message that names them.
    for (const std::string& file : {tls.tls_cert, tls.tls_key, tls.tls_client_ca}) {
      if (file.empty()) continue;
      if (auto read = ReadSmallFile(file); !read.ok()) return absl::InvalidArgumentError(read.status().message());
    }
    auto ssl = std::make_unique<httplib::SSLServer>(tls.tls_cert.c_str(), tls.tls_key.c_str(),
                                                    tls.tls_client_ca.empty() ? nullptr : tls.tls_client_ca.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("--http: cannot use --tls-cert ", tls.tls_cert, " and --tls-key ",
                                                     tls.tls_key,
                                                     tls.tls_client_ca.empty() ? "" : " and --tls-client-ca ",
                                                     tls.tls_client_ca, " (not PEM, or the key does not match)"));
    }
    s->server_ = std::move(ssl);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  s->Register();
  int bound = port == 0 ? s->server_->bind_to_any_port(host) : (s->server_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("--http ", options.address, ": cannot listen (address in use?)"));
  }
  s->port_ = bound;
  s->thread_ = std::thread([server = s->server_.get()] { server->listen_after_bind(); });
  spdlog::info("asflowd serving http{} on {}:{} ({}{}{})", use_tls ? "s" : "", host, bound,
               use_tls ? "TLS" : "plaintext", tls.tls_client_ca.empty() ? "" : ", client certificate required",
               tls.token_file.empty() ? "" : ", token required");
  return s;
}

HttpServer::HttpServer(const HttpOptions& options, const HttpBackends& backends, bool tls)
    : options_(options), backends_(backends), tls_(tls) {
  api_ = std::make_unique<HttpApi>(backends.scheduler, backends.store, backends.hub, backends.workers);
  MetricsSources sources;
  sources.hub = backends.hub;
  sources.store = backends.store;
  sources.workers = backends.workers;
  sources.runs = backends.run_metrics;
  sources.local_slots = backends.local_slots;
  sources.event_streams = [this] { return open_streams_.load(); };
  metrics_ = std::make_unique<Metrics>(std::move(sources));
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (EventStream* stream : streams_) stream->Close();
  }
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Register() {
  httplib::Server& s = *server_;
  const int threads = options_.threads;
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_read_timeout(10);
  s.set_write_timeout(10);
  s.set_keep_alive_timeout(2);
  s.set_payload_max_length(64 * 1024);
  s.set_default_headers(SecurityHeaders());
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    return Authorize(req, res) ? httplib::Server::HandlerResponse::Unhandled
                               : httplib::Server::HandlerResponse::Handled;
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      return HttpApi::ReplyError(absl::NotFoundError(absl::StrCat("no such path: ", req.method, " ", req.path)), res);
    }
    if (res.status == 400 && req.method == "POST" && !req.has_header("Content-Length") &&
        !req.has_header("Transfer-Encoding")) {
      // cpp-httplib refuses a POST that says nothing of its body's length
      // (`curl -X POST` without -d).
      return HttpApi::ReplyError(
          absl::InvalidArgumentError("a POST needs a Content-Length (an empty body is fine: curl -d '')"), res);
    }
    HttpApi::ReplyError(absl::Status(res.status == 400 ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kUnknown,
                                     absl::StrCat("HTTP ", res.status)),
                        res);
  });
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr) {
    HttpApi::ReplyError(absl::InternalError(absl::StrCat(req.method, " ", req.path, " failed")), res);
  });
  for (const HttpRoute& route : HttpRoutes()) {
    httplib::Server::Handler handler;
    HttpApi* api = api_.get();
    switch (route.id) {  // no default: a new RouteId without a handler does not compile cleanly
      case RouteId::kListRuns:
        handler = [api](const auto& req, auto& res) { api->ListRuns(req, res); };
        break;
      case RouteId::kGetRun:
        handler = [api](const auto& req, auto& res) { api->GetRun(req, res); };
        break;
      case RouteId::kListTasks:
        handler = [api](const auto& req, auto& res) { api->ListTasks(req, res); };
        break;
      case RouteId::kGetInstance:
        handler = [api](const auto& req, auto& res) { api->GetInstance(req, res); };
        break;
      case RouteId::kCancelRun:
        handler = [api](const auto& req, auto& res) { api->CancelRun(req, res); };
        break;
      case RouteId::kListWorkers:
        handler = [api](const auto& req, auto& res) { api->ListWorkers(req, res); };
        break;
      case RouteId::kEvents:
        handler = [this](const auto& req, auto& res) { ServeEvents(req, res); };
        break;
      case RouteId::kMetrics:
        handler = [this](const auto& req, auto& res) { ServeMetrics(req, res); };
        break;
      case RouteId::kPage:
        handler = [this](const auto& req, auto& res) { ServePage(req, res); };
        break;
      case RouteId::kAsset:
        handler = [this](const auto& req, auto& res) { ServeAsset(req, res); };
        break;
      case RouteId::kLogin:
        handler = [this](const auto& req, auto& res) { Login(req, res); };
        break;
      case RouteId::kListThrottle:
        handler = [api](const auto& req, auto& res) { api->ListThrottle(req, res); };
        break;
      case RouteId::kPause:
        handler = [api](const auto& req, auto& res) { api->Pause(req, res); };
        break;
      case RouteId::kResume:
        handler = [api](const auto& req, auto& res) { api->Resume(req, res); };
        break;
    }
    if (absl::string_view(route.method) == "POST") {
      s.Post(route.pattern, std::move(handler));
    } else {
      s.Get(route.pattern, std::move(handler));
    }
  }
}

bool HttpServer::Authorize(const httplib::Request& req, httplib::Response& res) {
  // The prompt's form carries the token itself; Login checks it.
  if (req.method == "POST" && req.path == "/login") return true;
  HttpCredentials creds{req.method, req.get_header_value("Authorization"), req.get_header_value("Cookie"),
                        req.get_header_value(kRequestHeader)};
  if (HttpAuthorized(*backends_.tokens, creds)) return true;
  if (req.method == "GET" && absl::StrContains(req.get_header_value("Accept"), "text/html")) {
    res.status = 401;
    res.set_content(PromptPage(req.target.empty() ? req.path : req.target, false), "text/html; charset=utf-8");
    return false;
  }
  res.set_header("WWW-Authenticate", "Bearer realm=\"asflowd\"");
  HttpApi::ReplyError(absl::UnauthenticatedError(
                          "missing or wrong token: send \"Authorization: Bearer TOKEN\" with the first line of "
                          "asflowd's --token-file"),
                      res);
  return false;
}

std::string HttpServer::PromptPage(const std::string& next, bool wrong) const {
  const WebAsset* page = FindWebAsset("login.html");
  std::string html = page != nullptr ? std::string(page->data) : "<form method=post action=/login>{{form}}</form>";
  return absl::StrReplaceAll(
      html, {{"{{next}}", HtmlEscape(SafeNextPath(next))},
             {"{{error}}", wrong ? "<p class=error>That is not the token. Try again.</p>" : ""}});
}

void HttpServer::Login(const httplib::Request& req, httplib::Response& res) {
  std::string token = req.get_param_value("token");
  std::string next = SafeNextPath(req.get_param_value("next"));
  if (backends_.tokens->required() && !backends_.tokens->Matches(token)) {
    res.status = 401;
    res.set_content(PromptPage(next, true), "text/html; charset=utf-8");
    return;
  }
  if (backends_.tokens->required()) res.set_header("Set-Cookie", TokenCookie(token, tls_));
  res.set_redirect(next, 303);
}

void HttpServer::ServePage(const httplib::Request& req, httplib::Response& res) {
  const WebAsset* page = FindWebAsset("index.html");
  if (page == nullptr) return HttpApi::ReplyError(absl::InternalError("index.html is not compiled in"), res);
  res.set_header("Cache-Control", "no-store");
  res.set_content(page->data.data(), page->data.size(), std::string(page->content_type));
}

void HttpServer::ServeAsset(const httplib::Request& req, httplib::Response& res) {
  std::string rel = req.matches.size() > 1 ? req.matches[1].str() : "";
  const WebAsset* asset = absl::StrContains(rel, "..") ? nullptr : FindWebAsset(absl::StrCat("static/", rel));
  if (asset == nullptr) {
    return HttpApi::ReplyError(absl::NotFoundError(absl::StrCat("no such file: /static/", rel)), res);
  }
  // They change only with the binary; a restarted daemon may serve new ones.
  res.set_header("Cache-Control", "no-cache");
  res.set_content(asset->data.data(), asset->data.size(), std::string(asset->content_type));
}

void HttpServer::ServeMetrics(const httplib::Request& req, httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_content(metrics_->Render(), PrometheusText::kContentType);
}

void HttpServer::ServeEvents(const httplib::Request& req, httplib::Response& res) {
  EventStreamOptions o;
  auto number = [&](const std::string& key, int64_t* out) {
    std::string v = req.get_param_value(key);
    return v.empty() || (absl::SimpleAtoi(v, out) && *out >= 0);
  };
  int64_t interval_ms = 0;
  std::string last_id = req.get_header_value("Last-Event-ID");
  if (!number("run_id", &o.run_id) || !number("from_seq", &o.from_seq) || !number("interval_ms", &interval_ms) ||
      (!last_id.empty() && !absl::SimpleAtoi(last_id, &o.from_seq))) {
    return HttpApi::ReplyError(absl::InvalidArgumentError("run_id, from_seq, interval_ms and Last-Event-ID are "
                                                          "numbers"),
                               res);
  }
  std::string summary = req.get_param_value("summary");
  o.summary = summary == "1" || summary == "true";
  if (interval_ms > 0) o.interval = absl::Milliseconds(interval_ms);  // the hub clamps it
  if (open_streams_.load() >= options_.max_streams) {
    return HttpApi::ReplyError(
        absl::UnavailableError(absl::StrCat("too many event streams open (", options_.max_streams, ")")), res);
  }
  auto opened = EventStream::Open(backends_.hub, backends_.store, o);
  if (!opened.ok()) return HttpApi::ReplyError(opened.status(), res);
  std::shared_ptr<EventStream> stream(std::move(*opened));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return HttpApi::ReplyError(absl::UnavailableError("asflowd is stopping"), res);
    streams_.insert(stream.get());
  }
  ++open_streams_;
  res.set_header("Cache-Control", "no-store");
  res.set_chunked_content_provider(
      "text/event-stream",
      [stream](size_t, httplib::DataSink& sink) {
        std::string out;
        bool more = stream->Next(absl::Seconds(1), &out);
        if (!out.empty() && !sink.write(out.data(), out.size())) return false;  // the client went away
        if (!more) sink.done();
        return true;
      },
      [this, stream](bool) {
        absl::MutexLock lock(&mu_);
        streams_.erase(stream.get());
        --open_streams_;
      });
}

}  // namespace asflow
