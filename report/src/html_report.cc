#include "nvs/report/html_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <vector>

namespace nvs::report {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------
// Text. Every model string reaches the page through Escape, which also
// repairs UTF-8: the model carries raw bytes (a crashed program's stderr).

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

struct Decoded {
  char32_t cp = 0;
  std::size_t length = 0;  // 0: not valid UTF-8 (overlong, surrogate, truncated, > U+10FFFF)
};

Decoded DecodeAt(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return {lead, 1};
  std::size_t length = 0;
  char32_t min = 0;
  char32_t cp = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, min = 0x80, cp = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, min = 0x800, cp = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, cp = lead & 0x07;
  } else {
    return {};
  }
  if (i + length > s.size()) return {};
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {};
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {};
  return {cp, length};
}

// Appends one code point as HTML text or attribute content. Control
// characters become their visible Unicode "control pictures" (ESC of an ANSI
// colour code in stderr shows as ␛), since HTML would drop or mangle them.
void AppendEscaped(std::string& out, char32_t cp) {
  switch (cp) {
    case '&':
      out += "&amp;";
      return;
    case '<':
      out += "&lt;";
      return;
    case '>':
      out += "&gt;";
      return;
    case '"':
      out += "&quot;";
      return;
    case '\'':
      out += "&#39;";
      return;
    case '\t':
    case '\n':
    case '\r':
      out += static_cast<char>(cp);
      return;
    default:
      break;
  }
  if (cp < 0x20) return AppendUtf8(out, 0x2400 + cp);
  if (cp == 0x7F) return AppendUtf8(out, 0x2421);
  if (cp >= 0x80 && cp <= 0x9F) {
    out += kReplacement;
    return;
  }
  AppendUtf8(out, cp);
}

// `text` as HTML-safe, valid UTF-8; safe in element content and in
// double-quoted attributes alike.
std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const Decoded d = DecodeAt(text, i);
    if (d.length == 0) {
      out += kReplacement;
      ++i;
    } else {
      AppendEscaped(out, d.cp);
      i += d.length;
    }
  }
  return out;
}

std::size_t CharCount(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// At most `max_chars` characters of `text`, with an ellipsis when cut. Cuts
// only before a lead byte, so a valid sequence is never split.
std::string Truncate(std::string_view text, std::size_t max_chars) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (++chars > max_chars) return std::string(text.substr(0, i)) + "\xE2\x80\xA6";  // U+2026
  }
  return std::string(text);
}

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// `text` with every byte but [A-Za-z0-9_-] replaced by '_': safe as an id.
std::string IdToken(std::string_view text) {
  std::string token;
  for (char c : text) token += IsTokenChar(c) ? c : '_';
  return token;
}

// `text` lower-cased and reduced to [a-z0-9_-]: safe as a class name.
std::string ClassToken(std::string_view text) {
  std::string token = IdToken(text);
  for (char& c : token) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return token.empty() ? "unknown" : token;
}

// A number as short text: at most three decimals, no trailing zeros.
std::string FormatNumber(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.3f", value);
  std::string text = buffer;
  text.erase(text.find_last_not_of('0') + 1);
  if (text.back() == '.') text.pop_back();
  return text == "-0" ? "0" : text;
}

// ---------------------------------------------------------------------------
// Model access that never throws: the model is data from disk or another
// process, and a report about a bad day must not fail on a bad field.

const json* Member(const json* object, const char* key) {
  if (object == nullptr || !object->is_object()) return nullptr;
  const auto it = object->find(key);
  return it == object->end() ? nullptr : &*it;
}

std::string Dump(const json& value, int indent) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

// A member as text: strings as they are, other JSON as compact JSON,
// missing or null as "".
std::string Text(const json* value) {
  if (value == nullptr || value->is_null()) return "";
  if (value->is_string()) return value->get_ref<const std::string&>();
  return Dump(*value, -1);
}

std::optional<double> Number(const json* value) {
  if (value == nullptr || !value->is_number()) return std::nullopt;
  const double number = value->get<double>();
  if (!std::isfinite(number)) return std::nullopt;
  return number;
}

// The elements of a list member. A lone value of another type is taken as a
// list of one, so it is still shown (as text) rather than dropped.
std::vector<const json*> Elements(const json* value) {
  std::vector<const json*> elements;
  if (value == nullptr || value->is_null()) return elements;
  if (!value->is_array()) return {value};
  for (const json& element : *value) elements.push_back(&element);
  return elements;
}

constexpr std::string_view kAbsent = "<span class=\"absent\">not recorded</span>";

// A member for display: escaped text, or the absent marker.
std::string Shown(const json* value) {
  const std::string text = Text(value);
  return text.empty() ? std::string(kAbsent) : Escape(text);
}

// ---------------------------------------------------------------------------
// Statuses and outcomes: a tone (colour) and a glyph (shape), so the badge
// reads without colour too. Unknown words are neutral.

struct Tone {
  std::string_view name;   // CSS class suffix
  std::string_view glyph;  // shown before the word
};

constexpr Tone kBad{"bad", "\xE2\x9C\x95"};          // ✕
constexpr Tone kWarn{"warn", "\xE2\x9A\xA0"};        // ⚠
constexpr Tone kGood{"good", "\xE2\x9C\x93"};        // ✓
constexpr Tone kNeutral{"neutral", "\xE2\x80\xA2"};  // •

