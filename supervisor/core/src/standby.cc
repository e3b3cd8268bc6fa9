#include "nvs/core/standby.h"

namespace nvs::supervisor {

ActiveChoice ChooseActive(const std::string& current, const std::vector<StandbyMember>& members) {
  for (const auto& m : members) {
    if (m.name != current) continue;
    if (m.votes) return {ActiveChoice::Kind::kKeep, m.name};
    if (m.exiting) return {ActiveChoice::Kind::kWait, ""};
  }
  for (const auto& m : members) {
    if (m.votes) return {ActiveChoice::Kind::kPromote, m.name};
  }
  return {ActiveChoice::Kind::kNone, ""};
}

}  // namespace nvs::supervisor
