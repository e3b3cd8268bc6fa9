#include "rb_json.hpp"

#include <rapidjson/internal/dtoa.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <type_traits>
#include <unordered_map>

namespace routerb {
namespace {

// Not kParseIterativeFlag: the recursive parser calls StartObject/StartArray
// before descending, and DomBuilder stops it at depth kMaxDepth + 1, so the
// recursion is bounded (and the recursive parser is the faster one).
constexpr unsigned kReaderFlags = rapidjson::kParseValidateEncodingFlag;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Checks the JSON number grammar and says whether RapidJSON 1.1 would refuse
// the (valid) number as "too big" (more than ~308 integer digits, or a huge
// exponent). Such tokens, never integers in the SPEC.md sense, are swapped
// for a placeholder before RapidJSON sees them, and the DOM builder gives
// the placeholder the double value of the original text.
bool NeedsRewrite(std::string_view t) {
  std::size_t i = 0;
  const std::size_t n = t.size();
  if (i < n && t[i] == '-') ++i;
  std::size_t int_start = i;
  if (i < n && t[i] == '0') {
    ++i;
  } else if (i < n && t[i] >= '1' && t[i] <= '9') {
    while (i < n && IsDigit(t[i])) ++i;
  } else {
    return false;
  }
  std::size_t int_digits = i - int_start;
  if (i < n && t[i] == '.') {
    ++i;
    std::size_t s = i;
    while (i < n && IsDigit(t[i])) ++i;
    if (i == s) return false;
  }
  bool huge_exp = false;
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    std::size_t s = i;
    while (i < n && t[i] == '0') ++i;  // leading zeros of the exponent
    std::size_t sig = i;
    while (i < n && IsDigit(t[i])) ++i;
    if (i == s) return false;
    std::size_t sig_len = i - sig;
    if (sig_len > 3) {
      huge_exp = true;
    } else if (sig_len > 0) {
      int e = 0;
      for (std::size_t k = sig; k < i; ++k) e = e * 10 + (t[k] - '0');
      huge_exp = e > 300;
    }
  }
  if (i != n) return false;
  return int_digits > 300 || huge_exp;
}

enum class BuildFailure { kNone, kTooDeep, kBadString };

// SAX handler: forwards RapidJSON's events into a Document, classifying
// numbers, validating strings and bounding the depth on the way.
class DomBuilder {
 public:
  DomBuilder(rapidjson::Document& doc, const std::map<std::size_t, std::string_view>& originals)
      : doc_(doc), originals_(originals) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  // Numbers. RapidJSON reports a number without fraction/exponent as
  // Int/Uint/Int64/Uint64 when it fits in 64 bits (non-negative ones above
  // 2^32 as Uint64), and everything else as Double. Integers beyond int64
  // become Double here, so IntegerOf() is exactly the SPEC.md §3.2 integer.
  bool Int(int i) { return Number(i); }
  bool Uint(unsigned u) { return Number(u); }
  bool Int64(std::int64_t i) { return Number(i); }
  bool Uint64(std::uint64_t u) {
    if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return Number(static_cast<std::int64_t>(u));
    return Number(static_cast<double>(u));
  }
  bool Double(double d) { return Number(d); }
  bool RawNumber(const char*, rapidjson::SizeType, bool) { return false; }  // not enabled

  bool String(const char* s, rapidjson::SizeType len, bool) {
    if (!IsUtf8({s, len})) {
      failure_ = BuildFailure::kBadString;
      return false;
    }
    return doc_.String(s, len, true);
  }
  bool Key(const char* s, rapidjson::SizeType len, bool) {
    if (!IsUtf8({s, len})) {
      failure_ = BuildFailure::kBadString;
      return false;
    }
    return doc_.Key(s, len, true);
  }

  bool StartObject() { return Enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    return doc_.EndObject(n);
  }
  bool StartArray() { return Enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return doc_.EndArray(n);
  }

  BuildFailure failure() const { return failure_; }

 private:
  bool Enter() {
    if (++depth_ > kMaxDepth) {
      failure_ = BuildFailure::kTooDeep;
      return false;
    }
    return true;
  }

