#include "common/config_flags.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace asflow {

void AddConfigFlag(CLI::App* app, const std::string& default_path) {
  std::string help = "TOML file of flags (keys are the long flag names)";
  if (!default_path.empty()) absl::StrAppend(&help, "; default: ", default_path, " if it exists");
  app->set_config("--config", default_path, help);
  app->config_formatter(std::make_shared<CLI::ConfigTOML>());
  // A misspelt key must not be ignored: it is a setting the user thinks is on.
  app->allow_config_extras(CLI::config_extras_mode::error);
}

std::string ConfigFileUsed(CLI::App* app) {
  CLI::Option* opt = app->get_config_ptr();
  if (opt == nullptr || opt->results().empty()) return "";
  return opt->results().front();
}

std::optional<int> ParseFlags(CLI::App* app, const std::string& program, int argc, char** argv) {
  try {
    app->parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    // CLI11 says "INI was not able to parse KEY" for an unknown key.
    absl::string_view what = e.what();
    std::string file = ConfigFileUsed(app);
    if (file.empty() && app->get_config_ptr() != nullptr) {
      CLI::Option* opt = app->get_config_ptr();
      file = opt->count() > 0 ? opt->as<std::string>() : opt->get_default_str();
    }
    std::string message = absl::ConsumePrefix(&what, "INI was not able to parse ")
                              ? absl::StrCat("unknown key '", what, "' (keys are the long flag names; see ",
                                             program, " --help)")
                              : std::string(what);
    std::fprintf(stderr, "%s: config file %s: %s\n", program.c_str(), file.c_str(), message.c_str());
    return e.get_exit_code();
  } catch (const CLI::FileError& e) {
    std::fprintf(stderr, "%s: config file %s\n", program.c_str(), e.what());
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    int code = app->exit(e);
    return code;
  }
  return std::nullopt;
}

}  // namespace asflow
