// Unit tests of router-b's domain logic, JSON handling, session and options.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "rb_commands.hpp"
#include "rb_json.hpp"
#include "rb_options.hpp"
#include "rb_session.hpp"
#include "rb_state.hpp"

using namespace routerb;

namespace {

rapidjson::Document Parse(std::string_view text) {
  rapidjson::Document d;
  std::string why;
  EXPECT_TRUE(ParseJson(text, d, &why)) << why << " in " << text;
  return d;
}

// Runs a command given as JSON text and returns the result text.
std::string Exec(RouterState& s, std::string_view cmd, bool query = false) {
  auto d = Parse(cmd);
  return RunCommand(s, d, query);
}

// The error code of a result, or "ok".
std::string Code(const std::string& result) {
  auto d = Parse(result);
  if (d["ok"].IsTrue()) return "ok";
  EXPECT_TRUE(d.HasMember("message"));
  EXPECT_TRUE(d["message"].IsString());
  EXPECT_EQ(d.MemberCount(), 3u);
  return d["error"].GetString();
}

std::string Err(RouterState& s, std::string_view cmd, bool query = false) {
  return Code(Exec(s, cmd, query));
}

std::string Route(int o, int i, const std::string& client = "a") {
  return R"({"op":"route","client":")" + client + R"(","routes":[{"output":)" + std::to_string(o) +
         R"(,"input":)" + std::to_string(i) + "}]}";
}

std::string Lock(int o, char action, const std::string& client) {
  return R"({"op":"lock","client":")" + client + R"(","locks":[{"output":)" + std::to_string(o) +
         R"(,"action":")" + std::string(1, action) + "\"}]}";
}

std::string Define(const std::string& name, const std::string& routes) {
  return R"({"op":"salvo_define","client":"a","name":")" + name + R"(","routes":)" + routes + "}";
}

std::optional<RouterState> Restore(std::string_view text) {
  auto d = Parse(text);
  std::string why;
  return RouterState::FromCanonical(d, &why);
}

std::string Repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.append(s);
  return out;
}

const char* kSpecExample =
    R"({"inputs":2,"outputs":2,"routes":[1,1],"input_labels":["Input 1","Cam \"B\""],)"
    R"("output_labels":["Output 1","Ausgang 2 ü"],"locks":[null,"panel-1"],)"
    R"("salvos":[{"name":"a","routes":[{"output":0,"input":1}]}]})";

}  // namespace

// ---- digest and canonical bytes --------------------------------------------

TEST(Digest, FnvVectors) {
  EXPECT_EQ(HexDigest(Fnv1a64("")), "cbf29ce484222325");
  EXPECT_EQ(HexDigest(Fnv1a64("a")), "af63dc4c8601ec8c");
  EXPECT_EQ(HexDigest(0x1), "0000000000000001");
}

TEST(Canonical, InitialOneByOne) {
  RouterState s(1, 1);
  EXPECT_EQ(s.Canonical(),
            R"({"inputs":1,"outputs":1,"routes":[0],"input_labels":["Input 1"],)"
            R"("output_labels":["Output 1"],"locks":[null],"salvos":[]})");
  EXPECT_EQ(s.Digest(), HexDigest(Fnv1a64(s.Canonical())));
}

TEST(Canonical, InitialRoutesWrap) {
  RouterState s(2, 5);
  EXPECT_EQ(s.Canonical(),
            R"({"inputs":2,"outputs":5,"routes":[0,1,0,1,0],"input_labels":["Input 1","Input 2"],)"
            R"("output_labels":["Output 1","Output 2","Output 3","Output 4","Output 5"],)"
            R"("locks":[null,null,null,null,null],"salvos":[]})");
}

TEST(Canonical, SpecExampleRoundTripsByteForByte) {
  auto s = Restore(kSpecExample);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Canonical(), kSpecExample);
}

TEST(Canonical, EscapesOnlyQuoteAndBackslash) {
  RouterState s(2, 1);
  EXPECT_EQ(Code(Exec(s, R"({"op":"label","client":"a","kind":"input","labels":[)"
                        R"({"index":0,"text":"a\"b\\c/d\u00e9\ud83d\ude00\u0080"}]})")),
            "ok");
  const std::string c = s.Canonical();
  EXPECT_NE(c.find("\"a\\\"b\\\\c/d\xC3\xA9\xF0\x9F\x98\x80\xC2\x80\""), std::string::npos) << c;
  EXPECT_EQ(c.find("\\u"), std::string::npos);
  EXPECT_EQ(c.find("\\/"), std::string::npos);
}

TEST(Canonical, DefaultValuesAreNotStoredButStillEmitted) {
  RouterState s(4, 4);
  const std::string initial = s.Canonical();
  s.SetRoute(1, 3);
  s.SetLabel(LabelKind::kOutput, 2, "X");
  s.SetRoute(1, 1);
  s.SetLabel(LabelKind::kOutput, 2, "Output 3");
  EXPECT_EQ(s.Canonical(), initial);
  EXPECT_TRUE(s == RouterState(4, 4));
}

// ---- SPEC.md §7 examples ----------------------------------------------------

TEST(Examples, Section7Sequence) {
  RouterState s(4, 4);
  EXPECT_EQ(Exec(s, R"({"op":"route","client":"a","routes":[{"output":1,"input":3},{"output":2,"input":2}]})"),
            R"({"ok":true,"changed":[{"output":1,"input":3}]})");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":4,"input":0}]})"), "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":-1,"input":0}]})"), "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":1.0,"input":0}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":1},{"output":0,"input":2}]})"),
            "duplicate");
  EXPECT_EQ(Exec(s, Lock(0, 'O', "b")), R"({"ok":true,"changed":[{"output":0,"owner":"b"}]})");
  EXPECT_EQ(Err(s, Route(0, 1, "a")), "locked");
  EXPECT_EQ(Exec(s, Lock(0, 'F', "a")), R"({"ok":true,"changed":[{"output":0,"owner":null}]})");
  EXPECT_EQ(Exec(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":0,"text":"PGM"}]})"),
            R"({"ok":true,"kind":"output","changed":[{"index":0,"text":"PGM"}]})");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":0,"text":"a\nb"}]})"),
            "bad_label");
  EXPECT_EQ(Err(s, R"({"op":"explode"})"), "unknown_op");
  EXPECT_EQ(Err(s, R"({"op":"route"})"), "bad_request");
  EXPECT_EQ(Err(s, R"([1,2])"), "bad_request");
}

// ---- command envelope (§4 steps 1-4) -----------------------------------------

TEST(Envelope, NotObjectOrBadOp) {
  RouterState s(4, 4);
  for (const char* c : {"[1,2]", "\"route\"", "3", "null", "true"}) EXPECT_EQ(Err(s, c), "bad_request") << c;
  EXPECT_EQ(Err(s, R"({"client":"a"})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":7})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":null})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"Route"})"), "unknown_op");
  EXPECT_EQ(Err(s, R"({"op":"","x":1})"), "unknown_op");
  EXPECT_EQ(Err(s, R"({"op":"explode"})", true), "unknown_op");
  EXPECT_EQ(Err(s, "[1]", true), "bad_request");
}

