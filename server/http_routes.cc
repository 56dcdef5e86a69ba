#include "server/http_routes.h"

namespace asflow {

const std::vector<HttpRoute>& HttpRoutes() {
  static const std::vector<HttpRoute> routes = {
      {RouteId::kListRuns, "GET", R"(/api/v1/runs)", "/api/v1/runs"},
      {RouteId::kGetRun, "GET", R"(/api/v1/runs/(\d+))", "/api/v1/runs/1"},
      {RouteId::kListTasks, "GET", R"(/api/v1/runs/(\d+)/tasks)", "/api/v1/runs/1/tasks"},
      {RouteId::kGetInstance, "GET", R"(/api/v1/runs/(\d+)/instances/(\d+))", "/api/v1/runs/1/instances/0"},
      {RouteId::kCancelRun, "POST", R"(/api/v1/runs/(\d+):cancel)", "/api/v1/runs/1:cancel"},
      {RouteId::kListWorkers, "GET", R"(/api/v1/workers)", "/api/v1/workers"},
      {RouteId::kEvents, "GET", R"(/api/v1/events)", "/api/v1/events"},
      {RouteId::kMetrics, "GET", R"(/metrics)", "/metrics"},
      {RouteId::kPage, "GET", R"(/|/runs/\d+|/runs/\d+/instances/\d+|/workers)", "/runs/1"},
      {RouteId::kAsset, "GET", R"(/static/([A-Za-z0-9_./-]+))", "/static/app.js"},
      {RouteId::kLogin, "POST", R"(/login)", "/login"},
      {RouteId::kListThrottle, "GET", R"(/api/v1/throttle)", "/api/v1/throttle"},
      {RouteId::kPause, "POST", R"(/api/v1/throttle/([^/]+):pause)", "/api/v1/throttle/youtube:pause"},
      {RouteId::kResume, "POST", R"(/api/v1/throttle/([^/]+):resume)", "/api/v1/throttle/youtube:resume"},
  };
  return routes;
}

}  // namespace asflow
