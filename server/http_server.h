// HttpServer: asflowd's HTTP listener (--http HOST:PORT): the dashboard's
// pages, the JSON API, the event stream and /metrics (docs/http.md), served
// by cpp-httplib on a pool of threads. Like --listen, every TCP address,
// loopback included, needs the bearer token (--token-file) or mutual TLS
// unless --insecure, and a non-loopback one needs TLS; the token is checked
// before any route runs, so no route can be reached without it. Owned by
// the Daemon; Stop before the hub, store and scheduler go. Thread-safe.
#ifndef ASFLOW_SERVER_HTTP_SERVER_H_
#define ASFLOW_SERVER_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/event_hub.h"
#include "server/listener.h"
#include "server/metrics.h"
#include "server/run_metrics.h"
#include "server/scheduler.h"
#include "server/store.h"
#include "server/worker_hub.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace asflow {

class EventStream;
class HttpApi;

struct HttpOptions {
  // HOST:PORT (port 0: any free port, logged); empty: no HTTP listener.
  std::string address;
  // Threads serving connections. Each open event stream holds one.
  int threads = 64;
  // Event streams open at once at most (a dashboard tab holds one); more
  // get 503, so streams can never take every thread.
  int max_streams = 48;
};

// What the routes read and act on; all must outlive the server.
struct HttpBackends {
  Scheduler* scheduler = nullptr;
  WorkerHub* workers = nullptr;
  Store* store = nullptr;
  EventHub* hub = nullptr;
  const RunMetrics* run_metrics = nullptr;
  // The token of --token-file (TLS, the client CA and --insecure come from
  // ListenOptions, shared with --listen).
  const TokenCheck* tokens = nullptr;
  int local_slots = 0;
};

class HttpServer {
 public:
  // Checks the address against the security rules (CheckTcpAddress), binds
  // and starts serving. InvalidArgument/Unavailable say why not.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options, const ListenOptions& tls,
                                                           const HttpBackends& backends);
  ~HttpServer();

  int port() const { return port_; }
  // Ends the event streams, stops accepting and joins. Idempotent.
  void Stop();

 private:
  HttpServer(const HttpOptions& options, const HttpBackends& backends, bool tls);
  void Register();
  // The pre-routing check: true if the request may go on; otherwise the
  // 401 answer is in `res` (the token prompt for a browser's page).
  bool Authorize(const httplib::Request& req, httplib::Response& res);
  void ServePage(const httplib::Request& req, httplib::Response& res);
  void ServeAsset(const httplib::Request& req, httplib::Response& res);
  void Login(const httplib::Request& req, httplib::Response& res);
  void ServeEvents(const httplib::Request& req, httplib::Response& res);
  void ServeMetrics(const httplib::Request& req, httplib::Response& res);
  // The token prompt page, asking to go to `next` afterwards.
  std::string PromptPage(const std::string& next, bool wrong) const;

  const HttpOptions options_;
  const HttpBackends backends_;
  const bool tls_;
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<HttpApi> api_;
  std::unique_ptr<Metrics> metrics_;
  int port_ = 0;
  std::thread thread_;

  absl::Mutex mu_;
  std::set<EventStream*> streams_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> open_streams_{0};
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_HTTP_SERVER_H_
