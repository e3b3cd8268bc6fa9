#include "nvs/report/html_report.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

namespace nvs::report {
namespace {

using nlohmann::json;

std::size_t Count(const std::string& haystack, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

// Independent of the renderer's decoder on purpose: a strict check by ranges.
bool ValidUtf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80                 ? 1
                    : c >= 0xC2 && c <= 0xDF ? 2
                    : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4
                                             : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    const auto c1 = static_cast<unsigned char>(s[i + (n > 1 ? 1 : 0)]);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) {
      return false;
    }
    i += n;
  }
  return true;
}

json Event(const char* lane, double t, const char* kind, const char* label, const char* detail = nullptr) {
  json event = {{"lane", lane}, {"t_ms", t}, {"kind", kind}, {"label", label}};
  if (detail != nullptr) event["detail"] = detail;
  return event;
}

// The quarantine of the README's story: seq 42 killed two of three variants.
json QuarantineIncident() {
  json events = json::array({
      Event("router-a", 12.5, "command", "seq 42", "apply sent"),
      Event("router-b", 12.6, "command", "seq 42", "apply sent"),
      Event("router-c", 12.8, "command", "seq 42", "apply sent"),
      Event("router-a", 13.0, "crash", "SIGSEGV", "killed by SIGSEGV"),
      Event("router-b", 14.2, "crash", "SIGSEGV", "killed by SIGSEGV"),
      Event("router-c", 15.1, "reply", "ok", "replied {\"ok\":true}"),
      Event("router-c", 16.0, "quarantine", "q-42", "fingerprint 1a2b3c4d5e6f7a8b quarantined"),
      Event("probe", 40.0, "probe", "probe copy", "seq 42 tried on a disposable copy of router-c"),
      Event("probe", 52.0, "crash", "probe died", "the copy was killed by SIGSEGV"),
      Event("router-a", 120.0, "restart", "incarnation 2", "restarted and resynced"),
      Event("router-b", 135.0, "restart", "incarnation 2", "restarted and resynced"),
      Event("router-c", 200.0, "command", "seq 43"),
      Event("router-a", 760.0, "commit", "seq 43"),
      Event("router-b", 1100.0, "divergence", "digest differs", "state digest 9f.. vs 3c.."),
  });
  json hang = Event("router-c", 216.0, "hang", "no reply", "no reply to seq 43 within 1000 ms");
  hang["t_end_ms"] = 1216.0;
  events.push_back(hang);
  return {
      {"id", "q-000000000042-1a2b3c4d"},
      {"headline", "Killed router-a and router-b (SIGSEGV): quarantined"},
      {"status", "blocked"},
      {"seq", 42},
      {"time", "2026-11-26T13:59:58.123Z"},
      {"command",
       {{"op", "label"},
        {"client", "panel-1"},
        {"kind", "input"},
        {"labels", json::array({{{"index", 0}, {"text", "X"}}})}}},
      {"fingerprint", "1a2b3c4d5e6f7a8b"},
      {"verdict", "POISON"},
      {"reason",
       "The command killed router-a and router-b, two independently written implementations: it is quarantined and "
       "will be refused until an operator releases it."},
      {"reproduce", "nvs replay /var/lib/nvs/quarantine/q-000000000042-1a2b3c4d.json --config /etc/nvs/nvsd.json"},
      {"outcomes", json::array({
                       {{"variant", "router-a"},
                        {"outcome", "crashed"},
                        {"detail", "killed by SIGSEGV"},
                        {"result", nullptr},
                        {"exit", "killed by SIGSEGV"},
                        {"stderr_tail",
                         "router-a: applying label 0\nrouter-a: labels[0].text length 1\n"
                         "AddressSanitizer: SEGV on unknown address 0x000000000010\n    #0 0x55d3 in "
                         "LabelTable::Set(int, std::string const&) router_a/labels.cc:88\n    #1 0x55d4 in "
                         "Apply(Command const&) router_a/apply.cc:142"}},
                       {{"variant", "router-b"},
                        {"outcome", "crashed"},
                        {"detail", "killed by SIGSEGV"},
                        {"result", nullptr},
                        {"exit", "signal 11 (core dumped)"},
                        {"stderr_tail", "router-b: label input 0\nSegmentation fault"}},
                       {{"variant", "router-c"},
                        {"outcome", "reply"},
                        {"detail", "replied in 2.3 ms"},
                        {"result", {{"ok", true}, {"changed", json::array()}}}},
                   })},
      {"review", json::array({
                     {{"time", "2026-11-26T13:59:58.200Z"},
                      {"action", "quarantined"},
                      {"by", "nvsd"},
                      {"note", "2 of 3 variants crashed on the command"}},
                     {{"time", "2026-11-26T14:20:11Z"},
                      {"action", "reviewed"},
                      {"by", "ops-oncall"},
                      {"note", "Reproduced with nvs replay; keeping it blocked until the label fix ships."}},
                 })},
      {"timeline",
       {{"lanes", json::array({"router-a", "router-b", "router-c", "probe"})},
        {"start_ms", 0},
        {"end_ms", 1234.5},
        {"events", events}}},
  };
}

