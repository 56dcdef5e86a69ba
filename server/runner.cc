#include "server/runner.h"

namespace asflow {

std::string ExecResult::Describe() const {
  if (!output_status.ok()) return std::string(output_status.message());
  return process.Describe();
}

}  // namespace asflow