  // Every number passes here in document order; a number that the pre-scan
  // replaced by a placeholder gets the value of its original text.
  template <typename T>
  bool Number(T value) {
    auto it = originals_.find(number_index_++);
    if (it == originals_.end()) {
      if constexpr (std::is_same_v<T, double>)
        return doc_.Double(value);
      else
        return doc_.Int64(static_cast<std::int64_t>(value));
    }
    std::string copy(it->second);  // strtod needs a terminated string; "C" locale
    return doc_.Double(std::strtod(copy.c_str(), nullptr));
  }

  rapidjson::Document& doc_;
  const std::map<std::size_t, std::string_view>& originals_;
  std::size_t number_index_ = 0;
  int depth_ = 0;
  BuildFailure failure_ = BuildFailure::kNone;
};

struct Generator {
  std::string_view text;
  const std::map<std::size_t, std::string_view>* originals;
  rapidjson::ParseResult result;
  BuildFailure failure = BuildFailure::kNone;

  bool operator()(rapidjson::Document& doc) {
    DomBuilder builder(doc, *originals);
    rapidjson::MemoryStream stream(text.data(), text.size());
    rapidjson::Reader reader;
    result = reader.Parse<kReaderFlags>(stream, builder);
    failure = builder.failure();
    return !result.IsError();
  }
};

bool SameName(const rapidjson::Value& a, const rapidjson::Value& b) {
  return View(a) == View(b);
}

// Duplicate member names: keep only the last occurrence (at its position).
void Dedupe(rapidjson::Value& v, rapidjson::Document::AllocatorType& alloc) {
  if (v.IsArray()) {
    for (auto& e : v.GetArray()) Dedupe(e, alloc);
    return;
  }
  if (!v.IsObject()) return;
  const rapidjson::SizeType n = v.MemberCount();
  auto begin = v.MemberBegin();
  bool any_dup = false;
  if (n <= 16) {
    for (rapidjson::SizeType i = 0; i < n && !any_dup; ++i)
      for (rapidjson::SizeType j = i + 1; j < n && !any_dup; ++j)
        any_dup = SameName(begin[i].name, begin[j].name);
  } else {
    std::unordered_map<std::string_view, rapidjson::SizeType> seen;
    seen.reserve(n);
    for (rapidjson::SizeType i = 0; i < n && !any_dup; ++i)
      any_dup = !seen.try_emplace(View(begin[i].name), i).second;
  }
  if (any_dup) {
    std::unordered_map<std::string_view, rapidjson::SizeType> last;
    last.reserve(n);
    for (rapidjson::SizeType i = 0; i < n; ++i) last[View(begin[i].name)] = i;
    rapidjson::Value rebuilt(rapidjson::kObjectType);
    for (rapidjson::SizeType i = 0; i < n; ++i)
      if (last[View(begin[i].name)] == i) rebuilt.AddMember(begin[i].name, begin[i].value, alloc);
    v = rebuilt;
  }
  for (auto& m : v.GetObject()) Dedupe(m.value, alloc);
}

}  // namespace

bool IsUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto cont = [&](std::size_t k, unsigned char lo, unsigned char hi) {
    return k < n && p[k] >= lo && p[k] <= hi;
  };
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
    } else if (c >= 0xC2 && c <= 0xDF) {
      if (!cont(i + 1, 0x80, 0xBF)) return false;
      i += 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
      unsigned char hi = c == 0xED ? 0x9F : 0xBF;  // ED A0..BF = surrogates
      if (!cont(i + 1, lo, hi) || !cont(i + 2, 0x80, 0xBF)) return false;
      i += 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
      unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
      if (!cont(i + 1, lo, hi) || !cont(i + 2, 0x80, 0xBF) || !cont(i + 3, 0x80, 0xBF))
        return false;
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

bool HasControl(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return true;
  }
  return false;
}

