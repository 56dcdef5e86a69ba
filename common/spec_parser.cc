#include "common/spec_parser.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "nlohmann/json.hpp"

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/spec_validator.h"
#include "re2/re2.h"

namespace asflow {
namespace {

namespace pb = ::google::protobuf;

// Conversions past this many YAML nodes stop: aliases can make a small file
// expand into a huge tree ("billion laughs").
constexpr int kMaxNodes = 200000;
// Deepest for_each.values item rendered as JSON.
constexpr int kMaxJsonDepth = 64;

std::string Location(absl::string_view source, int line, int column) {
  return absl::StrCat(source, ":", line, ":", column);
}

// protoc's default JSON name: "for_each" -> "forEach".
std::string DefaultJsonName(absl::string_view name) {
  std::string out;
  bool upper = false;
  for (char c : name) {
    if (c == '_') {
      upper = true;
    } else {
      out.push_back(upper ? absl::ascii_toupper(c) : c);
      upper = false;
    }
  }
  return out;
}

// The YAML key of a field: its json_name where the proto sets one
// explicitly (ForEach.bind -> "as"), else its proto name.
std::string YamlKey(const pb::FieldDescriptor* f) {
  return f->json_name() != DefaultJsonName(f->name()) ? f->json_name()
                                                      : f->name();
}

std::string Quote(absl::string_view s) {
  return absl::StrCat("'", absl::Utf8SafeCEscape(s), "'");
}

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return absl::StrCat("'", absl::Utf8SafeCEscape(n.Scalar()), "'");
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20) {
          absl::StrAppend(out, "\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

// A plain YAML scalar as a JSON literal: numbers in JSON syntax, booleans and
// nulls become literals; everything else a string.
void AppendJsonScalar(const YAML::Node& n, std::string* out) {
  static const LazyRE2 kNumber = {
      R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?)"};
  const std::string& s = n.Scalar();
  if (n.Tag() == "?") {  // plain (unquoted, untagged)
    if (RE2::FullMatch(s, *kNumber)) {
      out->append(s);
      return;
    }
    if (s == "true" || s == "True" || s == "TRUE") {
      out->append("true");
      return;
    }
    if (s == "false" || s == "False" || s == "FALSE") {
      out->append("false");
      return;
    }
  }
  AppendJsonString(s, out);
}

// Turns YAML into positioned protobuf fields by reflection; collects errors
// instead of stopping at the first. In lenient mode (positions for a JSON
// file) it records positions only and accepts every spelling of a key.
class YamlConverter {
 public:
  YamlConverter(SourceMap* where, bool lenient)
      : where_(where), lenient_(lenient) {}

  void ConvertMessage(const YAML::Node& node, const std::string& path,
                      pb::Message* msg) {
    if (!Count(node)) return;
    if (!node.IsMap()) {
      Error(node.Mark(), path,
            absl::StrCat("expected a mapping, got ", Describe(node)));
      return;
    }
    const pb::Descriptor* d = msg->GetDescriptor();
    absl::flat_hash_set<std::string> seen;
    // Copy the handles: the iterator's pair is a temporary proxy.
    for (const auto& kv : node) {
      const YAML::Node key = kv.first;
      const YAML::Node value = kv.second;
      if (!key.IsScalar()) {
        Error(key.Mark(), path, "keys must be plain words");
        continue;
      }
      const std::string& name = key.Scalar();
      std::string field_path = path.empty() ? name : absl::StrCat(path, ".", name);
      const pb::FieldDescriptor* f = FindField(d, name);
      if (f == nullptr) {
        std::vector<std::string> known;
        for (int i = 0; i < d->field_count(); ++i) {
          if (!ClientSetOnly(d->field(i))) known.push_back(YamlKey(d->field(i)));
        }
        Error(key.Mark(), field_path,
              absl::StrCat("unknown field ", Quote(name), " (expected one of: ",
                           absl::StrJoin(known, ", "), ")"));
        continue;
      }
      field_path = path.empty() ? YamlKey(f) : absl::StrCat(path, ".", YamlKey(f));
      if (!seen.insert(f->name()).second) {
        Error(key.Mark(), field_path, absl::StrCat("duplicate key ", Quote(name)));
        continue;
      }
      Record(field_path, key.Mark());
      ConvertField(value, key.Mark(), field_path, msg, f);
    }
  }

  const std::vector<std::string>& errors() const { return errors_; }
  // The field path of each error ("" for the document).
  const std::vector<std::string>& error_paths() const { return error_paths_; }

  // Adds an error at a position; public for document-level errors.
  void Error(const YAML::Mark& mark, const std::string& path,
             absl::string_view message) {
    if (lenient_) return;
    error_paths_.push_back(path);
    std::string loc = mark.is_null()
                          ? where_->Locate(path)
                          : Location(where_->source, mark.line + 1,
                                     mark.column + 1);
    errors_.push_back(path.empty()
                          ? absl::StrCat(loc, ": ", message)
                          : absl::StrCat(loc, ": ", path, ": ", message));
  }

 private:
  const pb::FieldDescriptor* FindField(const pb::Descriptor* d,
                                       const std::string& key) const {
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      if (ClientSetOnly(f)) continue;
      if (YamlKey(f) == key) return f;
      if (lenient_ && (f->name() == key || f->json_name() == key)) return f;
    }
    return nullptr;
  }

  // TaskSpec.flow: set by the client on the imported tasks it sends, never
  // written in a flow file.
  static bool ClientSetOnly(const pb::FieldDescriptor* f) {
    return f->containing_type() == v1::TaskSpec::descriptor() && f->name() == "flow";
  }

  // False once the node budget is spent (reported once).
  bool Count(const YAML::Node& node) {
    if (++nodes_ <= kMaxNodes) return true;
    if (nodes_ == kMaxNodes + 1) {
      Error(node.Mark(), "",
            absl::StrCat("more than ", kMaxNodes, " YAML nodes (alias expansion?)"));
    }
    return false;
  }

  void Record(const std::string& path, const YAML::Mark& mark) {
    if (!mark.is_null()) where_->Set(path, mark.line + 1, mark.column + 1);
  }

  // `at` is where errors about this value point: the key of a field or the
  // list item itself.
  void ConvertField(const YAML::Node& value, const YAML::Mark& at,
                    const std::string& path, pb::Message* msg,
                    const pb::FieldDescriptor* f) {
    const pb::Reflection* r = msg->GetReflection();
    if (!Count(value)) return;
    if (f->is_map()) {
      ConvertMap(value, at, path, msg, f);
      return;
    }
    if (f->is_repeated()) {
      if (value.IsNull()) return;
      if (value.IsSequence()) {
        for (size_t i = 0; i < value.size(); ++i) {
          const YAML::Node item = value[i];
          std::string item_path = absl::StrCat(path, "[", i, "]");
          Record(item_path, item.Mark());
          AddElement(item, item.Mark(), item_path, msg, f);
        }
        return;
      }
      if (value.IsScalar()) {
        // `needs: playlist` reads as [playlist]; but a command line in one
        // string is almost always a mistake: run takes argv, not a shell.
        if (f->full_name() == "asflow.v1.TaskSpec.run" &&
            absl::StrContains(value.Scalar(), ' ')) {
          Error(at, path,
                absl::StrCat("expected a list of arguments (argv, never a "
                             "shell), got ", Describe(value),
                             "; write run: [prog, arg, ...]"));
          return;
        }
        std::string item_path = absl::StrCat(path, "[0]");
        Record(item_path, value.Mark());
        AddElement(value, value.Mark(), item_path, msg, f);
        return;
      }
      Error(at, path, absl::StrCat("expected a list, got ", Describe(value)));
      return;
    }
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      pb::Message* sub = r->MutableMessage(msg, f);
      if (value.IsNull()) return;
      if (f->message_type()->full_name() == "google.protobuf.Duration") {
        ConvertDuration(value, at, path, sub);
      } else {
        ConvertMessage(value, path, sub);
      }
      return;
    }
    if (value.IsNull()) return;  // `handler:` with no value: the default
    if (!value.IsScalar()) {
      Error(at, path, absl::StrCat("expected a single value, got ",
                                   Describe(value), Hint(value)));
      return;
    }
    SetScalar(value, at, path, msg, f);
  }

  // An unquoted "{x}" in a flow list is a YAML mapping, not a template.
  static std::string Hint(const YAML::Node& value) {
    if (value.IsMap() && value.size() == 1 && value.begin()->second.IsNull()) {
      return absl::StrCat(" (quote templates: \"{",
                          value.begin()->first.Scalar(), "}\")");
    }
    return "";
  }

  void AddElement(const YAML::Node& item, const YAML::Mark& at,
                  const std::string& path, pb::Message* msg,
                  const pb::FieldDescriptor* f) {
    const pb::Reflection* r = msg->GetReflection();
    if (!Count(item)) return;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      pb::Message* sub = r->AddMessage(msg, f);
      if (f->message_type()->full_name() == "google.protobuf.Duration") {
        ConvertDuration(item, at, path, sub);
      } else if (!item.IsNull()) {
        ConvertMessage(item, path, sub);
      }
      return;
    }
    if (f->full_name() == "asflow.v1.ForEach.values") {
      if (item.IsNull()) {
        Error(at, path, "expected a value, got null");
        return;
      }
      std::string text;
      if (item.IsScalar()) {
        text = item.Scalar();
      } else {
        AppendJson(item, path, 0, &text);
      }
      r->AddString(msg, f, text);
      return;
    }
    if (!item.IsScalar()) {
      Error(at, path, absl::StrCat("expected a single value, got ",
                                   Describe(item), Hint(item)));
      return;
    }
    SetScalar(item, at, path, msg, f);
  }

