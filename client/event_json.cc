#include "client/event_json.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

// "00" "01" ... "99".
constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Exactly four digits of v (< 10,000).
inline void Write4(uint32_t v, char* p) {
  std::memcpy(p, kDigitPairs + 2 * (v / 100), 2);
  std::memcpy(p + 2, kDigitPairs + 2 * (v % 100), 2);
}

// Exactly eight digits of v (< 10^8), in two independent halves.
inline void Write8(uint32_t v, char* p) {
  Write4(v / 10000, p);
  Write4(v % 10000, p + 4);
}

// Up to eight digits of v (< 10^8), no leading zeros.
inline char* WriteUpTo8(uint32_t v, char* p) {
  if (v < 10) {
    *p = static_cast<char>('0' + v);
    return p + 1;
  }
  int n = v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : v < 100000 ? 5 : v < 1000000 ? 6 : v < 10000000 ? 7 : 8;
  char* end = p + n;
  char* at = end;
  while (v >= 100) {
    at -= 2;
    std::memcpy(at, kDigitPairs + 2 * (v % 100), 2);
    v /= 100;
  }
  if (v >= 10) {
    std::memcpy(at - 2, kDigitPairs + 2 * v, 2);
  } else {
    at[-1] = static_cast<char>('0' + v);
  }
  return end;
}

// The decimal digits of v at p (at most 20); returns their end. Seqs and
// times have 13-16 digits: their low eight are written in parallel halves
// instead of one chain of divisions by 100 (std::to_chars).
inline char* WriteDecimal(uint64_t v, char* p) {
  constexpr uint64_t k8 = 100000000;
  if (v < k8) return WriteUpTo8(static_cast<uint32_t>(v), p);
  uint64_t high = v / k8;
  uint32_t low = static_cast<uint32_t>(v % k8);
  if (high < k8) {
    p = WriteUpTo8(static_cast<uint32_t>(high), p);
  } else {
    p = WriteUpTo8(static_cast<uint32_t>(high / k8), p);
    Write8(static_cast<uint32_t>(high % k8), p);
    p += 8;
  }
  Write8(low, p);
  return p + 8;
}

// A key (`"name":`) or an enum name (`"NAME"`), padded with NULs so that
// writing one of up to kTokenPad bytes is a single fixed-size copy.
constexpr size_t kTokenPad = 32;
struct Token {
  Token() = default;
  explicit Token(std::string s) : text(std::move(s)), size(text.size()) {
    if (text.size() < kTokenPad) text.resize(kTokenPad, '\0');
  }
  bool empty() const { return size == 0; }
  std::string text;
  size_t size = 0;
};

// Builds one JSON object in a per-thread scratch buffer through a cursor:
// callers make room first (Room), then write without further checks; Finish
// appends the object to the output string.
class JsonOut {
 public:
  JsonOut() : buf_(Scratch()), begin_(buf_.data.get()), cur_(begin_), end_(begin_ + buf_.size) {}

  void Room(size_t n) {
    if (static_cast<size_t>(end_ - cur_) < n) Grow(n);
  }
  void Put(char c) { *cur_++ = c; }
  void Put(const char* p, size_t n) {
    std::memcpy(cur_, p, n);
    cur_ += n;
  }
  void Put(absl::string_view v) { Put(v.data(), v.size()); }
  // A key or enum name: one fixed-size copy when it is short.
  void Put(const Token& t) {
    Room(kTokenPad + t.size);
    if (t.size <= kTokenPad) {
      std::memcpy(cur_, t.text.data(), kTokenPad);
    } else {
      std::memcpy(cur_, t.text.data(), t.size);
    }
    cur_ += t.size;
  }
  void PutNumber(uint64_t v) { cur_ = WriteDecimal(v, cur_); }
  void PutNumber(int64_t v) {
    if (v < 0) {
      *cur_++ = '-';
      cur_ = WriteDecimal(0 - static_cast<uint64_t>(v), cur_);
    } else {
      cur_ = WriteDecimal(static_cast<uint64_t>(v), cur_);
    }
  }
  template <typename T>
  void PutNumber(T v) {
    cur_ = std::to_chars(cur_, cur_ + 24, v).ptr;
  }
  void Finish(std::string* out) const {
    // Every write is preceded by Room; past the end means one was missed
    // and the heap is already overwritten: stop rather than go on.
    if (cur_ > end_) {
      std::fputs("asflowctl: internal error: JSON buffer overrun\n", stderr);
      std::abort();
    }
    out->append(begin_, cur_ - begin_);
  }

