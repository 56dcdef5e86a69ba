#include "client/event_json.h"

#include <cstdint>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "asflow/v1/service.pb.h"
#include "google/protobuf/util/json_util.h"

namespace asflow {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

constexpr int kMaxDepth = 32;

enum WireType { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// Reads the wire format of one message; every read fails (false) rather
// than running past the end.
class WireReader {
 public:
  explicit WireReader(absl::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}

  bool done() const { return p_ == end_; }

  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      uint8_t byte = static_cast<uint8_t>(*p_++);
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Fixed(int bytes, uint64_t* v) {
    if (end_ - p_ < bytes) return false;
    uint64_t result = 0;
    for (int i = 0; i < bytes; ++i) result |= static_cast<uint64_t>(static_cast<uint8_t>(p_[i])) << (8 * i);
    p_ += bytes;
    *v = result;
    return true;
  }
  bool Len(absl::string_view* out) {
    uint64_t n;
    if (!Varint(&n) || n > static_cast<uint64_t>(end_ - p_)) return false;
    *out = absl::string_view(p_, n);
    p_ += n;
    return true;
  }
  // Consumes the next tag only if it is `tag`.
  bool NextTagIs(uint64_t tag) {
    const char* saved = p_;
    uint64_t next;
    if (Varint(&next) && next == tag) return true;
    p_ = saved;
    return false;
  }

 private:
  const char* p_;
  const char* end_;
};

// A JSON string, escaped as protobuf's converter escapes ASCII; false on any
// byte outside ASCII (its rules for those are left to it).
bool AppendString(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) return false;
    bool plain = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != 0x7f;
    if (plain) continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default: {
        char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out->append(esc, sizeof(esc));
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
  return true;
}

bool AppendMessage(const Descriptor* type, absl::string_view wire, int depth, std::string* out);

// One value of field `f` (wire type `wt`) from `r`. `quote_all` quotes
// every scalar (map keys are JSON strings).
bool AppendValue(const FieldDescriptor* f, int wt, WireReader& r, int depth, bool quote_all, std::string* out) {
  uint64_t v = 0;
  switch (f->type()) {
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_UINT64:
    case FieldDescriptor::TYPE_SINT64:
    case FieldDescriptor::TYPE_FIXED64:
    case FieldDescriptor::TYPE_SFIXED64: {
      bool fixed = f->type() == FieldDescriptor::TYPE_FIXED64 || f->type() == FieldDescriptor::TYPE_SFIXED64;
      if (wt != (fixed ? kFixed64 : kVarint)) return false;
      if (!(fixed ? r.Fixed(8, &v) : r.Varint(&v))) return false;
      out->push_back('"');
      if (f->type() == FieldDescriptor::TYPE_UINT64 || f->type() == FieldDescriptor::TYPE_FIXED64) {
        absl::StrAppend(out, v);
      } else if (f->type() == FieldDescriptor::TYPE_SINT64) {
        absl::StrAppend(out, static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1)));
      } else {
        absl::StrAppend(out, static_cast<int64_t>(v));
      }
      out->push_back('"');
      return true;
    }
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_UINT32:
    case FieldDescriptor::TYPE_SINT32:
    case FieldDescriptor::TYPE_FIXED32:
    case FieldDescriptor::TYPE_SFIXED32: {
      bool fixed = f->type() == FieldDescriptor::TYPE_FIXED32 || f->type() == FieldDescriptor::TYPE_SFIXED32;
      if (wt != (fixed ? kFixed32 : kVarint)) return false;
      if (!(fixed ? r.Fixed(4, &v) : r.Varint(&v))) return false;
      if (quote_all) out->push_back('"');
      uint32_t u = static_cast<uint32_t>(v);
      if (f->type() == FieldDescriptor::TYPE_UINT32 || f->type() == FieldDescriptor::TYPE_FIXED32) {
        absl::StrAppend(out, u);
      } else if (f->type() == FieldDescriptor::TYPE_SINT32) {
        absl::StrAppend(out, static_cast<int32_t>((u >> 1) ^ (~(u & 1) + 1)));
      } else {
        absl::StrAppend(out, static_cast<int32_t>(u));
      }
      if (quote_all) out->push_back('"');
      return true;
    }
    case FieldDescriptor::TYPE_BOOL:
      if (wt != kVarint || !r.Varint(&v)) return false;
      if (quote_all) out->push_back('"');
      out->append(v != 0 ? "true" : "false");
      if (quote_all) out->push_back('"');
      return true;
    case FieldDescriptor::TYPE_ENUM: {
      if (wt != kVarint || !r.Varint(&v)) return false;
      const auto* value = f->enum_type()->FindValueByNumber(static_cast<int32_t>(v));
      if (value == nullptr || quote_all) return false;
      out->push_back('"');
      out->append(value->name());
      out->push_back('"');
      return true;
    }
    case FieldDescriptor::TYPE_STRING: {
      absl::string_view s;
      return wt == kLen && r.Len(&s) && AppendString(s, out);
    }
    case FieldDescriptor::TYPE_MESSAGE: {
      absl::string_view sub;
      if (quote_all || wt != kLen || !r.Len(&sub)) return false;
      return AppendMessage(f->message_type(), sub, depth + 1, out);
    }
    default:  // float, double, bytes, groups
      return false;
  }
}

