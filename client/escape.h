// Text that came from outside (parameter values, error text, stderr tails,
// flow and file names) as asflowctl prints it to a terminal: control
// characters and escape sequences rendered visible ("\x1b[2J", "\r"), so a
// value cannot move the cursor, clear the screen, retitle the window or
// hide what follows. Used by the live view, --plain and show/tasks/runs.
// Pure functions; thread-safe.
#ifndef ASFLOW_CLIENT_ESCAPE_H_
#define ASFLOW_CLIENT_ESCAPE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace asflow {

// `text` on one line: C0 controls and DEL as \t \n \r or \xNN, C1 controls
// (U+0080..U+009F) as \u0080.., bytes that are not UTF-8 as \xNN. Printable
// UTF-8 (accents, CJK, emoji) and backslashes are left as they are.
std::string EscapeLine(absl::string_view text);

// The same, but line breaks stay line breaks (multi-line error text).
std::string EscapeText(absl::string_view text);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_ESCAPE_H_
