// Reading JSON that came from outside (the wire, a journal, a log): numbers
// without a cast that can be undefined behaviour (get<std::uint64_t>() of a
// float, a negative or a huge number is), and documents without unbounded
// recursion.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "nvs/status.h"

namespace nvs::protocol {

// A count (seq, time_ns, a number of things): a JSON integer literal in
// [0, 2^63), as PROTOCOL.md has them. A float, a string, a negative or a
// larger number is nullopt.
std::optional<std::uint64_t> ReadCount(const nlohmann::json& value);

// A JSON document nvs wrote and reads back (a journal record, a checkpoint,
// a report, a log line), parsed only when it is nested no deeper than
// kMaxDocumentJsonDepth (nlohmann's serialiser and copy recurse once per
// level). Fails with "nested deeper than 128 levels" or "not JSON".
Result<nlohmann::json> ParseDocument(std::string_view text);

}  // namespace nvs::protocol
