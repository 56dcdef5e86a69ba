// TsanRelease / TsanAcquire: tell ThreadSanitizer about a hand-off that
// happens inside Debian's uninstrumented gRPC core, where TSan cannot see
// it: a reactor published to gRPC's threads when its method handler
// returns, an operation started (StartWrite, Finish) and its reaction
// (OnWriteDone, OnDone) run later on another gRPC thread. gRPC guarantees
// that order (a reaction follows the start of its operation; OnDone
// follows every reaction), so the edge is real; TSan only misses it. Each
// pair names one hand-off (its own address), so no unrelated edge is
// added. No-ops in a build without TSan (docs/testing.md).
#ifndef ASFLOW_SERVER_TSAN_HAND_OFF_H_
#define ASFLOW_SERVER_TSAN_HAND_OFF_H_

namespace asflow {

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
inline void TsanRelease(const void* what) { __tsan_release(const_cast<void*>(what)); }
inline void TsanAcquire(const void* what) { __tsan_acquire(const_cast<void*>(what)); }
#else
inline void TsanRelease(const void*) {}
inline void TsanAcquire(const void*) {}
#endif

}  // namespace asflow

#endif  // ASFLOW_SERVER_TSAN_HAND_OFF_H_