TEST(Envelope, QueryRefusesMutatingOpsBeforeShape) {
  RouterState s(4, 4);
  const std::string before = s.Canonical();
  for (const char* op : {"route", "label", "lock", "salvo_define", "salvo_fire", "salvo_delete"}) {
    EXPECT_EQ(Err(s, std::string(R"({"op":")") + op + "\"}", true), "not_a_query") << op;
    EXPECT_EQ(Err(s, std::string(R"({"op":")") + op + R"(","junk":[]})", true), "not_a_query") << op;
  }
  EXPECT_EQ(Err(s, Route(0, 3), true), "not_a_query");
  EXPECT_EQ(s.Canonical(), before);
}

TEST(Dump, QueryAndApply) {
  RouterState s(2, 2);
  const std::string expected = "{\"ok\":true,\"state\":" + s.Canonical() + "}";
  EXPECT_EQ(Exec(s, R"({"op":"dump"})", true), expected);
  EXPECT_EQ(Exec(s, R"({"op":"dump"})", false), expected);
  EXPECT_EQ(Err(s, R"({"op":"dump","client":"a"})", true), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"dump","x":null})"), "bad_request");
}

// ---- shape rules (§3.2) ----------------------------------------------------------

TEST(Shape, Integers) {
  RouterState s(4, 4);
  auto with_output = [&](const std::string& v) {
    return Err(s, R"({"op":"route","client":"a","routes":[{"output":)" + v + R"(,"input":0}]})");
  };
  EXPECT_EQ(with_output("3"), "ok");
  EXPECT_EQ(with_output("-0"), "ok");
  for (const char* bad : {"3.0", "3e0", "3E0", "0.5", "true", "false", "null", "\"3\"", "[3]", "{}",
                          "9223372036854775808", "-9223372036854775809", "18446744073709551616",
                          "1e400", "-1e400", "1e-400", "123456789012345678901234567890"})
    EXPECT_EQ(with_output(bad), "bad_request") << bad;
  for (const char* big : {"9223372036854775807", "4294967296", "4294967295", "2147483648", "-2147483649",
                          "-4294967297", "1764151200000000000"})
    EXPECT_EQ(with_output(big), "out_of_range") << big;
  EXPECT_EQ(with_output("-9223372036854775808"), "out_of_range");
  EXPECT_EQ(with_output(std::string(400, '9')), "bad_request");
  EXPECT_EQ(with_output("1" + std::string(400, '0') + ".5e-9999"), "bad_request");
}

TEST(Shape, StrictMembers) {
  RouterState s(4, 4);
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":1}],"x":1})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","routes":[{"output":0,"input":1}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":1,"x":0}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[[0,1]]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":{"output":0,"input":1}})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":0}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":"x","y":1}]})"),
            "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"lock","client":"a","locks":[{"output":0,"action":"O","z":1}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"salvo_fire","client":"a","name":"n","routes":[]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"salvo_delete","name":"n"})"), "bad_request");
  // Duplicate member names: the last one wins, so this is a valid route.
  EXPECT_EQ(Exec(s, R"({"op":"route","client":1,"client":"a","routes":[{"output":0,"input":2,"input":1}]})"),
            R"({"ok":true,"changed":[{"output":0,"input":1}]})");
}

TEST(Shape, ClientIds) {
  RouterState s(4, 4);
  EXPECT_EQ(Err(s, Route(0, 1, std::string(64, 'c'))), "ok");
  EXPECT_EQ(Err(s, Route(0, 2, Repeat("\xC3\xA9", 32))), "ok");  // 64 bytes
  EXPECT_EQ(Err(s, Route(0, 1, Repeat("\xC3\xA9", 33))), "bad_request");  // 66 bytes
  EXPECT_EQ(Err(s, Route(0, 1, std::string(65, 'c'))), "bad_request");
  EXPECT_EQ(Err(s, Route(0, 1, "")), "bad_request");
  EXPECT_EQ(Err(s, Route(0, 1, "a\\tb")), "bad_request");
  EXPECT_EQ(Err(s, Route(0, 1, "a\\u0000b")), "bad_request");
  EXPECT_EQ(Err(s, Route(0, 1, "a\x7F")), "bad_request");
  EXPECT_EQ(Err(s, Route(0, 1, "a\xC2\x80")), "ok");  // U+0080 is not a control character here
  EXPECT_EQ(Err(s, R"({"op":"route","client":null,"routes":[{"output":0,"input":1}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"lock","client":["a"],"locks":[{"output":0,"action":"O"}]})"), "bad_request");
}

TEST(Shape, ListLengths) {
  RouterState s(1024, 1024);
  std::string routes = "[";
  for (int o = 0; o < 1024; ++o) routes += std::string(o ? "," : "") + R"({"output":)" + std::to_string(o) + R"(,"input":5})";
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":)" + routes + "]}"), "ok");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":)" + routes + R"(,{"output":0,"input":5}]})"),
            "bad_request");  // 1025 entries: shape, before duplicate
  EXPECT_EQ(Err(s, R"({"op":"lock","client":"a","locks":[]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[]})"), "bad_request");
  EXPECT_EQ(Err(s, Define("x", "[]")), "bad_request");
}

TEST(Shape, ShapeBeatsSemanticAnywhere) {
  RouterState s(4, 4);
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":99,"input":0},{"output":"1","input":0}]})"),
            "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":99,"text":"x"},{"index":0,"text":5}]})"),
            "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"lock","client":"a","locks":[{"output":99,"action":"O"},{"output":0,"action":"X"}]})"),
            "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"salvo_fire","client":"","name":"missing"})"), "bad_request");
}

// ---- route -------------------------------------------------------------------

TEST(RouteOp, ChangedSortedAndOnlyRealChanges) {
  RouterState s(4, 4);
  EXPECT_EQ(Exec(s, R"({"op":"route","client":"a","routes":[{"output":3,"input":0},{"output":1,"input":0},{"output":2,"input":2}]})"),
            R"({"ok":true,"changed":[{"output":1,"input":0},{"output":3,"input":0}]})");
  EXPECT_EQ(Exec(s, Route(1, 0)), R"({"ok":true,"changed":[]})");
  EXPECT_EQ(s.RouteOf(1), 0);
  EXPECT_EQ(s.RouteOf(3), 0);
  EXPECT_EQ(s.RouteOf(2), 2);
}

TEST(RouteOp, SemanticOrderPerEntry) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Lock(2, 'O', "b")), "ok");
  // Input range is checked before duplicate.
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":0},{"output":0,"input":9}]})"),
            "out_of_range");
  // Duplicate is checked before locked.
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":2,"input":0},{"output":2,"input":1}]})"),
            "locked");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":0},{"output":0,"input":1},{"output":2,"input":1}]})"),
            "duplicate");
  // Entries in array order: the locked entry comes first.
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":2,"input":1},{"output":9,"input":1}]})"),
            "locked");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":9,"input":1},{"output":2,"input":1}]})"),
            "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":-1}]})"), "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"route","client":"a","routes":[{"output":0,"input":4}]})"), "out_of_range");
}