const Tone& ToneOf(std::string_view word) {
  static const std::map<std::string_view, const Tone*> kTones = {
      {"blocked", &kBad},        {"rejected", &kBad},   {"crash", &kBad},      {"crashed", &kBad},
      {"hang", &kBad},           {"hung", &kBad},       {"divergence", &kBad}, {"quarantined", &kBad},
      {"protocol_error", &kBad}, {"poison", &kBad},     {"no_quorum", &kWarn}, {"pending", &kWarn},
      {"released", &kGood},      {"agreement", &kGood}, {"reply", &kGood},     {"commit", &kGood},
      {"reproduced", &kGood},    {"failed", &kBad},
  };
  const auto it = kTones.find(ClassToken(word));
  return it == kTones.end() ? kNeutral : *it->second;
}

std::string Badge(const std::string& word) {
  const Tone& tone = ToneOf(word);
  return "<span class=\"badge tone-" + std::string(tone.name) + "\"><span aria-hidden=\"true\">" +
         std::string(tone.glyph) + "</span> " + Escape(word) + "</span>";
}

// ---------------------------------------------------------------------------
// Timeline marks: one row per event kind, shape and colour together
// (Okabe-Ito colours, distinguishable with the common colour-blindnesses).

enum class Shape { kTriangleRight, kCircle, kCross, kBar, kDiamond, kTriangleUp, kSquare, kRing, kTick };

struct KindStyle {
  std::string_view kind;
  Shape shape;
  std::string_view colour;
  std::string_view meaning;  // the legend's words
  int label_rank;            // where labels collide, the lower rank keeps its label
};

constexpr KindStyle kKinds[] = {
    {"command", Shape::kTriangleRight, "#0072B2", "command sent", 2},
    {"commit", Shape::kCircle, "#009E73", "committed", 2},
    {"crash", Shape::kCross, "#D55E00", "crash", 0},
    {"hang", Shape::kBar, "#E69F00", "hang (bar: until it ended)", 0},
    {"divergence", Shape::kDiamond, "#CC79A7", "divergence", 0},
    {"restart", Shape::kTriangleUp, "#56B4E9", "restart", 1},
    {"quarantine", Shape::kSquare, "#222222", "quarantine", 0},
    {"probe", Shape::kRing, "#6A3D9A", "probe", 1},
};
constexpr KindStyle kOtherKind{"other", Shape::kTick, "#7A7A7A", "other", 3};

const KindStyle& StyleOf(std::string_view css_kind) {
  for (const KindStyle& style : kKinds) {
    if (style.kind == css_kind) return style;
  }
  return kOtherKind;
}

struct MarkElement {
  std::string tag;
  std::string attributes;  // geometry and paint
};

// The mark of `style` centred at (x, y); a bar runs to `x_end`.
MarkElement MarkGeometry(const KindStyle& style, double x, double y, double x_end) {
  const auto n = [](double v) { return FormatNumber(v); };
  const std::string colour(style.colour);
  // A white outline keeps overlapping marks apart on a crowded lane.
  const std::string filled = "fill=\"" + colour + "\" stroke=\"#ffffff\" stroke-width=\"1\"";
  const auto path = [&](std::initializer_list<std::pair<double, double>> points) {
    std::string d;
    for (const auto& [px, py] : points) d += (d.empty() ? "M" : "L") + n(px) + " " + n(py);
    return "d=\"" + d + "Z\" ";
  };
  switch (style.shape) {
    case Shape::kTriangleRight:
      return {"path", path({{x - 5, y - 6.5}, {x + 6.5, y}, {x - 5, y + 6.5}}) + filled};
    case Shape::kCircle:
      return {"circle", "cx=\"" + n(x) + "\" cy=\"" + n(y) + "\" r=\"5.5\" " + filled};
    case Shape::kCross:
      return {"path", "d=\"M" + n(x - 5) + " " + n(y - 5) + "L" + n(x + 5) + " " + n(y + 5) + "M" + n(x - 5) + " " +
                          n(y + 5) + "L" + n(x + 5) + " " + n(y - 5) + "\" fill=\"none\" stroke=\"" + colour +
                          "\" stroke-width=\"3\" stroke-linecap=\"round\""};
    case Shape::kBar:
      return {"rect", "x=\"" + n(x) + "\" y=\"" + n(y - 5) + "\" width=\"" + n(std::max(x_end - x, 12.0)) +
                          "\" height=\"10\" rx=\"2\" fill=\"" + colour + "\" fill-opacity=\"0.75\" stroke=\"#9A6700\""};
    case Shape::kDiamond:
      return {"path", path({{x, y - 7}, {x + 7, y}, {x, y + 7}, {x - 7, y}}) + filled};
    case Shape::kTriangleUp:
      return {"path", path({{x, y - 7}, {x + 6.5, y + 5.5}, {x - 6.5, y + 5.5}}) + "fill=\"" + colour +
                          "\" stroke=\"#1F5F8B\" stroke-width=\"1\""};
    case Shape::kSquare:
      return {"rect", "x=\"" + n(x - 5) + "\" y=\"" + n(y - 5) + "\" width=\"10\" height=\"10\" " + filled};
    case Shape::kRing:
      return {"circle", "cx=\"" + n(x) + "\" cy=\"" + n(y) + "\" r=\"5\" fill=\"#ffffff\" stroke=\"" + colour +
                            "\" stroke-width=\"2.5\""};
    case Shape::kTick:
      break;
  }
  return {"rect", "x=\"" + n(x - 1.5) + "\" y=\"" + n(y - 8) + "\" width=\"3\" height=\"16\" " + filled};
}

