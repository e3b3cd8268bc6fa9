#include "nvs/videohub/videohub_protocol.h"

#include <cstdint>
#include <nlohmann/json.hpp>

namespace nvs::videohub {
namespace {

using nlohmann::json;

// Router size limits (variants/router/SPEC.md §1); also the most digits an
// index can usefully have before it is out of range whatever the router.
constexpr int kMaxPorts = 1024;
constexpr std::size_t kMaxIndexDigits = 9;  // < 2^31, so the value fits an int

std::string_view TrimRight(std::string_view text) {
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// A short, printable rendering of client text for Nak reasons (logs).
std::string Quote(std::string_view text) {
  constexpr std::size_t kMax = 40;
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMax) out += "...";
  return out + "\"";
}

// '\n' and '\r' become spaces: text written on one protocol line.
std::string OneLine(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

// An index: decimal digits only, in [0, limit). nullopt with `*why` set
// otherwise.
std::optional<int> ParseIndex(std::string_view digits, int limit, const char* what, std::string* why) {
  if (digits.empty()) {
    *why = std::string("missing ") + what;
    return std::nullopt;
  }
  for (char c : digits) {
    if (c < '0' || c > '9') {
      *why = std::string(what) + " is not a decimal number: " + Quote(digits);
      return std::nullopt;
    }
  }
  std::size_t first = digits.find_first_not_of('0');
  const std::string_view significant = first == std::string_view::npos ? std::string_view("0") : digits.substr(first);
  if (significant.size() > kMaxIndexDigits) {
    *why = std::string(what) + " " + Quote(digits) + " is out of range";
    return std::nullopt;
  }
  int value = 0;
  for (char c : significant) value = value * 10 + (c - '0');
  if (value >= limit) {
    *why = std::string(what) + " " + std::to_string(value) + " is out of range [0, " + std::to_string(limit) + ")";
    return std::nullopt;
  }
  return value;
}

// Valid UTF-8 (RFC 3629: shortest form, no surrogates, at most U+10FFFF), no
// control character U+0000-U+001F or U+007F, at most kMaxLabelBytes bytes.
// Empty when the label is acceptable, else why not.
std::string LabelProblem(std::string_view text) {
  if (text.size() > kMaxLabelBytes) {
    return "label is " + std::to_string(text.size()) + " bytes, more than " + std::to_string(kMaxLabelBytes);
  }
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return "label has a control character at byte " + std::to_string(i);
      ++i;
      continue;
    }
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      if (c == 0xe0) low = 0xa0;   // no overlong forms
      if (c == 0xed) high = 0x9f;  // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      if (c == 0xf0) low = 0x90;   // no overlong forms
      if (c == 0xf4) high = 0x8f;  // nothing above U+10FFFF
    } else {
      return "label is not valid UTF-8 at byte " + std::to_string(i);
    }
    if (i + length > text.size()) return "label is not valid UTF-8 at byte " + std::to_string(i);
    for (std::size_t k = 1; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      const unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xbf;
      if (next < lo || next > hi) return "label is not valid UTF-8 at byte " + std::to_string(i);
    }
    i += length;
  }
  return {};
}

// "OUT IN" lines, one take.
Request ParseTake(const Block& block, int inputs, int outputs) {
  RouteTake take;
  std::vector<bool> seen(static_cast<std::size_t>(outputs), false);
  std::string why;
  for (const std::string& raw : block.lines) {
    const std::string_view line = TrimRight(raw);
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos) return Refusal{"routing line is not 'output input': " + Quote(raw)};
    const auto output = ParseIndex(line.substr(0, space), outputs, "output", &why);
    if (!output) return Refusal{why};
    const auto input = ParseIndex(line.substr(space + 1), inputs, "input", &why);
    if (!input) return Refusal{why};
    if (seen[static_cast<std::size_t>(*output)]) {
      return Refusal{"output " + std::to_string(*output) + " is routed twice in one take"};
    }
    seen[static_cast<std::size_t>(*output)] = true;
    take.routes.emplace_back(*output, *input);
  }
  return take;
}