  void AppendJson(const YAML::Node& n, const std::string& path, int depth,
                  std::string* out) {
    if (!Count(n)) return;
    if (depth > kMaxJsonDepth) {
      Error(n.Mark(), path, "value nested too deeply");
      return;
    }
    switch (n.Type()) {
      case YAML::NodeType::Scalar:
        AppendJsonScalar(n, out);
        return;
      case YAML::NodeType::Sequence:
        out->push_back('[');
        for (size_t i = 0; i < n.size(); ++i) {
          if (i > 0) out->push_back(',');
          AppendJson(n[i], path, depth + 1, out);
        }
        out->push_back(']');
        return;
      case YAML::NodeType::Map: {
        out->push_back('{');
        bool first = true;
        for (const auto& kv : n) {
          const YAML::Node key = kv.first;
          if (!key.IsScalar()) {
            Error(key.Mark(), path, "mapping keys must be plain values");
            return;
          }
          if (!first) out->push_back(',');
          first = false;
          AppendJsonString(key.Scalar(), out);
          out->push_back(':');
          AppendJson(kv.second, path, depth + 1, out);
        }
        out->push_back('}');
        return;
      }
      default:
        out->append("null");
    }
  }

  void ConvertMap(const YAML::Node& value, const YAML::Mark& at,
                  const std::string& path, pb::Message* msg,
                  const pb::FieldDescriptor* f) {
    const pb::Reflection* r = msg->GetReflection();
    const pb::FieldDescriptor* key_field = f->message_type()->map_key();
    const pb::FieldDescriptor* value_field = f->message_type()->map_value();
    if (value.IsNull()) return;
    if (value.IsScalar() && f->full_name() == "asflow.v1.ForEach.bind") {
      // `as: video_id` binds the whole value: {video_id: ""}.
      pb::Message* entry = r->AddMessage(msg, f);
      entry->GetReflection()->SetString(entry, key_field, value.Scalar());
      Record(absl::StrCat(path, ".", value.Scalar()), value.Mark());
      return;
    }
    if (!value.IsMap()) {
      Error(at, path, absl::StrCat("expected a mapping, got ", Describe(value)));
      return;
    }
    absl::flat_hash_set<std::string> seen;
    for (const auto& kv : value) {
      const YAML::Node k = kv.first;
      const YAML::Node v = kv.second;
      if (!Count(k) || !Count(v)) return;
      if (!k.IsScalar()) {
        Error(k.Mark(), path, "keys must be plain words");
        continue;
      }
      std::string entry_path = absl::StrCat(path, ".", k.Scalar());
      if (!seen.insert(k.Scalar()).second) {
        Error(k.Mark(), entry_path, absl::StrCat("duplicate key ", Quote(k.Scalar())));
        continue;
      }
      Record(entry_path, k.Mark());
      pb::Message* entry = r->AddMessage(msg, f);
      const pb::Reflection* er = entry->GetReflection();
      er->SetString(entry, key_field, k.Scalar());
      if (v.IsNull()) continue;  // `as: {video_id: }` binds the whole value
      if (value_field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        ConvertMessage(v, entry_path, er->MutableMessage(entry, value_field));
      } else if (!v.IsScalar()) {
        Error(k.Mark(), entry_path,
              absl::StrCat("expected a single value, got ", Describe(v)));
      } else {
        SetScalar(v, k.Mark(), entry_path, entry, value_field);
      }
    }
  }