TEST(RouteOp, LockedEvenWhenAlreadyShowingThatInput) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Lock(2, 'O', "b")), "ok");
  EXPECT_EQ(Err(s, Route(2, 2, "a")), "locked");
  EXPECT_EQ(Exec(s, Route(2, 2, "b")), R"({"ok":true,"changed":[]})");
  ASSERT_EQ(Err(s, Define("same", R"([{"output":2,"input":2}])")), "ok");
  EXPECT_EQ(Err(s, R"({"op":"salvo_fire","client":"a","name":"same"})"), "locked");
}

TEST(RouteOp, OwnLockAllowsAllOrNothing) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Lock(1, 'O', "a")), "ok");
  EXPECT_EQ(Exec(s, Route(1, 0, "a")), R"({"ok":true,"changed":[{"output":1,"input":0}]})");
  const std::string before = s.Canonical();
  EXPECT_EQ(Err(s, R"({"op":"route","client":"b","routes":[{"output":0,"input":3},{"output":1,"input":3}]})"),
            "locked");
  EXPECT_EQ(s.Canonical(), before);  // the first entry was not applied
}

// ---- label -----------------------------------------------------------------

TEST(LabelOp, KindsAndRanges) {
  RouterState s(2, 3);
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"inputs","labels":[{"index":0,"text":"x"}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":1,"labels":[{"index":0,"text":"x"}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":2,"text":"x"}]})"), "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":2,"text":"x"}]})"), "ok");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":-1,"text":"x"}]})"), "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":0.0,"text":"x"}]})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":0,"text":null}]})"), "bad_request");
}

TEST(LabelOp, TextRulesAndOrder) {
  RouterState s(4, 4);
  auto label = [&](const std::string& text) {
    return Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":1,"text":")" + text + "\"}]}");
  };
  EXPECT_EQ(label(std::string(64, 'x')), "ok");
  EXPECT_EQ(label(std::string(65, 'x')), "label_too_long");
  EXPECT_EQ(label(Repeat("\xE2\x82\xAC", 21) + "x"), "ok");           // 64 bytes
  EXPECT_EQ(label(Repeat("\xE2\x82\xAC", 22)), "label_too_long");     // 66 bytes
  EXPECT_EQ(label(""), "ok");
  EXPECT_EQ(label("\xF0\x9F\x8E\xA5 \xC2\x9F"), "ok");                // emoji, U+009F
  EXPECT_EQ(label("a\\u001fb"), "bad_label");
  EXPECT_EQ(label("a\x7F"), "bad_label");
  EXPECT_EQ(label("\\u0000"), "bad_label");
  EXPECT_EQ(label(std::string(70, 'x') + "\\n"), "label_too_long");  // length before characters
  // Order within entries: range, duplicate, length, characters.
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":"\t"},{"index":9,"text":""}]})"),
            "bad_label");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":"ok"},{"index":0,"text":"\t"}]})"),
            "duplicate");
  EXPECT_EQ(Err(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":"ok"},{"index":4,"text":"\t"}]})"),
            "out_of_range");
}

TEST(LabelOp, ChangedSortedLocksIgnored) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Lock(2, 'O', "b")), "ok");
  EXPECT_EQ(Exec(s, R"({"op":"label","client":"a","kind":"output","labels":[{"index":3,"text":"C"},{"index":0,"text":"Output 1"},{"index":2,"text":"B"}]})"),
            R"({"ok":true,"kind":"output","changed":[{"index":2,"text":"B"},{"index":3,"text":"C"}]})");
  EXPECT_EQ(Exec(s, R"({"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":"Input 1"}]})"),
            R"({"ok":true,"kind":"input","changed":[]})");
  EXPECT_EQ(s.Label(LabelKind::kOutput, 2), "B");
  EXPECT_EQ(s.Label(LabelKind::kInput, 3), "Input 4");
}

// ---- lock ------------------------------------------------------------------

TEST(LockOp, ActionTable) {
  struct Case {
    const char* owner;  // nullptr = unlocked
    char action;
    const char* result;  // expected code
    const char* after;   // owner afterwards, nullptr = unlocked
  };
  const Case cases[] = {
      {nullptr, 'O', "ok", "me"}, {"me", 'O', "ok", "me"}, {"other", 'O', "locked", "other"},
      {nullptr, 'U', "ok", nullptr}, {"me", 'U', "ok", nullptr}, {"other", 'U', "locked", "other"},
      {nullptr, 'F', "ok", nullptr}, {"me", 'F', "ok", nullptr}, {"other", 'F', "ok", nullptr},
  };
  for (const auto& c : cases) {
    RouterState s(2, 2);
    if (c.owner) s.SetLock(1, std::string(c.owner));
    const std::string result = Exec(s, Lock(1, c.action, "me"));
    EXPECT_EQ(Code(result), c.result) << c.action << " " << (c.owner ? c.owner : "-");
    const std::string* after = s.LockOwner(1);
    if (c.after) {
      ASSERT_NE(after, nullptr);
      EXPECT_EQ(*after, c.after);
    } else {
      EXPECT_EQ(after, nullptr);
    }
    const bool changed = (c.owner == nullptr) != (c.after == nullptr);
    if (Code(result) == "ok") {
      EXPECT_EQ(result.find("\"changed\":[]") == std::string::npos, changed) << result;
    }
  }
}

TEST(LockOp, ShapeAndSemantics) {
  RouterState s(4, 4);
  for (const char* a : {"\"X\"", "\"o\"", "\"OU\"", "\"\"", "1", "null"})
    EXPECT_EQ(Err(s, std::string(R"({"op":"lock","client":"a","locks":[{"output":0,"action":)") + a + "}]}"),
              "bad_request") << a;
  EXPECT_EQ(Err(s, Lock(4, 'O', "a")), "out_of_range");
  EXPECT_EQ(Err(s, R"({"op":"lock","client":"a","locks":[{"output":1,"action":"O"},{"output":1,"action":"U"}]})"),
            "duplicate");
  EXPECT_EQ(Exec(s, R"({"op":"lock","client":"a","locks":[{"output":3,"action":"O"},{"output":0,"action":"O"},{"output":1,"action":"U"}]})"),
            R"({"ok":true,"changed":[{"output":0,"owner":"a"},{"output":3,"owner":"a"}]})");
  EXPECT_EQ(Err(s, R"({"op":"lock","client":"b","locks":[{"output":1,"action":"O"},{"output":0,"action":"U"}]})"),
            "locked");
  EXPECT_EQ(s.LockOwner(1), nullptr);  // all or nothing
  EXPECT_EQ(Exec(s, R"({"op":"lock","client":"b","locks":[{"output":3,"action":"F"},{"output":0,"action":"F"}]})"),
            R"({"ok":true,"changed":[{"output":0,"owner":null},{"output":3,"owner":null}]})");
}

