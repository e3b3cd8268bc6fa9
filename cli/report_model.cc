#include "report_model.h"

#include <algorithm>
#include <map>

namespace nvs::cli {
namespace {

using nlohmann::json;

double Number(const json& object, const char* key, double fallback = 0) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string Text(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

json Event(const std::string& lane, double t_ms, const std::string& kind, const std::string& label,
           const std::string& detail = "") {
  json e = {{"lane", lane}, {"t_ms", t_ms}, {"kind", kind}, {"label", label}};
  if (!detail.empty()) e["detail"] = detail;
  return e;
}

std::string Headline(const json& report) {
  std::vector<std::string> died;
  for (const auto& o : report.value("outcomes", json::array())) {
    const std::string outcome = Text(o, "outcome");
    if (outcome == "crashed" || outcome == "hung" || outcome == "protocol_error") {
      died.push_back(Text(o, "variant") + " (" + ShortHow(Text(o, "detail")) + ")");
    }
  }
  std::string who;
  for (std::size_t i = 0; i < died.size(); ++i) who += (i == 0 ? "" : i + 1 == died.size() ? " and " : ", ") + died[i];
  const std::string status = Text(report, "status");
  if (Text(report, "verdict") == "NO_QUORUM") return "No quorum at seq " + Text(report, "seq") + ": refused and rolled back";
  return (who.empty() ? "Quarantined" : "Killed " + who) + ": " + status;
}

}  // namespace

std::string ShortHow(const std::string& detail) {
  std::string how = detail;
  for (const std::string prefix : {"killed by ", "exited with "}) {
    if (how.rfind(prefix, 0) == 0) how = how.substr(prefix.size());
  }
  if (auto cut = how.find(" ("); cut != std::string::npos) how = how.substr(0, cut);
  return how;
}

json QuarantineIncident(const json& report, const std::string& reproduce) {
  const std::string seq = "seq " + Text(report, "seq");
  json lanes = json::array();
  json events = json::array();
  double end = 1;
  for (const auto& o : report.value("outcomes", json::array())) {
    const std::string variant = Text(o, "variant");
    const std::string outcome = Text(o, "outcome");
    lanes.push_back(variant);
    if (outcome == "excluded") continue;
    events.push_back(Event(variant, 0, "command", seq, "sent"));
    const double at = Number(o, "after_ms");
    end = std::max(end, at);
    if (outcome == "reply") {
      events.push_back(Event(variant, at, "reply", "reply", Text(o, "result")));
    } else if (outcome == "crashed") {
      events.push_back(Event(variant, at, "crash", ShortHow(Text(o, "detail")), Text(o, "detail")));
    } else if (outcome == "hung") {
      json bar = Event(variant, 0, "hang", "no reply", Text(o, "detail"));
      bar["t_end_ms"] = at;
      events.push_back(bar);
    } else {
      events.push_back(Event(variant, at, "fault", outcome, Text(o, "detail")));
    }
  }
  if (report.contains("probe") && report["probe"].is_object()) {
    const json& probe = report["probe"];
    double start = 0;
    for (const auto& o : report.value("outcomes", json::array())) start = std::max(start, Number(o, "after_ms"));
    const double done = start + Number(probe, "after_ms");
    const std::string outcome = Text(probe, "outcome");
    lanes.push_back("probe");
    events.push_back(Event("probe", start, "probe", "probe of " + Text(probe, "variant"), "restored to the state before"));
    events.push_back(Event("probe", done, outcome == "survived" ? "commit" : outcome == "crashed" ? "crash"
                                          : outcome == "hung"        ? "hang"
                                                                     : "fault",
                           outcome, Text(probe, "detail")));
    end = std::max(end, done);
  }
  const double decided = Number(report, "decided_ms", end);
  lanes.push_back("nvsd");
  events.push_back(Event("nvsd", decided, Text(report, "verdict") == "POISON" ? "quarantine" : "verdict",
                         Text(report, "id"), Text(report, "reason")));
  end = std::max(end, decided);

  json outcomes = json::array();
  for (const auto& o : report.value("outcomes", json::array())) {
    json entry = {{"variant", Text(o, "variant")}, {"outcome", Text(o, "outcome")}, {"detail", Text(o, "detail")}};
    if (o.contains("result")) entry["result"] = o["result"];
    if (o.contains("exit") && o["exit"].is_object()) entry["exit"] = Text(o["exit"], "description");
    if (o.contains("stderr_tail")) entry["stderr_tail"] = Text(o, "stderr_tail");
    outcomes.push_back(entry);
  }
  if (report.contains("probe") && report["probe"].is_object()) {
    const json& probe = report["probe"];
    json entry = {{"variant", "probe (" + Text(probe, "variant") + ")"},
                  {"outcome", Text(probe, "outcome")},
                  {"detail", Text(probe, "detail")}};
    if (probe.contains("stderr_tail")) entry["stderr_tail"] = Text(probe, "stderr_tail");
    outcomes.push_back(entry);
  }
  return {{"id", Text(report, "id")},
          {"headline", Headline(report)},
          {"status", Text(report, "status")},
          {"seq", report.value("seq", json())},
          {"time", Text(report, "time")},
          {"command", report.value("command", json())},
          {"fingerprint", Text(report, "fingerprint")},
          {"verdict", Text(report, "verdict")},
          {"reason", Text(report, "reason")},
          {"reproduce", reproduce},
          {"outcomes", outcomes},
          {"review", report.value("review", json::array())},
          {"timeline", {{"lanes", lanes}, {"start_ms", 0}, {"end_ms", end * 1.1 + 0.5}, {"events", events}}}};
}

json QuarantineModel(const std::vector<json>& incidents, const std::string& generated) {
  int blocked = 0, released = 0, rejected = 0, no_quorum = 0;
  for (const auto& i : incidents) {
    const std::string status = Text(i, "status");
    blocked += status == "blocked";
    released += status == "released";
    rejected += status == "rejected";
    no_quorum += status == "no_quorum";
  }
  return {{"title", "nvs quarantine report"},
          {"generated", generated},
          {"kind", "quarantine"},
          {"summary", json::array({{{"label", "Reports"}, {"value", incidents.size()}},
                                   {{"label", "Blocked"}, {"value", blocked}},
                                   {{"label", "Rejected (blocked for good)"}, {"value", rejected}},
                                   {{"label", "Released"}, {"value", released}},
                                   {{"label", "No quorum (recorded)"}, {"value", no_quorum}}})},
          {"incidents", incidents}};
}

namespace {

// "router-a", "router-a and router-b", "router-a, router-b and router-c".
std::string Listed(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  return out;
}

// A variant that answered otherwise than the others. Not one that answered
// where the others crashed (a poison): the voter lists it as dissenting,
// and the report said "divergence of router-c" of the one that survived.
bool Dissents(const replay::StepReport& step, const std::string& variant) {
  if (step.verdict.kind == voter::VerdictKind::kPoison) return false;
  const auto& d = step.verdict.dissenting;
  return std::find(d.begin(), d.end(), variant) != d.end();
}

// What happened to each variant on one command: "crash of router-a and
// router-b; router-c answered" (a tester read "crash of router-a, router-b,
// router-c" when router-c had answered).
std::string StepHeadline(const replay::StepReport& step, const std::string& what) {
  std::vector<std::string> parts;
  const auto add = [&](const char* how, const std::vector<std::string>& who) {
    if (!who.empty()) parts.push_back(std::string(how) + " of " + Listed(who));
  };
  add("crash", step.verdict.crashed);
  add("hang", step.verdict.hung);
  add("protocol fault", step.verdict.faulty);
  std::vector<std::string> diverged, answered;
  for (const auto& o : step.outcomes) {
    if (o.kind != voter::OutcomeKind::kReply) continue;
    (Dissents(step, o.variant) ? diverged : answered).push_back(o.variant);
  }
  add("divergence", diverged);
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
  if (out.empty()) out = what;
  if (!answered.empty()) out += "; " + Listed(answered) + (answered.size() == 1 ? " answered" : " agreed");
  return out;
}

std::string Plural(const std::string& word, int n) {
  if (n == 1) return word;
  return word.back() == 'h' || word.back() == 's' ? word + "es" : word + "s";  // crashes, divergences, hangs
}

}  // namespace

json ReplayModel(const std::string& input, const std::vector<std::string>& variants,
                 const replay::ReplaySummary& summary, const std::vector<replay::StepReport>& failures,
                 const replay::CommandLog& log, const std::string& reproduce_base, std::size_t limit,
                 const std::string& generated) {
  json lanes = json::array();
  for (const auto& v : variants) lanes.push_back(v);
  json events = json::array();
  json incidents = json::array();
  for (const auto& step : failures) {
    const std::string seq = "seq " + std::to_string(step.seq);
    for (const auto& o : step.outcomes) {
      const bool dissent = Dissents(step, o.variant);
      std::string kind;
      if (o.kind == voter::OutcomeKind::kCrashed) kind = "crash";
      if (o.kind == voter::OutcomeKind::kHung) kind = "hang";
      if (o.kind == voter::OutcomeKind::kProtocolError) kind = "fault";
      if (dissent) kind = "divergence";
      if (!kind.empty()) events.push_back(Event(o.variant, step.at_ms, kind, seq, o.detail));
    }
    if (incidents.size() >= limit + 1) continue;
    json outcomes = json::array();
    for (const auto& o : step.outcomes) {
      json entry = {{"variant", o.variant}, {"outcome", std::string(voter::ToString(o.kind))}, {"detail", o.detail}};
      if (o.kind == voter::OutcomeKind::kReply) entry["result"] = json::parse(o.result, nullptr, false);
      outcomes.push_back(entry);
    }
    const std::string what = replay::ToString(step.kind);
    // The command's own timeline: what each variant did with it.
    json step_events = json::array();
    for (const auto& o : step.outcomes) {
      std::string kind = "reply";
      if (o.kind == voter::OutcomeKind::kCrashed) kind = "crash";
      if (o.kind == voter::OutcomeKind::kHung) kind = "hang";
      if (o.kind == voter::OutcomeKind::kProtocolError) kind = "fault";
      if (o.kind == voter::OutcomeKind::kExcluded) continue;
      if (Dissents(step, o.variant)) kind = "divergence";
      step_events.push_back(Event(o.variant, step.at_ms, kind, kind == "reply" ? "reply" : seq, o.detail));
    }
    json facts = json::array({{{"label", "Verdict"}, {"value", std::string(voter::ToString(step.verdict.kind))}},
                              {{"label", "Sequence"}, {"value", step.seq}},
                              {{"label", "Recorded by nvsd"},
                               {"value", step.recorded_verdict.empty() ? "no verdict recorded" : step.recorded_verdict}},
                              {{"label", "Into the replay"},
                               {"value", std::to_string(static_cast<long>(step.at_ms)) + " ms"}}});
    incidents.push_back({{"id", "seq-" + std::to_string(step.seq)},
                         {"headline", seq + ": " + StepHeadline(step, what)},
                         {"status", what},
                         {"facts", facts},
                         {"timeline", {{"lanes", lanes},
                                       {"start_ms", std::max(0.0, step.at_ms - 1)},
                                       {"end_ms", step.at_ms + 1},
                                       {"events", step_events}}},
                         {"seq", step.seq},
                         {"command", json::parse(log.commands[step.index].cmd, nullptr, false)},
                         {"verdict", std::string(voter::ToString(step.verdict.kind))},
                         {"reason", step.verdict.reason + (step.recorded_verdict.empty()
                                                               ? ""
                                                               : "; nvsd recorded " + step.recorded_verdict)},
                         {"reproduce", reproduce_base + " --from " + std::to_string(step.seq) + " --to " +
                                           std::to_string(step.seq)},
                         {"outcomes", outcomes}});
  }
  for (const auto& r : summary.restart_log) {
    events.push_back(Event(r.variant, r.at_ms, "restart", r.why,
                           r.why == "rerun" ? "a fresh process runs the batch again, to find which command the crash "
                                              "was on"
                                            : "started again"));
  }
  const double end = std::max(1.0, summary.seconds * 1000.0);
  // Per variant, over the whole run: how often it failed, and how.
  json per_variant = json::array();
  for (const auto& v : variants) {
    std::map<std::string, int> counts;
    for (const auto& step : failures) {
      for (const auto& o : step.outcomes) {
        if (o.variant != v) continue;
        const bool dissent = Dissents(step, v);
        if (dissent) ++counts["divergence"];
        if (o.kind == voter::OutcomeKind::kCrashed) ++counts["crash"];
        if (o.kind == voter::OutcomeKind::kHung) ++counts["hang"];
        if (o.kind == voter::OutcomeKind::kProtocolError) ++counts["fault"];
      }
    }
    int total = 0;
    std::string detail;
    for (const auto& [what, n] : counts) {
      total += n;
      detail += (detail.empty() ? "" : ", ") + std::to_string(n) + " " + Plural(what, n);
    }
    per_variant.push_back({{"variant", v},
                           {"outcome", total == 0 ? "agreed throughout" : "failed " + std::to_string(total) + "x"},
                           {"detail", total == 0 ? "no crash, hang or divergence" : detail}});
  }
  const double rate = summary.seconds > 0 ? static_cast<double>(summary.commands) / summary.seconds : 0;
  // A replay of an incident that fails as nvsd recorded it did what it was
  // for: "reproduced" (a tester's replay of a recorded quarantine said
  // "failed", in red).
  const std::string status = summary.reproduced() ? "reproduced" : summary.failed() ? "failed" : "agreement";
  std::string headline = summary.reproduced() ? "The replay reproduced the recording"
                         : summary.failed()   ? "The replay found failures"
                                              : "Every command agreed";
  headline += ": " + std::to_string(summary.commands) + " commands";
  std::string against = "no verdicts recorded (a plain command log)";
  if (summary.recorded_compared > 0) {
    against = std::to_string(summary.recorded_compared - summary.recorded_differ) + " of " +
              std::to_string(summary.recorded_compared) + " verdicts as nvsd recorded them";
    if (summary.failures_unrecorded > 0) {
      against += "; " + std::to_string(summary.failures_unrecorded) + " " +
                 Plural("failure", static_cast<int>(summary.failures_unrecorded)) + " with no verdict recorded";
    }
  }
  json facts = json::array({{{"label", "Source"}, {"value", input}},
                            {{"label", "Variants"}, {"value", Listed(variants)}},
                            {{"label", "Commands"}, {"value", summary.commands}},
                            {{"label", "Rate"}, {"value", std::to_string(static_cast<long>(rate)) + " commands/s"}},
                            {{"label", "Against the recording"}, {"value", against}}});
  json overview = {{"id", "replay"},
                   {"headline", headline},
                   {"status", status},
                   {"facts", facts},
                   {"reason", "replay of " + input + " against fresh " + std::to_string(variants.size()) +
                                  " variants with the same voter"},
                   {"reproduce", reproduce_base},
                   {"outcomes", per_variant},
                   {"timeline", {{"lanes", lanes}, {"start_ms", 0}, {"end_ms", end}, {"events", events}}}};
  incidents.insert(incidents.begin(), overview);
  return {{"title", "nvs replay report"},
          {"generated", generated},
          {"kind", "replay"},
          {"summary", json::array({{{"label", "Commands"}, {"value", summary.commands}},
                                   {{"label", "Agreed"}, {"value", summary.agreements}},
                                   {{"label", "Divergences"}, {"value", summary.divergences}},
                                   {{"label", "Crashes"}, {"value", summary.crashes}},
                                   {{"label", "Hangs"}, {"value", summary.hangs}},
                                   {{"label", "Protocol faults"}, {"value", summary.faults}},
                                   {{"label", "Without quorum"}, {"value", summary.no_quorum}},
                                   {{"label", "Variant restarts"}, {"value", summary.restarts}},
                                   {{"label", "Commands per second"}, {"value", static_cast<long>(rate)}}})},
          {"incidents", incidents}};
}

}  // namespace nvs::cli