// Appends a mark. `klass` is "event KIND" in the timeline and "key KIND" in
// the legend; `title` (already escaped) is the mark's tooltip when not empty.
void AppendMark(std::string& out, const KindStyle& style, double x, double y, double x_end, const std::string& klass,
                const std::string& title) {
  const MarkElement mark = MarkGeometry(style, x, y, x_end);
  out += "<" + mark.tag + " class=\"" + klass + "\" " + mark.attributes;
  out += title.empty() ? "/>" : "><title>" + title + "</title></" + mark.tag + ">";
}

// ---------------------------------------------------------------------------
// The timeline model, read leniently from JSON.

struct Event {
  std::string lane;
  double t = 0;
  std::optional<double> t_end;
  std::string kind;      // as recorded
  std::string css_kind;  // sanitised, for the class attribute
  std::string label;
  std::string detail;
};

struct Timeline {
  std::vector<std::string> lanes;  // in the recorded order, then lanes only events name
  std::vector<Event> events;       // those with a usable time
  std::size_t untimed = 0;         // events without a usable time: counted, not drawn
  double start = 0;
  double end = 1;
};

// Times beyond this are not believed: they would make the scale useless.
constexpr double kMaxAbsMs = 1e12;  // about 31 years

std::optional<double> TimeMs(const json* value) {
  const auto t = Number(value);
  if (!t || std::abs(*t) > kMaxAbsMs) return std::nullopt;
  return t;
}

void AddLane(Timeline& timeline, const std::string& lane) {
  if (std::find(timeline.lanes.begin(), timeline.lanes.end(), lane) == timeline.lanes.end()) {
    timeline.lanes.push_back(lane);
  }
}

// The time range drawn: the recorded one, widened to every event.
void FitRange(Timeline& timeline, std::optional<double> start, std::optional<double> end) {
  double lo = start.value_or(INFINITY);
  double hi = end.value_or(-INFINITY);
  for (const Event& event : timeline.events) {
    lo = std::min(lo, event.t);
    hi = std::max({hi, event.t, event.t_end.value_or(event.t)});
  }
  if (!std::isfinite(lo)) lo = std::isfinite(hi) ? hi : 0;
  if (!std::isfinite(hi) || hi - lo < 1e-3) hi = lo + 1;
  timeline.start = lo;
  timeline.end = hi;
}

Timeline ReadTimeline(const json* model) {
  Timeline timeline;
  for (const json* lane : Elements(Member(model, "lanes"))) AddLane(timeline, Text(lane));
  for (const json* item : Elements(Member(model, "events"))) {
    const auto t = TimeMs(Member(item, "t_ms"));
    if (!t) {
      ++timeline.untimed;
      continue;
    }
    Event event;
    event.lane = Text(Member(item, "lane"));
    event.t = *t;
    event.t_end = TimeMs(Member(item, "t_end_ms"));
    if (event.t_end && *event.t_end < event.t) event.t_end.reset();
    event.kind = Text(Member(item, "kind"));
    event.css_kind = ClassToken(event.kind);
    event.label = Text(Member(item, "label"));
    event.detail = Text(Member(item, "detail"));
    AddLane(timeline, event.lane);
    timeline.events.push_back(std::move(event));
  }
  FitRange(timeline, TimeMs(Member(model, "start_ms")), TimeMs(Member(model, "end_ms")));
  return timeline;
}

// ---------------------------------------------------------------------------
// The timeline drawing: a fixed 960-unit-wide viewBox the page scales.

constexpr double kSvgWidth = 960;
constexpr double kGutter = 150;  // lane labels, right-aligned before it
constexpr double kRightPad = 28;
constexpr double kTopPad = 6;
constexpr double kLaneHeight = 42;
constexpr double kMarkOffset = 28;   // from a lane's top to its marks' centre line
constexpr double kLabelOffset = 14;  // from a lane's top to its labels' baseline, clear of the marks
constexpr double kAxisHeight = 34;
constexpr std::size_t kLaneNameChars = 20;
constexpr std::size_t kLabelChars = 22;
constexpr double kLabelCharWidth = 6.4;  // an 11-unit sans-serif character, generously
// On a lane with more events than this, labels would only collide: only the
// most telling kinds (rank 0: crash, hang, divergence, quarantine) keep theirs.
constexpr std::size_t kMaxLabelledEvents = 30;
constexpr int kMostTellingRank = 0;

struct Scale {
  double start;
  double end;
  double X(double t) const { return kGutter + (t - start) / (end - start) * (kSvgWidth - kGutter - kRightPad); }
};

// A tick spacing of 1, 2 or 5 times a power of ten giving about `count` ticks.
double TickStep(double span, int count) {
  const double raw = span / count;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0}) {
    if (raw <= factor * magnitude) return factor * magnitude;
  }
  return 10 * magnitude;
}

void AppendAxis(std::string& out, const Scale& scale, double lanes_bottom) {
  const double step = TickStep(scale.end - scale.start, 8);
  out += "<g class=\"axis\">";
  out += "<line x1=\"" + FormatNumber(kGutter) + "\" y1=\"" + FormatNumber(lanes_bottom) + "\" x2=\"" +
         FormatNumber(kSvgWidth - kRightPad) + "\" y2=\"" + FormatNumber(lanes_bottom) + "\" stroke=\"#8A939E\"/>";
  // Ticks as whole multiples of the step, so no rounding error accumulates.
  const auto last = static_cast<long long>(std::floor(scale.end / step + 1e-9));
  for (auto k = static_cast<long long>(std::ceil(scale.start / step - 1e-9)); k <= last; ++k) {
    const double tick = static_cast<double>(k) * step;
    const std::string x = FormatNumber(scale.X(tick));
    out += "<line x1=\"" + x + "\" y1=\"" + FormatNumber(kTopPad) + "\" x2=\"" + x + "\" y2=\"" +
           FormatNumber(lanes_bottom + 5) + "\" stroke=\"#D5DAE0\" stroke-dasharray=\"2 3\"/>";
    out += "<text x=\"" + x + "\" y=\"" + FormatNumber(lanes_bottom + 19) + "\" text-anchor=\"middle\">" +
           FormatNumber(tick) + "</text>";
  }
  out += "<text class=\"axis-unit\" x=\"" + FormatNumber(kGutter - 10) + "\" y=\"" + FormatNumber(lanes_bottom + 19) +
         "\" text-anchor=\"end\">time (ms)</text></g>\n";
}