  void ConvertDuration(const YAML::Node& value, const YAML::Mark& at,
                       const std::string& path, pb::Message* d) {
    if (!value.IsScalar()) {
      Error(at, path, absl::StrCat("expected a duration like 120s, got ",
                                   Describe(value)));
      return;
    }
    const std::string& s = value.Scalar();
    double number;
    absl::Duration parsed;
    if (absl::SimpleAtod(s, &number)) {
      Error(at, path, absl::StrCat(Quote(s), " needs a unit, e.g. ", s, "s"));
      return;
    }
    if (!absl::ParseDuration(s, &parsed) || parsed == absl::InfiniteDuration() ||
        parsed == -absl::InfiniteDuration()) {
      Error(at, path,
            absl::StrCat("expected a duration like 120s, 2m or 500ms, got ",
                         Quote(s)));
      return;
    }
    int64_t seconds = absl::IDivDuration(parsed, absl::Seconds(1), &parsed);
    int32_t nanos = static_cast<int32_t>(absl::ToInt64Nanoseconds(parsed));
    const pb::Descriptor* desc = d->GetDescriptor();
    d->GetReflection()->SetInt64(d, desc->FindFieldByName("seconds"), seconds);
    d->GetReflection()->SetInt32(d, desc->FindFieldByName("nanos"), nanos);
  }

