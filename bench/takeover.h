// nvs-bench --only takeover: cluster mode's takeover time, and its commit
// latency and throughput against single-host in the same run (takeover.cc).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>

namespace nvs::bench {

nlohmann::json BenchTakeover(int kills, std::size_t commands);

}  // namespace nvs::bench