// "INDEX TEXT" lines: TEXT is everything after the first space, byte-exact.
Request ParseLabels(const Block& block, bool input, int inputs, int outputs) {
  LabelChange change;
  change.input = input;
  const int limit = input ? inputs : outputs;
  std::vector<bool> seen(static_cast<std::size_t>(limit), false);
  std::string why;
  for (const std::string& line : block.lines) {
    const std::size_t space = line.find(' ');
    if (space == std::string::npos) return Refusal{"label line is not 'index text': " + Quote(line)};
    const auto index = ParseIndex(std::string_view(line).substr(0, space), limit, input ? "input" : "output", &why);
    if (!index) return Refusal{why};
    if (seen[static_cast<std::size_t>(*index)]) {
      return Refusal{"index " + std::to_string(*index) + " is labelled twice in one block"};
    }
    seen[static_cast<std::size_t>(*index)] = true;
    std::string text = line.substr(space + 1);
    if (std::string problem = LabelProblem(text); !problem.empty()) {
      return Refusal{problem + " (index " + std::to_string(*index) + ")"};
    }
    change.labels.emplace_back(*index, std::move(text));
  }
  return change;
}

// "Friendly name: NAME", the one line of a VIDEOHUB DEVICE block a client
// may send.
Request ParseFriendlyName(const Block& block) {
  static constexpr std::string_view kKey = "Friendly name:";
  if (block.lines.size() != 1) {
    return Refusal{"VIDEOHUB DEVICE: from a client takes one line, 'Friendly name: NAME' (the rest is read-only)"};
  }
  const std::string& line = block.lines.front();
  if (line.compare(0, kKey.size(), kKey) != 0) {
    return Refusal{"VIDEOHUB DEVICE: only its Friendly name can be set, not " + Quote(line)};
  }
  std::string name = line.substr(kKey.size());
  if (!name.empty() && name.front() == ' ') name.erase(0, 1);
  if (std::string problem = LabelProblem(name); !problem.empty()) return Refusal{"friendly name: " + problem};
  return FriendlyNameChange{std::move(name)};
}

// "OUT O|U|F" lines.
Request ParseLocks(const Block& block, int outputs) {
  LockChange change;
  std::vector<bool> seen(static_cast<std::size_t>(outputs), false);
  std::string why;
  for (const std::string& raw : block.lines) {
    const std::string_view line = TrimRight(raw);
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos) return Refusal{"lock line is not 'output O|U|F': " + Quote(raw)};
    const auto output = ParseIndex(line.substr(0, space), outputs, "output", &why);
    if (!output) return Refusal{why};
    const std::string_view action = line.substr(space + 1);
    if (action != "O" && action != "U" && action != "F") {
      return Refusal{"lock action must be O, U or F, not " + Quote(action)};
    }
    if (seen[static_cast<std::size_t>(*output)]) {
      return Refusal{"output " + std::to_string(*output) + " appears twice in one lock block"};
    }
    seen[static_cast<std::size_t>(*output)] = true;
    change.locks.emplace_back(*output, action.front());
  }
  return change;
}

// Blocks of the real protocol for parts this router does not have (or that
// only the server sends). A client gets NAK for them, with this reason.
bool IsUnsupportedKnownHeader(std::string_view header) {
  static constexpr std::string_view kHeaders[] = {
      "PROTOCOL PREAMBLE", "VIDEOHUB DEVICE", "END PRELUDE", "CONFIGURATION",
      "MONITORING OUTPUT LABELS", "VIDEO MONITORING OUTPUT ROUTING", "MONITORING OUTPUT LOCKS",
      "SERIAL PORT LABELS", "SERIAL PORT ROUTING", "SERIAL PORT LOCKS", "SERIAL PORT DIRECTIONS",
      "PROCESSING UNIT ROUTING", "PROCESSING UNIT LOCKS", "FRAME LABELS", "FRAME BUFFER ROUTING",
      "FRAME BUFFER LOCKS", "VIDEO INPUT STATUS", "VIDEO OUTPUT STATUS", "SERIAL PORT STATUS",
      "ALARM STATUS", "TAKE MODE"};
  for (std::string_view known : kHeaders) {
    if (header == known) return true;
  }
  return false;
}

std::vector<int> AllIndices(int count) {
  std::vector<int> all;
  for (int i = 0; i < count; ++i) all.push_back(i);
  return all;
}