  void SetScalar(const YAML::Node& value, const YAML::Mark& at,
                 const std::string& path, pb::Message* msg,
                 const pb::FieldDescriptor* f) {
    const pb::Reflection* r = msg->GetReflection();
    const std::string& s = value.Scalar();
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        rep ? r->AddString(msg, f, s) : r->SetString(msg, f, s);
        return;
      case pb::FieldDescriptor::CPPTYPE_INT32:
      case pb::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (!absl::SimpleAtoi(s, &v)) {
          Error(at, path, absl::StrCat("expected an integer, got ", Quote(s)));
          return;
        }
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32) {
          if (v < INT32_MIN || v > INT32_MAX) {
            Error(at, path, absl::StrCat(Quote(s), " is out of range"));
            return;
          }
          int32_t v32 = static_cast<int32_t>(v);
          rep ? r->AddInt32(msg, f, v32) : r->SetInt32(msg, f, v32);
        } else {
          rep ? r->AddInt64(msg, f, v) : r->SetInt64(msg, f, v);
        }
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_UINT32:
      case pb::FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v;
        if (!absl::SimpleAtoi(s, &v)) {
          Error(at, path,
                absl::StrCat("expected a non-negative integer, got ", Quote(s)));
          return;
        }
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT32) {
          if (v > UINT32_MAX) {
            Error(at, path, absl::StrCat(Quote(s), " is out of range"));
            return;
          }
          uint32_t v32 = static_cast<uint32_t>(v);
          rep ? r->AddUInt32(msg, f, v32) : r->SetUInt32(msg, f, v32);
        } else {
          rep ? r->AddUInt64(msg, f, v) : r->SetUInt64(msg, f, v);
        }
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        if (!absl::SimpleAtod(s, &v)) {
          Error(at, path, absl::StrCat("expected a number, got ", Quote(s)));
          return;
        }
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE) {
          rep ? r->AddDouble(msg, f, v) : r->SetDouble(msg, f, v);
        } else {
          float fv = static_cast<float>(v);
          rep ? r->AddFloat(msg, f, fv) : r->SetFloat(msg, f, fv);
        }
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        bool v;
        if (s == "true" || s == "True" || s == "TRUE" || s == "yes") {
          v = true;
        } else if (s == "false" || s == "False" || s == "FALSE" || s == "no") {
          v = false;
        } else {
          Error(at, path, absl::StrCat("expected true or false, got ", Quote(s)));
          return;
        }
        rep ? r->AddBool(msg, f, v) : r->SetBool(msg, f, v);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumValueDescriptor* e = f->enum_type()->FindValueByName(s);
        if (e == nullptr) {
          Error(at, path, absl::StrCat("unknown value ", Quote(s)));
          return;
        }
        rep ? r->AddEnum(msg, f, e) : r->SetEnum(msg, f, e);
        return;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        break;  // handled by the callers
    }
  }

  SourceMap* where_;
  const bool lenient_;
  int nodes_ = 0;
  std::vector<std::string> errors_;
  std::vector<std::string> error_paths_;
};

