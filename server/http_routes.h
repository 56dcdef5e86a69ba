// Every route of asflowd's HTTP listener, in one table: the server
// registers exactly these (one handler per RouteId, chosen by a switch the
// compiler checks for completeness), and the tests walk the same table to
// show that each refuses a request without the token. Documented in
// docs/http.md.
#ifndef ASFLOW_SERVER_HTTP_ROUTES_H_
#define ASFLOW_SERVER_HTTP_ROUTES_H_

#include <vector>

namespace asflow {

enum class RouteId {
  kListRuns,     // GET  /api/v1/runs
  kGetRun,       // GET  /api/v1/runs/{id}
  kListTasks,    // GET  /api/v1/runs/{id}/tasks
  kGetInstance,  // GET  /api/v1/runs/{id}/instances/{seq}
  kCancelRun,    // POST /api/v1/runs/{id}:cancel
  kListWorkers,  // GET  /api/v1/workers
  kEvents,       // GET  /api/v1/events (Server-Sent Events)
  kMetrics,      // GET  /metrics
  kPage,         // GET  the dashboard's pages (one HTML page; the script routes)
  kAsset,        // GET  /static/... (scripts, styles, compiled in)
  kLogin,        // POST /login (the token prompt's form)
  kListThrottle, // GET  /api/v1/throttle
  kPause,        // POST /api/v1/throttle/{name}:pause?for=
  kResume,       // POST /api/v1/throttle/{name}:resume
};

struct HttpRoute {
  RouteId id;
  const char* method;   // "GET" or "POST"
  const char* pattern;  // a regular expression matched against the whole path
  const char* example;  // a path it matches, for tests
};

const std::vector<HttpRoute>& HttpRoutes();

}  // namespace asflow

#endif  // ASFLOW_SERVER_HTTP_ROUTES_H_
