// Shared by the fuzz targets that read files: the input as an anonymous
// in-memory file (memfd), so the real readers run on a real descriptor.
#ifndef ASFLOW_TESTS_FUZZ_FUZZ_INPUT_H_
#define ASFLOW_TESTS_FUZZ_FUZZ_INPUT_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "common/unique_fd.h"

namespace asflow {

inline UniqueFd FuzzInputFd(const uint8_t* data, size_t size) {
  int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
  if (fd < 0) abort();
  for (size_t done = 0; done < size;) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) abort();
    done += n;
  }
  if (lseek(fd, 0, SEEK_SET) != 0) abort();
  return UniqueFd(fd);
}

}  // namespace asflow

#endif  // ASFLOW_TESTS_FUZZ_FUZZ_INPUT_H_