absl::Status JoinErrors(const std::vector<std::string>& errors) {
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

// The converter's errors of form (unknown keys, wrong types), then those of
// meaning in what it let through that do not follow from them: one pass
// lists every class of problem.
absl::Status FormErrors(const YamlConverter& converter, const ParsedFlow& out) {
  std::vector<std::string> errors = converter.errors();
  absl::Status valid = ValidateFlowSpecBeside(out.spec, &out.where, converter.error_paths());
  if (!valid.ok()) errors.push_back(std::string(valid.message()));
  return JoinErrors(errors);
}

// Where the first node of each document starts, for as many documents as
// the parser is asked for. Events only: no tree is built.
class FirstNodeMarks : public YAML::EventHandler {
 public:
  const std::vector<YAML::Mark>& marks() const { return marks_; }

  void OnDocumentStart(const YAML::Mark&) override { in_document_ = true; }
  void OnDocumentEnd() override { in_document_ = false; }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

 private:
  void Node(const YAML::Mark& mark) {
    if (in_document_) marks_.push_back(mark);
    in_document_ = false;
  }

  bool in_document_ = false;
  std::vector<YAML::Mark> marks_;
};

// Whether text holds more than one YAML document; if so, *second is where
// the second one's first node is. Throws what yaml-cpp throws.
//
// Not YAML::LoadAll: in Debian's yaml-cpp 0.7 it never returns, allocating
// a null document per turn, when a document stops at a token its parser
// cannot take — a ',' outside a flow collection ("," alone, "[a], b",
// "&x ,"): the parser gives that token's node as null without consuming it
// and LoadAll asks for the next document at the same token forever
// (yaml-cpp issue #1040, fixed upstream by PR #1319, after 0.8.0;
// fuzz_flow_file found it). Here the parser is asked for two documents at
// most, and a flow file holds one.
bool HasSecondDocument(const std::string& text, YAML::Mark* second) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  FirstNodeMarks marks;
  if (!parser.HandleNextDocument(marks) || !parser.HandleNextDocument(marks)) return false;
  *second = marks.marks().size() > 1 ? marks.marks()[1] : YAML::Mark::null_mark();
  return true;
}

absl::Status ParseYaml(absl::string_view text, ParsedFlow* out) {
  YamlConverter converter(&out->where, /*lenient=*/false);
  const std::string& source = out->where.source;
  try {
    const std::string copy(text);
    YAML::Mark second;
    if (HasSecondDocument(copy, &second)) {
      // The stuck parser's token: it ends a document without a '---'.
      const bool comma = !second.is_null() && second.pos >= 0 &&
                         static_cast<size_t>(second.pos) < copy.size() && copy[second.pos] == ',';
      if (comma) {
        return absl::InvalidArgumentError(
            absl::StrCat(Location(source, second.line + 1, second.column + 1),
                         ": invalid YAML: ',' outside a flow collection ([...] or {...})"));
      }
      converter.Error(second, "", "more than one YAML document; a flow file holds one");
    } else if (YAML::Node doc = YAML::Load(copy); doc.IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ":1:1: empty flow file"));
    } else {
      converter.ConvertMessage(doc, "", &out->spec);
    }
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        Location(source, e.mark.line + 1, e.mark.column + 1),
        ": invalid YAML: ", e.msg));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": invalid YAML: ", e.what()));
  }
  if (!converter.errors().empty()) return FormErrors(converter, *out);
  return absl::OkStatus();
}

// Best-effort positions for a JSON file: JSON is YAML, so a lenient YAML
// pass over the same text finds where each field is.
void LocateJsonFields(absl::string_view text, SourceMap* where) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    v1::FlowSpec scratch;
    YamlConverter(where, /*lenient=*/true).ConvertMessage(root, "", &scratch);
  } catch (const YAML::Exception&) {
    // Positions are a nicety; the JSON parser has the final word.
  }
}

// "FILE:LINE:COL" of byte `offset` (0-based) of text.
std::string LocationOfOffset(absl::string_view source, absl::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return Location(source, line, column);
}