// ---- salvos ----------------------------------------------------------------

TEST(Salvo, DefineFireDelete) {
  RouterState s(4, 4);
  EXPECT_EQ(Exec(s, Define("news", R"([{"output":3,"input":0},{"output":1,"input":0},{"output":2,"input":2}])")),
            R"({"ok":true,"name":"news","size":3})");
  const auto& stored = s.GetSalvos().at("news");
  EXPECT_EQ(stored, (RouterState::SalvoRoutes{{1, 0}, {2, 2}, {3, 0}}));
  EXPECT_NE(s.Canonical().find(
                R"("salvos":[{"name":"news","routes":[{"output":1,"input":0},{"output":2,"input":2},{"output":3,"input":0}]}])"),
            std::string::npos);
  EXPECT_EQ(Exec(s, R"({"op":"salvo_fire","client":"a","name":"news"})"),
            R"({"ok":true,"changed":[{"output":1,"input":0},{"output":3,"input":0}]})");
  EXPECT_EQ(Exec(s, R"({"op":"salvo_fire","client":"a","name":"news"})"), R"({"ok":true,"changed":[]})");
  EXPECT_EQ(Err(s, R"({"op":"salvo_fire","client":"a","name":"nope"})"), "not_found");
  EXPECT_EQ(Exec(s, R"({"op":"salvo_delete","client":"a","name":"news"})"), R"({"ok":true,"name":"news"})");
  EXPECT_EQ(Err(s, R"({"op":"salvo_delete","client":"a","name":"news"})"), "not_found");
  EXPECT_TRUE(s.GetSalvos().empty());
}

TEST(Salvo, DefineReplacesAndIgnoresLocks) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Lock(0, 'O', "b")), "ok");
  EXPECT_EQ(Exec(s, Define("x", R"([{"output":0,"input":3}])")), R"({"ok":true,"name":"x","size":1})");
  EXPECT_EQ(Exec(s, Define("x", R"([{"output":1,"input":3},{"output":2,"input":3}])")),
            R"({"ok":true,"name":"x","size":2})");
  EXPECT_EQ(s.GetSalvos().size(), 1u);
  EXPECT_EQ(s.GetSalvos().at("x").size(), 2u);
  EXPECT_EQ(Err(s, Define("y", R"([{"output":0,"input":4}])")), "out_of_range");
  EXPECT_EQ(Err(s, Define("y", R"([{"output":4,"input":0}])")), "out_of_range");
  EXPECT_EQ(Err(s, Define("y", R"([{"output":1,"input":0},{"output":1,"input":0}])")), "duplicate");
}

TEST(Salvo, FireChecksLocksAsRoute) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Define("x", R"([{"output":0,"input":3},{"output":1,"input":3}])")), "ok");
  ASSERT_EQ(Err(s, Lock(1, 'O', "b")), "ok");
  EXPECT_EQ(Err(s, R"({"op":"salvo_fire","client":"a","name":"x"})"), "locked");
  EXPECT_EQ(s.RouteOf(0), 0);
  EXPECT_EQ(Exec(s, R"({"op":"salvo_fire","client":"b","name":"x"})"),
            R"({"ok":true,"changed":[{"output":0,"input":3},{"output":1,"input":3}]})");
}

TEST(Salvo, NamesAndFull) {
  RouterState s(4, 4);
  EXPECT_EQ(Err(s, Define(std::string(32, 'n'), R"([{"output":0,"input":1}])")), "ok");
  EXPECT_EQ(Err(s, Define(std::string(33, 'n'), R"([{"output":0,"input":1}])")), "bad_request");
  EXPECT_EQ(Err(s, Define("", R"([{"output":0,"input":1}])")), "bad_request");
  EXPECT_EQ(Err(s, Define("a\\nb", R"([{"output":0,"input":1}])")), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"salvo_fire","client":"a","name":""})"), "bad_request");
  EXPECT_EQ(Err(s, R"({"op":"salvo_delete","client":"a","name":5})"), "bad_request");
  for (int i = 1; i < 64; ++i) ASSERT_EQ(Err(s, Define("s" + std::to_string(i), R"([{"output":0,"input":1}])")), "ok");
  EXPECT_EQ(s.GetSalvos().size(), 64u);
  EXPECT_EQ(Err(s, Define("new", R"([{"output":0,"input":1}])")), "full");
  EXPECT_EQ(Err(s, Define("new", R"([{"output":0,"input":9}])")), "out_of_range");  // routes first
  EXPECT_EQ(Err(s, Define("s5", R"([{"output":2,"input":1}])")), "ok");             // redefine
  EXPECT_EQ(Err(s, R"({"op":"salvo_delete","client":"a","name":"s5"})"), "ok");
  EXPECT_EQ(Err(s, Define("new", R"([{"output":0,"input":1}])")), "ok");
}

TEST(Salvo, ByteWiseNameOrder) {
  RouterState s(2, 2);
  for (const char* n : {"\xC3\xA9", "b", "ab", "a", "Z"}) ASSERT_EQ(Err(s, Define(n, R"([{"output":0,"input":1}])")), "ok");
  const std::string c = s.Canonical();
  const auto pos = [&](const char* n) { return c.find(std::string("\"name\":\"") + n + "\""); };
  EXPECT_LT(pos("Z"), pos("a"));
  EXPECT_LT(pos("a"), pos("ab"));
  EXPECT_LT(pos("ab"), pos("b"));
  EXPECT_LT(pos("b"), pos("\xC3\xA9"));
  EXPECT_TRUE(Restore(c));
}

TEST(AllOrNothing, FailedCommandsChangeNothing) {
  RouterState s(4, 4);
  ASSERT_EQ(Err(s, Define("x", R"([{"output":0,"input":1}])")), "ok");
  ASSERT_EQ(Err(s, Lock(3, 'O', "b")), "ok");
  const std::string digest = s.Digest();
  const char* failing[] = {
      R"({"op":"route","client":"a","routes":[{"output":0,"input":1},{"output":3,"input":1}]})",
      R"({"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":"new"},{"index":1,"text":"\u0001"}]})",
      R"({"op":"lock","client":"a","locks":[{"output":0,"action":"O"},{"output":3,"action":"O"}]})",
      R"({"op":"salvo_define","client":"a","name":"y","routes":[{"output":0,"input":1},{"output":0,"input":2}]})",
      R"({"op":"salvo_fire","client":"a","name":"z"})",
      R"({"op":"salvo_delete","client":"a","name":"z"})",
  };
  for (const char* c : failing) {
    EXPECT_NE(Err(s, c), "ok") << c;
    EXPECT_EQ(s.Digest(), digest) << c;
  }
}

// ---- restore (§6.3) --------------------------------------------------------------

