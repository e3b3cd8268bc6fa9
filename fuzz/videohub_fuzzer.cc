// The Videohub gateway's parser of what panels, Companion and scripts send
// on TCP 9990 (gateways/videohub/PROTOCOL-NOTES.md): BlockReader framing,
// then ParseRequest against the router's size.
//
// Properties: never a crash, a throw or undefined behaviour; the same
// blocks (and the same overflow) whether the bytes come at once or split
// into pieces (split points derived from the input), with the default limits
// and with small ones; every block within the limits; every accepted
// request in range, and a take or label change survives the gateway's own
// serialisation and parses back to itself.
#include <cstdint>
#include <set>

#include "fuzz_check.h"
#include "nvs/videohub/videohub_protocol.h"

namespace {

namespace vh = nvs::videohub;

struct Framing {
  std::vector<vh::Block> blocks;
  bool overflowed = false;
};

// Feeds `bytes` in pieces whose sizes come from `seed` (0: all at once).
Framing Frame(std::string_view bytes, const vh::BlockReader::Limits& limits, std::uint64_t seed) {
  vh::BlockReader reader(limits);
  Framing out;
  std::size_t at = 0;
  while (at < bytes.size()) {
    std::size_t piece = bytes.size() - at;
    if (seed != 0) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      piece = std::min<std::size_t>(piece, 1 + (seed >> 59));  // 1 to 32 bytes
    }
    for (auto& block : reader.Feed(bytes.substr(at, piece))) out.blocks.push_back(std::move(block));
    at += piece;
  }
  for (auto& block : reader.Finish()) out.blocks.push_back(std::move(block));
  out.overflowed = reader.overflowed();
  NVS_FUZZ_CHECK(!out.overflowed || reader.Feed("PING:\n\n").empty());
  return out;
}

void CheckBlocks(const Framing& framing, const vh::BlockReader::Limits& limits) {
  for (const auto& block : framing.blocks) {
    NVS_FUZZ_CHECK(block.lines.size() <= limits.max_block_lines);
    std::size_t bytes = block.header.size();
    for (const auto& line : block.lines) {
      NVS_FUZZ_CHECK(!line.empty() && line.size() <= limits.max_line_bytes);
      NVS_FUZZ_CHECK(line.find('\n') == std::string::npos);
      bytes += line.size();
    }
    if (block.junk) {
      NVS_FUZZ_CHECK(block.header.empty() && block.lines.size() == 1);
    } else {
      NVS_FUZZ_CHECK(bytes <= limits.max_buffer_bytes);
      NVS_FUZZ_CHECK(block.header.find('\n') == std::string::npos);
    }
  }
}

// The gateway's own blocks for a request parse back to the same request.
void CheckRoundTrip(const vh::Request& request, int inputs, int outputs) {
  vh::RouterView view;
  view.inputs = inputs;
  view.outputs = outputs;
  view.routes.assign(static_cast<std::size_t>(outputs), 0);
  view.input_labels.assign(static_cast<std::size_t>(inputs), "");
  view.output_labels.assign(static_cast<std::size_t>(outputs), "");
  view.lock_owners.assign(static_cast<std::size_t>(outputs), std::nullopt);
  std::string text;
  std::vector<int> indices;
  if (const auto* take = std::get_if<vh::RouteTake>(&request)) {
    if (take->routes.empty()) return;
    for (const auto& [output, input] : take->routes) {
      view.routes[static_cast<std::size_t>(output)] = input;
      indices.push_back(output);
    }
    text = vh::RoutingBlock(view, indices);
  } else if (const auto* change = std::get_if<vh::LabelChange>(&request)) {
    if (change->labels.empty()) return;
    auto& labels = change->input ? view.input_labels : view.output_labels;
    for (const auto& [index, label] : change->labels) {
      labels[static_cast<std::size_t>(index)] = label;
      indices.push_back(index);
    }
    text = vh::LabelsBlock(view, change->input, indices);
  } else {
    return;
  }
  vh::BlockReader reader;
  auto blocks = reader.Feed(text);
  NVS_FUZZ_CHECK(blocks.size() == 1 && !reader.overflowed());
  NVS_FUZZ_CHECK(vh::ParseRequest(blocks.front(), inputs, outputs) == request);
}

void CheckRequest(const vh::Block& block, int inputs, int outputs) {
  const vh::Request request = vh::ParseRequest(block, inputs, outputs);
  if (const auto* take = std::get_if<vh::RouteTake>(&request)) {
    std::set<int> seen;
    for (const auto& [output, input] : take->routes) {
      NVS_FUZZ_CHECK(output >= 0 && output < outputs && input >= 0 && input < inputs);
      NVS_FUZZ_CHECK(seen.insert(output).second);
    }
  } else if (const auto* change = std::get_if<vh::LabelChange>(&request)) {
    std::set<int> seen;
    for (const auto& [index, label] : change->labels) {
      NVS_FUZZ_CHECK(index >= 0 && index < (change->input ? inputs : outputs));
      NVS_FUZZ_CHECK(label.size() <= vh::kMaxLabelBytes);
      NVS_FUZZ_CHECK(label.find_first_of("\r\n") == std::string::npos);
      NVS_FUZZ_CHECK(seen.insert(index).second);
    }
  } else if (const auto* locks = std::get_if<vh::LockChange>(&request)) {
    for (const auto& [output, letter] : locks->locks) {
      NVS_FUZZ_CHECK(output >= 0 && output < outputs);
      NVS_FUZZ_CHECK(letter == 'O' || letter == 'U' || letter == 'F');
    }
  } else if (const auto* dump = std::get_if<vh::DumpRequest>(&request)) {
    vh::RouterView view;
    NVS_FUZZ_CHECK(vh::DumpBlock(view, dump->header, "viewer").empty());
  }
  CheckRoundTrip(request, inputs, outputs);
}

std::uint64_t Seed(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h | 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view bytes = nvs::fuzz::AsText(data, size);
  const vh::BlockReader::Limits defaults;
  const vh::BlockReader::Limits small{/*max_line_bytes=*/80, /*max_block_lines=*/8, /*max_buffer_bytes=*/256};
  for (const auto& limits : {defaults, small}) {
    const Framing whole = Frame(bytes, limits, 0);
    const Framing split = Frame(bytes, limits, Seed(bytes));
    NVS_FUZZ_CHECK(whole.blocks == split.blocks);
    NVS_FUZZ_CHECK(whole.overflowed == split.overflowed);
    CheckBlocks(whole, limits);
  }
  const Framing framing = Frame(bytes, defaults, 0);
  for (const auto& block : framing.blocks) {
    CheckRequest(block, 40, 40);  // the size examples/videohub runs
    CheckRequest(block, 1, 1024);
  }
  return 0;
}