// Checks JSON syntax without building anything; keeps the first error.
// Every error nlohmann's parser finds comes here, whatever its exception
// type: json::parse throws out_of_range, not parse_error, for a number too
// large for a double ("1e999"), which a catch of parse_error let through
// to std::terminate (fuzz_flow_file found it).
class JsonSyntax : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    failed_ = true;
    position_ = position;
    why_ = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 9:
    // syntax error while parsing value - unexpected '}'; ..." or
    // "[json.exception.out_of_range.406] number overflow parsing '1e999'".
    if (const size_t column = why_.find("column "); column != std::string::npos) {
      if (const size_t at = why_.find(": ", column); at != std::string::npos) why_ = why_.substr(at + 2);
    } else if (const size_t end = why_.find("] "); absl::StartsWith(why_, "[json.exception.") &&
                                                   end != std::string::npos) {
      why_ = why_.substr(end + 2);
    }
    return false;
  }

  bool failed() const { return failed_; }
  // Bytes read when the parser stopped (1-based: the offending byte's end).
  size_t position() const { return position_; }
  const std::string& why() const { return why_; }

 private:
  bool failed_ = false;
  size_t position_ = 0;
  std::string why_;
};

absl::Status ParseJson(absl::string_view text, ParsedFlow* out) {
  const std::string& source = out->where.source;
  // Syntax first, by a strict JSON parser that says where it stopped.
  JsonSyntax syntax;
  (void)nlohmann::json::sax_parse(text, &syntax);
  if (syntax.failed()) {
    const size_t at = syntax.position() > 0 ? syntax.position() - 1 : 0;
    return absl::InvalidArgumentError(
        absl::StrCat(LocationOfOffset(source, text, at), ": invalid JSON: ", syntax.why()));
  }
  auto status = pb::util::JsonStringToMessage(
      pb::StringPiece(text.data(), text.size()), &out->spec);
  if (status.ok()) {
    LocateJsonFields(text, &out->where);
    return absl::OkStatus();
  }
  // JSON is YAML: the YAML reader says what is wrong, and where (protobuf's
  // JSON parser says neither line nor column).
  out->spec.Clear();
  YamlConverter converter(&out->where, /*lenient=*/false);
  try {
    converter.ConvertMessage(YAML::Load(std::string(text)), "", &out->spec);
  } catch (const YAML::Exception&) {
  }
  if (!converter.errors().empty()) return FormErrors(converter, *out);
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": invalid JSON flow spec: ", std::string(status.message())));
}

// Collects TextFormat errors as "FILE:LINE:COL: message".
class TextErrorCollector : public pb::io::ErrorCollector {
 public:
  explicit TextErrorCollector(absl::string_view source) : source_(source) {}
  void AddError(int line, pb::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(line < 0 ? absl::StrCat(source_, ": ", message)
                               : absl::StrCat(Location(source_, line + 1,
                                                       column + 1),
                                              ": ", message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string source_;
  std::vector<std::string> errors_;
};

void RecordTextLocations(const pb::Message& msg,
                         const pb::TextFormat::ParseInfoTree* tree,
                         const std::string& path, SourceMap* where) {
  if (tree == nullptr) return;
  const pb::Descriptor* d = msg.GetDescriptor();
  const pb::Reflection* r = msg.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    std::string fp = path.empty() ? YamlKey(f) : absl::StrCat(path, ".", YamlKey(f));
    auto record = [&](const std::string& p, int index) {
      pb::TextFormat::ParseLocation loc = tree->GetLocation(f, index);
      if (loc.line >= 0) where->Set(p, loc.line + 1, loc.column + 1);
    };
    if (f->is_repeated()) {
      int n = r->FieldSize(msg, f);
      if (n > 0) record(fp, 0);
      for (int j = 0; j < n; ++j) {
        if (f->is_map()) {
          const pb::Message& entry = r->GetRepeatedMessage(msg, f, j);
          std::string key = entry.GetReflection()->GetString(
              entry, f->message_type()->map_key());
          record(absl::StrCat(fp, ".", key), j);
        } else {
          std::string ip = absl::StrCat(fp, "[", j, "]");
          record(ip, j);
          if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
            RecordTextLocations(r->GetRepeatedMessage(msg, f, j),
                                tree->GetTreeForNested(f, j), ip, where);
          }
        }
      }
    } else if (r->HasField(msg, f)) {
      record(fp, -1);
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        RecordTextLocations(r->GetMessage(msg, f), tree->GetTreeForNested(f, -1),
                            fp, where);
      }
    }
  }
}