 private:
  struct Buffer {
    std::unique_ptr<char[]> data;
    size_t size = 0;
  };
  static Buffer& Scratch() {
    thread_local Buffer buffer;
    return buffer;
  }
  void Grow(size_t n) {
    size_t pos = cur_ - begin_;
    size_t size = std::max(2 * buf_.size, pos + n + 1024);
    auto bigger = std::make_unique<char[]>(size);
    // A fresh thread's buffer is null: memcpy from null is undefined even
    // for 0 bytes (UBSan reported it on every first event of a thread).
    if (pos > 0) std::memcpy(bigger.get(), begin_, pos);
    buf_.data = std::move(bigger);
    buf_.size = size;
    begin_ = buf_.data.get();
    cur_ = begin_ + pos;
    end_ = begin_ + size;
  }

  Buffer& buf_;
  char* begin_;
  char* cur_;  // where the next byte goes
  char* end_;
};

// The bytes a JSON string holds as they are: printable ASCII but for the
// quote, the backslash, '<' and '>' (protobuf escapes those too).
constexpr std::array<bool, 256> PlainAsciiTable() {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x7f; ++c) plain[c] = c != '"' && c != '\\' && c != '<' && c != '>';
  return plain;
}
constexpr std::array<bool, 256> kPlainAscii = PlainAsciiTable();

// A JSON string, escaped as protobuf's converter escapes ASCII; false on any
// byte outside ASCII (its rules for those are left to it).
bool AppendString(absl::string_view s, JsonOut& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.Room(6 * s.size() + 2);
  out.Put('"');
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (kPlainAscii[c]) continue;
    if (c >= 0x80) return false;
    out.Put(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out.Put("\\\"", 2); break;
      case '\\': out.Put("\\\\", 2); break;
      case '\b': out.Put("\\b", 2); break;
      case '\f': out.Put("\\f", 2); break;
      case '\n': out.Put("\\n", 2); break;
      case '\r': out.Put("\\r", 2); break;
      case '\t': out.Put("\\t", 2); break;
      default: {
        char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out.Put(esc, sizeof(esc));
      }
    }
  }
  out.Put(s.data() + run, s.size() - run);
  out.Put('"');
  return true;
}

// How to print one message type, worked out once per type from its
// descriptor: the fields by number, each with its JSON key and kind.
enum class Kind : uint8_t {
  kUnknown,  // no such field, or a type left to protobuf
  kInt64,
  kUInt64,
  kSInt64,
  kFixed64,
  kSFixed64,
  kInt32,
  kUInt32,
  kSInt32,
  kFixed32,
  kSFixed32,
  kBool,
  kEnum,
  kString,
  kMessage,
};

struct MessagePlan;

struct FieldPlan {
  Kind kind = Kind::kUnknown;
  int wire_type = 0;
  bool repeated = false;
  bool map = false;
  Token key;                            // "name":
  const MessagePlan* message = nullptr;  // kMessage: its type (a map: the entry)
  std::vector<Token> enum_names;        // kEnum: "NAME" by number, empty if unknown
};

struct MessagePlan {
  bool supported = true;
  std::vector<FieldPlan> fields;  // by field number
};

constexpr int kMaxPlannedNumber = 1024;

Kind KindOf(const FieldDescriptor* f, int* wire_type) {
  *wire_type = kVarint;
  switch (f->type()) {
    case FieldDescriptor::TYPE_INT64: return Kind::kInt64;
    case FieldDescriptor::TYPE_UINT64: return Kind::kUInt64;
    case FieldDescriptor::TYPE_SINT64: return Kind::kSInt64;
    case FieldDescriptor::TYPE_INT32: return Kind::kInt32;
    case FieldDescriptor::TYPE_UINT32: return Kind::kUInt32;
    case FieldDescriptor::TYPE_SINT32: return Kind::kSInt32;
    case FieldDescriptor::TYPE_BOOL: return Kind::kBool;
    case FieldDescriptor::TYPE_ENUM: return Kind::kEnum;
    case FieldDescriptor::TYPE_FIXED64: *wire_type = kFixed64; return Kind::kFixed64;
    case FieldDescriptor::TYPE_SFIXED64: *wire_type = kFixed64; return Kind::kSFixed64;
    case FieldDescriptor::TYPE_FIXED32: *wire_type = kFixed32; return Kind::kFixed32;
    case FieldDescriptor::TYPE_SFIXED32: *wire_type = kFixed32; return Kind::kSFixed32;
    case FieldDescriptor::TYPE_STRING: *wire_type = kLen; return Kind::kString;
    case FieldDescriptor::TYPE_MESSAGE: *wire_type = kLen; return Kind::kMessage;
    default: return Kind::kUnknown;  // float, double, bytes, groups
  }
}

