// The voter: a pure function from the outcomes of every variant for one
// command, and a policy, to a verdict (ARCHITECTURE.md §3). No I/O, no clock, no
// threads, no global state; thread-compatible.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nvs::voter {

// What one variant did with one command.
enum class OutcomeKind {
  kPending,        // no outcome yet (still running, within its deadline)
  kReply,          // answered; `result` holds the domain's reply
  kCrashed,        // died (exit status or signal) with the command in flight
  kHung,           // no reply by the deadline; the supervisor killed it
  kProtocolError,  // answered garbage or a protocol error
  kExcluded,       // taken out before it could answer, for an earlier command's
                   // sake (it died on, or was restarted after, that one); no
                   // fault of this command, and no vote
};

struct Outcome {
  std::string variant;                      // the configured variant name
  OutcomeKind kind = OutcomeKind::kPending;
  std::string result;                       // kReply: the result, JSON text
  std::string detail;                       // human words, e.g. "killed by SIGSEGV after 3 ms"
  // Optional: ComparableForm(result, policy.ignored), when the caller has it
  // already (a hot path need not parse the same reply again on every call).
  std::string comparable;
};

enum class PolicyKind {
  kMajority,   // a quorum of configured/2+1 equal replies commits
  kUnanimous,  // every reply equal, and at most one variant failed
  kPrimary,    // the primary's reply wins and dissent is recorded; majority if the primary failed
};

struct Policy {
  PolicyKind kind = PolicyKind::kMajority;
  // Number of variants configured: the base of the quorum, whatever their
  // health. REQUIRES: >= 1.
  std::size_t configured = 3;
  // kPrimary: the name of the variant whose reply wins.
  std::string primary;
  // JSON pointers (RFC 6901) removed from replies before comparing, e.g.
  // "/message" for human-readable text. A pointer that names nothing in a
  // reply is ignored for that reply.
  std::vector<std::string> ignored;

  // The default policy for `configured` variants: unanimous for one or two,
  // majority for three or more; ignores "/message".
  static Policy DefaultFor(std::size_t configured);

  // Equal replies needed for a commit under this policy (kPrimary: the
  // quorum used when the primary has failed).
  std::size_t Quorum() const;
};

enum class VerdictKind {
  kPending,   // not decidable yet: wait for more outcomes
  kCommit,    // a quorum of equal replies
  kPoison,    // no quorum, and two or more variants crashed or hung on it
  kNoQuorum,  // no quorum, replies disagree (or too few): refuse, fail-safe
};

struct Verdict {
  VerdictKind kind = VerdictKind::kPending;
  std::string result;                   // kCommit: the committed reply, as its first agreeing variant sent it
  std::vector<std::string> agreeing;    // kCommit: replied the committed result
  std::vector<std::string> dissenting;  // replied something else (kCommit: divergent variants)
  std::vector<std::string> crashed;
  std::vector<std::string> hung;
  std::vector<std::string> faulty;      // protocol errors
  std::vector<std::string> pending;     // no outcome yet (a commit may come before everyone answered)
  std::vector<std::string> excluded;    // taken out for an earlier command's sake
  std::string reason;                   // why, in words

  // Variants whose outcome is a fault under this verdict: dissenters (after a
  // commit), crashed, hung and faulty ones.
  std::vector<std::string> Faulted() const;
};

// Decides a verdict. Deterministic; the order of `outcomes` never changes the
// verdict's kind, result or sets (lists are sorted by variant name). A
// decided verdict stays decided as pending outcomes arrive: a commit keeps
// its result, poison and no-quorum stay what they are.
// REQUIRES: variant names are distinct; outcomes.size() <= policy.configured.
Verdict Decide(std::span<const Outcome> outcomes, const Policy& policy);

// The form in which replies are compared: `result` parsed, the ignored
// pointers removed, re-encoded compactly with object members sorted. Text
// that is not JSON compares as itself.
std::string ComparableForm(std::string_view result, const std::vector<std::string>& ignored);

std::string_view ToString(VerdictKind kind);
std::string_view ToString(OutcomeKind kind);
std::string_view ToString(PolicyKind kind);

}  // namespace nvs::voter
