// Delta debugging over a command log (replay.h: Minimize): Zeller and
// Hildebrandt's ddmin, each trial a replay from the log's initial state
// that stops at its first failure.
#include <algorithm>
#include <chrono>

#include "nvs/replay/replay.h"

namespace nvs::replay {

std::string FailureSignature::Describe() const {
  std::string text = ToString(kind);
  text += " of";
  for (const auto& v : variants) text += " " + v;
  return text;
}

std::optional<FailureSignature> SignatureOf(const StepReport& step) {
  FailureSignature signature;
  signature.kind = step.kind;
  switch (step.kind) {
    case StepKind::kAgreement: return std::nullopt;
    case StepKind::kCrash: signature.variants = step.verdict.crashed; break;
    case StepKind::kHang: signature.variants = step.verdict.hung; break;
    case StepKind::kFault: signature.variants = step.verdict.faulty; break;
    case StepKind::kDivergence:
      signature.variants = step.verdict.dissenting;
      if (step.differs_from_recorded) signature.variants = {"(recorded result)"};
      break;
    case StepKind::kNoQuorum:
      for (const auto& o : step.outcomes) {
        if (o.kind == voter::OutcomeKind::kReply) signature.variants.push_back(o.variant);
      }
      break;
  }
  std::sort(signature.variants.begin(), signature.variants.end());
  return signature;
}

namespace {

bool Same(const FailureSignature& a, const FailureSignature& b) { return a.kind == b.kind && a.variants == b.variants; }

}  // namespace

Result<MinimizeResult> Minimize(Replayer& replayer, const CommandLog& log, const ProgressFn& on_progress) {
  const auto started = std::chrono::steady_clock::now();
  ReplayOptions& options = replayer.options();
  // The trials' options, put back however Minimize returns.
  struct Restore {
    ReplayOptions& options;
    ReplayOptions saved;
    ~Restore() { options = saved; }
  } restore{options, options};
  options.stop_at_first = true;
  options.from_seq = 0;
  options.to_seq = 0;
  options.speed = 0;
  MinimizeResult result;

  // Replays the commands at `indices`; true when it ends in `target`.
  const auto fails = [&](const std::vector<std::size_t>& indices, const FailureSignature* target,
                         std::optional<std::size_t>* first) -> Result<bool> {
    CommandLog trial;
    trial.initial_state = log.initial_state;
    for (std::size_t i : indices) trial.commands.push_back(log.commands[i]);
    std::optional<FailureSignature> got;
    std::size_t at = 0;
    auto run = replayer.Run(trial, [&](const StepReport& step) {
      if (!got) {
        got = SignatureOf(step);
        at = step.index;
      }
    });
    ++result.trials;
    if (on_progress) on_progress(result.trials, 0);
    if (!run.ok()) return run.status();
    if (!got) return false;
    if (first != nullptr) *first = indices[at];
    if (target == nullptr) {
      result.failure = *got;
      return true;
    }
    return Same(*got, *target);
  };

  std::vector<std::size_t> all(log.commands.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::optional<std::size_t> first;
  auto whole = fails(all, nullptr, &first);
  if (!whole.ok()) return whole.status();
  if (!whole.value()) return Status::Error("the log replays without a failure: nothing to minimise");
  std::vector<std::size_t> current(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(*first + 1));
  std::size_t n = 2;
  while (current.size() >= 2) {
    const std::size_t chunk = (current.size() + n - 1) / n;
    bool reduced = false;
    // Complements first: they keep most of the context, so they fail most often.
    for (std::size_t start = 0; start < current.size() && !reduced; start += chunk) {
      std::vector<std::size_t> complement(current.begin(), current.begin() + static_cast<std::ptrdiff_t>(start));
      complement.insert(complement.end(),
                        current.begin() + static_cast<std::ptrdiff_t>(std::min(current.size(), start + chunk)),
                        current.end());
      if (complement.empty()) continue;
      auto r = fails(complement, &result.failure, nullptr);
      if (!r.ok()) return r.status();
      if (r.value()) {
        current = std::move(complement);
        n = std::max<std::size_t>(n - 1, 2);
        reduced = true;
      }
    }
    for (std::size_t start = 0; start < current.size() && !reduced && n > 2; start += chunk) {
      std::vector<std::size_t> subset(current.begin() + static_cast<std::ptrdiff_t>(start),
                                      current.begin() + static_cast<std::ptrdiff_t>(std::min(current.size(), start + chunk)));
      auto r = fails(subset, &result.failure, nullptr);
      if (!r.ok()) return r.status();
      if (r.value()) {
        current = std::move(subset);
        n = 2;
        reduced = true;
      }
    }
    if (reduced) continue;
    if (n >= current.size()) break;
    n = std::min(n * 2, current.size());
  }
  result.kept = std::move(current);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return result;
}

}  // namespace nvs::replay