std::string EventTitle(const Event& event) {
  std::string title = (event.kind.empty() ? "event" : event.kind) + " \xC2\xB7 " +
                      (event.lane.empty() ? "(no lane)" : event.lane) + " \xC2\xB7 " + FormatNumber(event.t) + " ms";
  if (event.t_end) {
    title += " to " + FormatNumber(*event.t_end) + " ms (" + FormatNumber(*event.t_end - event.t) + " ms)";
  }
  if (!event.label.empty()) title += "\n" + event.label;
  if (!event.detail.empty()) title += "\n" + event.detail;
  return Escape(title);
}

// Labels above the marks, the most telling kinds first (a crash before the
// command that caused it), each only where it touches no label already
// placed; the rest are in the tooltips. A crowded lane labels only the most
// telling kinds.
void AppendLabels(std::string& out, std::vector<const Event*> events, const Scale& scale, double top) {
  if (events.size() > kMaxLabelledEvents) {
    std::erase_if(events, [](const Event* e) { return StyleOf(e->css_kind).label_rank > kMostTellingRank; });
  }
  std::stable_sort(events.begin(), events.end(), [](const Event* a, const Event* b) {
    return std::pair(StyleOf(a->css_kind).label_rank, a->t) < std::pair(StyleOf(b->css_kind).label_rank, b->t);
  });
  constexpr double kGap = 8;
  std::vector<std::pair<double, double>> placed;  // [left, right] of each label drawn
  for (const Event* event : events) {
    if (event->label.empty()) continue;
    const std::string text = Truncate(event->label, kLabelChars);
    const double width = static_cast<double>(CharCount(text)) * kLabelCharWidth;
    const double left = std::min(scale.X(event->t) - 4, kSvgWidth - 2 - width);
    const double right = left + width;
    if (std::any_of(placed.begin(), placed.end(),
                    [&](const auto& p) { return left < p.second + kGap && right + kGap > p.first; })) {
      continue;
    }
    placed.emplace_back(left, right);
    out += "<text class=\"event-label\" x=\"" + FormatNumber(left) + "\" y=\"" + FormatNumber(top + kLabelOffset) +
           "\" aria-hidden=\"true\">" + Escape(text) + "</text>";
  }
}

void AppendLane(std::string& out, const Timeline& timeline, std::size_t index, const Scale& scale) {
  const std::string& lane = timeline.lanes[index];
  const double top = kTopPad + static_cast<double>(index) * kLaneHeight;
  const double mid = top + kMarkOffset;
  std::vector<const Event*> events;
  for (const Event& event : timeline.events) {
    if (event.lane == lane) events.push_back(&event);
  }
  // Bars first, so the point marks stay visible on top of them; then the
  // routine kinds, so a crash or divergence is drawn over its neighbours.
  const auto order = [](const Event* e) {
    return std::tuple(e->t_end.has_value() ? 0 : 1, -StyleOf(e->css_kind).label_rank, e->t);
  };
  std::stable_sort(events.begin(), events.end(), [&](const Event* a, const Event* b) { return order(a) < order(b); });

  out += "<g class=\"lane\" data-lane=\"" + Escape(lane) + "\">";
  out += "<text class=\"lane-name\" x=\"" + FormatNumber(kGutter - 10) + "\" y=\"" + FormatNumber(mid + 4) +
         "\" text-anchor=\"end\">" + Escape(lane.empty() ? "(no lane)" : Truncate(lane, kLaneNameChars)) + "<title>" +
         Escape(lane) + "</title></text>";
  out += "<line x1=\"" + FormatNumber(kGutter) + "\" y1=\"" + FormatNumber(mid) + "\" x2=\"" +
         FormatNumber(kSvgWidth - kRightPad) + "\" y2=\"" + FormatNumber(mid) + "\" stroke=\"#B8C0C9\"/>";
  for (const Event* event : events) {
    const double x = scale.X(event->t);
    const double x_end = event->t_end ? scale.X(*event->t_end) : x;
    AppendMark(out, StyleOf(event->css_kind), x, mid, x_end, "event " + event->css_kind, EventTitle(*event));
  }
  AppendLabels(out, events, scale, top);
  out += "</g>\n";
}

void AppendLegend(std::string& out, const Timeline& timeline) {
  std::set<std::string> present;
  std::set<std::string> others;
  for (const Event& event : timeline.events) {
    present.insert(event.css_kind);
    if (&StyleOf(event.css_kind) == &kOtherKind) others.insert(event.kind);
  }
  out += "<ul class=\"legend\" aria-label=\"Legend\">";
  const auto item = [&](const KindStyle& style, const std::string& words) {
    out += "<li><svg class=\"key\" viewBox=\"0 0 22 16\" width=\"22\" height=\"16\" aria-hidden=\"true\">";
    AppendMark(out, style, style.shape == Shape::kBar ? 2 : 11, 8, 20, "key " + std::string(style.kind), "");
    out += "</svg>" + words + "</li>";
  };
  for (const KindStyle& style : kKinds) {
    if (present.count(std::string(style.kind)) != 0) item(style, Escape(style.meaning));
  }
  if (!others.empty()) {
    std::string names;
    for (const std::string& name : others) {
      names += (names.empty() ? "" : ", ") + (name.empty() ? "(no kind)" : Truncate(name, 24));
    }
    item(kOtherKind, "other: " + Escape(names));
  }
  out += "</ul>\n";
}

