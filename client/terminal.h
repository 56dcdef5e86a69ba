// Terminal output for the live progress view: a tiny Terminal interface
// (bytes out, width in), its file-descriptor implementation, and
// TerminalRenderer, which redraws a frame of lines in place.
#ifndef ASFLOW_CLIENT_TERMINAL_H_
#define ASFLOW_CLIENT_TERMINAL_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace asflow {

// Where frames go. Tests capture the bytes; FdTerminal writes to a TTY.
class Terminal {
 public:
  virtual ~Terminal() = default;
  virtual void Write(const std::string& bytes) = 0;
  // Columns; a sensible default (80) when unknown.
  virtual int Width() = 0;
  // Rows; 0 when unknown (frames are then not clipped).
  virtual int Height() { return 0; }
};

// A Terminal over a file descriptor (not owned). The width comes from
// ioctl(TIOCGWINSZ), re-read after SIGWINCH once InstallWinchHandler() ran.
// Not thread-safe.
class FdTerminal : public Terminal {
 public:
  explicit FdTerminal(int fd) : fd_(fd) {}
  void Write(const std::string& bytes) override;
  int Width() override;
  int Height() override;

  // Installs a SIGWINCH handler that only sets a flag. Call once from main.
  static void InstallWinchHandler();
  static bool IsTty(int fd);

 private:
  void MaybeReadSize();

  const int fd_;
  int width_ = 0;  // 0: not read yet
  int height_ = 0;
};

// Draws frames (a vector of lines) in place: moves the cursor up over the
// previous frame, rewrites only the lines that changed (each followed by
// erase-to-end-of-line), erases leftovers of a longer previous frame, and
// hides the cursor until Close(). Lines never reach the last column (the
// frame is asked for width - 1) so no terminal auto-wraps them, and a frame
// taller than the terminal is cut to its height - 1 lines (the cursor could
// not move back over lines scrolled off the top).
// Not thread-safe; the terminal is not owned.
class TerminalRenderer {
 public:
  // Produces the frame for `now` at `width` columns, e.g. ProgressView::Render.
  using FrameFn = std::function<std::vector<std::string>(absl::Time now, int width)>;

  // Redraws at most once per this interval in MaybeDraw().
  static constexpr absl::Duration kMinInterval = absl::Milliseconds(100);

  TerminalRenderer(Terminal* terminal, FrameFn frame);
  ~TerminalRenderer();  // Close()

  // Draws unless the last draw was less than kMinInterval before `now`.
  // Returns whether it drew.
  bool MaybeDraw(absl::Time now);
  // Draws now, e.g. the final frame.
  void Draw(absl::Time now);
  // Erases the frame so other output (a prompt, a warning) can be printed
  // where it was; the next draw repaints in full below that output.
  void Clear();
  // Shows the cursor again; the last frame stays on screen and the cursor
  // sits on the line below it. Idempotent; drawing again reopens.
  void Close();

 private:
  Terminal* const terminal_;
  const FrameFn frame_;
  std::vector<std::string> previous_;  // lines on screen, above the cursor
  int previous_width_ = 0;
  std::optional<absl::Time> last_draw_;
  bool cursor_hidden_ = false;
};

}  // namespace asflow

#endif  // ASFLOW_CLIENT_TERMINAL_H_