TEST(RestoreState, AcceptsValidInAnyMemberOrder) {
  auto s = Restore(R"({"salvos":[{"routes":[{"input":1,"output":0}],"name":"a"}],"locks":[null,"panel-1"],)"
                   R"("output_labels":["Output 1","Ausgang 2 ü"],"input_labels":["Input 1","Cam \"B\""],)"
                   R"("routes":[1,1],"outputs":2,"inputs":2})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Canonical(), kSpecExample);
}

TEST(RestoreState, RefusesInvalid) {
  const std::string base = kSpecExample;
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = base;
    auto p = t.find(from);
    EXPECT_NE(p, std::string::npos) << from;
    t.replace(p, from.size(), to);
    return t;
  };
  const std::vector<std::string> bad = {
      "[]",
      "{}",
      "null",
      with(R"("inputs":2,)", ""),
      with(R"("inputs":2,)", R"("inputs":2,"extra":0,)"),
      with(R"("inputs":2,)", R"("inputs":2.0,)"),
      with(R"("inputs":2,)", R"("inputs":"2",)"),
      with(R"("inputs":2,"outputs":2,"routes":[1,1],"input_labels":["Input 1","Cam \"B\""])",
           R"("inputs":0,"outputs":2,"routes":[1,1],"input_labels":[])"),
      with(R"("routes":[1,1])", R"("routes":[1])"),
      with(R"("routes":[1,1])", R"("routes":[1,2])"),
      with(R"("routes":[1,1])", R"("routes":[1,-1])"),
      with(R"("routes":[1,1])", R"("routes":[1,1.0])"),
      with(R"("routes":[1,1])", R"("routes":{})"),
      with(R"(["Input 1","Cam \"B\""])", R"(["Input 1"])"),
      with(R"(["Input 1","Cam \"B\""])", R"(["Input 1",null])"),
      with(R"(["Input 1","Cam \"B\""])", R"(["Input 1","a\nb"])"),
      with(R"(["Input 1","Cam \"B\""])", "[\"Input 1\",\"" + std::string(65, 'x') + "\"]"),
      with(R"(["Output 1","Ausgang 2 ü"])", R"(["Output 1","Ausgang 2 ü","x"])"),
      with(R"([null,"panel-1"])", R"([null,""])"),
      with(R"([null,"panel-1"])", "[null,\"" + std::string(65, 'p') + "\"]"),
      with(R"([null,"panel-1"])", R"([null,"a\u007f"])"),
      with(R"([null,"panel-1"])", R"([null,1])"),
      with(R"([null,"panel-1"])", R"([null])"),
      with(R"("salvos":[{"name":"a","routes":[{"output":0,"input":1}]}])",
           R"("salvos":{"x":[{"name":"a","routes":[{"output":0,"input":1}]}]})"),
      with(R"({"name":"a","routes")", R"({"name":"a","x":1,"routes")"),
      with(R"({"name":"a",)", R"({)"),
      with(R"("name":"a")", R"("name":"")"),
      with(R"("name":"a")", "\"name\":\"" + std::string(33, 'a') + "\""),
      with(R"([{"output":0,"input":1}])", "[]"),
      with(R"([{"output":0,"input":1}])", R"([{"output":0,"input":2}])"),
      with(R"([{"output":0,"input":1}])", R"([{"output":2,"input":1}])"),
      with(R"([{"output":0,"input":1}])", R"([{"output":1,"input":1},{"output":0,"input":1}])"),
      with(R"([{"output":0,"input":1}])", R"([{"output":0,"input":1},{"output":0,"input":0}])"),
      with(R"([{"output":0,"input":1}])", R"([{"output":0,"input":1,"x":0}])"),
      with(R"({"name":"a","routes":[{"output":0,"input":1}]})",
           R"({"name":"b","routes":[{"output":0,"input":1}]},{"name":"a","routes":[{"output":0,"input":1}]})"),
      with(R"({"name":"a","routes":[{"output":0,"input":1}]})",
           R"({"name":"a","routes":[{"output":0,"input":1}]},{"name":"a","routes":[{"output":1,"input":1}]})"),
      with(R"({"name":"a","routes":[{"output":0,"input":1}]})",
           R"({"name":"ab","routes":[{"output":0,"input":1}]},{"name":"a","routes":[{"output":0,"input":1}]})"),
  };
  for (const auto& t : bad) EXPECT_FALSE(Restore(t)) << t;

  std::string many = R"({"inputs":1,"outputs":1,"routes":[0],"input_labels":["Input 1"],)"
                     R"("output_labels":["Output 1"],"locks":[null],"salvos":[)";
  for (int i = 0; i < 65; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "s%02d", i);
    many += std::string(i ? "," : "") + R"({"name":")" + name + R"(","routes":[{"output":0,"input":0}]})";
  }
  EXPECT_FALSE(Restore(many + "]}"));
  const auto p = many.rfind(",{");
  EXPECT_TRUE(Restore(many.substr(0, p) + "]}"));  // 64 salvos
  EXPECT_FALSE(Restore(R"({"inputs":1025,"outputs":1,"routes":[0],"input_labels":[],"output_labels":["Output 1"],"locks":[null],"salvos":[]})"));
}

// ---- JSON handling -----------------------------------------------------------------

TEST(Json, RefusesBadText) {
  rapidjson::Document d;
  for (std::string bad : {std::string("{"), std::string("{}x"), std::string("{} {}"), std::string("{'a':1}"),
                          std::string("{\"a\":\"\xC3\"}"), std::string("{\"a\":\"\xED\xA0\x80\"}"),
                          std::string("{\"a\":\"\xC0\xAF\"}"), std::string("{\"a\":\"\xF4\x90\x80\x80\"}"),
                          std::string("{\"a\":\"\\ud800\"}"), std::string("{\"a\":\"\\udc00\"}"),
                          std::string("{\"a\":\"\\ud800x\"}"), std::string("{\"\\udfff\":1}"),
                          std::string("{}\0", 3), std::string("{\"a\":\"b\0\"}", 8),
                          std::string("\xEF\xBB\xBF{}"), std::string("{\"a\":NaN}"), std::string("{\"a\":01}"),
                          std::string("{\"a\":1.}"), std::string("{\"a\":\"\t\"}"), std::string(""),
                          std::string("{\"a\":1,}")})
    EXPECT_FALSE(ParseJson(bad, d, nullptr)) << bad;
  EXPECT_TRUE(ParseJson(" \t\r\n{ \"a\" : [ 1 , \"\\ud83d\\ude00\" ] }\n", d, nullptr));
}

TEST(Json, DepthLimit) {
  rapidjson::Document d;
  EXPECT_TRUE(ParseJson(std::string(64, '[') + std::string(64, ']'), d, nullptr));
  EXPECT_FALSE(ParseJson(std::string(65, '[') + std::string(65, ']'), d, nullptr));
  EXPECT_FALSE(ParseJson(std::string(1 << 20, '['), d, nullptr));
}