// A replay that diverged: 200 events on three lanes.
json ReplayIncident() {
  const char* const lanes[] = {"router-a", "router-b", "router-c"};
  json events = json::array();
  for (int i = 0; i < 66; ++i) {
    for (int lane = 0; lane < 3; ++lane) {
      const double t = i * 15.0 + lane * 0.7;
      const std::string label = "seq " + std::to_string(100 + i);
      events.push_back(Event(lanes[lane], t, i % 2 == 0 ? "command" : "commit", label.c_str()));
    }
  }
  events.push_back(Event("router-b", 47 * 15.0 + 3, "divergence", "seq 147", "router-b's reply differs"));
  events.push_back(Event("router-b", 48 * 15.0 + 3, "restart", "resync", "restarted from router-a's snapshot"));
  return {
      {"id", "replay-2026-11-26-seq147"},
      {"headline", "Replay diverged at seq 147: router-b disagrees"},
      {"status", "divergence"},
      {"seq", 147},
      {"time", "2026-11-26T13:40:00Z"},
      {"command", {{"op", "route"}, {"client", "panel-2"}, {"routes", json::array({{{"output", 7}, {"input", 3}}})}}},
      {"fingerprint", "77aa0b1c2d3e4f50"},
      {"verdict", "COMMIT (dissent: router-b)"},
      {"reason", "router-a and router-c agree; router-b answered a different change set."},
      {"reproduce", "nvs replay --journal /var/lib/nvs/journal --from 100 --to 165 --config /etc/nvs/nvsd.json"},
      {"outcomes", json::array({
                       {{"variant", "router-a"},
                        {"outcome", "reply"},
                        {"detail", "1.1 ms"},
                        {"result", {{"ok", true}, {"changed", json::array({{{"output", 7}, {"input", 3}}})}}}},
                       {{"variant", "router-b"},
                        {"outcome", "reply"},
                        {"detail", "1.4 ms, dissenting"},
                        {"result", {{"ok", true}, {"changed", json::array({{{"output", 7}, {"input", 4}}})}}},
                        {"stderr_tail", "router-b: route 7 <- 3\nrouter-b: warning: input index off by one?"}},
                       {{"variant", "router-c"},
                        {"outcome", "reply"},
                        {"detail", "3.0 ms"},
                        {"result", {{"ok", true}, {"changed", json::array({{{"output", 7}, {"input", 3}}})}}}},
                   })},
      {"review", json::array({{{"time", "2026-11-26T13:41:00Z"}, {"action", "replayed"}, {"by", "ops-oncall"}}})},
      {"timeline", {{"lanes", json::array({"router-a", "router-b", "router-c"})}, {"events", events}}},
  };
}

json RichModel() {
  return {
      {"title", "nvs quarantine report"},
      {"generated", "2026-11-26T14:00:00Z"},
      {"kind", "quarantine"},
      {"summary", json::array({
                      {{"label", "Quarantined commands"}, {"value", 2}},
                      {{"label", "Variants"}, {"value", "router-a, router-b, router-c"}},
                      {{"label", "Blocked fingerprints"}, {"value", json::array({"1a2b3c4d5e6f7a8b"})}},
                  })},
      {"incidents", json::array({QuarantineIncident(), ReplayIncident()})},
  };
}