std::string Plural(std::size_t count, const char* noun) {
  return std::to_string(count) + " " + noun + (count == 1 ? "" : "s");
}

void AppendTimeline(std::string& out, const json* model) {
  const Timeline timeline = ReadTimeline(model);
  if (timeline.events.empty()) {
    out += "<p class=\"no-timeline\">no timeline recorded</p>\n";
    return;
  }
  const Scale scale{timeline.start, timeline.end};
  const double lanes_bottom = kTopPad + static_cast<double>(timeline.lanes.size()) * kLaneHeight;
  const double height = lanes_bottom + kAxisHeight;
  const std::string span = FormatNumber(timeline.start) + "\xE2\x80\x93" + FormatNumber(timeline.end) + " ms";

  out += "<p class=\"timeline-note\">" + Plural(timeline.events.size(), "event") + " on " +
         Plural(timeline.lanes.size(), "lane") + ", " + span + ". Every mark has a tooltip with its details.";
  if (timeline.untimed > 0) out += " " + Plural(timeline.untimed, "event") + " without a time are not drawn.";
  out += "</p>\n";
  AppendLegend(out, timeline);
  out += "<div class=\"timeline-frame\">\n<svg class=\"timeline\" viewBox=\"0 0 " + FormatNumber(kSvgWidth) + " " +
         FormatNumber(height) + "\" width=\"" + FormatNumber(kSvgWidth) + "\" height=\"" + FormatNumber(height) +
         "\" role=\"img\" aria-label=\"Timeline: " + Plural(timeline.events.size(), "event") + " on " +
         Plural(timeline.lanes.size(), "lane") + ", " + span + "\">\n";
  for (std::size_t i = 0; i < timeline.lanes.size(); i += 2) {
    out += "<rect class=\"stripe\" x=\"0\" y=\"" + FormatNumber(kTopPad + static_cast<double>(i) * kLaneHeight) +
           "\" width=\"" + FormatNumber(kSvgWidth) + "\" height=\"" + FormatNumber(kLaneHeight) +
           "\" fill=\"#F3F5F8\"/>";
  }
  AppendAxis(out, scale, lanes_bottom);
  for (std::size_t i = 0; i < timeline.lanes.size(); ++i) AppendLane(out, timeline, i, scale);
  out += "</svg>\n</div>\n";
}

// ---------------------------------------------------------------------------
// The incident's parts, in reading order.

void AppendPre(std::string& out, const char* klass, const std::string& text) {
  // The newline after <pre> is dropped by the HTML parser: it protects a
  // first line that is itself empty.
  out += "<pre class=\"" + std::string(klass) + "\">\n" + Escape(text) + "</pre>\n";
}

void AppendFacts(std::string& out, const json* incident) {
  const auto fact = [&](const char* name, const json* value, bool code) {
    const std::string shown = Shown(value);
    out += "<div><dt>" + std::string(name) + "</dt><dd>" +
           (code && !Text(value).empty() ? "<code>" + shown + "</code>" : shown) + "</dd></div>";
  };
  out += "<dl class=\"facts\">";
  // An incident may say its own facts (a replay: its source, variants,
  // commands and rate), else those of a quarantine.
  if (const json* own = Member(incident, "facts"); own != nullptr && own->is_array()) {
    fact("Status", Member(incident, "status"), false);
    for (const json& f : *own) fact(Escape(Text(Member(&f, "label"))).c_str(), Member(&f, "value"), false);
    out += "</dl>\n";
    return;
  }
  fact("Status", Member(incident, "status"), false);
  fact("Verdict", Member(incident, "verdict"), false);
  fact("Sequence", Member(incident, "seq"), false);
  fact("Time", Member(incident, "time"), false);
  fact("Fingerprint", Member(incident, "fingerprint"), true);
  fact("Report id", Member(incident, "id"), true);
  out += "</dl>\n";
}

void AppendOutcomeRow(std::string& out, const json* outcome) {
  out += "<tr class=\"outcome\">";
  if (!outcome->is_object()) {
    out += "<td colspan=\"4\" data-label=\"Outcome\">" + Shown(outcome) + "</td></tr>\n";
    return;
  }
  const std::string variant = Text(Member(outcome, "variant"));
  const std::string kind = Text(Member(outcome, "outcome"));
  const std::string detail = Text(Member(outcome, "detail"));
  const std::string exit = Text(Member(outcome, "exit"));
  const std::string result = Text(Member(outcome, "result"));
  out += "<td class=\"variant\" data-label=\"Variant\">" + Shown(Member(outcome, "variant")) + "</td>";
  out += "<td data-label=\"Outcome\">" + (kind.empty() ? std::string(kAbsent) : Badge(kind)) + "</td>";
  out += "<td data-label=\"Detail\">" + Shown(Member(outcome, "detail"));
  // The exit often repeats the detail; it is shown only when it adds to it.
  if (!exit.empty() && exit != detail) out += "<br><span class=\"exit\">exit: " + Escape(exit) + "</span>";
  // A crashed or hung variant has no result: "none", not "not recorded".
  out += "</td><td data-label=\"Result\">" +
         (result.empty() ? "<span class=\"absent\">none</span>" : "<code>" + Escape(result) + "</code>") +
         "</td></tr>\n";

  const std::string tail = Text(Member(outcome, "stderr_tail"));
  if (tail.empty()) return;
  out += "<tr class=\"stderr-tail\"><td colspan=\"4\"><p class=\"caption\">stderr of " +
         Escape(variant.empty() ? "this variant" : variant) + ", last lines</p>";
  AppendPre(out, "stderr", tail);
  out += "</td></tr>\n";
}