absl::Status ParseText(absl::string_view text, ParsedFlow* out) {
  TextErrorCollector errors(out->where.source);
  pb::TextFormat::ParseInfoTree tree;
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(std::string(text), &out->spec)) {
    if (errors.errors().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(out->where.source, ": invalid protobuf text"));
    }
    return JoinErrors(errors.errors());
  }
  RecordTextLocations(out->spec, &tree, "", &out->where);
  return absl::OkStatus();
}

}  // namespace

void SourceMap::Set(std::string field_path, int line, int column) {
  positions_[std::move(field_path)] = {line, column};
}

std::string SourceMap::Locate(absl::string_view field_path) const {
  absl::string_view p = field_path;
  while (!p.empty()) {
    auto it = positions_.find(p);
    if (it != positions_.end()) {
      return Location(source, it->second.first, it->second.second);
    }
    // Drop the last component: "a.b[2]" -> "a.b" -> "a".
    size_t cut = p.find_last_of(".[");
    if (cut == absl::string_view::npos) break;
    p = p.substr(0, cut);
  }
  return source;
}

SpecFormat SpecFormatForPath(absl::string_view path) {
  if (absl::EndsWith(path, ".json")) return SpecFormat::kJson;
  if (absl::EndsWith(path, ".textproto") || absl::EndsWith(path, ".txtpb") ||
      absl::EndsWith(path, ".pbtxt")) {
    return SpecFormat::kText;
  }
  return SpecFormat::kYaml;
}

absl::StatusOr<ParsedFlow> ParseFlowText(absl::string_view text,
                                         absl::string_view source_name,
                                         SpecFormat format) {
  ParsedFlow out;
  out.where.source = std::string(source_name);
  if (text.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ": larger than 4 MiB"));
  }
  absl::Status status;
  switch (format) {
    case SpecFormat::kYaml:
      status = ParseYaml(text, &out);
      break;
    case SpecFormat::kJson:
      status = ParseJson(text, &out);
      break;
    case SpecFormat::kText:
      status = ParseText(text, &out);
      break;
  }
  if (!status.ok()) return status;
  if (absl::Status valid = ValidateFlowSpec(out.spec, &out.where); !valid.ok()) {
    return valid;
  }
  out.warnings = DeprecationWarnings(out.spec, &out.where);
  return out;
}

absl::StatusOr<std::map<std::string, v1::ThrottleKey>> ParseThrottleFlag(absl::string_view text) {
  // As the `throttle:` of a flow with nothing else: the same parser and
  // checks, and the same messages minus the made-up file's positions.
  const std::string doc = absl::StrCat("name: asflowd\nthrottle: {", text, "}\n");
  auto parsed = ParseFlowText(doc, "--throttle", SpecFormat::kYaml);
  if (!parsed.ok()) {
    static const LazyRE2 kPosition = {R"((?m)^--throttle:\d+:\d+: )"};
    std::string message(parsed.status().message());
    RE2::GlobalReplace(&message, *kPosition, "");
    return absl::InvalidArgumentError(absl::StrCat("--throttle '", text, "': ", message));
  }
  if (parsed->spec.throttle().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--throttle '", text, "': expected NAME: {limit: N, rate: R/s}"));
  }
  return std::map<std::string, v1::ThrottleKey>(parsed->spec.throttle().begin(), parsed->spec.throttle().end());
}

absl::StatusOr<ParsedFlow> ParseFlowFile(const std::string& path) {
  auto io_error = [&](int err) {
    std::string msg = absl::StrCat(path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  };
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return io_error(errno);
  if (S_ISDIR(st.st_mode)) return io_error(EISDIR);
  if (static_cast<uint64_t>(st.st_size) > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": larger than 4 MiB"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(errno);
  // Read at most one byte past the limit: the file may grow after stat.
  // The buffer starts at the size stat gave (a 4 MiB buffer up front costs
  // ~1 ms of page faults for a 400-byte flow) and doubles while it fills.
  std::string text;
  size_t chunk = static_cast<size_t>(st.st_size) + 1;
  while (text.size() <= kMaxSpecBytes) {
    const size_t have = text.size();
    text.resize(std::min(have + chunk, kMaxSpecBytes + 1));
    in.read(text.data() + have, static_cast<std::streamsize>(text.size() - have));
    if (in.bad()) return io_error(errno);
    text.resize(have + static_cast<size_t>(in.gcount()));
    if (in.eof()) break;
    chunk = text.size();
  }
  return ParseFlowText(text, path, SpecFormatForPath(path));
}

}  // namespace asflow
