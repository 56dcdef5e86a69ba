// The exec library's types on the WorkerService wire: a command's result
// as the worker reports it and as the daemon judges it. One place, so the
// two sides cannot drift.
#ifndef ASFLOW_EXEC_PROTOCOL_H_
#define ASFLOW_EXEC_PROTOCOL_H_

#include "asflow/v1/worker.pb.h"
#include "exec/subprocess.h"

namespace asflow {

// The protocol version a worker and the daemon speak (WorkerHello.version
// carries the release; this is checked for compatibility): the project's
// version (CMakeLists.txt, via asflow_common's ASFLOW_VERSION).
inline constexpr char kAsflowVersion[] = ASFLOW_VERSION;

v1::AssignmentResult ResultToProto(const SubprocessResult& result);
// Spawn and output errors come back with their messages (the codes are
// not sent: rules never match them, users read the text).
SubprocessResult ResultFromProto(const v1::AssignmentResult& proto);

}  // namespace asflow

#endif  // ASFLOW_EXEC_PROTOCOL_H_
