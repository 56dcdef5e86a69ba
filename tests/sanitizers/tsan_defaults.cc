// Linked into every executable of a ThreadSanitizer build (the tsan preset;
// CMakeLists.txt): the options TSan starts with unless TSAN_OPTIONS says
// otherwise. The suppressions file of the source tree, and every report
// written to BUILD/tsan-reports/report.PID instead of stderr, so that a
// report from any process of a test run — a daemon asflowctl or the Python
// tests started, a worker, a daemon SIGKILLed before it could exit with
// TSan's exit code — is found by scripts/test-tsan.sh, which fails if that
// directory is not empty after the run (docs/testing.md). history_size=7
// (the most): a report whose earlier access fell out of a shorter history
// has one stack only, and the suppressions of tsan.supp that match the
// other side of a known false positive cannot apply to it.
extern "C" const char *__tsan_default_options() {
  return "suppressions=" ASFLOW_TSAN_SUPPRESSIONS ":log_path=" ASFLOW_TSAN_REPORTS "/report"
         ":history_size=7:second_deadlock_stack=1";
}
