#include "common/codec.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace asflow {
namespace {

// Output is written to the fd in chunks of about this size.
constexpr size_t kChunkBytes = 128 << 10;

absl::Status FinishedError(absl::string_view subject) {
  return absl::FailedPreconditionError(
      absl::StrCat(subject, ": encoder already finished or failed"));
}

// Encoders' output buffers and zstd contexts, kept for reuse: a code
// session writes thousands of small outputs a second, and a fresh 128 KiB
// buffer (zero-filled, often freshly mmap'd) and zstd context per file cost
// more than compressing it. At most kKeep of each are kept; thread-safe.
constexpr size_t kKeep = 32;

size_t OutBufferBytes() {
  static const size_t bytes = std::max(kChunkBytes, ZSTD_CStreamOutSize());
  return bytes;
}

ABSL_CONST_INIT absl::Mutex pool_mu(absl::kConstInit);
std::vector<char*>* free_buffers ABSL_GUARDED_BY(pool_mu) = new std::vector<char*>();
std::vector<ZSTD_CCtx*>* free_cctxs ABSL_GUARDED_BY(pool_mu) = new std::vector<ZSTD_CCtx*>();

// A buffer of OutBufferBytes(), not zero-filled, from the pool.
class OutBuffer {
 public:
  OutBuffer() {
    {
      absl::MutexLock lock(&pool_mu);
      if (!free_buffers->empty()) {
        data_ = free_buffers->back();
        free_buffers->pop_back();
      }
    }
    if (data_ == nullptr) data_ = new char[OutBufferBytes()];
  }
  ~OutBuffer() {
    absl::MutexLock lock(&pool_mu);
    if (free_buffers->size() < kKeep) {
      free_buffers->push_back(data_);
    } else {
      delete[] data_;
    }
  }
  OutBuffer(const OutBuffer&) = delete;
  OutBuffer& operator=(const OutBuffer&) = delete;
  char* data() { return data_; }
  size_t size() const { return OutBufferBytes(); }

 private:
  char* data_ = nullptr;
};

// A zstd context from the pool, reset to its defaults; null if none can be
// made.
ZSTD_CCtx* TakeCCtx() {
  {
    absl::MutexLock lock(&pool_mu);
    if (!free_cctxs->empty()) {
      ZSTD_CCtx* cctx = free_cctxs->back();
      free_cctxs->pop_back();
      return cctx;
    }
  }
  return ZSTD_createCCtx();
}

void ReturnCCtx(ZSTD_CCtx* cctx) {
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  absl::MutexLock lock(&pool_mu);
  if (free_cctxs->size() < kKeep) {
    free_cctxs->push_back(cctx);
  } else {
    ZSTD_freeCCtx(cctx);
  }
}

// Writes whole chunks: the base for all encoders. Subclasses produce bytes
// into out_ and call Flush() when it is full.
class EncoderBase : public Encoder {
 protected:
  EncoderBase(int fd, std::string subject)
      : fd_(fd), subject_(std::move(subject)) {}

  absl::Status Flush() {
    if (out_len_ == 0) return absl::OkStatus();
    absl::Status s =
        WriteFully(fd_, absl::string_view(out_.data(), out_len_), subject_);
    out_len_ = 0;
    return s;
  }

  // Marks the encoder unusable when `s` is an error; returns `s`.
  absl::Status Check(absl::Status s) {
    if (!s.ok()) done_ = true;
    return s;
  }

  const int fd_;
  const std::string subject_;
  OutBuffer out_;
  size_t out_len_ = 0;
  bool done_ = false;  // finished or failed
};

class RawEncoder final : public EncoderBase {
 public:
  RawEncoder(int fd, std::string subject)
      : EncoderBase(fd, std::move(subject)) {}

