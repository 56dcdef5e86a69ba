#include "common/line_reader.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace asflow {
namespace {

constexpr size_t kBufferBytes = 128 << 10;

}  // namespace

LineReader::LineReader(std::string path, std::unique_ptr<Decoder> decoder,
                       size_t max_line_bytes)
    : path_(std::move(path)),
      decoder_(std::move(decoder)),
      max_line_bytes_(max_line_bytes),
      buf_(kBufferBytes) {}

absl::StatusOr<std::unique_ptr<LineReader>> LineReader::Open(
    const std::string& path, size_t max_line_bytes) {
  absl::StatusOr<std::unique_ptr<Decoder>> decoder = Decoder::Open(path);
  if (!decoder.ok()) return decoder.status();
  return std::unique_ptr<LineReader>(
      new LineReader(path, *std::move(decoder), max_line_bytes));
}

absl::StatusOr<std::unique_ptr<LineReader>> LineReader::FromFd(
    UniqueFd fd, const std::string& path, size_t max_line_bytes) {
  absl::StatusOr<std::unique_ptr<Decoder>> decoder = Decoder::FromFd(std::move(fd), path);
  if (!decoder.ok()) return decoder.status();
  return std::unique_ptr<LineReader>(
      new LineReader(path, *std::move(decoder), max_line_bytes));
}

absl::Status LineReader::TooLong() const {
  return absl::InvalidArgumentError(absl::StrCat(path_, ":", line_number_ + 1,
                                                 ": line longer than ",
                                                 max_line_bytes_, " bytes"));
}

absl::StatusOr<bool> LineReader::Next(std::string* line) {
  if (!status_.ok()) return status_;
  line->clear();
  // While accumulating, allow one extra byte for a '\r' that will be
  // stripped; the exact limit is checked once the line is complete.
  const size_t limit =
      max_line_bytes_ == SIZE_MAX ? SIZE_MAX : max_line_bytes_ + 1;
  while (true) {
    const char* start = buf_.data() + pos_;
    const size_t avail = len_ - pos_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    const size_t n = nl != nullptr ? static_cast<size_t>(nl - start) : avail;
    if (n > limit - line->size()) {
      status_ = TooLong();
      return status_;
    }
    line->append(start, n);
    pos_ += n;
    if (nl != nullptr) {
      ++pos_;
      break;
    }
    if (eof_) {
      if (line->empty()) return false;
      break;  // last line without '\n'
    }
    absl::StatusOr<size_t> got = decoder_->Read(buf_.data(), buf_.size());
    if (!got.ok()) {
      status_ = got.status();
      return status_;
    }
    pos_ = 0;
    len_ = *got;
    if (len_ == 0) eof_ = true;
  }
  if (!line->empty() && line->back() == '\r') line->pop_back();
  if (line->size() > max_line_bytes_) {
    status_ = TooLong();
    return status_;
  }
  ++line_number_;
  return true;
}

}  // namespace asflow
