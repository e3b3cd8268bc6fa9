// The Blackmagic Videohub Ethernet protocol (text over TCP port 9990,
// protocol 2.x), server side, as the nvs-videohub gateway speaks it to router
// panels and automation: framing of a connection's bytes into blocks, parsing
// of client requests against the router's size, and serialisation of the
// router's state (nvsd's dump) into the blocks a real unit sends.
//
// Pure: no sockets, no threads, no clock, no global state. Everything here is
// thread-compatible (distinct objects may be used from distinct threads). No
// function throws on bad input; bad input is a value (`Nak`, `overflowed()`,
// an error string). gateways/videohub/PROTOCOL-NOTES.md gives the grammar as
// implemented, the sources, and where real clients deviate.
#pragma once

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace nvs::videohub {

// Block headers (without the ':') that this layer understands.
inline constexpr std::string_view kProtocolPreamble = "PROTOCOL PREAMBLE";
inline constexpr std::string_view kVideohubDevice = "VIDEOHUB DEVICE";
inline constexpr std::string_view kInputLabels = "INPUT LABELS";
inline constexpr std::string_view kOutputLabels = "OUTPUT LABELS";
inline constexpr std::string_view kVideoOutputLocks = "VIDEO OUTPUT LOCKS";
inline constexpr std::string_view kVideoOutputRouting = "VIDEO OUTPUT ROUTING";
inline constexpr std::string_view kEndPrelude = "END PRELUDE";
inline constexpr std::string_view kPing = "PING";

// Largest label, in bytes of UTF-8 (variants/router/SPEC.md §3.3 `label`).
inline constexpr std::size_t kMaxLabelBytes = 64;

// One block as a client sent it: a header line ("NAME:"), body lines, then a
// blank line. Line ends ("\n" or "\r\n") are not part of the text.
struct Block {
  std::string header;               // without the ':' (and without trailing spaces/tabs)
  std::vector<std::string> lines;   // body lines, in order; never empty strings
  // True for a line seen outside any block that is not a header (does not end
  // in ':'): `header` is empty and `lines` holds that one line. The gateway
  // answers it with NAK (ParseRequest gives a Nak).
  bool junk = false;

  friend bool operator==(const Block&, const Block&) = default;
};

// Incremental framing of one TCP connection's bytes into blocks.
//
// Lines end in "\n"; one '\r' right before the "\n" is dropped ("\r\n"), so
// both line ends (mixed freely) are accepted. Outside a block, blank lines are
// skipped, a line ending in ':' (after trailing spaces/tabs are dropped)
// opens a block, and any other line is reported at once as a junk block.
// Inside a block every non-blank line is a body line (even one ending in
// ':'), and a blank line closes it. A block or line may be split across Feed
// calls at any byte.
//
// Bounded: a line longer than `max_line_bytes` (not counting its line end), a
// block with more than `max_block_lines` body lines, or more than
// `max_buffer_bytes` held for an unfinished block and line, puts the reader
// in the overflow state: it is detected as soon as the limit is crossed
// (without waiting for the line end), every later byte is ignored, and the
// gateway should drop the connection. Memory held is O(max_buffer_bytes).
class BlockReader {
 public:
  struct Limits {
    std::size_t max_line_bytes = 4096;       // longest line, line end excluded
    std::size_t max_block_lines = 10000;     // most body lines in one block
    std::size_t max_buffer_bytes = 1 << 20;  // most bytes held for an unfinished block + line
  };

  // Default limits. (Two constructors rather than `Limits limits = {}`: a
  // nested struct's default member initializers cannot be used in a default
  // argument inside the enclosing class; GCC 12 rejects it.)
  BlockReader();
  explicit BlockReader(Limits limits);

  // Consumes `bytes` and returns the blocks they complete, in order. In the
  // call that overflows, the blocks completed before the offending byte are
  // still returned; after that, always an empty vector.
  std::vector<Block> Feed(std::string_view bytes);

  // At end of stream: returns the pending block, if any, as if the final line
  // end and blank line had come (a header with no line end yet counts, e.g.
  // "PING:" then EOF; so does a junk line). The reader is then empty and may
  // be fed again. Empty when overflowed.
  std::vector<Block> Finish();

  bool overflowed() const { return overflowed_; }

 private:
  // Handles one complete line (line end removed); appends any block it
  // completes to `out`. Returns false on overflow.
  bool TakeLine(std::string_view line, std::vector<Block>& out);
  void Overflow();

  Limits limits_;
  std::string partial_;       // bytes of the current line, no '\n' seen yet
  bool in_block_ = false;
  Block current_;             // the open block, when in_block_
  std::size_t block_bytes_ = 0;  // bytes held in current_
  bool overflowed_ = false;
};

// A request from a client, checked against the router's size.
//
// Indices are decimal digits only (leading zeros allowed; no sign, no '+',
// nothing after but trailing spaces/tabs), and in range. A take, label or lock
// block naming the same output/index twice is refused (SPEC.md's `duplicate`).
// Labels are the rest of the line after the index and one space, kept
// byte-exact (leading/trailing spaces included, "" allowed); they must be
// valid UTF-8, at most kMaxLabelBytes bytes and free of control characters
// U+0000-U+001F and U+007F (SPEC.md §3.3). Lock letters are 'O', 'U', 'F',
// upper case only.
struct RouteTake {
  std::vector<std::pair<int, int>> routes;  // (output, input), in the client's order
  friend bool operator==(const RouteTake&, const RouteTake&) = default;
};
struct LabelChange {
  bool input = true;  // INPUT LABELS (true) or OUTPUT LABELS (false)
  std::vector<std::pair<int, std::string>> labels;  // (index, text), in the client's order
  friend bool operator==(const LabelChange&, const LabelChange&) = default;
};
struct LockChange {
  std::vector<std::pair<int, char>> locks;  // (output, 'O' | 'U' | 'F'), in the client's order
  friend bool operator==(const LockChange&, const LockChange&) = default;
};
// An empty block (header and blank line) with one of the four status headers
// (kInputLabels, kOutputLabels, kVideoOutputLocks, kVideoOutputRouting): the
// client asks for that whole block. Answer ACK, then DumpBlock(...).
struct DumpRequest {
  std::string header;
  friend bool operator==(const DumpRequest&, const DumpRequest&) = default;
};
struct Ping {
  friend bool operator==(const Ping&, const Ping&) = default;
};
// "VIDEOHUB DEVICE:" with one "Friendly name: NAME" line (what a unit takes
// to rename itself, and what videohubctrl's --backup output restores
// first). NAME is the rest of the line after "Friendly name: ", checked as
// a label is; "" gives the model name back. Any other line of that block is
// the unit's own (read-only) and refused.
struct FriendlyNameChange {
  std::string name;
  friend bool operator==(const FriendlyNameChange&, const FriendlyNameChange&) = default;
};
// Anything else: answer NAK. `reason` is for logs, never sent.
// Note: `Nak` also names the serialiser `Nak()` below, which hides this type
// where both are visible (as POSIX's `stat`); write `struct Nak` or `Refusal`.
struct Nak {
  std::string reason;
  friend bool operator==(const Nak&, const Nak&) = default;
};
using Refusal = Nak;
using Request = std::variant<RouteTake, LabelChange, LockChange, DumpRequest, Ping, FriendlyNameChange, Nak>;

// Parses one block. REQUIRES: inputs >= 0, outputs >= 0 (the router's size).
// Never throws; anything invalid is a Nak with a reason.
Request ParseRequest(const Block& block, int inputs, int outputs);

// The router's state as the gateway sees it (filled from nvsd's dump).
// Consistent when routes, output_labels and lock_owners have `outputs`
// elements, input_labels has `inputs`, and every route is in [0, inputs);
// ViewFromDump only makes consistent views. The serialisers skip indices a
// view does not have rather than read past its vectors.
struct RouterView {
  int inputs = 0, outputs = 0;
  std::vector<int> routes;                              // input shown by each output
  std::vector<std::string> input_labels, output_labels;
  std::vector<std::optional<std::string>> lock_owners;  // client id or none, per output

  friend bool operator==(const RouterView&, const RouterView&) = default;
};

// What VIDEOHUB DEVICE and PROTOCOL PREAMBLE say.
struct DeviceInfo {
  bool present = true;                           // false: "Device present: false", no port blocks
  std::string model = "nvs Videohub gateway";    // "Model name:"
  std::string friendly_name;                     // "Friendly name:"; empty: the model name
  std::string unique_id;                         // "Unique ID:"; empty: the line is left out
  std::string version = "2.8";                   // "Version:" of PROTOCOL PREAMBLE
};

// Serialisation. Every block ends with a blank line; lines end in "\n". Label
// text has '\n' and '\r' replaced by spaces so it cannot break the framing
// (the device strings likewise). `viewer` is the client id of the connection
// the text is for: a lock owned by it is 'O', by another client 'L', none 'U'.

// What a unit sends on connect: PROTOCOL PREAMBLE, VIDEOHUB DEVICE, INPUT
// LABELS, OUTPUT LABELS, VIDEO OUTPUT LOCKS, VIDEO OUTPUT ROUTING, END
// PRELUDE. With `view` null (nvsd unreachable) or !device.present: the
// preamble, "Device present: false" and END PRELUDE only.
std::string Prelude(const DeviceInfo& device, const RouterView* view, const std::string& viewer);

// What a unit resends when its device appears or changes (e.g. nvsd is back,
// or the router's size changed): every prelude block but PROTOCOL PREAMBLE
// and END PRELUDE.
std::string DeviceResync(const DeviceInfo& device, const RouterView* view, const std::string& viewer);

// The VIDEOHUB DEVICE block alone (what a unit sends to every client when
// its friendly name changes).
std::string DeviceBlock(const DeviceInfo& device, const RouterView* view);

std::string Ack();  // "ACK\n\n"
std::string Nak();  // "NAK\n\n"

// One status block listing only the given items, in the given order (pass
// every index for the whole block). Indices the view does not have are
// skipped; "" when none is left (nothing to send).
std::string RoutingBlock(const RouterView& view, const std::vector<int>& outputs);
std::string LabelsBlock(const RouterView& view, bool input, const std::vector<int>& indices);
std::string LocksBlock(const RouterView& view, const std::vector<int>& outputs, const std::string& viewer);

// The whole block for a DumpRequest's header; "" for any other header.
std::string DumpBlock(const RouterView& view, const std::string& header, const std::string& viewer);

// What changed between two views, to send each client exactly the items that
// changed (each list ascending). A change of size lists every item of
// `after`. A lock is listed when its owner changed, even if a given viewer
// sees the same letter (owner A -> B is 'L' -> 'L' for a third client).
struct Changes {
  std::vector<int> routes, input_labels, output_labels, locks;
  bool any() const;
};
Changes Diff(const RouterView& before, const RouterView& after);

// nvsd's dump result (the JSON object under "state", SPEC.md §6) ->
// RouterView. On a malformed dump: nullopt, and `*error` (when not null) says
// which member is wrong. Salvos are not part of the view and not checked.
std::optional<RouterView> ViewFromDump(const nlohmann::json& state, std::string* error);

}  // namespace nvs::videohub