class PlanCache {
 public:
  const MessagePlan* Get(const Descriptor* type) {
    // Plans never change once made: each thread remembers its last one
    // (a sink prints one type), so there is no lock per event.
    thread_local const Descriptor* last_type = nullptr;
    thread_local const MessagePlan* last_plan = nullptr;
    if (type != last_type) {
      absl::MutexLock lock(&mu_);
      last_plan = GetLocked(type);
      last_type = type;
    }
    return last_plan;
  }

 private:
  const MessagePlan* GetLocked(const Descriptor* type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::unique_ptr<MessagePlan>& slot = plans_[type];
    if (slot != nullptr) return slot.get();
    slot = std::make_unique<MessagePlan>();
    MessagePlan* plan = slot.get();  // in the map before its fields: types may nest themselves
    if (absl::StartsWith(type->file()->name(), "google/protobuf/")) {
      plan->supported = false;  // well-known types have JSON forms of their own
      return plan;
    }
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* f = type->field(i);
      if (f->number() > kMaxPlannedNumber) {
        plan->supported = false;
        return plan;
      }
      if (static_cast<int>(plan->fields.size()) <= f->number()) plan->fields.resize(f->number() + 1);
      FieldPlan& fp = plan->fields[f->number()];
      fp.kind = KindOf(f, &fp.wire_type);
      fp.repeated = f->is_repeated();
      fp.map = f->is_map();
      fp.key = Token(absl::StrCat("\"", f->name(), "\":"));
      if (fp.kind == Kind::kMessage) fp.message = GetLocked(f->message_type());
      if (fp.kind == Kind::kEnum) {
        const google::protobuf::EnumDescriptor* e = f->enum_type();
        for (int v = 0; v < e->value_count(); ++v) {
          int number = e->value(v)->number();
          if (number < 0 || number > kMaxPlannedNumber) continue;  // such values fall back
          if (static_cast<int>(fp.enum_names.size()) <= number) fp.enum_names.resize(number + 1);
          if (fp.enum_names[number].empty()) fp.enum_names[number] = Token(absl::StrCat("\"", e->value(v)->name(), "\""));
        }
      }
    }
    return plan;
  }

  absl::Mutex mu_;
  absl::flat_hash_map<const Descriptor*, std::unique_ptr<MessagePlan>> plans_ ABSL_GUARDED_BY(mu_);
};

PlanCache& Plans() {
  static PlanCache* cache = new PlanCache();
  return *cache;
}

bool AppendMessage(const MessagePlan& plan, absl::string_view wire, int depth, JsonOut& out);

// One value of field `fp` (wire type `wt`) from `r`. `quote_all` quotes
// every scalar (map keys are JSON strings).
bool AppendValue(const FieldPlan& fp, int wt, WireReader& r, int depth, bool quote_all, JsonOut& out) {
  if (wt != fp.wire_type) return false;
  uint64_t v = 0;
  out.Room(24);  // any number or true/false, quoted
  switch (fp.kind) {
    case Kind::kInt64:
    case Kind::kUInt64:
    case Kind::kSInt64:
    case Kind::kFixed64:
    case Kind::kSFixed64:
      if (!(wt == kFixed64 ? r.Fixed(8, &v) : r.Varint(&v))) return false;
      out.Put('"');
      if (fp.kind == Kind::kUInt64 || fp.kind == Kind::kFixed64) {
        out.PutNumber(v);
      } else if (fp.kind == Kind::kSInt64) {
        out.PutNumber(static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1)));
      } else {
        out.PutNumber(static_cast<int64_t>(v));
      }
      out.Put('"');
      return true;
    case Kind::kInt32:
    case Kind::kUInt32:
    case Kind::kSInt32:
    case Kind::kFixed32:
    case Kind::kSFixed32: {
      if (!(wt == kFixed32 ? r.Fixed(4, &v) : r.Varint(&v))) return false;
      if (quote_all) out.Put('"');
      uint32_t u = static_cast<uint32_t>(v);
      if (fp.kind == Kind::kUInt32 || fp.kind == Kind::kFixed32) {
        out.PutNumber(u);
      } else if (fp.kind == Kind::kSInt32) {
        out.PutNumber(static_cast<int32_t>((u >> 1) ^ (~(u & 1) + 1)));
      } else {
        out.PutNumber(static_cast<int32_t>(u));
      }
      if (quote_all) out.Put('"');
      return true;
    }
    case Kind::kBool:
      if (!r.Varint(&v)) return false;
      if (quote_all) out.Put('"');
      if (v != 0) {
        out.Put("true", 4);
      } else {
        out.Put("false", 5);
      }
      if (quote_all) out.Put('"');
      return true;
    case Kind::kEnum:
      // Values this client does not know are left to protobuf.
      if (quote_all || !r.Varint(&v) || v >= fp.enum_names.size() || fp.enum_names[v].empty()) return false;
      out.Put(fp.enum_names[v]);
      return true;
    case Kind::kString: {
      absl::string_view s;
      return r.Len(&s) && AppendString(s, out);
    }
    case Kind::kMessage: {
      absl::string_view sub;
      if (quote_all || !r.Len(&sub)) return false;
      return AppendMessage(*fp.message, sub, depth + 1, out);
    }
    default:
      return false;
  }
}

