// libFuzzer target: the JSON-lines reader of for_each: lines read through
// the decoder (LineReader, 4 KiB line bound here) and each bound to
// parameters as a run does (BindValue: the whole value, and a dotted field
// of a JSON object).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/line_reader.h"
#include "common/spec_validator.h"
#include "google/protobuf/map.h"
#include "server/run_state.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto reader = asflow::LineReader::FromFd(asflow::FuzzInputFd(data, size), "fuzz.jsonl", 4096);
  if (!reader.ok()) return 0;
  google::protobuf::Map<std::string, std::string> whole;
  whole["v"] = "";
  google::protobuf::Map<std::string, std::string> fields;
  fields["id"] = "id";
  fields["name"] = "user.name";
  std::string line;
  for (int i = 0; i < 10000; ++i) {
    auto more = (*reader)->Next(&line);
    if (!more.ok() || !*more) break;
    for (const auto* as : {&whole, &fields}) {
      auto bound = asflow::BindValue(line, *as);
      if (!bound.ok()) continue;
      for (const auto& [k, v] : *bound) {
        if (v.find('\0') != std::string::npos || v.size() > asflow::kMaxParamValueBytes) __builtin_trap();
      }
    }
  }
  return 0;
}