TEST(HtmlReport, RendersEveryHookForARichModel) {
  const std::string html = RenderHtml(RichModel());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("<title>nvs quarantine report</title>"), std::string::npos);
  EXPECT_NE(html.find("<h1>nvs quarantine report</h1>"), std::string::npos);
  EXPECT_NE(html.find("<dl class=\"summary\">"), std::string::npos);
  EXPECT_NE(html.find("<section class=\"incident\" id=\"incident-q-000000000042-1a2b3c4d\">"), std::string::npos);
  EXPECT_NE(html.find("<section class=\"incident\" id=\"incident-replay-2026-11-26-seq147\">"), std::string::npos);
  EXPECT_EQ(Count(html, "<svg class=\"timeline\""), 2u);
  EXPECT_EQ(Count(html, "<g class=\"lane\" data-lane="), 7u);
  EXPECT_EQ(Count(html, "<g class=\"lane\" data-lane=\"probe\">"), 1u);
  EXPECT_EQ(Count(html, "class=\"event "), 15u + 200u);
  EXPECT_EQ(Count(html, "class=\"event hang\""), 1u);
  EXPECT_EQ(Count(html, "class=\"event crash\""), 3u);
  EXPECT_EQ(Count(html, "class=\"event reply\""), 1u);
  // Every mark carries its tooltip.
  const std::regex mark("class=\"event [a-z0-9_-]+\"[^>]*><title>[^<]+</title>");
  EXPECT_EQ(static_cast<std::size_t>(
                std::distance(std::sregex_iterator(html.begin(), html.end(), mark), std::sregex_iterator())),
            215u);
  EXPECT_EQ(Count(html, "<table class=\"outcomes\">"), 2u);
  EXPECT_EQ(Count(html, "<tr class=\"outcome\">"), 6u);
  EXPECT_EQ(Count(html, "<pre class=\"stderr\">"), 3u);
  EXPECT_EQ(Count(html, "<pre class=\"command\">"), 2u);
  EXPECT_NE(html.find("<pre class=\"reproduce\">\nnvs replay /var/lib/nvs/quarantine/q-000000000042-1a2b3c4d.json "
                      "--config /etc/nvs/nvsd.json</pre>"),
            std::string::npos);
  EXPECT_EQ(Count(html, "<ol class=\"review\">"), 2u);
  EXPECT_NE(html.find("&quot;op&quot;: &quot;label&quot;"), std::string::npos) << "the command is pretty-printed";
}

TEST(HtmlReport, ReadsHeadlineThenFactsThenTimelineThenDetails) {
  const std::string html = RenderHtml(json{{"incidents", json::array({QuarantineIncident()})}});
  const auto headline = html.find("<h2>Killed router-a");
  const auto facts = html.find("<dl class=\"facts\">");
  const auto timeline = html.find("<svg class=\"timeline\"");
  const auto outcomes = html.find("<table class=\"outcomes\">");
  const auto review = html.find("<ol class=\"review\">");
  ASSERT_NE(review, std::string::npos);
  EXPECT_LT(headline, facts);
  EXPECT_LT(facts, timeline);
  EXPECT_LT(timeline, outcomes);
  EXPECT_LT(outcomes, review);
}

TEST(HtmlReport, DrawsAHangAsABarToItsEnd) {
  const std::string html = RenderHtml(RichModel());
  std::smatch match;
  ASSERT_TRUE(std::regex_search(html, match,
                                std::regex("class=\"event hang\" x=\"([0-9.]+)\" y=\"[0-9.]+\" "
                                           "width=\"([0-9.]+)\"")));
  // 1000 ms of a 1234.5 ms range drawn over 782 units.
  EXPECT_NEAR(std::stod(match[2]), 1000.0 / 1234.5 * 782, 1.0);
}

TEST(HtmlReport, LabelsOnlyTheTellingEventsOfACrowdedLane) {
  const std::string html = RenderHtml(json{{"incidents", json::array({ReplayIncident()})}});
  EXPECT_EQ(Count(html, "class=\"event-label\""), 1u);
  EXPECT_NE(html.find("aria-hidden=\"true\">seq 147</text>"), std::string::npos) << "the divergence keeps its label";
  EXPECT_NE(html.find("<title>command \xC2\xB7 router-a \xC2\xB7 0 ms\nseq 100</title>"), std::string::npos);
  const std::string sparse = RenderHtml(json{{"incidents", json::array({QuarantineIncident()})}});
  EXPECT_GT(Count(sparse, "class=\"event-label\""), 5u);
}