void AppendOutcomes(std::string& out, const json* incident) {
  const auto outcomes = Elements(Member(incident, "outcomes"));
  out += "<h3>Outcomes</h3>\n";
  if (outcomes.empty()) {
    out += "<p>" + std::string(kAbsent) + "</p>\n";
    return;
  }
  out +=
      "<div class=\"table-frame\"><table class=\"outcomes\">\n<thead><tr><th scope=\"col\">Variant</th>"
      "<th scope=\"col\">Outcome</th><th scope=\"col\">Detail</th><th scope=\"col\">Result</th></tr></thead>\n"
      "<tbody>\n";
  for (const json* outcome : outcomes) AppendOutcomeRow(out, outcome);
  out += "</tbody></table></div>\n";
}

void AppendCommand(std::string& out, const json* incident) {
  const json* command = Member(incident, "command");
  out += "<h3>Command</h3>\n";
  if (command == nullptr || command->is_null()) {
    out += "<p>" + std::string(kAbsent) + "</p>\n";
    return;
  }
  AppendPre(out, "command", command->is_string() ? command->get_ref<const std::string&>() : Dump(*command, 2));
}

void AppendReproduce(std::string& out, const json* incident) {
  const std::string line = Text(Member(incident, "reproduce"));
  out += "<h3>Reproduce</h3>\n";
  if (line.empty()) {
    out += "<p>" + std::string(kAbsent) + "</p>\n";
    return;
  }
  AppendPre(out, "reproduce", line);
}

void AppendReview(std::string& out, const json* incident) {
  const auto entries = Elements(Member(incident, "review"));
  out += "<h3>Review history</h3>\n";
  if (entries.empty()) {
    out += "<p>" + std::string(kAbsent) + "</p>\n";
    return;
  }
  out += "<ol class=\"review\">\n";
  for (const json* entry : entries) {
    if (!entry->is_object()) {
      out += "<li>" + Shown(entry) + "</li>\n";
      continue;
    }
    const std::string by = Text(Member(entry, "by"));
    const std::string note = Text(Member(entry, "note"));
    out += "<li><time>" + Shown(Member(entry, "time")) + "</time> <strong>" + Shown(Member(entry, "action")) +
           "</strong>" + (by.empty() ? "" : " by " + Escape(by));
    if (!note.empty()) out += "<p class=\"note\">" + Escape(note) + "</p>";
    out += "</li>\n";
  }
  out += "</ol>\n";
}

// Section ids: sanitised, and made unique on the page (an anchor must land
// on one incident).
std::string SectionId(const json* incident, std::size_t index, std::set<std::string>& used) {
  const std::string recorded = Text(Member(incident, "id"));
  const std::string base = "incident-" + IdToken(recorded.empty() ? std::to_string(index + 1) : recorded);
  std::string id = base;
  for (int n = 2; !used.insert(id).second; ++n) id = base + "-" + std::to_string(n);
  return id;
}

std::string Headline(const json* incident, std::size_t index) {
  const std::string headline = Text(Member(incident, "headline"));
  return headline.empty() ? "Incident " + std::to_string(index + 1) : headline;
}

void AppendIncident(std::string& out, const json* incident, std::size_t index, const std::string& id) {
  out += "<section class=\"incident\" id=\"" + id + "\">\n";
  const std::string status = Text(Member(incident, "status"));
  out += "<header class=\"incident-head tone-" + std::string(ToneOf(status).name) + "\">";
  out += "<p class=\"status-line\">" + (status.empty() ? std::string(kAbsent) : Badge(status)) + "</p>";
  out += "<h2>" + Escape(Headline(incident, index)) + "</h2>";
  if (!incident->is_object()) out += "<p class=\"malformed\">Unexpected entry: " + Shown(incident) + "</p>";
  const std::string reason = Text(Member(incident, "reason"));
  if (!reason.empty()) out += "<p class=\"reason\">" + Escape(reason) + "</p>";
  out += "</header>\n";
  AppendFacts(out, incident);
  // An incident with its own facts (a replay's) has no review history, and
  // leaves out the parts it does not have rather than say "not recorded".
  const json* facts = Member(incident, "facts");
  const bool own = facts != nullptr && facts->is_array();
  if (!own || Member(incident, "timeline") != nullptr) {
    out += "<h3>Timeline</h3>\n";
    AppendTimeline(out, Member(incident, "timeline"));
  }
  AppendOutcomes(out, incident);
  if (!own || Member(incident, "command") != nullptr) AppendCommand(out, incident);
  AppendReproduce(out, incident);
  if (!own) AppendReview(out, incident);
  out += "<p class=\"to-top\"><a href=\"#top\">Back to the top</a></p>\n</section>\n";
}

// ---------------------------------------------------------------------------
// The page.

