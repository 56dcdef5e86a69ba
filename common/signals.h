// Termination signals for long-running binaries (asflowd, asflow-worker):
// blocked in every thread and taken by one thread with sigwait, so that
// shutdown and drain run in ordinary code, not in a signal handler.
#ifndef ASFLOW_COMMON_SIGNALS_H_
#define ASFLOW_COMMON_SIGNALS_H_

#include <signal.h>

namespace asflow {

// Ignores SIGPIPE and blocks SIGTERM and SIGINT in the calling thread (and
// the threads it starts afterwards); returns the set for sigwait. Call
// first thing in main.
sigset_t BlockTerminationSignals();

}  // namespace asflow

#endif  // ASFLOW_COMMON_SIGNALS_H_
