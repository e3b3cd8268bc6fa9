// Reading numbers that came from outside (the wire, a journal, a log) out of
// nlohmann/json values without a cast that can be undefined behaviour:
// get<std::uint64_t>() of a float, a negative or a huge number is.
#pragma once

#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

namespace nvs::protocol {

// A count (seq, time_ns, a number of things): a JSON integer literal in
// [0, 2^63), as PROTOCOL.md has them. A float, a string, a negative or a
// larger number is nullopt.
std::optional<std::uint64_t> ReadCount(const nlohmann::json& value);

}  // namespace nvs::protocol
