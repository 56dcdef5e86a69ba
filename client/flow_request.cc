#include "client/flow_request.h"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace asflow {
namespace {

std::string Cwd() {
  char buf[PATH_MAX];
  return getcwd(buf, sizeof(buf)) != nullptr ? std::string(buf) : std::string(".");
}

// Adds each task of `names` (comma lists allowed) to `out`, checking it.
absl::Status AddTasks(const std::string& flow_file, const v1::FlowSpec& spec, const std::vector<std::string>& names,
                      absl::string_view flag, google::protobuf::RepeatedPtrField<std::string>* out) {
  std::vector<std::string> known;
  for (const v1::TaskSpec& t : spec.tasks()) known.push_back(t.name());
  for (const std::string& list : names) {
    for (absl::string_view piece : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
      const std::string name(absl::StripAsciiWhitespace(piece));
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        return absl::InvalidArgumentError(absl::StrCat(flow_file, ": ", flag, " ", name, ": the flow has no task '",
                                                       name, "' (it has: ", absl::StrJoin(known, ", "), ")"));
      }
      if (std::find(out->begin(), out->end(), name) == out->end()) out->Add(std::string(name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::SubmitFlowRequest> BuildFlowRequest(const std::string& flow_file, const LoadedFlow& flow,
                                                       const FlowRequestOptions& options) {
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = flow.spec;
  for (const std::string& p : options.params) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) return absl::InvalidArgumentError(absl::StrCat("-p ", p, ": expected name=value"));
    std::string name = p.substr(0, eq);
    if (!flow.spec.params().contains(name)) {
      std::vector<std::string> known;
      for (const auto& [k, v] : flow.spec.params()) known.push_back(k);
      std::sort(known.begin(), known.end());
      return absl::InvalidArgumentError(absl::StrCat(flow_file, ": -p ", name, ": the flow has no parameter '", name,
                                                     "' (it has: ", absl::StrJoin(known, ", "), ")"));
    }
    (*request.mutable_params())[name] = p.substr(eq + 1);
  }
  if (absl::Status s = AddTasks(flow_file, flow.spec, options.force, "--force", request.mutable_force()); !s.ok()) {
    return s;
  }
  if (absl::Status s = AddTasks(flow_file, flow.spec, options.only, "--only", request.mutable_only()); !s.ok()) {
    return s;
  }
  request.set_workspace(Cwd());
  request.set_source(flow_file);
  request.set_keep_going(options.keep_going);
  if (const char* path = getenv("PATH")) (*request.mutable_env())["PATH"] = path;
  return request;
}

}  // namespace asflow