// A map entry as `"key":value`. Protobuf writes both, key first.
bool AppendMapEntry(const Descriptor* entry, absl::string_view wire, int depth, std::string* out) {
  WireReader r(wire);
  uint64_t tag;
  if (!r.Varint(&tag) || (tag >> 3) != 1) return false;
  if (!AppendValue(entry->map_key(), static_cast<int>(tag & 7), r, depth, /*quote_all=*/true, out)) return false;
  out->push_back(':');
  if (!r.Varint(&tag) || (tag >> 3) != 2) return false;
  if (!AppendValue(entry->map_value(), static_cast<int>(tag & 7), r, depth, /*quote_all=*/false, out)) return false;
  return r.done();
}

bool AppendMessage(const Descriptor* type, absl::string_view wire, int depth, std::string* out) {
  if (depth > kMaxDepth || absl::StartsWith(type->file()->name(), "google/protobuf/")) return false;
  WireReader r(wire);
  out->push_back('{');
  int last_number = 0;
  int next_field = 0;
  bool first = true;
  while (!r.done()) {
    uint64_t tag;
    if (!r.Varint(&tag)) return false;
    int number = static_cast<int>(tag >> 3);
    int wt = static_cast<int>(tag & 7);
    // Out of order, repeated twice or split: left to protobuf.
    if (number <= last_number) return false;
    last_number = number;
    // Fields come in number order, mostly also their declaration order.
    const FieldDescriptor* f = nullptr;
    for (; next_field < type->field_count() && f == nullptr; ++next_field) {
      if (type->field(next_field)->number() == number) f = type->field(next_field);
    }
    if (f == nullptr && (f = type->FindFieldByNumber(number)) == nullptr) return false;
    if (!first) out->push_back(',');
    first = false;
    out->push_back('"');
    out->append(f->name());
    out->append("\":");
    if (f->is_map()) {
      out->push_back('{');
      bool first_entry = true;
      do {
        absl::string_view entry;
        if (wt != kLen || !r.Len(&entry)) return false;
        if (!first_entry) out->push_back(',');
        first_entry = false;
        if (!AppendMapEntry(f->message_type(), entry, depth + 1, out)) return false;
      } while (r.NextTagIs(tag));
      out->push_back('}');
    } else if (f->is_repeated()) {
      out->push_back('[');
      bool first_element = true;
      do {
        if (!first_element) out->push_back(',');
        first_element = false;
        if (!AppendValue(f, wt, r, depth, /*quote_all=*/false, out)) return false;
      } while (r.NextTagIs(tag));
      out->push_back(']');
    } else if (!AppendValue(f, wt, r, depth, /*quote_all=*/false, out)) {
      return false;
    }
  }
  out->push_back('}');
  return true;
}

}  // namespace

bool PeekEvent(absl::string_view wire, int64_t* seq, int* body) {
  WireReader r(wire);
  *seq = 0;
  *body = 0;
  while (!r.done()) {
    uint64_t tag, v;
    if (!r.Varint(&tag)) return false;
    int number = static_cast<int>(tag >> 3);
    switch (tag & 7) {
      case kVarint:
        if (!r.Varint(&v)) return false;
        if (number == v1::Event::kSeqFieldNumber) *seq = static_cast<int64_t>(v);
        break;
      case kLen: {
        absl::string_view skipped;
        if (!r.Len(&skipped)) return false;
        if (number == v1::Event::kSnapshotFieldNumber || number == v1::Event::kRunFieldNumber ||
            number == v1::Event::kInstanceFieldNumber) {
          *body = number;
        }
        break;
      }
      case kFixed64:
        if (!r.Fixed(8, &v)) return false;
        break;
      case kFixed32:
        if (!r.Fixed(4, &v)) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

bool AppendWireAsJson(const Descriptor* type, absl::string_view wire, std::string* out) {
  size_t size = out->size();
  if (AppendMessage(type, wire, 0, out)) return true;
  out->resize(size);
  return false;
}

bool WireToJson(const Descriptor* type, absl::string_view wire, std::string* out) {
  if (AppendWireAsJson(type, wire, out)) return true;
  const google::protobuf::Message* prototype =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
  if (prototype == nullptr) return false;
  std::unique_ptr<google::protobuf::Message> message(prototype->New());
  if (!message->ParseFromArray(wire.data(), static_cast<int>(wire.size()))) return false;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(*message, &json, options).ok()) return false;
  out->append(json);
  return true;
}

}  // namespace asflow
