// PeekJournalRecord: a journal record's kind, seq and ids without building
// its JSON (recovery reads every record of a long journal; most need no
// more than this). Any doubt and the caller parses the record in full
// (ParseJournalRecord, records.cc), so both always agree.
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>

#include "nvs/core/records.h"
#include "nvs/protocol/messages.h"

namespace nvs::supervisor {

namespace {

// A reader of one JSON document that builds nothing: it checks the text as
// nlohmann's reader does (grammar, UTF-8 by RFC 3629, escapes and surrogate
// pairs, no control characters in strings, nesting no deeper than
// ParseDocument takes) and hands the top-level object's members to a
// callback. Any doubt is a "no", and the caller parses the record.
class Skimmer {
 public:
  explicit Skimmer(std::string_view text) : s_(text) {}

  // One member of the top-level object: its key (no escapes), and where its
  // value is in the text. `plain` values are strings with no escape (`text`
  // is the string's content), or counts (`count` set).
  struct Member {
    std::string_view key;
    std::string_view text;
    bool is_string = false;
    bool plain = false;
    std::optional<std::uint64_t> count;
  };

  // The members of the document, which must be one object; false on any doubt.
  template <typename OnMember>
  bool Object(OnMember&& on_member) {
    SkipSpace();
    if (!Eat('{')) return false;
    SkipSpace();
    if (Eat('}')) return End();
    for (;;) {
      Member m;
      bool key_plain = false;
      if (!String(&m.key, &key_plain) || !key_plain) return false;
      SkipSpace();
      if (!Eat(':')) return false;
      SkipSpace();
      if (Peek() == '"') {
        m.is_string = true;
        if (!String(&m.text, &m.plain)) return false;
      } else {
        const std::size_t from = i_;
        if (!Value(1)) return false;
        m.text = s_.substr(from, i_ - from);
        m.count = Count(m.text);
        m.plain = m.count.has_value();
      }
      if (!on_member(m)) return false;
      SkipSpace();
      if (Eat(',')) {
        SkipSpace();
        continue;
      }
      if (Eat('}')) return End();
      return false;
    }
  }

 private:
  char Peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool End() {
    SkipSpace();
    return i_ == s_.size();
  }

  // A JSON integer literal in [0, 2^63) with nothing else (no sign, no
  // fraction, no exponent): what ReadCount takes from an unsigned integer.
  static std::optional<std::uint64_t> Count(std::string_view t) {
    if (t.empty() || t.size() > 19 || (t.size() > 1 && t[0] == '0')) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return v;
  }

  bool Hex4(unsigned* out) {
    if (s_.size() - i_ < 4) return false;
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else return false;
    }
    *out = v;
    return true;
  }

  static bool Continuation(unsigned char c) { return c >= 0x80 && c <= 0xBF; }