TEST(Json, NumbersAndSerialisation) {
  auto d = Parse(R"({"i":-0,"big":9223372036854775808,"f":1.5,"e":3e0,"huge":1e400,"s":"a\"\\\n\u0001é/","n":null,"t":[true,false]})");
  EXPECT_EQ(IntegerOf(d["i"]), 0);
  EXPECT_FALSE(IntegerOf(d["big"]));
  EXPECT_FALSE(IntegerOf(d["f"]));
  EXPECT_FALSE(IntegerOf(d["e"]));
  EXPECT_FALSE(IntegerOf(d["huge"]));
  std::string out;
  AppendValue(out, d);
  EXPECT_EQ(out, R"({"i":0,"big":9223372036854776000.0,"f":1.5,"e":3.0,"huge":1e999,"s":"a\"\\\n\u0001é/","n":null,"t":[true,false]})");
  rapidjson::Document again;
  EXPECT_TRUE(ParseJson(out, again, nullptr));
}

TEST(Json, DuplicateKeysLastWins) {
  auto d = Parse(R"({"a":1,"b":2,"a":3})");
  std::string out;
  AppendValue(out, d);
  EXPECT_EQ(out, R"({"b":2,"a":3})");
  std::string many = "{";
  for (int i = 0; i < 40; ++i) many += "\"k" + std::to_string(i % 20) + "\":" + std::to_string(i) + ",";
  many.back() = '}';
  auto m = Parse(many);
  EXPECT_EQ(m.MemberCount(), 20u);
  EXPECT_EQ(IntegerOf(*Member(m, "k3")), 23);
}

TEST(Json, EmbeddedNulInNames) {
  auto d = Parse(R"({"op\u0000":"dump"})");
  RouterState s(1, 1);
  EXPECT_EQ(Code(RunCommand(s, d, true)), "bad_request");
}

// ---- session (PROTOCOL.md) ---------------------------------------------------------

namespace {

struct Reply {
  rapidjson::Document doc;
  std::string text;
};

Reply Deliver(Session& session, std::string_view message) {
  Outcome o = session.Handle(message);
  EXPECT_EQ(o.action, ProcessAction::kNone);
  EXPECT_TRUE(o.reply.has_value());
  Reply r;
  r.text = o.reply.value_or("");
  EXPECT_EQ(r.text.find('\n'), std::string::npos);
  r.doc = Parse(r.text);
  return r;
}

void ExpectError(Session& session, std::string_view message, const char* code, std::optional<int> seq) {
  Reply r = Deliver(session, message);
  ASSERT_TRUE(r.doc.IsObject()) << r.text;
  EXPECT_STREQ(r.doc["type"].GetString(), "error") << message;
  EXPECT_STREQ(r.doc["code"].GetString(), code) << message;
  EXPECT_TRUE(r.doc["reason"].IsString());
  if (seq)
    EXPECT_EQ(IntegerOf(r.doc["seq"]), *seq) << message;
  else
    EXPECT_TRUE(r.doc["seq"].IsNull()) << message;
}

}  // namespace

TEST(SessionTest, Hello) {
  auto d = Parse(Session::Hello("router-b.3"));
  EXPECT_STREQ(d["type"].GetString(), "hello");
  EXPECT_EQ(IntegerOf(d["protocol"]), 1);
  EXPECT_STREQ(d["variant"].GetString(), "router-b.3");
  EXPECT_TRUE(d["impl"].IsString());
  rapidjson::Document odd;
  EXPECT_TRUE(ParseJson(Session::Hello("a\n\xFF\""), odd, nullptr));
}

TEST(SessionTest, RequestsAndReplies) {
  Session session(RouterState(4, 4), {});
  EXPECT_EQ(Deliver(session, R"({"type":"ping","seq":0})").text, R"({"type":"pong","seq":0})");
  EXPECT_EQ(Deliver(session, R"({"type":"ping","seq":9223372036854775807,"extra":{"x":[1]}})").text,
            R"({"type":"pong","seq":9223372036854775807})");
  const std::string d0 = RouterState(4, 4).Digest();
  EXPECT_EQ(Deliver(session, R"({"type":"digest","seq":5})").text, R"({"type":"digest","seq":5,"digest":")" + d0 + "\"}");
  EXPECT_EQ(Deliver(session, R"({"type":"apply","seq":6,"time_ns":1764151200000000000,"cmd":{"op":"route","client":"panel-1","routes":[{"output":0,"input":3}]}})").text,
            R"({"type":"applied","seq":6,"result":{"ok":true,"changed":[{"output":0,"input":3}]}})");
  auto answer = Deliver(session, R"({"type":"query","seq":7,"query":{"op":"dump"}})");
  EXPECT_STREQ(answer.doc["type"].GetString(), "answer");
  EXPECT_EQ(answer.text, R"({"type":"answer","seq":7,"result":{"ok":true,"state":)" + session.State().Canonical() + "}}");
  EXPECT_EQ(Deliver(session, R"({"type":"query","seq":8,"query":{"op":"route"}})").text.find("not_a_query") != std::string::npos, true);
  EXPECT_EQ(Deliver(session, R"({"type":"apply","seq":9,"time_ns":0,"cmd":[1,2]})").text,
            R"({"type":"applied","seq":9,"result":{"ok":false,"error":"bad_request","message":"command must be a JSON object"}})");
  auto snap = Deliver(session, R"({"type":"snapshot","seq":10})");
  EXPECT_EQ(snap.text, R"({"type":"state","seq":10,"state":)" + session.State().Canonical() + R"(,"digest":")" +
                           session.State().Digest() + "\"}");
  // Restore the 1x1 initial state, then the snapshot again.
  RouterState one(1, 1);
  EXPECT_EQ(Deliver(session, R"({"type":"restore","seq":11,"state":)" + one.Canonical() + "}").text,
            R"({"type":"restored","seq":11,"digest":")" + one.Digest() + "\"}");
  EXPECT_TRUE(session.State() == one);
  std::string state_text;
  AppendValue(state_text, snap.doc["state"]);
  auto back = Deliver(session, R"({"type":"restore","seq":12,"state":)" + state_text + "}");
  EXPECT_EQ(back.text, R"({"type":"restored","seq":12,"digest":")" + std::string(snap.doc["digest"].GetString()) + "\"}");
}

