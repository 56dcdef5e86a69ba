// HttpApi: the JSON side of asflowd's HTTP listener (docs/http.md). Each
// handler decodes a request into an asflow.v1 message, calls the same code
// as the gRPC FlowService (RunReader, Scheduler::Cancel, WorkerHub::List),
// and encodes the answer in protobuf's JSON mapping; errors are JSON too,
// with the HTTP status of their absl code. Thread-safe.
#ifndef ASFLOW_SERVER_HTTP_API_H_
#define ASFLOW_SERVER_HTTP_API_H_

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "httplib.h"
#include "server/event_hub.h"
#include "server/run_reader.h"
#include "server/scheduler.h"
#include "server/store.h"
#include "server/worker_hub.h"

namespace asflow {

class HttpApi {
 public:
  // All must outlive the object.
  HttpApi(Scheduler* scheduler, Store* store, EventHub* hub, WorkerHub* workers)
      : scheduler_(scheduler), store_(store), workers_(workers), reader_(hub, store) {}

  // GET /api/v1/runs?limit=&flow=&state=&page_token= (v1::ListRunsResponse).
  void ListRuns(const httplib::Request& req, httplib::Response& res) const;
  // GET /api/v1/runs/{id} (v1::Run).
  void GetRun(const httplib::Request& req, httplib::Response& res) const;
  // GET /api/v1/runs/{id}/tasks?task=&state=&page_token=&page_size= (v1::ListTasksResponse).
  void ListTasks(const httplib::Request& req, httplib::Response& res) const;
  // GET /api/v1/runs/{id}/instances/{seq} (v1::InstanceDetails).
  void GetInstance(const httplib::Request& req, httplib::Response& res) const;
  // POST /api/v1/runs/{id}:cancel (v1::CancelRunResponse).
  void CancelRun(const httplib::Request& req, httplib::Response& res) const;
  // GET /api/v1/workers (v1::ListWorkersResponse).
  void ListWorkers(const httplib::Request& req, httplib::Response& res) const;
  // GET /api/v1/throttle (v1::ListThrottleResponse).
  void ListThrottle(const httplib::Request& req, httplib::Response& res) const;
  // POST /api/v1/throttle/{key or task}:pause?for=10m (v1::PauseResponse).
  void Pause(const httplib::Request& req, httplib::Response& res) const;
  // POST /api/v1/throttle/{key or task}:resume (v1::ResumeResponse).
  void Resume(const httplib::Request& req, httplib::Response& res) const;

  // Helpers shared with the other routes.
  static void ReplyJson(const google::protobuf::Message& message, httplib::Response& res);
  // {"error": {"code": 404, "status": "NOT_FOUND", "message": "..."}}.
  static void ReplyError(const absl::Status& status, httplib::Response& res);
  static int HttpStatusOf(absl::StatusCode code);

 private:
  Scheduler* const scheduler_;
  Store* const store_;
  WorkerHub* const workers_;
  const RunReader reader_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_HTTP_API_H_
