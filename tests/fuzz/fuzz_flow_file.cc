// libFuzzer target: the flow-file parser and validator. The first byte picks
// the format (YAML, JSON, textproto), the rest is the file. Any input must
// give a ParsedFlow or an error, never a crash, a sanitizer report, or a
// parse that runs away (the parser's own bounds: 4 MiB, 200,000 nodes,
// nesting 64).
#include <cstddef>
#include <cstdint>

#include "common/spec_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const asflow::SpecFormat kFormats[] = {asflow::SpecFormat::kYaml, asflow::SpecFormat::kJson,
                                                asflow::SpecFormat::kText};
  asflow::SpecFormat format = kFormats[data[0] % 3];
  absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto parsed = asflow::ParseFlowText(text, "fuzz.flow", format);
  if (parsed.ok()) (void)parsed->spec.ByteSizeLong();
  return 0;
}
