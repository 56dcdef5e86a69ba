// UniqueFd: owns a file descriptor and closes it on destruction. Move-only;
// not thread-safe.
#ifndef ASFLOW_COMMON_UNIQUE_FD_H_
#define ASFLOW_COMMON_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace asflow {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }
  // Closes the current fd (errors ignored: callers that care about close's
  // result call close(Release()) themselves) and owns `fd`.
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace asflow

#endif  // ASFLOW_COMMON_UNIQUE_FD_H_
