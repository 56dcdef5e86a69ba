// Line-by-line reading of input files in any supported compression.
#ifndef ASFLOW_COMMON_LINE_READER_H_
#define ASFLOW_COMMON_LINE_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/codec.h"

namespace asflow {

// Reads '\n'-separated lines from a raw, zstd or gzip file (via Decoder).
// One trailing '\r' per line is stripped; a last line without '\n' is
// returned; an empty "line" after the final '\n' is not. Errors are sticky:
// once Next fails it keeps returning the same status. Not thread-safe.
class LineReader {
 public:
  // Opens `path`; errors as for Decoder::Open. `max_line_bytes` bounds the
  // length of a line (without its "\n" / "\r\n") and thus memory use.
  static absl::StatusOr<std::unique_ptr<LineReader>> Open(
      const std::string& path, size_t max_line_bytes = 64 << 20);
  // The same over an open file (e.g. from OpenFileBeneath); `path` names it
  // in messages.
  static absl::StatusOr<std::unique_ptr<LineReader>> FromFd(
      UniqueFd fd, const std::string& path, size_t max_line_bytes = 64 << 20);

  // Stores the next line in *line and returns true, or returns false at the
  // end of the file. A line longer than max_line_bytes gives InvalidArgument
  // "PATH:LINE: line longer than N bytes"; decoding errors are passed on.
  absl::StatusOr<bool> Next(std::string* line);

  // 1-based number of the line last returned by Next (0 before the first).
  int64_t line_number() const { return line_number_; }

 private:
  LineReader(std::string path, std::unique_ptr<Decoder> decoder,
             size_t max_line_bytes);

  absl::Status TooLong() const;

  const std::string path_;
  const std::unique_ptr<Decoder> decoder_;
  const size_t max_line_bytes_;
  std::vector<char> buf_;  // decoded bytes; [pos_, len_) not yet consumed
  size_t pos_ = 0;
  size_t len_ = 0;
  bool eof_ = false;
  int64_t line_number_ = 0;
  absl::Status status_;  // first error, returned by every later Next
};

}  // namespace asflow

#endif  // ASFLOW_COMMON_LINE_READER_H_
