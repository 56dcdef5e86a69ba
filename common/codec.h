// Streaming compression for output and input files: raw, zstd and gzip.
// Encoders write to a caller-owned file descriptor; decoders read a file of
// any of the three formats, detected by its magic bytes.
#ifndef ASFLOW_COMMON_CODEC_H_
#define ASFLOW_COMMON_CODEC_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace asflow {

// The on-disk encoding of a file.
enum class Codec { kRaw, kZstd, kGzip };

// Chooses the codec from the last extension of the path's final component:
// ".zst" -> kZstd, ".gz" -> kGzip, anything else (case-sensitive) -> kRaw.
Codec CodecForPath(absl::string_view path);

// Returns "raw", "zstd" or "gzip".
absl::string_view CodecName(Codec codec);

// Tuning for Encoder. Plain value type.
struct CodecOptions {
  // zstd compression level (ZSTD_c_compressionLevel), 1..22; 3 is zstd's
  // default and a good speed/ratio balance.
  int zstd_level = 3;
  // zstd worker threads (ZSTD_c_nbWorkers) for outputs larger than
  // zstd_hold_bytes; 0 = compress in the calling thread. With 1 (the zstd
  // CLI's default, -T1) the caller, e.g. reading a child's stdout, and the
  // compression overlap on two cores. Output is one ordinary zstd frame
  // either way. Silently falls back to 0 if libzstd was built without
  // threads.
  int zstd_workers = 1;
  // The zstd encoder holds back (copies) the first bytes written, up to this
  // many. An output that ends within them is compressed in one call at
  // Finish with its size known: no worker thread, tables sized for the
  // input, the size in the frame header. Only a longer output starts the
  // stream (and its workers).
  size_t zstd_hold_bytes = 1 << 20;
  // gzip (deflate) level, 0..9; 6 is gzip's default.
  int gzip_level = 6;
};

// Streaming compressor writing to a file descriptor it does not own (never
// closes or fsyncs it). Buffers internally and writes ~128 KiB chunks,
// retrying EINTR and short writes; zstd also holds back up to
// CodecOptions::zstd_hold_bytes of input before writing anything. After any
// error, or after Finish(), every further call returns FailedPrecondition.
// Not thread-safe (a zstd encoder may run its own worker threads inside).
class Encoder {
 public:
  // Returns an encoder for `codec` on `fd`; `subject` (normally the file's
  // path) prefixes every error message. InvalidArgument on a bad level,
  // Internal if the compression library cannot be initialised.
  static absl::StatusOr<std::unique_ptr<Encoder>> Create(
      Codec codec, int fd, const CodecOptions& options, std::string subject);

  virtual ~Encoder();

  // Compresses `data` (uncompressed bytes); may write some output to the fd.
  virtual absl::Status Write(absl::string_view data) = 0;

  // Ends the zstd frame / gzip member and writes all remaining output. An
  // empty input still produces a valid (empty) frame or member.
  virtual absl::Status Finish() = 0;

 protected:
  Encoder() = default;
};

// Streaming decompressor over a file of any supported encoding, chosen by
// magic bytes (zstd 28 B5 2F FD, gzip 1F 8B; anything else is raw), not by
// the file name. Reads concatenated zstd frames and multi-member gzip as one
// stream. Owns its file descriptor. Not thread-safe.
class Decoder {
 public:
  // Opens `path` for reading. NotFound (naming the path) if it does not
  // exist; other open/read failures map errno to a status naming the path.
  static absl::StatusOr<std::unique_ptr<Decoder>> Open(const std::string& path);
  // The same over an open file (e.g. from OpenFileBeneath), read from its
  // current offset; `path` names it in messages.
  static absl::StatusOr<std::unique_ptr<Decoder>> FromFd(UniqueFd fd, const std::string& path);

  virtual ~Decoder();

  // Fills up to `cap` (> 0) bytes of decompressed data into `buf`; returns 0
  // only at the end of the data. Corrupt or truncated compressed data gives
  // DataLoss naming the path; read errors give the errno status.
  virtual absl::StatusOr<size_t> Read(char* buf, size_t cap) = 0;

  // The encoding detected from the file's first bytes.
  virtual Codec codec() const = 0;

 protected:
  Decoder() = default;
};

// Writes the decompressed content of `path` to `out_fd` (not closed), e.g.
// for `asflowctl cat`. Errors as for Decoder, plus write errors on `out_fd`.
absl::Status CopyDecompressed(const std::string& path, int out_fd);
// The same from an open decoder of `path`.
absl::Status CopyDecompressed(Decoder& decoder, const std::string& path, int out_fd);

// Writes all of `data` to `fd`, retrying EINTR and short writes. On failure
// returns the errno status with message "<subject>: write: <strerror>".
absl::Status WriteFully(int fd, absl::string_view data,
                        absl::string_view subject);

}  // namespace asflow

#endif  // ASFLOW_COMMON_CODEC_H_