// Indices in [0, count) that differ between `before` and `after` (an index
// `before` lacks counts as changed).
template <typename T>
std::vector<int> Changed(const std::vector<T>& before, const std::vector<T>& after, int count) {
  std::vector<int> changed;
  for (int i = 0; i < count && static_cast<std::size_t>(i) < after.size(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (k >= before.size() || before[k] != after[k]) changed.push_back(i);
  }
  return changed;
}


std::string PortBlocks(const RouterView& view, const std::string& viewer) {
  const std::vector<int> inputs = AllIndices(view.inputs), outputs = AllIndices(view.outputs);
  return LabelsBlock(view, true, inputs) + LabelsBlock(view, false, outputs) + LocksBlock(view, outputs, viewer) +
         RoutingBlock(view, outputs);
}

// A JSON integer member in [low, high].
std::optional<int> IntMember(const json& value, long long low, long long high) {
  if (!value.is_number_integer()) return std::nullopt;
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(high) || static_cast<long long>(v) < low) return std::nullopt;
    return static_cast<int>(v);
  }
  const auto v = value.get<std::int64_t>();
  if (v < low || v > high) return std::nullopt;
  return static_cast<int>(v);
}

bool Fail(std::string* error, std::string text) {
  if (error != nullptr) *error = std::move(text);
  return false;
}

}  // namespace

std::string DeviceBlock(const DeviceInfo& device, const RouterView* view) {
  std::string text = std::string(kVideohubDevice) + ":\n";
  if (view == nullptr || !device.present) return text + "Device present: false\n\n";
  text += "Device present: true\n";
  text += "Model name: " + OneLine(device.model) + "\n";
  text += "Friendly name: " + OneLine(device.friendly_name.empty() ? device.model : device.friendly_name) + "\n";
  if (!device.unique_id.empty()) text += "Unique ID: " + OneLine(device.unique_id) + "\n";
  text += "Video inputs: " + std::to_string(view->inputs) + "\n";
  text += "Video processing units: 0\n";
  text += "Video outputs: " + std::to_string(view->outputs) + "\n";
  text += "Video monitoring outputs: 0\n";
  text += "Serial ports: 0\n\n";
  return text;
}

// ---------------------------------------------------------------------------
// BlockReader

BlockReader::BlockReader() : BlockReader(Limits{}) {}
BlockReader::BlockReader(Limits limits) : limits_(limits) {}

void BlockReader::Overflow() {
  overflowed_ = true;
  partial_.clear();
  partial_.shrink_to_fit();
  current_ = Block{};
  in_block_ = false;
  block_bytes_ = 0;
}

bool BlockReader::TakeLine(std::string_view line, std::vector<Block>& out) {
  if (line.size() > limits_.max_line_bytes) {
    Overflow();
    return false;
  }
  if (!in_block_) {
    if (line.empty()) return true;  // blank lines between blocks
    const std::string_view trimmed = TrimRight(line);
    if (!trimmed.empty() && trimmed.back() == ':') {
      in_block_ = true;
      current_ = Block{std::string(trimmed.substr(0, trimmed.size() - 1)), {}, false};
      block_bytes_ = current_.header.size();
      if (block_bytes_ > limits_.max_buffer_bytes) {
        Overflow();
        return false;
      }
      return true;
    }
    out.push_back(Block{"", {std::string(line)}, true});
    return true;
  }
  if (line.empty()) {
    out.push_back(std::move(current_));
    current_ = Block{};
    in_block_ = false;
    block_bytes_ = 0;
    return true;
  }
  if (current_.lines.size() >= limits_.max_block_lines || block_bytes_ + line.size() > limits_.max_buffer_bytes) {
    Overflow();
    return false;
  }
  current_.lines.emplace_back(line);
  block_bytes_ += line.size();
  return true;
}