// A map entry as `"key":value`. Protobuf writes both, key first.
bool AppendMapEntry(const MessagePlan& entry, absl::string_view wire, int depth, JsonOut& out) {
  if (entry.fields.size() < 3) return false;
  WireReader r(wire);
  uint64_t tag;
  if (!r.Varint(&tag) || (tag >> 3) != 1) return false;
  if (!AppendValue(entry.fields[1], static_cast<int>(tag & 7), r, depth, /*quote_all=*/true, out)) return false;
  out.Room(1);
  out.Put(':');
  if (!r.Varint(&tag) || (tag >> 3) != 2) return false;
  if (!AppendValue(entry.fields[2], static_cast<int>(tag & 7), r, depth, /*quote_all=*/false, out)) return false;
  return r.done();
}

bool AppendMessage(const MessagePlan& plan, absl::string_view wire, int depth, JsonOut& out) {
  if (depth > kMaxDepth || !plan.supported) return false;
  WireReader r(wire);
  out.Room(1);
  out.Put('{');
  uint64_t last_number = 0;
  bool first = true;
  while (!r.done()) {
    uint64_t tag;
    if (!r.Varint(&tag)) return false;
    uint64_t number = tag >> 3;
    int wt = static_cast<int>(tag & 7);
    // Out of order, repeated twice or split: left to protobuf.
    if (number <= last_number) return false;
    last_number = number;
    if (number >= plan.fields.size()) return false;
    const FieldPlan& fp = plan.fields[number];
    if (fp.kind == Kind::kUnknown) return false;
    out.Room(2);
    if (!first) out.Put(',');
    first = false;
    out.Put(fp.key);
    if (fp.map || fp.repeated) {
      out.Put(fp.map ? '{' : '[');
      bool first_element = true;
      do {
        out.Room(2);
        if (!first_element) out.Put(',');
        first_element = false;
        if (fp.map) {
          absl::string_view entry;
          if (wt != kLen || !r.Len(&entry) || !AppendMapEntry(*fp.message, entry, depth + 1, out)) return false;
        } else if (!AppendValue(fp, wt, r, depth, /*quote_all=*/false, out)) {
          return false;
        }
      } while (r.NextTagIs(tag));
      out.Room(1);
      out.Put(fp.map ? '}' : ']');
    } else if (!AppendValue(fp, wt, r, depth, /*quote_all=*/false, out)) {
      return false;
    }
  }
  out.Room(1);
  out.Put('}');
  return true;
}

// Walks the top-level fields of `wire`: on_varint(number, value) for
// varints, on_len(number, bytes) for length-delimited fields; fixed-width
// ones are skipped. False if the wire is malformed.
template <typename OnVarint, typename OnLen>
bool ForEachField(absl::string_view wire, OnVarint on_varint, OnLen on_len) {
  WireReader r(wire);
  while (!r.done()) {
    uint64_t tag, v;
    if (!r.Varint(&tag)) return false;
    const int number = static_cast<int>(tag >> 3);
    switch (tag & 7) {
      case kVarint:
        if (!r.Varint(&v)) return false;
        on_varint(number, v);
        break;
      case kLen: {
        absl::string_view bytes;
        if (!r.Len(&bytes)) return false;
        on_len(number, bytes);
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

}  // namespace

bool PeekEvent(absl::string_view wire, int64_t* seq, int* body) {
  *seq = 0;
  *body = 0;
  return ForEachField(
      wire,
      [&](int number, uint64_t v) {
        if (number == v1::Event::kSeqFieldNumber) *seq = static_cast<int64_t>(v);
      },
      [&](int number, absl::string_view) {
        if (number == v1::Event::kSnapshotFieldNumber || number == v1::Event::kRunFieldNumber ||
            number == v1::Event::kInstanceFieldNumber) {
          *body = number;
        }
      });
}

bool SplitBatch(absl::string_view wire, std::vector<absl::string_view>* events) {
  return ForEachField(
      wire, [](int, uint64_t) {},
      [&](int number, absl::string_view bytes) {
        if (number == v1::Event::kBatchFieldNumber) events->push_back(bytes);
      });
}

bool AppendWireAsJson(const Descriptor* type, absl::string_view wire, std::string* out) {
  JsonOut json;
  if (!AppendMessage(*Plans().Get(type), wire, 0, json)) return false;
  json.Finish(out);
  return true;
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
