// Flow files (YAML, JSON or protobuf text) -> v1::FlowSpec, validated, with
// the source position of every field so that errors read
// "flow.yaml:12:5: tasks[1].on: ...". Stateless; thread-safe.
#ifndef ASFLOW_COMMON_SPEC_PARSER_H_
#define ASFLOW_COMMON_SPEC_PARSER_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "asflow/v1/flow.pb.h"

namespace asflow {

// Where each field of a parsed spec came from (1-based line and column).
// Field paths use the YAML keys: "name", "params.channel", "tasks[0].run[2]",
// "tasks[1].for_each.as.video_id". A plain value type; not synchronised.
class SourceMap {
 public:
  // Records (or overwrites) the position of field_path.
  void Set(std::string field_path, int line, int column);

  // "flow.yaml:12:5" for field_path or its nearest recorded ancestor
  // ("a.b[2].c" -> "a.b[2]" -> "a.b" -> "a"); `source` alone if none.
  std::string Locate(absl::string_view field_path) const;

  // Number of recorded paths.
  size_t size() const { return positions_.size(); }

  std::string source;  // file name used in messages

 private:
  absl::flat_hash_map<std::string, std::pair<int, int>> positions_;
};

enum class SpecFormat { kYaml, kJson, kText };

// .json -> kJson; .textproto/.txtpb/.pbtxt -> kText; anything else -> kYaml.
SpecFormat SpecFormatForPath(absl::string_view path);

// A parsed, validated flow file.
struct ParsedFlow {
  v1::FlowSpec spec;
  SourceMap where;
  // Settings that still work but should change ("FILE:LINE:COL: field:
  // message"), e.g. the deprecated retry.attempts.
  std::vector<std::string> warnings;
};

// Largest flow file accepted.
inline constexpr size_t kMaxSpecBytes = 4 << 20;

// Reads, parses and validates (ValidateFlowSpec) the file at path; the
// format comes from SpecFormatForPath. NotFound/PermissionDenied if it
// cannot be read; InvalidArgument "flow.yaml: larger than 4 MiB" past
// kMaxSpecBytes; otherwise as ParseFlowText with source_name = path.
absl::StatusOr<ParsedFlow> ParseFlowFile(const std::string& path);

// Parses and validates text. InvalidArgument listing every problem found,
// one per line, each "FILE:LINE:COL: field.path: message" (or
// "FILE:LINE:COL: message" for a syntax error with no field).
//
// YAML maps onto FlowSpec by reflection: keys are the fields' JSON names
// where the proto sets one (ForEach.bind is `as`) and the proto names
// otherwise; a scalar where a list is expected is a one-element list;
// durations need a unit ("120s", "2m", "500ms"); for_each.values items keep
// scalars as text and mappings/lists as compact JSON; `as: name` means
// {name: ""}. JSON uses protobuf's JSON parser and text uses TextFormat;
// both get positions for validation messages where they can be found.
absl::StatusOr<ParsedFlow> ParseFlowText(absl::string_view text,
                                         absl::string_view source_name,
                                         SpecFormat format);

// One asflowd --throttle value: a key as a flow file's `throttle:` entry
// reads, "youtube: {limit: 4, rate: 2/s}" (or several, comma-separated).
// InvalidArgument "--throttle 'TEXT': throttle.youtube.rate: ..." when it
// is not one.
absl::StatusOr<std::map<std::string, v1::ThrottleKey>> ParseThrottleFlag(absl::string_view text);

}  // namespace asflow

#endif  // ASFLOW_COMMON_SPEC_PARSER_H_
