#include "exec/protocol.h"

#include <string>

namespace asflow {

v1::AssignmentResult ResultToProto(const SubprocessResult& result) {
  v1::AssignmentResult proto;
  proto.set_exit_code(result.exit_code);
  proto.set_term_signal(result.term_signal);
  proto.set_timed_out(result.timed_out);
  proto.set_cancelled(result.cancelled);
  if (!result.spawn_status.ok()) proto.set_spawn_error(std::string(result.spawn_status.message()));
  if (!result.output_status.ok()) proto.set_output_error(std::string(result.output_status.message()));
  proto.set_stderr_tail(result.stderr_tail);
  proto.set_stdout_bytes(result.stdout_bytes);
  proto.set_elapsed_ms(absl::ToInt64Milliseconds(result.elapsed));
  if (result.timeout != absl::InfiniteDuration()) {
    proto.set_timeout_ms(absl::ToInt64Milliseconds(result.timeout));
  }
  proto.mutable_error_types()->Add(result.error_types.begin(), result.error_types.end());
  proto.set_error_text(result.error_text);
  return proto;
}

SubprocessResult ResultFromProto(const v1::AssignmentResult& proto) {
  SubprocessResult result;
  result.exit_code = proto.exit_code();
  result.term_signal = proto.term_signal();
  result.timed_out = proto.timed_out();
  result.cancelled = proto.cancelled();
  if (!proto.spawn_error().empty()) result.spawn_status = absl::UnknownError(proto.spawn_error());
  if (!proto.output_error().empty()) result.output_status = absl::UnknownError(proto.output_error());
  result.stderr_tail = proto.stderr_tail();
  result.stdout_bytes = proto.stdout_bytes();
  result.elapsed = absl::Milliseconds(proto.elapsed_ms());
  if (proto.timeout_ms() > 0) result.timeout = absl::Milliseconds(proto.timeout_ms());
  result.error_types.assign(proto.error_types().begin(), proto.error_types().end());
  result.error_text = proto.error_text();
  return result;
}

}  // namespace asflow