constexpr std::string_view kStyle = R"css(
:root { color-scheme: light; --ink: #1d2329; --muted: #5a6470; --line: #d5dae0; --panel: #f5f7f9;
  --bad: #b23c17; --warn: #8a5a00; --good: #0b6b4d; --neutral: #4a5561; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0 auto; max-width: 68rem; padding: 1.5rem 1rem 3rem; color: var(--ink); background: #fff;
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", "Helvetica Neue",
  Arial, sans-serif; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas,
  "Liberation Mono", monospace; font-size: 0.875em; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 0.25rem 0 0.5rem; }
h2 { font-size: 1.35rem; line-height: 1.3; margin: 0.35rem 0; }
h3 { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted);
  margin: 1.75rem 0 0.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem; }
p { margin: 0.4rem 0; }
a { color: #0b5cad; }
header.page .kind, .timeline-note, .caption, footer.page, .overview { color: var(--muted); }
header.page .kind { margin: 0; font-size: 0.9rem; }
.overview { font-size: 1.05rem; }
.absent { color: var(--muted); font-style: italic; }
dl.summary { display: grid; grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); gap: 0.75rem;
  margin: 1.25rem 0; }
dl.summary > div { border: 1px solid var(--line); border-radius: 8px; padding: 0.6rem 0.85rem; background: var(--panel); }
dl.summary dt { font-size: 0.8rem; color: var(--muted); }
dl.summary dd { margin: 0; font-size: 1.5rem; font-weight: 600; overflow-wrap: anywhere; }
dl.summary dd.long { font-size: 1rem; padding-top: 0.2rem; }
nav.index ol { padding-left: 1.5rem; }
nav.index li { margin: 0.3rem 0; }
section.incident { border: 1px solid var(--line); border-radius: 10px; padding: 0 1.25rem 1rem; margin: 2rem 0;
  overflow: hidden; }
.incident-head { margin: 0 -1.25rem; padding: 1rem 1.25rem 0.75rem; border-top: 6px solid var(--neutral);
  background: var(--panel); border-bottom: 1px solid var(--line); }
