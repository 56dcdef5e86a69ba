// Linked into every executable of an ASan + UBSan build (the asan, asan-ci
// and fuzz presets; CMakeLists.txt): the options the sanitizers start with
// unless ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS say otherwise. The
// end-to-end fixtures and the Python tests start asflowd, asflowctl and
// asflow-worker with an environment of their own, so options given to
// ctest's environment never reach those processes; these do. Every report
// goes to BUILD/asan-reports/report.PID (not the process's stderr, which
// a test may not show), so a report from any process of a test run is
// found by scripts/test-asan.sh, which fails if that directory is not empty
// after the run (docs/testing.md). LeakSanitizer reads the suppressions of
// the source tree (tests/sanitizers/lsan.supp).
extern "C" const char *__asan_default_options() {
  return "log_path=" ASFLOW_ASAN_REPORTS "/report:detect_leaks=1:strict_string_checks=1";
}
extern "C" const char *__ubsan_default_options() {
  return "log_path=" ASFLOW_ASAN_REPORTS "/report:print_stacktrace=1:halt_on_error=1";
}
extern "C" const char *__lsan_default_options() { return "suppressions=" ASFLOW_LSAN_SUPPRESSIONS ":print_suppressions=0"; }