TEST(SessionTest, ProtocolErrors) {
  Session session(RouterState(2, 2), {});
  const std::string digest = session.State().Digest();
  ExpectError(session, std::string(kMaxMessageBytes + 1, ' '), "too_large", std::nullopt);
  ExpectError(session, "", "malformed", std::nullopt);
  ExpectError(session, "not json", "malformed", std::nullopt);
  ExpectError(session, "{\"type\":\"ping\",\"seq\":1", "malformed", std::nullopt);
  ExpectError(session, "[{\"type\":\"ping\",\"seq\":1}]", "malformed", std::nullopt);
  ExpectError(session, "\"ping\"", "malformed", std::nullopt);
  ExpectError(session, "{\"type\":\"ping\",\"seq\":1,\"x\":\"\xFF\"}", "malformed", std::nullopt);
  ExpectError(session, R"({"type":"ping","seq":1,"x":"\ud800"})", "malformed", std::nullopt);
  ExpectError(session, R"({"type":"ping","seq":1,"x":"\udc00\ud800"})", "malformed", std::nullopt);
  ExpectError(session, R"({"seq":3})", "malformed", 3);
  ExpectError(session, R"({"type":7,"seq":3})", "malformed", 3);
  ExpectError(session, R"({"type":"frobnicate","seq":3})", "unknown_type", 3);
  ExpectError(session, R"({"type":"hello","seq":3})", "unknown_type", 3);
  ExpectError(session, R"({"type":"applied","seq":4})", "unknown_type", 4);
  ExpectError(session, R"({"type":"frobnicate"})", "unknown_type", std::nullopt);
  ExpectError(session, R"({"type":"frobnicate","seq":-1})", "unknown_type", std::nullopt);
  ExpectError(session, R"({"type":"ping"})", "malformed", std::nullopt);
  for (const char* seq : {"-1", "1.5", "1.0", "1e0", "9223372036854775808", "\"1\"", "null", "true"})
    ExpectError(session, std::string(R"({"type":"ping","seq":)") + seq + "}", "malformed", std::nullopt);
  ExpectError(session, R"({"type":"apply","seq":5,"cmd":{"op":"dump"}})", "malformed", 5);
  ExpectError(session, R"({"type":"apply","seq":5,"time_ns":-1,"cmd":{"op":"dump"}})", "malformed", 5);
  ExpectError(session, R"({"type":"apply","seq":5,"time_ns":1.5,"cmd":{"op":"dump"}})", "malformed", 5);
  ExpectError(session, R"({"type":"apply","seq":5,"time_ns":0})", "malformed", 5);
  ExpectError(session, R"({"type":"query","seq":5,"cmd":{"op":"dump"}})", "malformed", 5);
  ExpectError(session, R"({"type":"restore","seq":5})", "malformed", 5);
  ExpectError(session, R"({"type":"restore","seq":5,"state":null})", "bad_state", 5);
  ExpectError(session, R"({"type":"restore","seq":6,"state":{"inputs":1}})", "bad_state", 6);
  ExpectError(session, std::string("{\"type\":\"ping\",\"seq\":1,\"x\":") + std::string(70, '[') +
                           std::string(70, ']') + "}", "malformed", std::nullopt);
  EXPECT_EQ(session.State().Digest(), digest);
  // Exactly 16 MiB is not too large.
  std::string big = R"({"type":"ping","seq":2,"pad":")";
  big += std::string(kMaxMessageBytes - big.size() - 2, 'x') + "\"}";
  ASSERT_EQ(big.size(), kMaxMessageBytes);
  EXPECT_EQ(Deliver(session, big).text, R"({"type":"pong","seq":2})");
}

TEST(SessionTest, NullCmdIsDomainError) {
  Session session(RouterState(2, 2), {});
  EXPECT_EQ(Deliver(session, R"({"type":"apply","seq":0,"time_ns":0,"cmd":null})").text,
            R"({"type":"applied","seq":0,"result":{"ok":false,"error":"bad_request","message":"command must be a JSON object"}})");
  EXPECT_EQ(Deliver(session, R"({"type":"query","seq":1,"query":null})").text,
            R"({"type":"answer","seq":1,"result":{"ok":false,"error":"bad_request","message":"command must be a JSON object"}})");
}

TEST(SessionTest, FaultsFireInOrderOnEveryMatch) {
  std::vector<FaultRule> faults = {
      {FaultRule::Kind::kWrong, "WRONG"},     {FaultRule::Kind::kCrash, "CRASH"},
      {FaultRule::Kind::kAbort, "ABORT"},     {FaultRule::Kind::kExit, "EXIT"},
      {FaultRule::Kind::kHang, "HANG"},       {FaultRule::Kind::kCorrupt, "CORRUPT"},
  };
  Session session(RouterState(4, 4), faults);
  auto label = [](int seq, const std::string& text) {
    return R"({"type":"apply","seq":)" + std::to_string(seq) +
           R"(,"time_ns":1,"cmd":{"op":"label","client":"a","kind":"input","labels":[{"index":0,"text":")" + text + "\"}]}}";
  };
  for (auto [text, action] : std::vector<std::pair<std::string, ProcessAction>>{
           {"CRASH", ProcessAction::kCrash}, {"ABORT", ProcessAction::kAbort},
           {"EXIT", ProcessAction::kExit}, {"HANG", ProcessAction::kHang}}) {
    const std::string before = session.State().Digest();
    Outcome o = session.Handle(label(1, text));
    EXPECT_EQ(o.action, action) << text;
    EXPECT_FALSE(o.reply) << text;
    EXPECT_EQ(session.State().Digest(), before) << text;
  }
  // First matching rule in command-line order wins.
  EXPECT_EQ(session.Handle(label(1, "CRASH WRONG")).action, ProcessAction::kNone);
  // wrong: applied, but the reply is the fixed wrong result.
  EXPECT_EQ(Deliver(session, label(2, "WRONG2")).text, R"({"type":"applied","seq":2,"result":{"ok":true,"fault":"wrong"}})");
  EXPECT_EQ(session.State().Label(LabelKind::kInput, 0), "WRONG2");
  EXPECT_EQ(Deliver(session, R"({"type":"query","seq":3,"query":{"op":"dump","x":"WRONG"}})").text,
            R"({"type":"answer","seq":3,"result":{"ok":true,"fault":"wrong"}})");
  // corrupt: correct reply, then route of output 0 becomes (route+1) mod inputs; fires every time.
  EXPECT_EQ(Deliver(session, label(4, "CORRUPT")).text,
            R"({"type":"applied","seq":4,"result":{"ok":true,"kind":"input","changed":[{"index":0,"text":"CORRUPT"}]}})");
  EXPECT_EQ(session.State().RouteOf(0), 1);
  Deliver(session, label(5, "CORRUPT"));
  EXPECT_EQ(session.State().RouteOf(0), 2);
  // Faults match only apply/query commands, not other messages.
  EXPECT_EQ(Deliver(session, R"({"type":"ping","seq":6,"x":"CRASH"})").text, R"({"type":"pong","seq":6})");
  // Matching is on the compact serialisation: whitespace does not matter.
  EXPECT_EQ(session.Handle(R"({"type":"query","seq":7,"query":{ "op" : "dump" , "y" : "HANG" }})").action,
            ProcessAction::kHang);
  Session quiet(RouterState(4, 4), {{FaultRule::Kind::kCrash, R"("op":"dump")"}});
  EXPECT_EQ(quiet.Handle(R"({"type":"query","seq":7,"query":{ "op" : "dump" }})").action, ProcessAction::kCrash);
}

