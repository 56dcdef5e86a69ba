// EventJson: the JSON line of `--json` straight from a message's wire
// encoding, without a parsed copy or protobuf's JSON converter (which
// re-serialises the message and builds type descriptions per call: with 50
// watchers it was most of their CPU).
//
// The output is protobuf's JSON mapping with proto field names, as
// google::protobuf::util::MessageToJsonString prints it: fields in wire
// order (field-number order for messages serialised by protobuf), 64-bit
// integers as strings, enums by name, maps as objects. Anything the fast
// path does not handle — non-ASCII strings, floating point, bytes, packed or
// non-contiguous repeated fields, unknown fields, well-known types —
// makes it return false, and the caller uses protobuf's converter instead.
#ifndef ASFLOW_CLIENT_EVENT_JSON_H_
#define ASFLOW_CLIENT_EVENT_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace asflow {

// Appends the JSON object for the message of type `type` encoded in `wire`
// to *out. On false *out is left as it was.
bool AppendWireAsJson(const google::protobuf::Descriptor* type, absl::string_view wire, std::string* out);

// The JSON object for `wire` (a message of type `type`), by the fast path or,
// when it declines, protobuf's converter. False if `wire` does not parse.
bool WireToJson(const google::protobuf::Descriptor* type, absl::string_view wire, std::string* out);

// The seq of an encoded v1::Event and the field number of its body (0 if
// none); false if `wire` is not well-formed.
bool PeekEvent(absl::string_view wire, int64_t* seq, int* body);

// The events of an encoded v1::Event that is a batch (its `batch` field),
// appended to *events as views into `wire`, in order; none for a single
// event. False if `wire` is not well-formed.
bool SplitBatch(absl::string_view wire, std::vector<absl::string_view>* events);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_EVENT_JSON_H_
