#include "nvs/voter/voter.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

namespace nvs::voter {
namespace {

using nlohmann::json;

void Sort(std::vector<std::string>& names) { std::sort(names.begin(), names.end()); }

std::string Join(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Replies grouped by comparable form; each group's names sorted, groups in
// order of their comparable form (so the grouping is order-independent).
struct Groups {
  struct Group {
    std::string result;  // as sent by the group's first variant by name
    std::vector<std::string> variants;
  };
  std::map<std::string, Group> by_form;

  const Group* Largest() const {
    const Group* best = nullptr;
    for (const auto& [form, group] : by_form) {
      if (best == nullptr || group.variants.size() > best->variants.size()) best = &group;
    }
    return best;
  }
  std::size_t LargestSize() const { return by_form.empty() ? 0 : Largest()->variants.size(); }
};

}  // namespace

Policy Policy::DefaultFor(std::size_t configured) {
  Policy policy;
  policy.kind = configured <= 2 ? PolicyKind::kUnanimous : PolicyKind::kMajority;
  policy.configured = configured;
  policy.ignored = {"/message"};
  return policy;
}

std::size_t Policy::Quorum() const {
  if (kind == PolicyKind::kUnanimous) return std::max<std::size_t>(1, configured - 1);
  return configured / 2 + 1;
}

std::vector<std::string> Verdict::Faulted() const {
  std::vector<std::string> all;
  if (kind == VerdictKind::kCommit) all = dissenting;
  all.insert(all.end(), crashed.begin(), crashed.end());
  all.insert(all.end(), hung.begin(), hung.end());
  all.insert(all.end(), faulty.begin(), faulty.end());
  Sort(all);
  return all;
}

std::string ComparableForm(std::string_view result, const std::vector<std::string>& ignored) {
  json value = json::parse(result.begin(), result.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::string(result);
  for (const auto& text : ignored) {
    try {
      const json::json_pointer pointer(text);
      if (pointer.empty() || !value.contains(pointer)) continue;
      json& parent = value.at(pointer.parent_pointer());
      if (parent.is_object()) {
        parent.erase(pointer.back());
      } else if (parent.is_array()) {
        parent.erase(static_cast<std::size_t>(std::stoul(pointer.back())));
      }
    } catch (const std::exception&) {
      // A pointer that does not apply to this reply leaves it as it is.
    }
  }
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Verdict Decide(std::span<const Outcome> outcomes, const Policy& policy) {
  Verdict verdict;
  Groups groups;
  std::map<std::string, std::string> form_of;  // variant -> comparable form
  std::vector<const Outcome*> sorted;
  for (const auto& outcome : outcomes) sorted.push_back(&outcome);
  std::sort(sorted.begin(), sorted.end(), [](const Outcome* a, const Outcome* b) { return a->variant < b->variant; });

  for (const Outcome* outcome : sorted) {
    switch (outcome->kind) {
      case OutcomeKind::kPending:
        verdict.pending.push_back(outcome->variant);
        break;
      case OutcomeKind::kCrashed:
        verdict.crashed.push_back(outcome->variant);
        break;
      case OutcomeKind::kHung:
        verdict.hung.push_back(outcome->variant);
        break;
      case OutcomeKind::kProtocolError:
        verdict.faulty.push_back(outcome->variant);
        break;
      case OutcomeKind::kExcluded:
        verdict.excluded.push_back(outcome->variant);
        break;
      case OutcomeKind::kReply: {
        std::string form =
            outcome->comparable.empty() ? ComparableForm(outcome->result, policy.ignored) : outcome->comparable;
        auto& group = groups.by_form[form];
        if (group.variants.empty()) group.result = outcome->result;
        group.variants.push_back(outcome->variant);
        form_of[outcome->variant] = std::move(form);
        break;
      }
    }
  }
  // Variants configured but not listed have not answered yet.
  const std::size_t missing = policy.configured > outcomes.size() ? policy.configured - outcomes.size() : 0;
  const std::size_t pending = verdict.pending.size() + missing;
  const std::size_t dead = verdict.crashed.size() + verdict.hung.size();
  const std::size_t quorum = policy.Quorum();

  const auto commit = [&](const Groups::Group& group, std::string why) {
    verdict.kind = VerdictKind::kCommit;
    verdict.result = group.result;
    verdict.agreeing = group.variants;
    const std::string& winner = form_of[group.variants.front()];
    for (const auto& [variant, form] : form_of) {
      if (form != winner) verdict.dissenting.push_back(variant);
    }
    verdict.reason = std::move(why);
    return verdict;
  };

  // Primary: its reply wins as soon as it is in.
  if (policy.kind == PolicyKind::kPrimary) {
    if (auto it = form_of.find(policy.primary); it != form_of.end()) {
      return commit(groups.by_form.at(it->second), "the primary " + policy.primary + " answered; its reply wins");
    }
  }

  const Groups::Group* largest = groups.Largest();
  const std::size_t best = groups.LargestSize();
  const bool unanimous = policy.kind == PolicyKind::kUnanimous;
  const bool primary_waiting = policy.kind == PolicyKind::kPrimary &&
                               std::find(verdict.pending.begin(), verdict.pending.end(), policy.primary) !=
                                   verdict.pending.end();

  if (unanimous) {
    if (pending == 0 && groups.by_form.size() == 1 && best >= quorum) {
      return commit(*largest, "all " + std::to_string(best) + " replies agree");
    }
  } else if (best >= quorum && !primary_waiting) {
    return commit(*largest, std::to_string(best) + " of " + std::to_string(policy.configured) +
                                " variants agree (quorum " + std::to_string(quorum) + ")");
  }

  // Could a commit still come?
  bool commit_possible;
  if (unanimous) {
    commit_possible = groups.by_form.size() <= 1 && best + pending >= quorum;
  } else {
    commit_possible = best + pending >= quorum || primary_waiting;
  }
  if (commit_possible) {
    verdict.kind = VerdictKind::kPending;
    verdict.reason = "waiting for " + Join(verdict.pending) + (missing > 0 ? " and unlisted variants" : "");
    return verdict;
  }

  std::vector<std::string> replied;
  for (const auto& [variant, form] : form_of) replied.push_back(variant);
  if (dead >= 2) {
    verdict.kind = VerdictKind::kPoison;
    std::vector<std::string> deaths = verdict.crashed;
    deaths.insert(deaths.end(), verdict.hung.begin(), verdict.hung.end());
    Sort(deaths);
    verdict.reason = std::to_string(dead) + " variants died on it (" + Join(deaths) + ") and no quorum of " +
                     std::to_string(quorum) + " equal replies formed";
    verdict.dissenting = replied;
    return verdict;
  }
  if (dead + pending >= 2) {
    verdict.kind = VerdictKind::kPending;
    verdict.reason = "no quorum possible; waiting for " + Join(verdict.pending) + " to tell poison from no-quorum";
    return verdict;
  }
  verdict.kind = VerdictKind::kNoQuorum;
  verdict.dissenting = replied;
  if (groups.by_form.size() > 1) {
    verdict.reason = "replies disagree: " + std::to_string(groups.by_form.size()) + " different replies, largest " +
                     std::to_string(best) + (unanimous ? " (unanimity required)" : ", quorum " + std::to_string(quorum));
  } else {
    verdict.reason = "only " + std::to_string(best) + " equal replies, quorum " + std::to_string(quorum);
  }
  return verdict;
}

std::string_view ToString(VerdictKind kind) {
  switch (kind) {
    case VerdictKind::kPending: return "PENDING";
    case VerdictKind::kCommit: return "COMMIT";
    case VerdictKind::kPoison: return "POISON";
    case VerdictKind::kNoQuorum: return "NO_QUORUM";
  }
  return "?";
}

std::string_view ToString(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::kPending: return "pending";
    case OutcomeKind::kReply: return "reply";
    case OutcomeKind::kCrashed: return "crashed";
    case OutcomeKind::kHung: return "hung";
    case OutcomeKind::kProtocolError: return "protocol_error";
    case OutcomeKind::kExcluded: return "excluded";
  }
  return "?";
}

std::string_view ToString(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kMajority: return "majority";
    case PolicyKind::kUnanimous: return "unanimous";
    case PolicyKind::kPrimary: return "primary";
  }
  return "?";
}

}  // namespace nvs::voter