TEST(HtmlReport, EscapesEveryStringSoNothingBecomesMarkup) {
  json incident = QuarantineIncident();
  incident["id"] = "q-1\"><script>alert(0)</script>";
  incident["headline"] = "<img src=x onerror=alert(1)>";
  incident["status"] = "\"><script>alert(2)</script>";
  incident["command"] = "</pre><script>alert(3)</script>";
  incident["reproduce"] = "nvs replay 'a b' \"c\" && echo <b>";
  incident["outcomes"][0]["stderr_tail"] = "fine\n</pre><script>alert(4)</script>\n</td></tr></table>";
  incident["timeline"]["lanes"] = json::array({"a\"><b>lane</b>"});
  incident["timeline"]["events"] = json::array({Event("a\"><b>lane</b>", 1, "crash\"><script>", "<script>alert(5)")});
  const json model = {{"title", "</title><script>alert(6)</script>"},
                      {"summary", json::array({{{"label", "<b>bold</b>"}, {"value", "<i>x</i>"}}})},
                      {"incidents", json::array({incident})}};
  const std::string html = RenderHtml(model);
  EXPECT_EQ(Count(html, "<script"), 0u);
  EXPECT_EQ(Count(html, "<img"), 0u);
  EXPECT_EQ(Count(html, "<b>"), 0u);
  EXPECT_EQ(Count(html, "<i>"), 0u);
  EXPECT_EQ(Count(html, "<pre"), Count(html, "</pre>"));
  EXPECT_EQ(Count(html, "<table"), Count(html, "</table>"));
  EXPECT_EQ(Count(html, "<title>"), Count(html, "</title>"));
  EXPECT_NE(html.find("&lt;script&gt;alert(5)"), std::string::npos);
  EXPECT_NE(html.find("<g class=\"lane\" data-lane=\"a&quot;&gt;&lt;b&gt;lane&lt;/b&gt;\">"), std::string::npos);
  EXPECT_NE(html.find("id=\"incident-q-1___script_alert_0___script_\""), std::string::npos);
  EXPECT_NE(html.find("class=\"event crash___script_\""), std::string::npos);
  EXPECT_NE(html.find("nvs replay &#39;a b&#39; &quot;c&quot; &amp;&amp; echo &lt;b&gt;"), std::string::npos);
}

TEST(HtmlReport, ReplacesInvalidUtf8AndShowsControlCharacters) {
  json incident = QuarantineIncident();
  incident["outcomes"][0]["stderr_tail"] = std::string("ok \xFF\xFE bad \xC3 \xED\xA0\x80 \x1B[31mred\x1B[0m\x01");
  incident["headline"] = std::string("trunc\xE2\x82");
  std::string html;
  ASSERT_NO_THROW(html = RenderHtml(json{{"incidents", json::array({incident})}}));
  EXPECT_TRUE(ValidUtf8(html));
  EXPECT_NE(html.find("ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD "), std::string::npos);
  EXPECT_NE(html.find("\xE2\x90\x9B[31mred"), std::string::npos) << "ESC shown as U+241B";
  EXPECT_EQ(html.find('\x1B'), std::string::npos);
  EXPECT_EQ(html.find('\x01'), std::string::npos);
}

TEST(HtmlReport, ToleratesWrongTypesAndMissingMembers) {
  const json odd_models[] = {
      nullptr,
      42,
      "a string",
      json::array(),
      json::object(),
      {{"title", 7}, {"kind", json::array({1})}, {"generated", {{"at", 1}}}},
      {{"summary", "just text"}},
      {{"summary", {{"quarantined", 2}, {"note", nullptr}}}},
      {{"summary", json::array({1, "x", nullptr, {{"value", {{"nested", true}}}}})}},
      {{"incidents", 5}},
      {{"incidents", json::array({1, "x", nullptr, json::object(), json::array()})}},
      {{"incidents", json::array({{{"outcomes", {{"variant", 1}}},
                                   {"review", "reviewed"},
                                   {"command", nullptr},
                                   {"seq", "forty-two"},
                                   {"reproduce", 3}}})}},
      {{"incidents", json::array({{{"outcomes", json::array({1, nullptr, {{"stderr_tail", 5}}})},
                                   {"review", json::array({2, {{"note", json::array()}}})}}})}},
      {{"incidents", json::array({{{"timeline", "none"}}})}},
      {{"incidents", json::array({{{"timeline", {{"lanes", 3}, {"events", json::array({1, "x", nullptr})}}}}})}},
      {{"incidents", json::array({{{"timeline",
                                    {{"start_ms", "soon"},
                                     {"end_ms", -5},
                                     {"events", json::array({{{"t_ms", "x"}},
                                                             {{"t_ms", std::nan("")}},
                                                             {{"t_ms", 1e300}},
                                                             {{"t_ms", 5}, {"t_end_ms", 1}, {"kind", "hang"}},
                                                             {{"t_ms", -1e9}, {"lane", json::array({1})}, {"kind", 3}},
                                                             {{"t_ms", 5}, {"kind", ""}, {"lane", ""}}})}}}}})}},
      {{"incidents",
        json::array({{{"timeline",
                       {{"start_ms", 7}, {"end_ms", 7}, {"events", json::array({{{"t_ms", 7}, {"lane", "a"}}})}}}}})}},
  };
  for (const json& model : odd_models) {
    SCOPED_TRACE(model.dump());
    std::string html;
    ASSERT_NO_THROW(html = RenderHtml(model));
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_TRUE(html.ends_with("</html>\n"));
    EXPECT_TRUE(ValidUtf8(html));
    EXPECT_FALSE(std::regex_search(html, std::regex("\"-?(nan|inf)"))) << "a coordinate is not a number";
  }
  // A value of the wrong type is shown as its text, not dropped.
  EXPECT_NE(RenderHtml(json{{"incidents", json::array({{{"seq", "forty-two"}}})}}).find("forty-two"),
            std::string::npos);
  EXPECT_NE(RenderHtml(json{{"summary", {{"quarantined", 2}}}}).find("<dt>quarantined</dt><dd>2</dd>"),
            std::string::npos);
  EXPECT_NE(RenderHtml(json{{"incidents", 5}}).find("Unexpected entry: 5"), std::string::npos);
}

