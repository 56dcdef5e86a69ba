#include "server/http_api.h"

#include <sys/stat.h>

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "asflow/v1/http.pb.h"
#include "common/beneath.h"
#include "server/run_state.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace asflow {
namespace {

// Every value of query parameter `key`, repeated (?state=a&state=b) or
// comma-separated (?state=a,b).
std::vector<std::string> QueryList(const httplib::Request& req, const std::string& key) {
  std::vector<std::string> values;
  for (size_t i = 0; i < req.get_param_value_count(key); ++i) {
    for (absl::string_view v : absl::StrSplit(req.get_param_value(key, i), ',', absl::SkipWhitespace())) {
      values.emplace_back(absl::StripAsciiWhitespace(v));
    }
  }
  return values;
}

absl::StatusOr<int64_t> IntParam(const httplib::Request& req, const std::string& key) {
  int64_t v = 0;
  if (!req.has_param(key)) return 0;
  if (!absl::SimpleAtoi(req.get_param_value(key), &v) || v < 0) {
    return absl::InvalidArgumentError(absl::StrCat(key, "=", req.get_param_value(key), ": not a number"));
  }
  return v;
}

// What the scheduler's answer `done` carries, waiting at most 30 s for it
// (the scheduler thread answers every request in turn).
template <typename T>
absl::StatusOr<T> AwaitScheduler(const std::function<void(std::function<void(T)>)>& ask) {
  auto promise = std::make_shared<std::promise<T>>();
  std::future<T> done = promise->get_future();
  ask([promise](T value) { promise->set_value(std::move(value)); });
  if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    return absl::DeadlineExceededError("the scheduler did not answer within 30 s");
  }
  return done.get();
}

// The number captured by the route's regular expression group `i`.
int64_t PathNumber(const httplib::Request& req, size_t i) {
  int64_t v = -1;
  if (i < req.matches.size()) (void)absl::SimpleAtoi(req.matches[i].str(), &v);
  return v;
}

absl::StatusOr<v1::InstanceState> ParseInstanceState(const std::string& name) {
  v1::InstanceState state;
  if (v1::InstanceState_Parse(absl::AsciiStrToUpper(name), &state) && state != v1::INSTANCE_STATE_UNSPECIFIED) {
    return state;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "state=", name, ": not an instance state (queued, running, done, cached, skipped, suppressed, failed, "
      "cancelled, reset)"));
}

absl::StatusOr<v1::RunState> ParseRunState(const std::string& name) {
  std::string upper = absl::AsciiStrToUpper(name);
  v1::RunState state;
  if ((v1::RunState_Parse(upper, &state) || v1::RunState_Parse("RUN_" + upper, &state)) &&
      state != v1::RUN_STATE_UNSPECIFIED) {
    return state;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("state=", name, ": not a run state (running, succeeded, failed, cancelled)"));
}

}  // namespace

int HttpApi::HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

void HttpApi::ReplyJson(const google::protobuf::Message& message, httplib::Response& res) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  // Every field, zeros and empty strings too: "seq": "0" is clearer to a
  // reader of curl's output than a missing key.
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  json.push_back('\n');
  res.status = 200;
  res.set_content(json, "application/json");
}

void HttpApi::ReplyError(const absl::Status& status, httplib::Response& res) {
  nlohmann::json body = {{"error",
                          {{"code", HttpStatusOf(status.code())},
                           {"status", absl::StatusCodeToString(status.code())},
                           {"message", std::string(status.message())}}}};
  res.status = HttpStatusOf(status.code());
  res.set_content(body.dump() + "\n", "application/json");
}

void HttpApi::ListRuns(const httplib::Request& req, httplib::Response& res) const {
  v1::ListRunsRequest request;
  auto limit = IntParam(req, "limit");
  if (!limit.ok()) return ReplyError(limit.status(), res);
  request.set_limit(static_cast<int32_t>(std::min<int64_t>(*limit, 10000)));
  request.set_flow(req.get_param_value("flow"));
  request.set_page_token(req.get_param_value("page_token"));
  for (const std::string& name : QueryList(req, "state")) {
    auto state = ParseRunState(name);
    if (!state.ok()) return ReplyError(state.status(), res);
    request.add_states(*state);
  }
  auto response = reader_.ListRuns(request);
  if (!response.ok()) return ReplyError(response.status(), res);
  ReplyJson(*response, res);
}

void HttpApi::GetRun(const httplib::Request& req, httplib::Response& res) const {
  auto run = reader_.GetRun(PathNumber(req, 1));
  if (!run.ok()) return ReplyError(run.status(), res);
  ReplyJson(*run, res);
}

void HttpApi::ListTasks(const httplib::Request& req, httplib::Response& res) const {
  v1::ListTasksRequest request;
  request.set_run_id(PathNumber(req, 1));
  request.set_task(req.get_param_value("task"));
  request.set_page_token(req.get_param_value("page_token"));
  auto size = IntParam(req, "page_size");
  if (!size.ok()) return ReplyError(size.status(), res);
  request.set_page_size(static_cast<int32_t>(std::min<int64_t>(*size, 10000)));
  for (const std::string& name : QueryList(req, "state")) {
    auto state = ParseInstanceState(name);
    if (!state.ok()) return ReplyError(state.status(), res);
    request.add_states(*state);
  }
  auto response = reader_.ListTasks(request);
  if (!response.ok()) return ReplyError(response.status(), res);
  ReplyJson(*response, res);
}

