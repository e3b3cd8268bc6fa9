// router-b: JSON helpers on top of RapidJSON.
//
// ParseJson() is the single entry point for turning received bytes into a
// RapidJSON DOM. It enforces everything PROTOCOL.md asks of a receiver:
//   * strict UTF-8 (RapidJSON's kParseValidateEncodingFlag, plus a second
//     check of every decoded string so that unpaired surrogate escapes such
//     as "\udc00", which RapidJSON 1.1 lets through, are refused);
//   * no NUL byte anywhere (MemoryStream would otherwise treat it as EOF);
//   * nesting depth at most kMaxDepth;
//   * numbers: an integer (no fraction, no exponent, within int64) becomes
//     an Int64 value, every other number a Double value, so that
//     IntegerOf() below is exactly SPEC.md §3.2's notion of an integer;
//   * duplicate member names: the last occurrence wins.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rb_rapidjson.hpp"

namespace routerb {

inline constexpr int kMaxDepth = 64;

// Parses `text` into `doc`. On failure returns false and sets *why.
bool ParseJson(std::string_view text, rapidjson::Document& doc, std::string* why);

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsUtf8(std::string_view s);

// True if s contains U+0000..U+001F or U+007F.
bool HasControl(std::string_view s);

// A string value's bytes (the value must be a string).
inline std::string_view View(const rapidjson::Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

// The value as a SPEC.md §3.2 integer, or nullopt.
std::optional<std::int64_t> IntegerOf(const rapidjson::Value& v);

// Member lookup by exact bytes (embedded NULs allowed); last one wins.
const rapidjson::Value* Member(const rapidjson::Value& obj, std::string_view name);

// Appends a JSON string literal: escapes `"`, `\` and control characters
// only; everything else (including all non-ASCII) is copied raw. For strings
// without control characters this is exactly SPEC.md §6.1.
void AppendQuoted(std::string& out, std::string_view s);

// Appends a decimal integer.
void AppendInt(std::string& out, std::int64_t v);

// Appends a compact serialisation of an arbitrary value (members in stored
// order). Used for fault matching and the received log.
void AppendValue(std::string& out, const rapidjson::Value& v);

}  // namespace routerb