namespace {

// Finds the valid JSON numbers RapidJSON 1.1 refuses as too big, replaces each
// by the placeholder "0.0" in *rewritten and records its original text by its
// index among all numbers of the document (document order = SAX order).
// Returns false when there is nothing to rewrite.
bool RewriteHugeNumbers(std::string_view text, std::map<std::size_t, std::string_view>& originals,
                        std::string& rewritten) {
  bool in_string = false, escape = false;
  std::size_t number_index = 0, copied = 0;
  const std::size_t n = text.size();
  for (std::size_t i = 0; i < n; ++i) {
    char c = text[i];
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '-' || IsDigit(c)) {
      std::size_t j = i;
      while (j < n && (IsDigit(text[j]) || text[j] == '-' || text[j] == '+' || text[j] == '.' ||
                       text[j] == 'e' || text[j] == 'E'))
        ++j;
      std::string_view token = text.substr(i, j - i);
      if (NeedsRewrite(token)) {
        originals.emplace(number_index, token);
        rewritten.append(text.substr(copied, i - copied));
        rewritten.append("0.0");
        copied = j;
      }
      ++number_index;
      i = j - 1;
    }
  }
  if (originals.empty()) return false;
  rewritten.append(text.substr(copied));
  return true;
}

}  // namespace

bool ParseJson(std::string_view text, rapidjson::Document& doc, std::string* why) {
  // A raw NUL is never valid JSON, and MemoryStream would take it for the end.
  if (std::memchr(text.data(), 0, text.size()) != nullptr) {
    if (why) *why = "message contains a NUL byte";
    return false;
  }
  std::map<std::size_t, std::string_view> originals;
  Generator gen{text, &originals, {}, BuildFailure::kNone};
  doc.Populate(gen);
  std::string rewritten;
  if (gen.result.IsError() && gen.result.Code() == rapidjson::kParseErrorNumberTooBig &&
      gen.failure == BuildFailure::kNone && RewriteHugeNumbers(text, originals, rewritten)) {
    rapidjson::Document retry;
    gen = Generator{rewritten, &originals, {}, BuildFailure::kNone};
    retry.Populate(gen);
    doc.Swap(retry);
  }
  if (gen.result.IsError()) {
    if (why) {
      switch (gen.failure) {
        case BuildFailure::kTooDeep:
          *why = "JSON nested deeper than 64 levels";
          break;
        case BuildFailure::kBadString:
          *why = "string is not valid UTF-8 (or has an unpaired surrogate)";
          break;
        case BuildFailure::kNone:
          *why = std::string("invalid JSON: ") + rapidjson::GetParseError_En(gen.result.Code()) +
                 " at offset " + std::to_string(gen.result.Offset());
          break;
      }
    }
    doc.SetNull();
    return false;
  }
  Dedupe(doc, doc.GetAllocator());
  return true;
}

std::optional<std::int64_t> IntegerOf(const rapidjson::Value& v) {
  if (v.IsInt64()) return v.GetInt64();
  return std::nullopt;
}

const rapidjson::Value* Member(const rapidjson::Value& obj, std::string_view name) {
  if (!obj.IsObject()) return nullptr;
  const rapidjson::Value* found = nullptr;
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it)
    if (View(it->name) == name) found = &it->value;
  return found;
}

void AppendQuoted(std::string& out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the pending raw run
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c != '"' && c != '\\' && c >= 0x20) continue;
    out.append(s.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      default:
        out.append("\\u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
  }
  out.append(s.substr(run));
  out.push_back('"');
}

void AppendInt(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void AppendValue(std::string& out, const rapidjson::Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType: out.append("null"); break;
    case rapidjson::kFalseType: out.append("false"); break;
    case rapidjson::kTrueType: out.append("true"); break;
    case rapidjson::kStringType: AppendQuoted(out, View(v)); break;
    case rapidjson::kArrayType: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v.GetArray()) {
        if (!first) out.push_back(',');
        first = false;
        AppendValue(out, e);
      }
      out.push_back(']');
      break;
    }
    case rapidjson::kObjectType: {
      out.push_back('{');
      bool first = true;
      for (const auto& m : v.GetObject()) {
        if (!first) out.push_back(',');
        first = false;
        AppendQuoted(out, View(m.name));
        out.push_back(':');
        AppendValue(out, m.value);
      }
      out.push_back('}');
      break;
    }
    case rapidjson::kNumberType: {
      if (v.IsInt64()) {
        AppendInt(out, v.GetInt64());
      } else if (v.IsUint64()) {
        out.append(std::to_string(v.GetUint64()));
      } else {
        double d = v.GetDouble();
        if (std::isfinite(d)) {
          char buf[32];
          char* end = rapidjson::internal::dtoa(d, buf);
          out.append(buf, end);
        } else {
          out.append(d < 0 ? "-1e999" : "1e999");
        }
      }
      break;
    }
  }
}

}  // namespace routerb
