// Transcript tests (raft's testdata style; ARCHITECTURE.md §7): a scenario
// written step by step against a simulated nvsd, each step followed by
// what it made happen. The file is the test: tests/simulation/testdata/
// *.txt. Each block is a command line, a line "----", and the expected
// output up to a blank line. Lines starting with '#' are comments.
//
// Commands (the variants are router-a, router-b and router-c; a command is
// a register command of the simulated variant, SimVariant, with its "fault"
// marker if any):
//   start [mode=standby] [checkpoint_interval=N] [deadline_ms=N]
//         [faulty=VARIANT]          nvsd over a fresh world; runs until quiet
//   send CLIENT ID JSON             a client sends a command
//   query CLIENT ID JSON            a client sends a query
//   deliver VARIANT [N|all]         the variant reads N (1) of nvsd's messages and acts
//   arrive VARIANT [N|all]          N (1) of the variant's messages reach nvsd
//   die VARIANT [lose|lose=N]       its process dies now; `lose`: what it sent
//                                   that has not reached nvsd is lost with it
//                                   (lose=N: the last N of those)
//   kill-nvsd                       nvsd is killed -9 (its processes die with
//                                   it) and started again on the same storage
//                                   (its start-up shows in the next `run`)
//   exit-seen VARIANT               nvsd's poll sees the process gone
//   tick MS                         the clock moves on; nvsd takes a turn
//   run                             every message moves and every exit is seen,
//                                   in a fixed order, until nothing moves
//   status                          each variant's state, as `nvs status` says
//
// Output: what nvsd sent (`-> router-a apply seq=3 ...`), what variants
// did (`router-a reads ...`, `router-a dies`), what reached nvsd
// (`router-a -> nvsd applied seq=3`), the clients' replies
// (`client-1 <- c1 committed seq=3 ...`) and nvsd's events, in order.
#pragma once

#include <string>

namespace nvs::simulation {

// Runs the transcript `text` and returns it with every block's output
// replaced by what happened: equal to `text` when the transcript holds.
std::string RunTranscript(const std::string& text);

}  // namespace nvs::simulation