std::vector<Block> BlockReader::Feed(std::string_view bytes) {
  std::vector<Block> out;
  std::size_t pos = 0;
  while (!overflowed_ && pos < bytes.size()) {
    const std::size_t end = bytes.find('\n', pos);
    if (end == std::string_view::npos) {
      partial_.append(bytes.substr(pos));
      // Not counting a final '\r', which may be the first half of "\r\n".
      const std::size_t held = partial_.size() - (partial_.back() == '\r' ? 1 : 0);
      if (held > limits_.max_line_bytes || block_bytes_ + held > limits_.max_buffer_bytes) Overflow();
      break;
    }
    std::string_view line = bytes.substr(pos, end - pos);
    pos = end + 1;
    if (!partial_.empty()) {
      partial_.append(line);
      line = partial_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool ok = TakeLine(line, out);  // copies what it keeps of `line`
    partial_.clear();
    if (!ok) break;
  }
  return out;
}

std::vector<Block> BlockReader::Finish() {
  std::vector<Block> out;
  if (overflowed_) return out;
  if (!partial_.empty()) {
    std::string_view line = partial_;
    if (line.back() == '\r') line.remove_suffix(1);
    const bool ok = TakeLine(line, out);
    partial_.clear();
    if (!ok) return {};
  }
  if (in_block_) {
    out.push_back(std::move(current_));
    current_ = Block{};
    in_block_ = false;
    block_bytes_ = 0;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Requests

Request ParseRequest(const Block& block, int inputs, int outputs) {
  if (block.junk) {
    return Refusal{"line outside a block is not a header: " + Quote(block.lines.empty() ? "" : block.lines.front())};
  }
  const std::string& header = block.header;
  const bool empty = block.lines.empty();
  if (header == kPing) return empty ? Request{Ping{}} : Request{Refusal{"PING: takes no lines"}};
  if (header == kVideoOutputRouting) {
    return empty ? Request{DumpRequest{header}} : ParseTake(block, inputs, outputs);
  }
  if (header == kInputLabels || header == kOutputLabels) {
    return empty ? Request{DumpRequest{header}} : ParseLabels(block, header == kInputLabels, inputs, outputs);
  }
  if (header == kVideoOutputLocks) return empty ? Request{DumpRequest{header}} : ParseLocks(block, outputs);
  if (header == kVideohubDevice && !empty) return ParseFriendlyName(block);
  if (IsUnsupportedKnownHeader(header)) return Refusal{"block " + Quote(header) + " is not supported by this gateway"};
  return Refusal{"unknown block header " + Quote(header)};
}

// ---------------------------------------------------------------------------
// Serialisation

std::string Prelude(const DeviceInfo& device, const RouterView* view, const std::string& viewer) {
  std::string text = std::string(kProtocolPreamble) + ":\nVersion: " + OneLine(device.version) + "\n\n";
  text += DeviceResync(device, view, viewer);
  text += std::string(kEndPrelude) + ":\n\n";
  return text;
}

std::string DeviceResync(const DeviceInfo& device, const RouterView* view, const std::string& viewer) {
  std::string text = DeviceBlock(device, view);
  if (view != nullptr && device.present) text += PortBlocks(*view, viewer);
  return text;
}

std::string Ack() { return "ACK\n\n"; }
std::string Nak() { return "NAK\n\n"; }

std::string RoutingBlock(const RouterView& view, const std::vector<int>& outputs) {
  std::string body;
  for (int output : outputs) {
    if (output < 0 || output >= view.outputs || static_cast<std::size_t>(output) >= view.routes.size()) continue;
    body += std::to_string(output) + " " + std::to_string(view.routes[static_cast<std::size_t>(output)]) + "\n";
  }
  return body.empty() ? std::string() : std::string(kVideoOutputRouting) + ":\n" + body + "\n";
}

std::string LabelsBlock(const RouterView& view, bool input, const std::vector<int>& indices) {
  const std::vector<std::string>& labels = input ? view.input_labels : view.output_labels;
  const int count = input ? view.inputs : view.outputs;
  std::string body;
  for (int index : indices) {
    if (index < 0 || index >= count || static_cast<std::size_t>(index) >= labels.size()) continue;
    body += std::to_string(index) + " " + OneLine(labels[static_cast<std::size_t>(index)]) + "\n";
  }
  if (body.empty()) return {};
  return std::string(input ? kInputLabels : kOutputLabels) + ":\n" + body + "\n";
}

std::string LocksBlock(const RouterView& view, const std::vector<int>& outputs, const std::string& viewer) {
  std::string body;
  for (int output : outputs) {
    if (output < 0 || output >= view.outputs || static_cast<std::size_t>(output) >= view.lock_owners.size()) continue;
    const std::optional<std::string>& owner = view.lock_owners[static_cast<std::size_t>(output)];
    const char letter = !owner ? 'U' : (*owner == viewer ? 'O' : 'L');
    body += std::to_string(output) + " " + letter + "\n";
  }
  return body.empty() ? std::string() : std::string(kVideoOutputLocks) + ":\n" + body + "\n";
}

std::string DumpBlock(const RouterView& view, const std::string& header, const std::string& viewer) {
  if (header == kInputLabels) return LabelsBlock(view, true, AllIndices(view.inputs));
  if (header == kOutputLabels) return LabelsBlock(view, false, AllIndices(view.outputs));
  if (header == kVideoOutputLocks) return LocksBlock(view, AllIndices(view.outputs), viewer);
  if (header == kVideoOutputRouting) return RoutingBlock(view, AllIndices(view.outputs));
  return {};
}

// ---------------------------------------------------------------------------
// Changes

bool Changes::any() const {
  return !routes.empty() || !input_labels.empty() || !output_labels.empty() || !locks.empty();
}

Changes Diff(const RouterView& before, const RouterView& after) {
  Changes changes;
  if (before.inputs != after.inputs || before.outputs != after.outputs) {
    // A new size: everything `after` has is news.
    const RouterView empty;
    changes.routes = Changed(empty.routes, after.routes, after.outputs);
    changes.input_labels = Changed(empty.input_labels, after.input_labels, after.inputs);
    changes.output_labels = Changed(empty.output_labels, after.output_labels, after.outputs);
    changes.locks = Changed(empty.lock_owners, after.lock_owners, after.outputs);
    return changes;
  }
  changes.routes = Changed(before.routes, after.routes, after.outputs);
  changes.input_labels = Changed(before.input_labels, after.input_labels, after.inputs);
  changes.output_labels = Changed(before.output_labels, after.output_labels, after.outputs);
  changes.locks = Changed(before.lock_owners, after.lock_owners, after.outputs);
  return changes;
}

// ---------------------------------------------------------------------------
// nvsd's dump

std::optional<RouterView> ViewFromDump(const json& state, std::string* error) {
  RouterView view;
  const auto check = [&]() -> bool {
    if (!state.is_object()) return Fail(error, "state is not a JSON object");
    for (const char* key : {"inputs", "outputs", "routes", "input_labels", "output_labels", "locks"}) {
      if (!state.contains(key)) return Fail(error, std::string("state has no \"") + key + "\"");
    }
    const auto inputs = IntMember(state["inputs"], 1, kMaxPorts);
    if (!inputs) return Fail(error, "\"inputs\" is not an integer in [1, 1024]");
    const auto outputs = IntMember(state["outputs"], 1, kMaxPorts);
    if (!outputs) return Fail(error, "\"outputs\" is not an integer in [1, 1024]");
    view.inputs = *inputs;
    view.outputs = *outputs;

    const json& routes = state["routes"];
    if (!routes.is_array() || routes.size() != static_cast<std::size_t>(view.outputs)) {
      return Fail(error, "\"routes\" is not an array of " + std::to_string(view.outputs) + " elements");
    }
    for (std::size_t o = 0; o < routes.size(); ++o) {
      const auto input = IntMember(routes[o], 0, view.inputs - 1);
      if (!input) return Fail(error, "\"routes\"[" + std::to_string(o) + "] is not an input in range");
      view.routes.push_back(*input);
    }

    const auto read_labels = [&](const char* key, int count, std::vector<std::string>& labels) {
      const json& array = state[key];
      if (!array.is_array() || array.size() != static_cast<std::size_t>(count)) {
        return Fail(error, std::string("\"") + key + "\" is not an array of " + std::to_string(count) + " elements");
      }
      for (std::size_t i = 0; i < array.size(); ++i) {
        if (!array[i].is_string()) {
          return Fail(error, std::string("\"") + key + "\"[" + std::to_string(i) + "] is not a string");
        }
        labels.push_back(array[i].get<std::string>());
      }
      return true;
    };
    if (!read_labels("input_labels", view.inputs, view.input_labels)) return false;
    if (!read_labels("output_labels", view.outputs, view.output_labels)) return false;

    const json& locks = state["locks"];
    if (!locks.is_array() || locks.size() != static_cast<std::size_t>(view.outputs)) {
      return Fail(error, "\"locks\" is not an array of " + std::to_string(view.outputs) + " elements");
    }
    for (std::size_t o = 0; o < locks.size(); ++o) {
      if (locks[o].is_null()) {
        view.lock_owners.emplace_back(std::nullopt);
      } else if (locks[o].is_string() && !locks[o].get_ref<const std::string&>().empty()) {
        view.lock_owners.emplace_back(locks[o].get<std::string>());
      } else {
        return Fail(error, "\"locks\"[" + std::to_string(o) + "] is neither null nor a client id");
      }
    }
    return true;
  };
  if (!check()) return std::nullopt;
  return view;
}

}  // namespace nvs::videohub