  absl::Status Write(absl::string_view data) override {
    if (done_) return FinishedError(subject_);
    while (!data.empty()) {
      if (out_len_ == 0 && data.size() >= out_.size()) {
        // Large writes bypass the buffer.
        return Check(WriteFully(fd_, data, subject_));
      }
      size_t n = std::min(data.size(), out_.size() - out_len_);
      std::memcpy(out_.data() + out_len_, data.data(), n);
      out_len_ += n;
      data.remove_prefix(n);
      if (out_len_ == out_.size()) {
        if (absl::Status s = Check(Flush()); !s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    if (done_) return FinishedError(subject_);
    done_ = true;
    return Flush();
  }
};

// Holds back the first `hold_bytes` of input. If Finish comes before they
// are exceeded the whole output is compressed in one go with a pledged size;
// otherwise the encoder switches to streaming, with `workers` threads.
class ZstdEncoder final : public EncoderBase {
 public:
  ZstdEncoder(int fd, std::string subject, ZSTD_CCtx* cctx, int workers,
              size_t hold_bytes)
      : EncoderBase(fd, std::move(subject)),
        cctx_(cctx),
        workers_(workers),
        hold_bytes_(hold_bytes) {}
  ~ZstdEncoder() override { ReturnCCtx(cctx_); }

  absl::Status Write(absl::string_view data) override {
    if (done_) return FinishedError(subject_);
    if (!streaming_) {
      if (data.size() <= hold_bytes_ - held_.size()) {
        held_.append(data.data(), data.size());
        return absl::OkStatus();
      }
      if (absl::Status s = Check(StartStream()); !s.ok()) return s;
    }
    return Check(Compress(data, ZSTD_e_continue));
  }

  absl::Status Finish() override {
    if (done_) return FinishedError(subject_);
    absl::Status s;
    if (!streaming_) {
      // Known size: zstd picks a window and tables no bigger than the input
      // (cheaper for small outputs) and records the size in the header.
      size_t rc = ZSTD_CCtx_setPledgedSrcSize(cctx_, held_.size());
      if (ZSTD_isError(rc)) s = ZstdError("setting the input size", rc);
      if (s.ok()) s = Compress(held_, ZSTD_e_end);
    } else {
      s = Compress(absl::string_view(), ZSTD_e_end);
    }
    if (s.ok()) s = Flush();
    done_ = true;
    return s;
  }

 private:
  // Starts the streaming frame: sets the workers (only possible before the
  // first byte is compressed) and compresses what was held back.
  absl::Status StartStream() {
    streaming_ = true;
    if (workers_ > 0) {
      // Fails on a libzstd built without ZSTD_MULTITHREAD; then we simply
      // compress single-threaded, which produces the same format.
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_nbWorkers, workers_);
    }
    std::string held = std::move(held_);
    held_ = std::string();
    return Compress(held, ZSTD_e_continue);
  }

  absl::Status ZstdError(absl::string_view what, size_t rc) const {
    return absl::InternalError(
        absl::StrCat(subject_, ": zstd ", what, ": ", ZSTD_getErrorName(rc)));
  }

  // Feeds `data` to zstd, flushing out_ whenever it fills. With ZSTD_e_end,
  // loops until the frame is complete.
  absl::Status Compress(absl::string_view data, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (true) {
      ZSTD_outBuffer out{out_.data(), out_.size(), out_len_};
      size_t remaining = ZSTD_compressStream2(cctx_, &out, &in, mode);
      out_len_ = out.pos;
      if (ZSTD_isError(remaining)) {
        return ZstdError("compression failed", remaining);
      }
      if (out_len_ == out_.size()) {
        if (absl::Status s = Flush(); !s.ok()) return s;
      }
      bool done = mode == ZSTD_e_end ? remaining == 0 : in.pos == in.size;
      if (done) return absl::OkStatus();
    }
  }

  ZSTD_CCtx* const cctx_;
  const int workers_;
  const size_t hold_bytes_;
  bool streaming_ = false;
  std::string held_;  // input not yet given to zstd (until streaming_)
};

class GzipEncoder final : public EncoderBase {
 public:
  GzipEncoder(int fd, std::string subject)
      : EncoderBase(fd, std::move(subject)) {
    std::memset(&zs_, 0, sizeof(zs_));
  }
  ~GzipEncoder() override {
    if (initialized_) deflateEnd(&zs_);
  }

  absl::Status Init(int level) {
    int rc =
        deflateInit2(&zs_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
      return absl::InternalError(
          absl::StrCat(subject_, ": deflateInit2 failed: ", rc));
    }
    initialized_ = true;
    return absl::OkStatus();
  }

  absl::Status Write(absl::string_view data) override {
    if (done_) return FinishedError(subject_);
    // avail_in is 32-bit; feed huge inputs in slices.
    while (!data.empty()) {
      size_t n = std::min<size_t>(data.size(), UINT_MAX);
      if (absl::Status s = Check(Deflate(data.substr(0, n), Z_NO_FLUSH));
          !s.ok()) {
        return s;
      }
      data.remove_prefix(n);
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    if (done_) return FinishedError(subject_);
    absl::Status s = Deflate(absl::string_view(), Z_FINISH);
    if (s.ok()) s = Flush();
    done_ = true;
    return s;
  }

 private:
  absl::Status Deflate(absl::string_view data, int flush) {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs_.avail_in = static_cast<uInt>(data.size());
    while (true) {
      zs_.next_out = reinterpret_cast<Bytef*>(out_.data() + out_len_);
      zs_.avail_out = static_cast<uInt>(out_.size() - out_len_);
      int rc = deflate(&zs_, flush);
      out_len_ = out_.size() - zs_.avail_out;
      if (rc == Z_STREAM_ERROR) {
        return absl::InternalError(
            absl::StrCat(subject_, ": gzip compression failed"));
      }
      if (out_len_ == out_.size()) {
        if (absl::Status s = Flush(); !s.ok()) return s;
      }
      // Z_BUF_ERROR just means no progress was possible, which cannot
      // happen with free output space and no input left: we are done.
      bool done = flush == Z_FINISH ? rc == Z_STREAM_END
                                    : zs_.avail_in == 0 && zs_.avail_out != 0;
      if (done) return absl::OkStatus();
    }
  }

  z_stream zs_;
  bool initialized_ = false;
};

// Reads the file in chunks; subclasses decode from in_[in_pos_, in_len_).
class DecoderBase : public Decoder {
 protected:
  DecoderBase(int fd, std::string path, std::vector<char> in, size_t in_len)
      : fd_(fd), path_(std::move(path)), in_(std::move(in)), in_len_(in_len) {}
  ~DecoderBase() override { close(fd_); }

  // Replaces the (consumed) input buffer with the next chunk of the file;
  // sets eof_ when the file is exhausted.
  absl::Status Refill() {
    while (true) {
      ssize_t n = read(fd_, in_.data(), in_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return absl::ErrnoToStatus(errno, absl::StrCat(path_, ": read"));
      in_pos_ = 0;
      in_len_ = static_cast<size_t>(n);
      if (n == 0) eof_ = true;
      return absl::OkStatus();
    }
  }

  absl::Status Truncated(absl::string_view format) const {
    return absl::DataLossError(
        absl::StrCat(path_, ": truncated ", format, " data"));
  }

  const int fd_;
  const std::string path_;
  std::vector<char> in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  bool eof_ = false;
};

class RawDecoder final : public DecoderBase {
 public:
  RawDecoder(int fd, std::string path, std::vector<char> in, size_t in_len)
      : DecoderBase(fd, std::move(path), std::move(in), in_len) {}
  Codec codec() const override { return Codec::kRaw; }

  absl::StatusOr<size_t> Read(char* buf, size_t cap) override {
    if (cap == 0) return absl::InvalidArgumentError("Decoder::Read: cap is 0");
    if (in_pos_ == in_len_ && !eof_) {
      if (absl::Status s = Refill(); !s.ok()) return s;
    }
    size_t n = std::min(cap, in_len_ - in_pos_);
    std::memcpy(buf, in_.data() + in_pos_, n);
    in_pos_ += n;
    return n;
  }
};

class ZstdDecoder final : public DecoderBase {
 public:
  ZstdDecoder(int fd, std::string path, std::vector<char> in, size_t in_len,
              ZSTD_DCtx* dctx)
      : DecoderBase(fd, std::move(path), std::move(in), in_len), dctx_(dctx) {}
  ~ZstdDecoder() override { ZSTD_freeDCtx(dctx_); }
  Codec codec() const override { return Codec::kZstd; }

  absl::StatusOr<size_t> Read(char* buf, size_t cap) override {
    if (cap == 0) return absl::InvalidArgumentError("Decoder::Read: cap is 0");
    ZSTD_outBuffer out{buf, cap, 0};
    while (out.pos < out.size) {
      if (in_pos_ == in_len_ && !eof_) {
        if (absl::Status s = Refill(); !s.ok()) return s;
      }
      if (in_pos_ == in_len_ && eof_ && !in_frame_) break;  // clean end
      ZSTD_inBuffer in{in_.data(), in_len_, in_pos_};
      size_t before_out = out.pos;
      size_t before_in = in.pos;
      size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
      in_pos_ = in.pos;
      if (ZSTD_isError(rc)) {
        return absl::DataLossError(absl::StrCat(
            path_, ": corrupt zstd data: ", ZSTD_getErrorName(rc)));
      }
      // rc == 0 exactly when a frame has been fully decoded and flushed.
      in_frame_ = rc != 0;
      if (eof_ && in_pos_ == in_len_ && before_in == in.pos &&
          before_out == out.pos && in_frame_) {
        return Truncated("zstd");
      }
    }
    return out.pos;
  }

 private:
  ZSTD_DCtx* const dctx_;
  bool in_frame_ = false;
};

class GzipDecoder final : public DecoderBase {
 public:
  GzipDecoder(int fd, std::string path, std::vector<char> in, size_t in_len)
      : DecoderBase(fd, std::move(path), std::move(in), in_len) {
    std::memset(&zs_, 0, sizeof(zs_));
  }
  ~GzipDecoder() override {
    if (initialized_) inflateEnd(&zs_);
  }
  Codec codec() const override { return Codec::kGzip; }

  absl::Status Init() {
    // 15 + 16: gzip wrapper only, maximum window.
    int rc = inflateInit2(&zs_, 15 + 16);
    if (rc != Z_OK) {
      return absl::InternalError(
          absl::StrCat(path_, ": inflateInit2 failed: ", rc));
    }
    initialized_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> Read(char* buf, size_t cap) override {
    if (cap == 0) return absl::InvalidArgumentError("Decoder::Read: cap is 0");
    cap = std::min<size_t>(cap, UINT_MAX);
    size_t produced = 0;
    while (produced < cap) {
      if (in_pos_ == in_len_ && !eof_) {
        if (absl::Status s = Refill(); !s.ok()) return s;
      }
      if (in_pos_ == in_len_ && eof_ && !in_member_) break;  // clean end
      zs_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      zs_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      zs_.next_out = reinterpret_cast<Bytef*>(buf + produced);
      zs_.avail_out = static_cast<uInt>(cap - produced);
      int rc = inflate(&zs_, Z_NO_FLUSH);
      size_t consumed = (in_len_ - in_pos_) - zs_.avail_in;
      size_t made = (cap - produced) - zs_.avail_out;
      in_pos_ += consumed;
      produced += made;
      if (rc == Z_STREAM_END) {
        // End of one member; another may follow (multi-member gzip).
        in_member_ = false;
        inflateReset(&zs_);
        continue;
      }
      if (rc == Z_OK) {
        in_member_ = true;
        continue;
      }
      if (rc == Z_BUF_ERROR) {
        // No progress possible: only legitimate if more input is coming.
        if (eof_ && in_pos_ == in_len_) return Truncated("gzip");
        continue;
      }
      return absl::DataLossError(absl::StrCat(
          path_,
          ": corrupt gzip data: ", zs_.msg != nullptr ? zs_.msg : zError(rc)));
    }
    return produced;
  }

 private:
  z_stream zs_;
  bool initialized_ = false;
  bool in_member_ = false;
};

}  // namespace

Codec CodecForPath(absl::string_view path) {
  size_t slash = path.rfind('/');
  absl::string_view base =
      slash == absl::string_view::npos ? path : path.substr(slash + 1);
  if (base.size() > 4 && absl::EndsWith(base, ".zst")) return Codec::kZstd;
  if (base.size() > 3 && absl::EndsWith(base, ".gz")) return Codec::kGzip;
  return Codec::kRaw;
}

absl::string_view CodecName(Codec codec) {
  switch (codec) {
    case Codec::kRaw:
      return "raw";
    case Codec::kZstd:
      return "zstd";
    case Codec::kGzip:
      return "gzip";
  }
  return "unknown";
}

absl::Status WriteFully(int fd, absl::string_view data,
                        absl::string_view subject) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat(subject, ": write"));
    }
    if (n == 0) {
      return absl::InternalError(
          absl::StrCat(subject, ": write: wrote 0 bytes"));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

Encoder::~Encoder() = default;

absl::StatusOr<std::unique_ptr<Encoder>> Encoder::Create(
    Codec codec, int fd, const CodecOptions& options, std::string subject) {
  switch (codec) {
    case Codec::kRaw:
      return std::unique_ptr<Encoder>(new RawEncoder(fd, std::move(subject)));
    case Codec::kZstd: {
      if (options.zstd_level < ZSTD_minCLevel() ||
          options.zstd_level > ZSTD_maxCLevel() || options.zstd_workers < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            subject, ": bad zstd options: level ", options.zstd_level,
            " (allowed ", ZSTD_minCLevel(), "..", ZSTD_maxCLevel(),
            "), workers ", options.zstd_workers));
      }
      ZSTD_CCtx* cctx = TakeCCtx();
      if (cctx == nullptr) {
        return absl::InternalError(
            absl::StrCat(subject, ": ZSTD_createCCtx failed"));
      }
      size_t rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel,
                                         options.zstd_level);
      if (ZSTD_isError(rc)) {
        ReturnCCtx(cctx);
        return absl::InternalError(absl::StrCat(
            subject, ": setting zstd level: ", ZSTD_getErrorName(rc)));
      }
      // A content checksum (as the zstd CLI writes by default) lets readers
      // detect corruption rather than return wrong data.
      ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
      return std::unique_ptr<Encoder>(
          new ZstdEncoder(fd, std::move(subject), cctx, options.zstd_workers,
                          options.zstd_hold_bytes));
    }
    case Codec::kGzip: {
      if (options.gzip_level < 0 || options.gzip_level > 9) {
        return absl::InvalidArgumentError(
            absl::StrCat(subject, ": bad gzip level ", options.gzip_level,
                         " (allowed 0..9)"));
      }
      auto enc = std::make_unique<GzipEncoder>(fd, std::move(subject));
      if (absl::Status s = enc->Init(options.gzip_level); !s.ok()) return s;
      return std::unique_ptr<Encoder>(std::move(enc));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(subject, ": unknown codec"));
}

Decoder::~Decoder() = default;

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::Open(
    const std::string& path) {
  int fd;
  do {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": open"));
  return FromFd(UniqueFd(fd), path);
}

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::FromFd(UniqueFd file,
                                                         const std::string& path) {
  const int fd = file.Release();  // closed below on error, else by the decoder
  // Sniff the magic bytes into the first input buffer; they are decoded as
  // ordinary input afterwards.
  std::vector<char> in(std::max(kChunkBytes, ZSTD_DStreamInSize()));
  size_t len = 0;
  while (len < 4) {
    ssize_t n = read(fd, in.data() + len, in.size() - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = absl::ErrnoToStatus(errno, absl::StrCat(path, ": read"));
      close(fd);
      return s;
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  const auto* b = reinterpret_cast<const unsigned char*>(in.data());
  if (len >= 4 && b[0] == 0x28 && b[1] == 0xB5 && b[2] == 0x2F &&
      b[3] == 0xFD) {
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    if (dctx == nullptr) {
      close(fd);
      return absl::InternalError(
          absl::StrCat(path, ": ZSTD_createDCtx failed"));
    }
    return std::unique_ptr<Decoder>(
        new ZstdDecoder(fd, path, std::move(in), len, dctx));
  }
  if (len >= 2 && b[0] == 0x1F && b[1] == 0x8B) {
    // The decoder owns fd from here on, also on Init failure.
    auto dec = std::make_unique<GzipDecoder>(fd, path, std::move(in), len);
    if (absl::Status s = dec->Init(); !s.ok()) return s;
    return std::unique_ptr<Decoder>(std::move(dec));
  }
  return std::unique_ptr<Decoder>(new RawDecoder(fd, path, std::move(in), len));
}

absl::Status CopyDecompressed(const std::string& path, int out_fd) {
  absl::StatusOr<std::unique_ptr<Decoder>> dec = Decoder::Open(path);
  if (!dec.ok()) return dec.status();
  return CopyDecompressed(**dec, path, out_fd);
}

absl::Status CopyDecompressed(Decoder& dec, const std::string& path, int out_fd) {
  std::vector<char> buf(kChunkBytes);
  while (true) {
    absl::StatusOr<size_t> n = dec.Read(buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n == 0) return absl::OkStatus();
    absl::Status s =
        WriteFully(out_fd, absl::string_view(buf.data(), *n),
                   absl::StrCat("copying ", path, " to fd ", out_fd));
    if (!s.ok()) return s;
  }
}

}  // namespace asflow
