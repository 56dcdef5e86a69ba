// Configuration files for the long-running binaries (asflowd,
// asflow-worker): every flag can also be set in a TOML file, keyed by its
// long name without the dashes (`allow-root = ["/srv/data"]`,
// `pool-size = 16`, `no-sync = true`); flags given on the command line win
// over the file. CLI11 reads the file (its TOML subset: see
// docs/configuration.md). Not thread-safe (runs in main).
#ifndef ASFLOW_COMMON_CONFIG_FLAGS_H_
#define ASFLOW_COMMON_CONFIG_FLAGS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"

namespace asflow {

// Adds `--config FILE` to `app`. Without the flag, `default_path` is read
// if it exists ("" for none); a file named with --config must exist, and
// `--config ""` reads none. Unknown keys are errors.
void AddConfigFlag(CLI::App* app, const std::string& default_path);

// Parses argv (and the configuration file). Returns nullopt to go on, or
// the exit code after printing: 0 for --help and --version, CLI11's code
// for errors. A configuration error names the file and the key.
std::optional<int> ParseFlags(CLI::App* app, const std::string& program, int argc, char** argv);

// The file the flags came from after ParseFlags: the --config value, the
// default file when it was read, else "".
std::string ConfigFileUsed(CLI::App* app);

}  // namespace asflow

#endif  // ASFLOW_COMMON_CONFIG_FLAGS_H_
