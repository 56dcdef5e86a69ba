// libFuzzer target: the decoders of compressed inputs (zstd, gzip, raw,
// chosen by magic bytes) that for_each files and `asflowctl cat` read. Any
// input decodes or ends with an error; decoding stops at 64 MiB of output
// so a small bomb cannot stall the run.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/codec.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto decoder = asflow::Decoder::FromFd(asflow::FuzzInputFd(data, size), "fuzz.in");
  if (!decoder.ok()) return 0;
  std::vector<char> buf(1 << 16);
  size_t total = 0;
  for (;;) {
    auto n = (*decoder)->Read(buf.data(), buf.size());
    if (!n.ok() || *n == 0 || (total += *n) > (64u << 20)) break;
  }
  return 0;
}