TEST(HtmlReport, IsSelfContained) {
  const std::string html = RenderHtml(RichModel());
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  for (const char* tag : {"<script", "<link", "<img", "<iframe", "<object", "<embed"}) {
    EXPECT_EQ(html.find(tag), std::string::npos) << tag;
  }
  const std::regex reference(R"re(\b(src|href)\s*=\s*"([^"]*)")re");
  std::size_t references = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), reference); it != std::sregex_iterator(); ++it) {
    ++references;
    EXPECT_EQ((*it)[2].str().rfind('#', 0), 0u) << (*it)[0].str();
  }
  EXPECT_GT(references, 0u) << "the in-page links were checked";
}

TEST(HtmlReport, SaysSoPlainlyWhenThereAreNoIncidents) {
  const std::string html = RenderHtml(json{{"title", "nvs quarantine report"}, {"incidents", json::array()}});
  EXPECT_NE(html.find("No incidents in this report."), std::string::npos);
  EXPECT_EQ(html.find("<section class=\"incident\""), std::string::npos);
  EXPECT_EQ(html.find("<svg"), std::string::npos);
}

TEST(HtmlReport, SaysNoTimelineRecordedInsteadOfAnEmptyDrawing) {
  json without = QuarantineIncident();
  without.erase("timeline");
  json empty = QuarantineIncident();
  empty["id"] = "q-2";
  empty["timeline"]["events"] = json::array();
  const std::string html = RenderHtml(json{{"incidents", json::array({without, empty})}});
  EXPECT_EQ(Count(html, "no timeline recorded"), 2u);
  EXPECT_EQ(html.find("<svg class=\"timeline\""), std::string::npos);
  EXPECT_EQ(Count(html, "<section class=\"incident\""), 2u);
}

TEST(HtmlReport, KeepsSectionIdsUnique) {
  const std::string html =
      RenderHtml(json{{"incidents", json::array({QuarantineIncident(), QuarantineIncident(), json::object()})}});
  EXPECT_EQ(Count(html, "id=\"incident-q-000000000042-1a2b3c4d\""), 1u);
  EXPECT_EQ(Count(html, "id=\"incident-q-000000000042-1a2b3c4d-2\""), 1u);
  EXPECT_EQ(Count(html, "id=\"incident-3\""), 1u);
}

// Writes the rich sample page: to $NVS_HTML_SAMPLE for the browser test
// (ctest browser.sample_report renders it in headless Chromium), else to a
// temporary file, so that as a unit test it still checks the page is written.
TEST(HtmlReport, WritesSampleForBrowser) {
  const char* path = std::getenv("NVS_HTML_SAMPLE");
  const std::filesystem::path sample = path != nullptr && *path != '\0'
                                           ? std::filesystem::path(path)
                                           : std::filesystem::temp_directory_path() /
                                                 ("nvs-html-sample-" + std::to_string(getpid()) + ".html");
  if (sample.has_parent_path()) std::filesystem::create_directories(sample.parent_path());
  std::ofstream out(sample, std::ios::binary | std::ios::trunc);
  out << RenderHtml(RichModel());
  out.close();
  ASSERT_TRUE(out) << "cannot write " << sample;
  EXPECT_GT(std::filesystem::file_size(sample), 10000u);
  if (path == nullptr || *path == '\0') std::filesystem::remove(sample);
}

}  // namespace
}  // namespace nvs::report