  // A string at i_; `content` is what is between the quotes; `plain` when
  // it has no escape.
  bool String(std::string_view* content, bool* plain) {
    if (!Eat('"')) return false;
    const std::size_t from = i_;
    *plain = true;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        *content = s_.substr(from, i_ - from);
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        *plain = false;
        ++i_;
        const char e = Peek();
        ++i_;
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') continue;
        if (e != 'u') return false;
        unsigned code = 0;
        if (!Hex4(&code)) return false;
        if (code >= 0xDC00 && code <= 0xDFFF) return false;  // a low surrogate first
        if (code >= 0xD800 && code <= 0xDBFF) {
          if (!Eat('\\') || !Eat('u')) return false;
          unsigned low = 0;
          if (!Hex4(&low) || low < 0xDC00 || low > 0xDFFF) return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++i_;
        continue;
      }
      // UTF-8 (RFC 3629, table 3-7 of Unicode).
      const auto at = [&](std::size_t k) { return i_ + k < s_.size() ? static_cast<unsigned char>(s_[i_ + k]) : 0; };
      std::size_t n = 0;
      if (c >= 0xC2 && c <= 0xDF) {
        n = Continuation(at(1)) ? 2 : 0;
      } else if (c == 0xE0) {
        n = at(1) >= 0xA0 && at(1) <= 0xBF && Continuation(at(2)) ? 3 : 0;
      } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        n = Continuation(at(1)) && Continuation(at(2)) ? 3 : 0;
      } else if (c == 0xED) {
        n = at(1) >= 0x80 && at(1) <= 0x9F && Continuation(at(2)) ? 3 : 0;
      } else if (c == 0xF0) {
        n = at(1) >= 0x90 && at(1) <= 0xBF && Continuation(at(2)) && Continuation(at(3)) ? 4 : 0;
      } else if (c >= 0xF1 && c <= 0xF3) {
        n = Continuation(at(1)) && Continuation(at(2)) && Continuation(at(3)) ? 4 : 0;
      } else if (c == 0xF4) {
        n = at(1) >= 0x80 && at(1) <= 0x8F && Continuation(at(2)) && Continuation(at(3)) ? 4 : 0;
      }
      if (n == 0) return false;
      i_ += n;
    }
    return false;
  }

  bool Digits() {
    const std::size_t from = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > from;
  }

  bool Number() {
    const std::size_t from = i_;
    Eat('-');
    if (Eat('0')) {
      // no more digits after a leading zero
    } else if (Peek() >= '1' && Peek() <= '9') {
      Digits();
    } else {
      return false;
    }
    bool fraction_or_exponent = false;
    if (Eat('.')) {
      if (!Digits()) return false;
      fraction_or_exponent = true;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++i_;
      if (!Eat('+')) Eat('-');
      if (!Digits()) return false;
      fraction_or_exponent = true;
    }
    // An integer of up to 19 digits is one the reader keeps as an integer;
    // anything else it reads as a double, and refuses one that overflows
    // (1e400, or 400 digits). Leave every number that is not plainly
    // finite to the parse.
    const std::string_view number = s_.substr(from, i_ - from);
    if (!fraction_or_exponent && number.size() <= 20) return true;
    double value = 0;
    const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), value);
    return error == std::errc() && end == number.data() + number.size() && std::isfinite(value);
  }

  bool Word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }

  // Any value, at nesting `depth` (the top-level object is 1).
  bool Value(int depth) {
    const char c = Peek();
    if (c == '"') {
      std::string_view ignored;
      bool plain = false;
      return String(&ignored, &plain);
    }
    if (c == '{' || c == '[') {
      if (depth + 1 > protocol::kMaxDocumentJsonDepth) return false;
      const char close = c == '{' ? '}' : ']';
      ++i_;
      SkipSpace();
      if (Eat(close)) return true;
      for (;;) {
        if (c == '{') {
          std::string_view ignored;
          bool plain = false;
          if (!String(&ignored, &plain)) return false;
          SkipSpace();
          if (!Eat(':')) return false;
          SkipSpace();
        }
        if (!Value(depth + 1)) return false;
        SkipSpace();
        if (Eat(',')) {
          SkipSpace();
          continue;
        }
        return Eat(close);
      }
    }
    if (c == 't') return Word("true");
    if (c == 'f') return Word("false");
    if (c == 'n') return Word("null");
    return Number();
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

std::optional<JournalRecordHead> PeekJournalRecord(std::string_view payload) {
  JournalRecordHead head;
  // The members ParseJournalRecord looks at, by kind: what each must be.
  std::string_view keys[16];
  std::size_t n_keys = 0;
  std::optional<Skimmer::Member> t, seq, time_ns, id, key, client, fingerprint, verdict, report, reason, note;
  bool cmd = false, result = false;
  Skimmer skim(payload);
  const bool read = skim.Object([&](const Skimmer::Member& m) {
    for (std::size_t k = 0; k < n_keys; ++k) {
      if (keys[k] == m.key) return false;  // a repeated member: the reader keeps the last; let it say
    }
    if (n_keys == std::size(keys)) return false;
    keys[n_keys++] = m.key;
    if (m.key == "t") t = m;
    else if (m.key == "seq") seq = m;
    else if (m.key == "time_ns") time_ns = m;
    else if (m.key == "id") id = m;
    else if (m.key == "key") key = m;
    else if (m.key == "client") client = m;
    else if (m.key == "fingerprint") fingerprint = m;
    else if (m.key == "verdict") verdict = m;
    else if (m.key == "report") report = m;
    else if (m.key == "reason") reason = m;
    else if (m.key == "note") note = m;
    else if (m.key == "cmd") cmd = true;
    else if (m.key == "result") result = true;
    return true;
  });
  if (!read || !t || !t->is_string || !t->plain) return std::nullopt;
  head.type = t->text;
  // A string member, when present: a string (a plain one where its value is used).
  const auto string_ok = [](const std::optional<Skimmer::Member>& m) { return !m || m->is_string; };
  const auto count_ok = [](const std::optional<Skimmer::Member>& m) { return m && m->count.has_value(); };
  if (head.type == "admit") {
    if (!count_ok(seq) || !count_ok(time_ns) || !string_ok(client) || !string_ok(fingerprint) || !cmd) {
      return std::nullopt;
    }
  } else if (head.type == "verdict") {
    if (!count_ok(seq) || !verdict || !verdict->is_string || !verdict->plain) return std::nullopt;
    head.verdict = verdict->text;
    if (head.verdict == "COMMIT" ? !result : !string_ok(report) || !string_ok(fingerprint) || !string_ok(reason)) {
      return std::nullopt;
    }
  } else {
    // (What the reader takes of the other kinds: a `time_ns` when there, a
    // checkpoint's `seq`, a mark's `note`. Anything else: let it say. The
    // fuzzer found a start record whose time_ns overflowed vouched for.)
    if (seq && !seq->count) return std::nullopt;
    if (time_ns && !time_ns->count) return std::nullopt;
    if (head.type == "checkpoint" && !count_ok(seq)) return std::nullopt;
    if (head.type == "mark" && !string_ok(note)) return std::nullopt;
    if (seq) head.seq = *seq->count;
    return head;
  }
  if (id && (!id->is_string || !id->plain)) return std::nullopt;
  if (key && (!key->is_string || !key->plain)) return std::nullopt;
  head.seq = *seq->count;
  if (id) head.id = id->text;
  if (key) head.key = key->text;
  return head;
}

}  // namespace nvs::supervisor