TEST(SessionTest, ReceivedLog) {
  std::vector<std::string> lines;
  Session session(RouterState(2, 2), {{FaultRule::Kind::kCrash, "boom"}},
                  [&](std::string_view line) { lines.emplace_back(line); });
  Deliver(session, R"({"type":"ping","seq":1})");
  Deliver(session, R"({ "type" : "apply", "seq":2, "time_ns":3, "cmd":{"op":"dump"} })");
  Deliver(session, R"({"type":"query","seq":3,"query":{"op":"dump"}})");
  session.Handle(R"({"type":"apply","seq":4,"time_ns":3,"cmd":{"op":"boom"}})");
  Deliver(session, R"({"type":"apply","seq":5})");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], R"({"type":"apply","seq":2,"time_ns":3,"cmd":{"op":"dump"},"received_by":""})" "\n");
  EXPECT_EQ(lines[1], R"({"type":"query","seq":3,"query":{"op":"dump"},"received_by":""})" "\n");
  EXPECT_EQ(lines[2], R"({"type":"apply","seq":4,"time_ns":3,"cmd":{"op":"boom"},"received_by":""})" "\n");
}

TEST(SessionTest, ReceivedLogNamesTheReceiver) {
  std::vector<std::string> lines;
  auto sink = [&](std::string_view line) { lines.emplace_back(line); };
  Session session(RouterState(2, 2), {}, sink, "probe.2");
  Deliver(session, R"({"type":"apply","seq":1,"time_ns":2,"cmd":{"op":"dump"}})");
  Deliver(session, R"({"type":"query","seq":3,"query":{"op":"dump"},"x":[{}]})");
  // A received_by of the message's own is replaced, never repeated.
  Deliver(session, R"({"received_by":"forged","type":"query","seq":4,"query":{"op":"dump"}})");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], R"({"type":"apply","seq":1,"time_ns":2,"cmd":{"op":"dump"},"received_by":"probe.2"})" "\n");
  EXPECT_EQ(lines[1], R"({"type":"query","seq":3,"query":{"op":"dump"},"x":[{}],"received_by":"probe.2"})" "\n");
  EXPECT_EQ(lines[2], R"({"type":"query","seq":4,"query":{"op":"dump"},"received_by":"probe.2"})" "\n");
  // Still one JSON text per line with type, seq and cmd/query, even for an
  // odd name (escaped, and invalid UTF-8 replaced).
  Session odd(RouterState(2, 2), {}, sink, "a\n\xFF\"");
  Deliver(odd, R"({"type":"apply","seq":5,"time_ns":0,"cmd":{"op":"dump"}})");
  ASSERT_EQ(lines.size(), 4u);
  for (const auto& line : lines) {
    ASSERT_EQ(line.find('\n'), line.size() - 1) << line;
    auto d = Parse(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(d.IsObject()) << line;
    EXPECT_TRUE(d["type"].IsString());
    EXPECT_TRUE(IntegerOf(d["seq"]));
    EXPECT_TRUE(d.HasMember("cmd") || d.HasMember("query"));
    EXPECT_TRUE(d["received_by"].IsString());
  }
  auto last = Parse(std::string_view(lines[3]).substr(0, lines[3].size() - 1));
  EXPECT_EQ(View(last["received_by"]), "a\n\xEF\xBF\xBD\"");
}

// ---- options ---------------------------------------------------------------------

TEST(OptionsTest, Parse) {
  std::string err;
  auto o = ParseOptions({}, &err);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->inputs, 16);
  EXPECT_EQ(o->outputs, 16);
  o = ParseOptions({"--inputs", "1024", "--outputs=1", "--fault", "crash-on=x=y", "--fault=wrong-on=",
                    "--received-log", "/tmp/x"}, &err);
  ASSERT_TRUE(o) << err;
  EXPECT_EQ(o->inputs, 1024);
  EXPECT_EQ(o->outputs, 1);
  ASSERT_EQ(o->faults.size(), 2u);
  EXPECT_EQ(o->faults[0].kind, FaultRule::Kind::kCrash);
  EXPECT_EQ(o->faults[0].needle, "x=y");
  EXPECT_EQ(o->faults[1].kind, FaultRule::Kind::kWrong);
  EXPECT_EQ(o->faults[1].needle, "");
  EXPECT_EQ(o->received_log, "/tmp/x");
  for (auto args : std::vector<std::vector<std::string>>{
           {"--inputs", "0"}, {"--inputs", "1025"}, {"--outputs", "abc"}, {"--outputs", ""},
           {"--inputs", "+5"}, {"--inputs", "-1"}, {"--inputs", "16x"}, {"--inputs", "99999999999999999999"},
           {"--inputs"}, {"--bogus"}, {"extra"}, {"--fault", "explode-on=x"}, {"--fault", "crash"}})
    EXPECT_FALSE(ParseOptions(args, &err)) << args[0];
}

// ---- performance -----------------------------------------------------------------

TEST(Performance, FullSizeSnapshotRestoreAndRoute) {
  RouterState s(1024, 1024);
  for (int i = 0; i < 1024; ++i) {
    s.SetRoute(i, 1023 - i);
    s.SetLabel(LabelKind::kInput, i, std::string(64, 'i'));
    s.SetLabel(LabelKind::kOutput, i, std::string(64, 'o'));
    s.SetLock(i, std::string(64, 'c'));
  }
  for (int k = 0; k < 64; ++k) {
    RouterState::SalvoRoutes r;
    for (int o = 0; o < 1024; ++o) r.emplace(o, (o + k) % 1024);
    s.MutableSalvos()["salvo-" + std::string(23, 'x') + std::to_string(100 + k)] = r;
  }
  Session session(s, {});
  const auto t0 = std::chrono::steady_clock::now();
  Outcome snap = session.Handle(R"({"type":"snapshot","seq":1})");
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(snap.reply);
  std::string restore = R"({"type":"restore","seq":2,"state":)" +
                        snap.reply->substr(snap.reply->find("\"state\":") + 8);
  restore.resize(restore.rfind(",\"digest\":"));
  restore += "}";
  const auto t2 = std::chrono::steady_clock::now();
  Outcome back = session.Handle(restore);
  const auto t3 = std::chrono::steady_clock::now();
  ASSERT_TRUE(back.reply);
  EXPECT_NE(back.reply->find("restored"), std::string::npos) << back.reply->substr(0, 200);
  EXPECT_TRUE(session.State() == s);
  std::string route = R"({"type":"apply","seq":3,"time_ns":0,"cmd":{"op":"route","client":")" +
                      std::string(64, 'c') + R"(","routes":[{"output":5,"input":7}]}})";
  const auto t4 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) session.Handle(route);
  const auto t5 = std::chrono::steady_clock::now();
  using ms = std::chrono::duration<double, std::milli>;
  std::printf("snapshot %.2f ms (%zu bytes), restore %.2f ms, route %.2f us\n", ms(t1 - t0).count(),
              snap.reply->size(), ms(t3 - t2).count(), ms(t5 - t4).count());
  // How fast: scripts/bench, section "variants" (a wall-time assertion here
  // failed on a fresh clone of a loaded machine).
}
