#include "nvs/core/blame.h"

namespace nvs::supervisor {

std::vector<Attribution> AttributeBlame(const std::vector<OutstandingRequest>& outstanding,
                                        std::optional<voter::OutcomeKind> blame, const std::string& detail) {
  std::vector<Attribution> out;
  const bool head_is_vote = !outstanding.empty() && outstanding.front().vote && outstanding.front().sent &&
                            outstanding.front().delivered;
  for (std::size_t i = 0; i < outstanding.size(); ++i) {
    const OutstandingRequest& r = outstanding[i];
    if (!r.vote || !r.pending) continue;
    const bool head = i == 0;
    Attribution a;
    a.index = i;
    if (!r.sent) {
      a.detail = "not delivered: held behind an unanswered request (" + detail + ")";
    } else if (!r.delivered) {
      a.detail = "not delivered: its process had already exited (" + detail + ")";
    } else {
      a.blamed = blame && head_is_vote && (head || (*blame == voter::OutcomeKind::kCrashed && !r.decided));
      if (a.blamed) {
        a.kind = *blame;
        a.queued = !head;
        a.detail = detail + (head ? "" : " (with it queued)");
      } else {
        a.detail = "taken out for an earlier command: " + detail;
      }
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace nvs::supervisor
