// Force-included first in every C++ file of a ThreadSanitizer build (the
// tsan preset; CMakeLists.txt). Debian's libprotobuf is not built with
// TSan, and google/protobuf/map_field.h gives MapFieldBase two more members
// (seq1_ and seq2_, protobuf's own aid for spotting const/mutable races on
// a map field) when __SANITIZE_THREAD__ is defined: compiled with
// -fsanitize=thread, our code and the library disagreed on the layout of
// every message with a map field, and any test that parsed one (text
// format, reflection) died with a SEGV in
// MapFieldBase::SyncRepeatedFieldWithMap. So map_field.h, and the protobuf
// headers it includes, are read here once, as the library was compiled:
// only the macro is hidden from them; the code is instrumented as usual.
#ifndef ASFLOW_TESTS_SANITIZERS_TSAN_PROTOBUF_ABI_H_
#define ASFLOW_TESTS_SANITIZERS_TSAN_PROTOBUF_ABI_H_

#include <cstddef>  // libstdc++'s configuration (_GLIBCXX_TSAN) still sees the macro

#pragma push_macro("__SANITIZE_THREAD__")
#undef __SANITIZE_THREAD__
#include <google/protobuf/map_field.h>
#pragma pop_macro("__SANITIZE_THREAD__")

#if !defined(__SANITIZE_THREAD__)
#error "tsan_protobuf_abi.h is for -fsanitize=thread builds"
#endif

#endif  // ASFLOW_TESTS_SANITIZERS_TSAN_PROTOBUF_ABI_H_
