#include "client/terminal.h"

#include <errno.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>

#include "absl/strings/str_cat.h"

namespace asflow {
namespace {

constexpr int kDefaultWidth = 80;
constexpr char kHideCursor[] = "\x1b[?25l";
constexpr char kShowCursor[] = "\x1b[?25h";
constexpr char kEraseLine[] = "\x1b[K";     // cursor to end of line
constexpr char kEraseBelow[] = "\x1b[J";    // cursor to end of screen

volatile std::sig_atomic_t g_winched = 0;

void OnWinch(int) { g_winched = 1; }

std::string CursorUp(size_t n) { return n == 0 ? "" : absl::StrCat("\x1b[", n, "A"); }
std::string CursorDown(size_t n) { return n == 0 ? "" : absl::StrCat("\x1b[", n, "B"); }

}  // namespace

void FdTerminal::Write(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the terminal went away; progress is best effort
    off += static_cast<size_t>(n);
  }
}

void FdTerminal::MaybeReadSize() {
  if (width_ != 0 && !g_winched) return;
  g_winched = 0;
  struct winsize ws {};
  bool ok = ioctl(fd_, TIOCGWINSZ, &ws) == 0;
  width_ = ok && ws.ws_col > 0 ? ws.ws_col : kDefaultWidth;
  height_ = ok ? ws.ws_row : 0;
}

int FdTerminal::Width() {
  MaybeReadSize();
  return width_;
}

int FdTerminal::Height() {
  MaybeReadSize();
  return height_;
}

void FdTerminal::InstallWinchHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnWinch;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGWINCH, &sa, nullptr);
}

bool FdTerminal::IsTty(int fd) { return isatty(fd) == 1; }

TerminalRenderer::TerminalRenderer(Terminal* terminal, FrameFn frame)
    : terminal_(terminal), frame_(std::move(frame)) {}

TerminalRenderer::~TerminalRenderer() { Close(); }

bool TerminalRenderer::MaybeDraw(absl::Time now) {
  if (last_draw_ && now - *last_draw_ < kMinInterval) return false;
  Draw(now);
  return true;
}

void TerminalRenderer::Draw(absl::Time now) {
  last_draw_ = now;
  const int width = terminal_->Width();
  std::vector<std::string> lines = frame_(now, std::max(width - 1, 1));
  const int height = terminal_->Height();
  if (height > 1 && lines.size() > static_cast<size_t>(height - 1)) lines.resize(height - 1);
  std::string out;
  if (!cursor_hidden_) {
    out += kHideCursor;
    cursor_hidden_ = true;
  }
  // The cursor sits on the line below the previous frame.
  out += CursorUp(previous_.size());
  if (width != previous_width_ && !previous_.empty()) {
    // Lines may have reflowed: repaint everything.
    out += kEraseBelow;
    previous_.clear();
  }
  size_t skip = 0;  // unchanged lines to step over before the next write
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i < previous_.size() && lines[i] == previous_[i]) {
      ++skip;
      continue;
    }
    out += CursorDown(skip);
    skip = 0;
    absl::StrAppend(&out, lines[i], kEraseLine, "\n");
  }
  out += CursorDown(skip);
  if (lines.size() < previous_.size()) out += kEraseBelow;
  previous_width_ = width;
  previous_ = std::move(lines);
  // Nothing changed: leave the terminal alone (the cursor moves cancel out).
  if (out == CursorUp(previous_.size()) + CursorDown(previous_.size())) return;
  terminal_->Write(out);
}

void TerminalRenderer::Clear() {
  if (previous_.empty()) return;
  terminal_->Write(CursorUp(previous_.size()) + kEraseBelow);
  previous_.clear();
}

void TerminalRenderer::Close() {
  if (!cursor_hidden_) return;
  cursor_hidden_ = false;
  terminal_->Write(kShowCursor);
}

}  // namespace asflow