void HttpApi::GetInstance(const httplib::Request& req, httplib::Response& res) const {
  int64_t run_id = PathNumber(req, 1);
  int64_t seq = PathNumber(req, 2);
  auto run = reader_.GetRun(run_id);
  if (!run.ok()) return ReplyError(run.status(), res);
  InstanceQuery query;
  query.run_id = run_id;
  query.after_seq = seq - 1;
  query.limit = 1;
  auto rows = store_->ListInstances(query);
  if (!rows.ok()) return ReplyError(rows.status(), res);
  if (rows->empty() || rows->front().seq != seq) {
    return ReplyError(absl::NotFoundError(absl::StrCat("run ", run_id, " has no instance ", seq)), res);
  }
  v1::InstanceDetails details;
  *details.mutable_instance() = InstanceToProto(rows->front());
  if (absl::Status s = reader_.AddAttempts(rows->front(), details.mutable_instance()); !s.ok()) {
    return ReplyError(s, res);
  }
  details.set_workspace(run->workspace());
  const std::string& output = rows->front().output;
  // Looked up below the workspace without following a symlink, as the
  // daemon writes outputs: nothing outside the workspace is ever stat'ed.
  if (!output.empty()) {
    auto root = OpenRoot(run->workspace());
    auto file = root.ok() ? OpenFileBeneath(root->get(), run->workspace(), output) : root.status();
    struct stat st;
    if (file.ok() && fstat(file->get(), &st) == 0 && S_ISREG(st.st_mode)) {
      details.set_output_exists(true);
      details.set_output_size(st.st_size);
    }
  }
  ReplyJson(details, res);
}

void HttpApi::CancelRun(const httplib::Request& req, httplib::Response& res) const {
  auto promise = std::make_shared<std::promise<absl::StatusOr<v1::RunState>>>();
  std::future<absl::StatusOr<v1::RunState>> done = promise->get_future();
  scheduler_->Cancel(PathNumber(req, 1),
                     [promise](absl::StatusOr<v1::RunState> state) { promise->set_value(std::move(state)); });
  if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    return ReplyError(absl::DeadlineExceededError("the scheduler did not answer within 30 s"), res);
  }
  absl::StatusOr<v1::RunState> state = done.get();
  if (!state.ok()) return ReplyError(state.status(), res);
  v1::CancelRunResponse response;
  response.set_state(*state);
  ReplyJson(response, res);
}

void HttpApi::ListThrottle(const httplib::Request& req, httplib::Response& res) const {
  auto list = AwaitScheduler<v1::ListThrottleResponse>(
      [this](std::function<void(v1::ListThrottleResponse)> done) { scheduler_->ListThrottle(std::move(done)); });
  if (!list.ok()) return ReplyError(list.status(), res);
  ReplyJson(*list, res);
}

void HttpApi::Pause(const httplib::Request& req, httplib::Response& res) const {
  std::string target = req.matches.size() > 1 ? req.matches[1].str() : "";
  absl::Duration duration = absl::ZeroDuration();
  if (req.has_param("for")) {
    const std::string text = req.get_param_value("for");
    if (!absl::ParseDuration(text, &duration) || duration <= absl::ZeroDuration() ||
        duration == absl::InfiniteDuration()) {
      return ReplyError(absl::InvalidArgumentError(absl::StrCat(
                            "for=", text, ": expected a duration such as 10m, 90s or 1h30m (leave it out: until resumed)")),
                        res);
    }
  }
  using Answer = absl::StatusOr<v1::ThrottleStatus>;
  auto status = AwaitScheduler<Answer>([this, &target, duration](std::function<void(Answer)> done) {
    scheduler_->Pause(target, duration, std::move(done));
  });
  if (!status.ok()) return ReplyError(status.status(), res);
  if (!status->ok()) return ReplyError(status->status(), res);
  v1::PauseResponse response;
  *response.mutable_status() = std::move(**status);
  ReplyJson(response, res);
}

void HttpApi::Resume(const httplib::Request& req, httplib::Response& res) const {
  std::string target = req.matches.size() > 1 ? req.matches[1].str() : "";
  using Answer = absl::StatusOr<v1::ResumeResponse>;
  auto answer = AwaitScheduler<Answer>(
      [this, &target](std::function<void(Answer)> done) { scheduler_->Unpause(target, std::move(done)); });
  if (!answer.ok()) return ReplyError(answer.status(), res);
  if (!answer->ok()) return ReplyError(answer->status(), res);
  ReplyJson(**answer, res);
}

void HttpApi::ListWorkers(const httplib::Request& req, httplib::Response& res) const {
  v1::ListWorkersResponse response;
  for (v1::WorkerInfo& info : workers_->List()) *response.add_workers() = std::move(info);
  ReplyJson(response, res);
}

}  // namespace asflow
