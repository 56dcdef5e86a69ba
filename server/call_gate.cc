#include "server/call_gate.h"

#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

constexpr absl::string_view kWorkerPrefix = "/asflow.v1.WorkerService/";
constexpr absl::string_view kHealthPrefix = "/grpc.health.v1.Health/";

absl::string_view View(const grpc_slice& s) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)), GRPC_SLICE_LENGTH(s));
}

// grpc_auth_metadata_processor.process: runs on gRPC's thread as the call's
// headers arrive, and answers at once (never blocks).
void Process(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md, size_t num_md,
             grpc_process_auth_metadata_done_cb cb, void* user_data) {
  const CallGate* gate = static_cast<std::shared_ptr<const CallGate>*>(state)->get();
  absl::string_view path;
  std::vector<absl::string_view> authorization;
  for (size_t i = 0; i < num_md; ++i) {
    absl::string_view key = View(md[i].key);
    if (key == ":path") path = View(md[i].value);
    if (key == "authorization") authorization.push_back(View(md[i].value));
  }
  absl::Status status = gate->Check(path, authorization);
  cb(user_data, nullptr, 0, nullptr, 0, status.ok() ? GRPC_STATUS_OK : GRPC_STATUS_UNAUTHENTICATED,
     nullptr);
}

}  // namespace

bool ConstantTimeEquals(absl::string_view given, absl::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    diff |= given[i] ^ expected[i % (expected.empty() ? 1 : expected.size())];
  }
  return diff == 0 && !expected.empty();
}

bool CallGate::IsOpen(absl::string_view path) { return absl::StartsWith(path, kHealthPrefix); }

const std::string& CallGate::TokenFor(absl::string_view path) const {
  return absl::StartsWith(path, kWorkerPrefix) ? worker_token_ : client_token_;
}

absl::Status CallGate::Check(absl::string_view path, const std::vector<absl::string_view>& authorization) const {
  if (IsOpen(path)) return absl::OkStatus();
  const std::string& token = TokenFor(path);
  if (token.empty()) return absl::OkStatus();
  for (absl::string_view value : authorization) {
    if (absl::ConsumePrefix(&value, "Bearer ") && ConstantTimeEquals(value, token)) return absl::OkStatus();
  }
  return absl::UnauthenticatedError("");
}

GatedCredentials::GatedCredentials(grpc_server_credentials* c_credentials, std::shared_ptr<const CallGate> gate)
    : c_credentials_(c_credentials), gate_(std::move(gate)) {
  grpc_auth_metadata_processor processor;
  processor.process = &Process;
  // The core credentials outlive this wrapper (the listener holds them
  // until the server is gone): they own a reference to the gate.
  processor.destroy = [](void* state) { delete static_cast<std::shared_ptr<const CallGate>*>(state); };
  processor.state = new std::shared_ptr<const CallGate>(gate_);
  grpc_server_credentials_set_auth_metadata_processor(c_credentials_, processor);
}

GatedCredentials::~GatedCredentials() { grpc_server_credentials_release(c_credentials_); }

void GatedCredentials::SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) {
  spdlog::error("GatedCredentials: another auth metadata processor was ignored");
}

int GatedCredentials::AddPortToServer(const std::string& addr, grpc_server* server) {
  return grpc_server_add_http2_port(server, addr.c_str(), c_credentials_);
}

}  // namespace asflow