.incident-head.tone-bad { border-top-color: var(--bad); }
.incident-head.tone-warn { border-top-color: #d19a00; }
.incident-head.tone-good { border-top-color: var(--good); }
.reason { font-size: 1.05rem; max-width: 48rem; }
.badge { display: inline-block; padding: 0.05rem 0.55rem; border-radius: 999px; font-size: 0.85rem;
  font-weight: 600; border: 1px solid; white-space: nowrap; }
.badge.tone-bad { color: var(--bad); background: #fbebe5; border-color: #e8b4a2; }
.badge.tone-warn { color: var(--warn); background: #fdf4dc; border-color: #e8cf8a; }
.badge.tone-good { color: var(--good); background: #e4f4ed; border-color: #9fd3bd; }
.badge.tone-neutral { color: var(--neutral); background: #eef0f3; border-color: #cdd3da; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1.25rem; margin: 1rem 0 0; }
dl.facts > div { display: contents; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.timeline-frame { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
svg.timeline { display: block; width: 100%; min-width: 40rem; height: auto;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", Arial, sans-serif; }
svg.timeline text { font-size: 11px; fill: #4a5561; }
svg.timeline .lane-name { font-size: 12.5px; font-weight: 600; fill: var(--ink); }
svg.timeline .event-label { fill: #2f3740; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 0.35rem 1.1rem; padding: 0; margin: 0.5rem 0;
  font-size: 0.875rem; }
ul.legend li { display: flex; align-items: center; gap: 0.35rem; }
.table-frame { overflow-x: auto; }
table.outcomes { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
table.outcomes th { text-align: left; font-size: 0.8rem; color: var(--muted); font-weight: 600;
  border-bottom: 2px solid var(--line); padding: 0.35rem 0.6rem; }
table.outcomes td { vertical-align: top; padding: 0.45rem 0.6rem; border-bottom: 1px solid var(--line);
  overflow-wrap: anywhere; }
table.outcomes td.variant { font-weight: 600; white-space: nowrap; }
table.outcomes tr.stderr-tail td { padding-top: 0; }
.exit { color: var(--muted); font-size: 0.9em; }
.caption { font-size: 0.8rem; margin: 0 0 0.2rem; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 0.8rem;
  margin: 0.25rem 0 0.5rem; white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.45; }
pre.stderr { max-height: 22rem; overflow: auto; background: #fbfbfa; }
pre.reproduce { border-left: 4px solid #0072B2; background: #eef5fb; font-weight: 600; user-select: all;
  -webkit-user-select: all; }
ol.review { padding-left: 1.5rem; }
ol.review li { margin: 0.35rem 0; }
ol.review time { color: var(--muted); font-variant-numeric: tabular-nums; }
.note { margin: 0.1rem 0 0; }
.no-timeline, .no-incidents { padding: 0.75rem 1rem; border: 1px dashed var(--line); border-radius: 8px;
  color: var(--muted); }
.no-incidents { font-size: 1.1rem; color: var(--ink); }
.to-top { font-size: 0.85rem; margin-top: 1.25rem; }
footer.page { font-size: 0.85rem; border-top: 1px solid var(--line); padding-top: 0.75rem; margin-top: 2rem; }
@media (max-width: 40rem) {
  body { padding: 1rem 0.75rem 2rem; }
  section.incident { padding: 0 0.75rem 0.75rem; }
  .incident-head { margin: 0 -0.75rem; padding: 0.75rem; }
  dl.facts { grid-template-columns: 1fr; gap: 0; }
  dl.facts dd { margin-bottom: 0.35rem; }
  table.outcomes thead { display: none; }
  table.outcomes, table.outcomes tbody, table.outcomes tr, table.outcomes td { display: block; width: 100%; }
  table.outcomes tr.outcome { border-top: 2px solid var(--line); padding-top: 0.35rem; }
  table.outcomes td { border: none; padding: 0.15rem 0; }
  table.outcomes tr.outcome td::before { content: attr(data-label); display: block; font-size: 0.75rem;
    color: var(--muted); }
}
@media print {
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  section.incident { border: none; padding: 0; margin: 0 0 1.5rem; overflow: visible; }
  section.incident + section.incident { break-before: page; }
  .incident-head { margin: 0; }
  .timeline-frame, .table-frame { overflow: visible; }
  svg.timeline { min-width: 0; }
  pre, pre.stderr { max-height: none; overflow: visible; }
  .to-top, nav.index { display: none; }
  h3, .incident-head, tr { break-after: avoid; break-inside: avoid; }
}
)css";

void AppendHead(std::string& out, const std::string& title) {
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  // The page may carry text a misbehaving program wrote: even if escaping
  // ever failed, the browser would fetch nothing and run no script.
  out += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n";
  out += "<meta name=\"generator\" content=\"nvs\">\n";
  out += "<title>" + Escape(title) + "</title>\n<style>" + std::string(kStyle) + "</style>\n</head>\n";
}

// Short values are set large, like a dashboard figure; long ones as text.
void AppendSummaryItem(std::string& out, const std::string& label, const json* value) {
  constexpr std::size_t kFigureChars = 12;
  out += "<div><dt>" + (label.empty() ? std::string(kAbsent) : Escape(label)) + "</dt><dd" +
         (CharCount(Text(value)) > kFigureChars ? " class=\"long\"" : "") + ">" + Shown(value) + "</dd></div>\n";
}

// The key facts: a list of {label, value}; an object is read as label: value.
void AppendSummary(std::string& out, const json* summary) {
  if (summary == nullptr || summary->is_null() || (summary->is_array() && summary->empty())) return;
  out += "<dl class=\"summary\">\n";
  if (summary->is_object()) {
    for (const auto& [label, value] : summary->items()) AppendSummaryItem(out, label, &value);
  } else {
    for (const json* item : Elements(summary)) {
      if (item->is_object()) {
        AppendSummaryItem(out, Text(Member(item, "label")), Member(item, "value"));
      } else {
        AppendSummaryItem(out, "", item);
      }
    }
  }
  out += "</dl>\n";
}

// "2 incidents: 1 blocked, 1 divergence", statuses in order of appearance.
std::string Overview(const std::vector<const json*>& incidents) {
  if (incidents.empty()) return "";
  std::vector<std::pair<std::string, std::size_t>> counts;
  for (const json* incident : incidents) {
    std::string status = Text(Member(incident, "status"));
    if (status.empty()) status = "no status";
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == status; });
    if (it == counts.end()) {
      counts.emplace_back(status, 1);
    } else {
      ++it->second;
    }
  }
  std::string text = Plural(incidents.size(), "incident") + ": ";
  for (std::size_t i = 0; i < counts.size(); ++i) {
    text += (i == 0 ? "" : ", ") + std::to_string(counts[i].second) + " " + counts[i].first;
  }
  return text;
}

void AppendIndex(std::string& out, const std::vector<const json*>& incidents, const std::vector<std::string>& ids) {
  out += "<nav class=\"index\" aria-label=\"Incidents\"><ol>\n";
  for (std::size_t i = 0; i < incidents.size(); ++i) {
    const std::string status = Text(Member(incidents[i], "status"));
    out += "<li>" + (status.empty() ? "" : Badge(status) + " ") + "<a href=\"#" + ids[i] + "\">" +
           Escape(Headline(incidents[i], i)) + "</a></li>\n";
  }
  out += "</ol></nav>\n";
}

std::string KindWords(const json* model) {
  const std::string kind = Text(Member(model, "kind"));
  if (kind.empty()) return "nvs report";
  return "nvs " + kind + " report";
}

}  // namespace

std::string RenderHtml(const json& model) {
  const std::string title = Text(Member(&model, "title"));
  const std::string generated = Text(Member(&model, "generated"));
  const std::vector<const json*> incidents = Elements(Member(&model, "incidents"));
  std::set<std::string> used_ids;
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < incidents.size(); ++i) ids.push_back(SectionId(incidents[i], i, used_ids));

  std::string out;
  out.reserve(32 * 1024 + incidents.size() * 16 * 1024);
  AppendHead(out, title.empty() ? KindWords(&model) : title);
  out += "<body>\n<header class=\"page\" id=\"top\">\n<p class=\"kind\">" + Escape(KindWords(&model)) +
         (generated.empty() ? "" : " \xC2\xB7 generated <time>" + Escape(generated) + "</time>") + "</p>\n";
  out += "<h1>" + Escape(title.empty() ? KindWords(&model) : title) + "</h1>\n";
  if (!incidents.empty()) out += "<p class=\"overview\">" + Escape(Overview(incidents)) + "</p>\n";
  out += "</header>\n<main>\n";
  AppendSummary(out, Member(&model, "summary"));
  if (incidents.empty()) {
    out += "<p class=\"no-incidents\">No incidents in this report.</p>\n";
  } else if (incidents.size() > 1) {
    AppendIndex(out, incidents, ids);
  }
  for (std::size_t i = 0; i < incidents.size(); ++i) AppendIncident(out, incidents[i], i, ids[i]);
  out += "</main>\n<footer class=\"page\"><p>" + Escape(KindWords(&model)) +
         ". This page is self-contained: it loads nothing and runs no script; it prints as it reads.</p></footer>\n";
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace nvs::report
