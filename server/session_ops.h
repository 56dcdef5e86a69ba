// SessionOpsSink: where the SessionHub hands a code session's run, task
// and call ops, and news of its end (the scheduler, which posts them to its
// thread). Called on the session's reader thread; must only queue work.
#ifndef ASFLOW_SERVER_SESSION_OPS_H_
#define ASFLOW_SERVER_SESSION_OPS_H_

#include <cstdint>
#include <functional>

#include "asflow/v1/session.pb.h"

namespace asflow {

struct SessionOpsSink {
  std::function<void(int64_t session, v1::SessionOp op)> on_op;
  std::function<void(int64_t session)> on_ended;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SESSION_OPS_H_
