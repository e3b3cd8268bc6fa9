#include "nvs/videohub/videohub_protocol.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace nvs::videohub {
namespace {

using Lines = std::vector<std::string>;

Block B(std::string header, Lines lines = {}) { return Block{std::move(header), std::move(lines), false}; }
Block Junk(std::string line) { return Block{"", {std::move(line)}, true}; }

std::vector<Block> ReadAll(const std::vector<std::string>& pieces, BlockReader::Limits limits = {}) {
  BlockReader reader(limits);
  std::vector<Block> blocks;
  for (const std::string& piece : pieces) {
    for (Block& block : reader.Feed(piece)) blocks.push_back(std::move(block));
  }
  for (Block& block : reader.Finish()) blocks.push_back(std::move(block));
  return blocks;
}

// The one request in `text` (framed by a BlockReader, as the gateway will).
Request Parse(const std::string& text, int inputs = 16, int outputs = 16) {
  const std::vector<Block> blocks = ReadAll({text});
  EXPECT_EQ(blocks.size(), 1u) << text;
  if (blocks.size() != 1) return Refusal{"test: not one block"};
  return ParseRequest(blocks.front(), inputs, outputs);
}

std::string ReasonOf(const Request& request) {
  const auto* nak = std::get_if<Refusal>(&request);
  return nak == nullptr ? std::string("(not a Nak)") : nak->reason;
}

bool IsNak(const Request& request) { return std::holds_alternative<Refusal>(request); }

// ---------------------------------------------------------------------------
// Framing

// A stream with every tolerated irregularity: both line ends, blank lines
// between blocks, a junk line, a header with trailing spaces, a body line
// ending in ':', multibyte text.
const std::string kStream =
    "PING:\n\n"
    "VIDEO OUTPUT ROUTING:\r\n0 1\r\n2 3\r\n\r\n"
    "\n\r\n\n"
    "hello there\r\n"
    "INPUT LABELS:\n0 Kamera S\xc3\xbc" "d\r\n1 \xe6\x91\x84\xe5\x83\x8f\xe6\x9c\xba\n2 Note:\n\n"
    "VIDEO OUTPUT LOCKS: \t\n0 O\r\n\n"
    "OUTPUT LABELS:\r\n\r\n";

const std::vector<Block> kStreamBlocks = {
    B("PING"),
    B("VIDEO OUTPUT ROUTING", {"0 1", "2 3"}),
    Junk("hello there"),
    B("INPUT LABELS", {"0 Kamera S\xc3\xbc" "d", "1 \xe6\x91\x84\xe5\x83\x8f\xe6\x9c\xba", "2 Note:"}),
    B("VIDEO OUTPUT LOCKS", {"0 O"}),
    B("OUTPUT LABELS"),
};

TEST(VideohubBlockReader, WholeStreamInOneFeed) {
  BlockReader reader;
  EXPECT_EQ(reader.Feed(kStream), kStreamBlocks);
  EXPECT_TRUE(reader.Finish().empty());
  EXPECT_FALSE(reader.overflowed());
}

TEST(VideohubBlockReader, EverySplitPointGivesTheSameBlocks) {
  for (std::size_t i = 0; i <= kStream.size(); ++i) {
    SCOPED_TRACE("split at " + std::to_string(i));
    EXPECT_EQ(ReadAll({kStream.substr(0, i), kStream.substr(i)}), kStreamBlocks);
  }
}

TEST(VideohubBlockReader, EveryPairOfSplitPointsGivesTheSameBlocks) {
  for (std::size_t i = 0; i <= kStream.size(); ++i) {
    for (std::size_t j = i; j <= kStream.size(); ++j) {
      const auto blocks = ReadAll({kStream.substr(0, i), kStream.substr(i, j - i), kStream.substr(j)});
      ASSERT_EQ(blocks, kStreamBlocks) << "split at " << i << " and " << j;
    }
  }
}

TEST(VideohubBlockReader, ByteByByte) {
  std::vector<std::string> bytes;
  for (char c : kStream) bytes.emplace_back(1, c);
  EXPECT_EQ(ReadAll(bytes), kStreamBlocks);
}

TEST(VideohubBlockReader, CrLfLineEndsAreStripped) {
  EXPECT_EQ(ReadAll({"INPUT LABELS:\r\n0 Cam 1\r\n\r\n"}), std::vector<Block>{B("INPUT LABELS", {"0 Cam 1"})});
  // Only one '\r' before the '\n' is a line end; another is text.
  EXPECT_EQ(ReadAll({"INPUT LABELS:\r\n0 Cam\r\r\n\r\n"}), std::vector<Block>{B("INPUT LABELS", {"0 Cam\r"})});
  // Mixed within one block.
  EXPECT_EQ(ReadAll({"VIDEO OUTPUT ROUTING:\n0 1\r\n1 2\n\r\n"}),
            std::vector<Block>{B("VIDEO OUTPUT ROUTING", {"0 1", "1 2"})});
}

TEST(VideohubBlockReader, SeveralBlocksInOneFeedComeOutInOrder) {
  BlockReader reader;
  EXPECT_EQ(reader.Feed("PING:\n\nOUTPUT LABELS:\n\nVIDEO OUTPUT ROUTING:\n3 4\n\nPING:\n"),
            (std::vector<Block>{B("PING"), B("OUTPUT LABELS"), B("VIDEO OUTPUT ROUTING", {"3 4"})}));
  EXPECT_EQ(reader.Feed("\n"), std::vector<Block>{B("PING")});
}

TEST(VideohubBlockReader, JunkLinesAreReportedOneByOne) {
  BlockReader reader;
  EXPECT_EQ(reader.Feed("hello\nACK\n \nPING:\n\n"),
            (std::vector<Block>{Junk("hello"), Junk("ACK"), Junk(" "), B("PING")}));
}

TEST(VideohubBlockReader, BlankLinesBetweenBlocksAreSkipped) {
  EXPECT_EQ(ReadAll({"\n\n\r\n\nPING:\n\n\n\r\n\nPING:\n\n\n"}), (std::vector<Block>{B("PING"), B("PING")}));
}

TEST(VideohubBlockReader, HeaderKeepsInnerTextAndLosesTrailingBlanks) {
  EXPECT_EQ(ReadAll({"VIDEO OUTPUT ROUTING:  \t\n\n"}), std::vector<Block>{B("VIDEO OUTPUT ROUTING")});
  EXPECT_EQ(ReadAll({"A: B:\n\n"}), std::vector<Block>{B("A: B")});
  EXPECT_EQ(ReadAll({":\n\n"}), std::vector<Block>{B("")});
}

TEST(VideohubBlockReader, FinishWithoutPendingBlockGivesNothing) {
  BlockReader reader;
  EXPECT_EQ(reader.Feed("PING:\n\n"), std::vector<Block>{B("PING")});
  EXPECT_TRUE(reader.Finish().empty());
  EXPECT_TRUE(BlockReader().Finish().empty());
}

TEST(VideohubBlockReader, FinishCompletesAPendingBlock) {
  struct Row {
    const char* name;
    std::string bytes;
    std::vector<Block> blocks;
  };
  const Row rows[] = {
      {"missing blank line", "VIDEO OUTPUT ROUTING:\n0 1\n", {B("VIDEO OUTPUT ROUTING", {"0 1"})}},
      {"missing last line end", "VIDEO OUTPUT ROUTING:\n0 1", {B("VIDEO OUTPUT ROUTING", {"0 1"})}},
      {"missing last CRLF", "VIDEO OUTPUT ROUTING:\r\n0 1\r", {B("VIDEO OUTPUT ROUTING", {"0 1"})}},
      {"header only", "PING:\n", {B("PING")}},
      {"header without line end", "PING:", {B("PING")}},
      {"junk without line end", "oops", {Junk("oops")}},
      {"trailing blank lines", "PING:\n\n\n", {B("PING")}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    BlockReader reader;
    std::vector<Block> blocks = reader.Feed(row.bytes);
    for (Block& block : reader.Finish()) blocks.push_back(std::move(block));
    EXPECT_EQ(blocks, row.blocks);
    EXPECT_TRUE(reader.Finish().empty());
  }
}

TEST(VideohubBlockReader, ReaderIsReusableAfterFinish) {
  BlockReader reader;
  reader.Feed("PING:");
  EXPECT_EQ(reader.Finish(), std::vector<Block>{B("PING")});
  EXPECT_EQ(reader.Feed("OUTPUT LABELS:\n\n"), std::vector<Block>{B("OUTPUT LABELS")});
}

TEST(VideohubBlockReader, LineAtTheLimitIsAcceptedWithEitherLineEnd) {
  const BlockReader::Limits limits{8, 100, 1000};
  EXPECT_EQ(ReadAll({"VIDEO:\n12345678\n\n"}, limits), std::vector<Block>{B("VIDEO", {"12345678"})});
  EXPECT_EQ(ReadAll({"VIDEO:\r\n12345678\r", "\n\r\n"}, limits), std::vector<Block>{B("VIDEO", {"12345678"})});
}

TEST(VideohubBlockReader, OverlongLineOverflows) {
  const BlockReader::Limits limits{8, 100, 1000};
  {
    BlockReader reader(limits);
    EXPECT_TRUE(reader.Feed("PING:\n\nVIDEO:\n123456789\n\n").size() == 1);  // PING: came before
    EXPECT_TRUE(reader.overflowed());
  }
  {  // Detected before the line ends: no need to wait for a '\n' that never comes.
    BlockReader reader(limits);
    EXPECT_TRUE(reader.Feed("123456789").empty());
    EXPECT_TRUE(reader.overflowed());
  }
  {  // A header line counts too.
    BlockReader reader(limits);
    reader.Feed("ABCDEFGHIJ:\n");
    EXPECT_TRUE(reader.overflowed());
  }
  {  // Across feeds.
    BlockReader reader(limits);
    reader.Feed("1234");
    reader.Feed("5678");
    EXPECT_FALSE(reader.overflowed());
    reader.Feed("\r");
    EXPECT_FALSE(reader.overflowed());
    reader.Feed("9");
    EXPECT_TRUE(reader.overflowed());
  }
}

TEST(VideohubBlockReader, TooManyLinesInABlockOverflows) {
  const BlockReader::Limits limits{100, 3, 10000};
  EXPECT_EQ(ReadAll({"R:\n1\n2\n3\n\n"}, limits), std::vector<Block>{B("R", {"1", "2", "3"})});
  BlockReader reader(limits);
  reader.Feed("R:\n1\n2\n3\n");
  EXPECT_FALSE(reader.overflowed());
  reader.Feed("4\n");
  EXPECT_TRUE(reader.overflowed());
}

TEST(VideohubBlockReader, TooManyPendingBytesOverflow) {
  const BlockReader::Limits limits{100, 1000, 24};  // "VIDEO OUTPUT ROUTING" + "0 1" = 23 bytes
  {
    BlockReader reader(limits);
    // Complete blocks are not pending: any number of them pass, 2700 bytes in all.
    std::string many;
    for (int i = 0; i < 100; ++i) many += "VIDEO OUTPUT ROUTING:\n0 1\n\n";
    EXPECT_EQ(reader.Feed(many).size(), 100u);
    EXPECT_FALSE(reader.overflowed());
  }
  {
    BlockReader reader(limits);
    const auto blocks = reader.Feed("PING:\n\nLABELS:\n0 abcdef\n1 abcdefgh");  // 6 + 8 + 10 = 24: at the limit
    EXPECT_FALSE(reader.overflowed());
    EXPECT_EQ(blocks, std::vector<Block>{B("PING")});
    EXPECT_TRUE(reader.Feed("\r").empty());  // maybe half a line end: not counted
    EXPECT_FALSE(reader.overflowed());
    EXPECT_TRUE(reader.Feed("i").empty());  // 6 + 8 + 12 ("1 abcdefgh\ri") > 24
    EXPECT_TRUE(reader.overflowed());
  }
  {
    BlockReader reader(limits);
    const auto blocks = reader.Feed("PING:\n\nLABELS:\n0 abcdef\n1 abcdefghi\n\n");  // 6 + 8 + 11 > 24
    EXPECT_EQ(blocks, std::vector<Block>{B("PING")});  // what came before the overflow
    EXPECT_TRUE(reader.overflowed());
  }
}

TEST(VideohubBlockReader, OverflowIsFinal) {
  BlockReader reader(BlockReader::Limits{4, 10, 100});
  reader.Feed("toolong\n");
  ASSERT_TRUE(reader.overflowed());
  EXPECT_TRUE(reader.Feed("PING:\n\n").empty());
  EXPECT_TRUE(reader.Finish().empty());
  EXPECT_TRUE(reader.overflowed());
}

TEST(VideohubBlockReader, RandomBytesFrameTheSameWhateverTheSplitsAndParseWithoutThrowing) {
  std::mt19937 rng(7);
  const std::string alphabet = "\n\n\n\r\r:: 0123456789OUFLPINGVIDEO\t\x80\xc3\xbc\xff";
  for (int iteration = 0; iteration < 500; ++iteration) {
    std::string bytes;
    const int length = std::uniform_int_distribution<int>(0, 200)(rng);
    for (int i = 0; i < length; ++i) {
      bytes += alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    }
    const std::vector<Block> whole = ReadAll({bytes});
    std::vector<std::string> pieces;
    for (std::size_t at = 0; at < bytes.size();) {
      const std::size_t piece = std::uniform_int_distribution<std::size_t>(1, 16)(rng);
      pieces.push_back(bytes.substr(at, piece));
      at += piece;
    }
    ASSERT_EQ(ReadAll(pieces), whole) << testing::PrintToString(bytes);
    for (const Block& block : whole) {
      EXPECT_EQ(block.header.find('\n'), std::string::npos);
      if (block.junk) {
        EXPECT_TRUE(block.header.empty());
        ASSERT_EQ(block.lines.size(), 1u);
        const std::size_t last = block.lines[0].find_last_not_of(" \t");  // a blank-only line is junk too
        EXPECT_TRUE(last == std::string::npos || block.lines[0][last] != ':');
      }
      for (const std::string& line : block.lines) {
        EXPECT_FALSE(line.empty());
        EXPECT_EQ(line.find('\n'), std::string::npos);
      }
      EXPECT_NO_THROW(ParseRequest(block, 8, 8));
    }
  }
}

// ---------------------------------------------------------------------------
// Requests

TEST(VideohubParseRequest, RouteTake) {
  EXPECT_EQ(std::get<RouteTake>(Parse("VIDEO OUTPUT ROUTING:\n7 2\n\n")).routes,
            (std::vector<std::pair<int, int>>{{7, 2}}));
  // Several lines are one take, in the client's order.
  EXPECT_EQ(std::get<RouteTake>(Parse("VIDEO OUTPUT ROUTING:\n5 0\n0 15\n15 5\n\n")).routes,
            (std::vector<std::pair<int, int>>{{5, 0}, {0, 15}, {15, 5}}));
}

TEST(VideohubParseRequest, IndexSyntaxAndRange) {
  struct Row {
    const char* line;
    bool ok;
    std::pair<int, int> route;
  };
  const Row rows[] = {
      {"3 4", true, {3, 4}},
      {"0 0", true, {0, 0}},
      {"15 15", true, {15, 15}},
      {"003 0004", true, {3, 4}},  // leading zeros are still decimal
      {"3 4  \t", true, {3, 4}},   // trailing blanks tolerated
      {"16 0", false, {}},         // output out of range
      {"0 16", false, {}},         // input out of range
      {"-1 0", false, {}},
      {"0 -1", false, {}},
      {"+3 0", false, {}},
      {"3 +4", false, {}},
      {"3x 0", false, {}},
      {"3 4x", false, {}},
      {"3 4 5", false, {}},
      {"x 0", false, {}},
      {"3", false, {}},
      {"3 ", false, {}},
      {" 3 4", false, {}},
      {"3  4", false, {}},
      {"3\t4", false, {}},
      {"0x3 0", false, {}},
      {"3.0 4", false, {}},
      {"99999999999999999999 0", false, {}},
      {"4294967299 0", false, {}},
      {"\xef\xbc\x93 0", false, {}},  // FULLWIDTH DIGIT THREE
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.line);
    const Request request = Parse(std::string("VIDEO OUTPUT ROUTING:\n") + row.line + "\n\n");
    if (row.ok) {
      ASSERT_TRUE(std::holds_alternative<RouteTake>(request)) << ReasonOf(request);
      EXPECT_EQ(std::get<RouteTake>(request).routes, (std::vector<std::pair<int, int>>{row.route}));
    } else {
      ASSERT_TRUE(IsNak(request));
      EXPECT_FALSE(ReasonOf(request).empty());
    }
  }
}

TEST(VideohubParseRequest, RangesFollowTheRouterSize) {
  EXPECT_EQ(std::get<RouteTake>(Parse("VIDEO OUTPUT ROUTING:\n7 3\n\n", 4, 8)).routes,
            (std::vector<std::pair<int, int>>{{7, 3}}));
  EXPECT_TRUE(IsNak(Parse("VIDEO OUTPUT ROUTING:\n7 4\n\n", 4, 8)));
  EXPECT_TRUE(IsNak(Parse("VIDEO OUTPUT ROUTING:\n8 3\n\n", 4, 8)));
  EXPECT_TRUE(std::holds_alternative<LabelChange>(Parse("OUTPUT LABELS:\n5 x\n\n", 4, 8)));
  EXPECT_TRUE(IsNak(Parse("INPUT LABELS:\n5 x\n\n", 4, 8)));
  EXPECT_TRUE(IsNak(Parse("VIDEO OUTPUT LOCKS:\n8 O\n\n", 4, 8)));
}

TEST(VideohubParseRequest, SameOutputTwiceInOneTakeIsRefused) {
  const Request request = Parse("VIDEO OUTPUT ROUTING:\n1 2\n3 4\n1 2\n\n");
  ASSERT_TRUE(IsNak(request));
  EXPECT_NE(ReasonOf(request).find("twice"), std::string::npos) << ReasonOf(request);
  EXPECT_TRUE(IsNak(Parse("INPUT LABELS:\n1 a\n1 b\n\n")));
  EXPECT_TRUE(IsNak(Parse("VIDEO OUTPUT LOCKS:\n1 O\n1 U\n\n")));
  // The same input on two outputs is an ordinary take.
  EXPECT_TRUE(std::holds_alternative<RouteTake>(Parse("VIDEO OUTPUT ROUTING:\n1 2\n3 2\n\n")));
}

TEST(VideohubParseRequest, Labels) {
  const auto change = std::get<LabelChange>(Parse("OUTPUT LABELS:\n6 new output label seven\n0 PGM\n\n"));
  EXPECT_FALSE(change.input);
  EXPECT_EQ(change.labels, (std::vector<std::pair<int, std::string>>{{6, "new output label seven"}, {0, "PGM"}}));
  EXPECT_TRUE(std::get<LabelChange>(Parse("INPUT LABELS:\n0 VTR 1\n\n")).input);
}

TEST(VideohubParseRequest, LabelTextIsTheRestOfTheLineByteExact) {
  struct Row {
    const char* line;
    std::string text;
  };
  const Row rows[] = {
      {"3 ", ""},                     // empty label: allowed (SPEC.md §3.3)
      {"3  x", " x"},                 // leading blanks kept
      {"3 x  ", "x  "},               // trailing blanks kept
      {"3 Note: 1", "Note: 1"},       // a colon is text
      {"3 VIDEO OUTPUT ROUTING:", "VIDEO OUTPUT ROUTING:"},
      {"3 0 1", "0 1"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.line);
    const Request request = Parse(std::string("INPUT LABELS:\n") + row.line + "\n\n");
    ASSERT_TRUE(std::holds_alternative<LabelChange>(request)) << ReasonOf(request);
    EXPECT_EQ(std::get<LabelChange>(request).labels, (std::vector<std::pair<int, std::string>>{{3, row.text}}));
  }
  EXPECT_TRUE(IsNak(Parse("INPUT LABELS:\n3\n\n")));     // no space, no label
  EXPECT_TRUE(IsNak(Parse("INPUT LABELS:\n3\tx\n\n")));  // a tab is not the separator
  EXPECT_TRUE(IsNak(Parse("INPUT LABELS:\nx y\n\n")));
}

TEST(VideohubParseRequest, CrLfLabelLosesItsLineEnd) {
  const Request request = Parse("INPUT LABELS:\r\n0 Cam 1\r\n1 Cam 2 \r\n\r\n");
  EXPECT_EQ(std::get<LabelChange>(request).labels,
            (std::vector<std::pair<int, std::string>>{{0, "Cam 1"}, {1, "Cam 2 "}}));
}

TEST(VideohubParseRequest, MultibyteLabelsAreMeasuredInBytes) {
  const std::string cjk = "\xe6\x91\x84";  // 摄, 3 bytes
  struct Row {
    const char* name;
    std::string text;
    bool ok;
  };
  const Row rows[] = {
      {"German", "Kamera S\xc3\xbc" "d", true},
      {"Chinese", "\xe6\x91\x84\xe5\x83\x8f\xe6\x9c\xba", true},
      {"emoji", "\xf0\x9f\x8e\xa5 Cam 1 \xf0\x9f\x94\xb4", true},
      {"C1 control NEL is not a control character for SPEC.md", "a\xc2\x85z", true},
      {"64 ASCII bytes", std::string(64, 'a'), true},
      {"65 ASCII bytes", std::string(65, 'a'), false},
      {"21 CJK + 1 ASCII = 64 bytes", [&] { std::string s; for (int i = 0; i < 21; ++i) s += cjk; return s + "x"; }(),
       true},
      {"22 CJK = 66 bytes, 22 code points", [&] { std::string s; for (int i = 0; i < 22; ++i) s += cjk; return s; }(),
       false},
      {"16 emoji = 64 bytes", [] { std::string s; for (int i = 0; i < 16; ++i) s += "\xf0\x9f\x8e\xa5"; return s; }(),
       true},
      {"17 emoji = 68 bytes", [] { std::string s; for (int i = 0; i < 17; ++i) s += "\xf0\x9f\x8e\xa5"; return s; }(),
       false},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const Request request = Parse("OUTPUT LABELS:\n2 " + row.text + "\n\n");
    if (row.ok) {
      ASSERT_TRUE(std::holds_alternative<LabelChange>(request)) << ReasonOf(request);
      EXPECT_EQ(std::get<LabelChange>(request).labels.at(0).second, row.text);
    } else {
      EXPECT_TRUE(IsNak(request));
    }
  }
}

TEST(VideohubParseRequest, InvalidUtf8AndControlCharactersAreRefused) {
  const std::string bad[] = {
      "\xff",                 // never in UTF-8
      "a\x80" "b",            // lone continuation byte
      "\xc0\xaf",             // overlong '/'
      "\xe0\x80\xaf",         // overlong, 3 bytes
      "\xed\xa0\x80",         // UTF-16 surrogate
      "\xe6\x91",             // truncated
      "\xf4\x90\x80\x80",     // above U+10FFFF
      "\xf5\x80\x80\x80",     // never in UTF-8
      "tab\there",            // control characters (SPEC.md: bad_label)
      "del\x7f",
      std::string("nul\0x", 5),
      "cr\rinside",
  };
  for (const std::string& text : bad) {
    SCOPED_TRACE(testing::PrintToString(text));
    const Block block = B("INPUT LABELS", {"1 " + text});
    EXPECT_TRUE(IsNak(ParseRequest(block, 4, 4)));
  }
}

TEST(VideohubParseRequest, Locks) {
  EXPECT_EQ(std::get<LockChange>(Parse("VIDEO OUTPUT LOCKS:\n7 O\n3 U\n0 F\n\n")).locks,
            (std::vector<std::pair<int, char>>{{7, 'O'}, {3, 'U'}, {0, 'F'}}));
  EXPECT_EQ(std::get<LockChange>(Parse("VIDEO OUTPUT LOCKS:\n7 O \n\n")).locks,
            (std::vector<std::pair<int, char>>{{7, 'O'}}));
  for (const char* action : {"L", "o", "u", "f", "X", "OO", "", "O U", "0"}) {
    SCOPED_TRACE(action);
    EXPECT_TRUE(IsNak(Parse(std::string("VIDEO OUTPUT LOCKS:\n7 ") + action + "\n\n")));
  }
  EXPECT_TRUE(IsNak(Parse("VIDEO OUTPUT LOCKS:\n7\n\n")));
}

TEST(VideohubParseRequest, DumpRequestsForEachStatusBlock) {
  for (std::string_view header : {kInputLabels, kOutputLabels, kVideoOutputLocks, kVideoOutputRouting}) {
    SCOPED_TRACE(header);
    const Request request = Parse(std::string(header) + ":\n\n");
    ASSERT_TRUE(std::holds_alternative<DumpRequest>(request)) << ReasonOf(request);
    EXPECT_EQ(std::get<DumpRequest>(request).header, header);
  }
}

TEST(VideohubParseRequest, Ping) {
  EXPECT_TRUE(std::holds_alternative<Ping>(Parse("PING:\n\n")));
  EXPECT_TRUE(std::holds_alternative<Ping>(Parse("PING:\r\n\r\n")));
  EXPECT_TRUE(IsNak(Parse("PING:\nhello\n\n")));
}

TEST(VideohubParseRequest, AFriendlyNameIsTheOneDeviceLineAClientMaySet) {
  const auto parse = [](const std::string& text) {
    BlockReader reader;
    auto blocks = reader.Feed(text);
    EXPECT_EQ(blocks.size(), 1u) << text;
    return ParseRequest(blocks.at(0), 16, 16);
  };
  EXPECT_EQ(parse("VIDEOHUB DEVICE:\nFriendly name: Studio B\n\n"), Request{FriendlyNameChange{"Studio B"}});
  EXPECT_EQ(parse("VIDEOHUB DEVICE:\nFriendly name: Kamera Süd \n\n"), Request{FriendlyNameChange{"Kamera Süd "}});
  EXPECT_EQ(parse("VIDEOHUB DEVICE:\nFriendly name:\n\n"), Request{FriendlyNameChange{""}});
  for (const std::string& refused : std::vector<std::string>{"VIDEOHUB DEVICE:\nModel name: x\n\n",
                                    "VIDEOHUB DEVICE:\nFriendly name: a\nFriendly name: b\n\n",
                                    "VIDEOHUB DEVICE:\nfriendly name: a\n\n",
                                    "VIDEOHUB DEVICE:\nFriendly name: " + std::string(65, 'x') + "\n\n",
                                    "VIDEOHUB DEVICE:\nFriendly name: \xff\n\n"}) {
    EXPECT_TRUE(std::holds_alternative<Refusal>(parse(refused))) << refused;
  }
}

TEST(VideohubParseRequest, UnknownUnsupportedAndJunkAreRefused) {
  const char* const refused[] = {
      "HELLO:\n\n",
      "video output routing:\n0 1\n\n",  // headers are upper case
      "VIDEO OUTPUT ROUTING :\n0 1\n\n",
      ":\n\n",
      "VIDEOHUB DEVICE:\n\n",               // not a status block; read-only
      "PROTOCOL PREAMBLE:\n\n",
      "END PRELUDE:\n\n",
      "MONITORING OUTPUT LABELS:\n0 x\n\n",  // parts this router does not have
      "VIDEO MONITORING OUTPUT ROUTING:\n0 1\n\n",
      "SERIAL PORT LOCKS:\n0 O\n\n",
      "SERIAL PORT ROUTING:\n\n",
      "PROCESSING UNIT ROUTING:\n\n",
      "FRAME LABELS:\n\n",
      "VIDEO INPUT STATUS:\n\n",
      "CONFIGURATION:\nTake Mode: true\n\n",
      "ACK\n",  // junk: a line outside a block without ':'
      "0 1\n",
  };
  for (const char* text : refused) {
    SCOPED_TRACE(text);
    const Request request = Parse(text);
    ASSERT_TRUE(IsNak(request));
    EXPECT_FALSE(ReasonOf(request).empty());
  }
  EXPECT_NE(ReasonOf(Parse("HELLO:\n\n")).find("unknown"), std::string::npos);
  EXPECT_NE(ReasonOf(Parse("SERIAL PORT LOCKS:\n\n")).find("not supported"), std::string::npos);
}

TEST(VideohubParseRequest, NakReasonsAreShortAndPrintable) {
  const std::string reason = ReasonOf(ParseRequest(Junk(std::string(500, 'x') + "\x01"), 4, 4));
  EXPECT_LT(reason.size(), 120u);
  EXPECT_EQ(ReasonOf(ParseRequest(Junk("a\x01z"), 4, 4)).find('\x01'), std::string::npos);
}

TEST(VideohubParseRequest, AnEmptyRouterRefusesEveryIndex) {
  EXPECT_TRUE(IsNak(Parse("VIDEO OUTPUT ROUTING:\n0 0\n\n", 0, 0)));
  EXPECT_TRUE(IsNak(Parse("INPUT LABELS:\n0 x\n\n", 0, 0)));
}

// ---------------------------------------------------------------------------
// Serialisation

RouterView SmallView() {
  RouterView view;
  view.inputs = 2;
  view.outputs = 3;
  view.routes = {1, 0, 1};
  view.input_labels = {"Input 1", "Kamera S\xc3\xbc" "d"};
  view.output_labels = {"PGM", "", "Ausgang 3"};
  view.lock_owners = {std::nullopt, std::string("panel-1"), std::string("panel-2")};
  return view;
}

DeviceInfo Device() {
  DeviceInfo device;
  device.friendly_name = "Studio A";
  device.unique_id = "nvs-0001";
  return device;
}

TEST(VideohubSerialise, PreludeIsExact) {
  const RouterView view = SmallView();
  EXPECT_EQ(Prelude(Device(), &view, "panel-1"),
            "PROTOCOL PREAMBLE:\n"
            "Version: 2.8\n"
            "\n"
            "VIDEOHUB DEVICE:\n"
            "Device present: true\n"
            "Model name: nvs Videohub gateway\n"
            "Friendly name: Studio A\n"
            "Unique ID: nvs-0001\n"
            "Video inputs: 2\n"
            "Video processing units: 0\n"
            "Video outputs: 3\n"
            "Video monitoring outputs: 0\n"
            "Serial ports: 0\n"
            "\n"
            "INPUT LABELS:\n"
            "0 Input 1\n"
            "1 Kamera S\xc3\xbc" "d\n"
            "\n"
            "OUTPUT LABELS:\n"
            "0 PGM\n"
            "1 \n"
            "2 Ausgang 3\n"
            "\n"
            "VIDEO OUTPUT LOCKS:\n"
            "0 U\n"
            "1 O\n"
            "2 L\n"
            "\n"
            "VIDEO OUTPUT ROUTING:\n"
            "0 1\n"
            "1 0\n"
            "2 1\n"
            "\n"
            "END PRELUDE:\n"
            "\n");
}

TEST(VideohubSerialise, PreludeBlockOrder) {
  const RouterView view = SmallView();
  std::vector<std::string> headers;
  for (const Block& block : ReadAll({Prelude(Device(), &view, "x")})) headers.push_back(block.header);
  EXPECT_EQ(headers, (std::vector<std::string>{"PROTOCOL PREAMBLE", "VIDEOHUB DEVICE", "INPUT LABELS",
                                               "OUTPUT LABELS", "VIDEO OUTPUT LOCKS", "VIDEO OUTPUT ROUTING",
                                               "END PRELUDE"}));
}

TEST(VideohubSerialise, PreludeWithoutDevice) {
  const std::string expected =
      "PROTOCOL PREAMBLE:\nVersion: 2.8\n\n"
      "VIDEOHUB DEVICE:\nDevice present: false\n\n"
      "END PRELUDE:\n\n";
  EXPECT_EQ(Prelude(Device(), nullptr, "panel-1"), expected);
  DeviceInfo absent = Device();
  absent.present = false;
  const RouterView view = SmallView();
  EXPECT_EQ(Prelude(absent, &view, "panel-1"), expected);
}

TEST(VideohubSerialise, DeviceFieldDefaults) {
  const RouterView view = SmallView();
  DeviceInfo device;
  device.version = "2.7";
  const std::string text = Prelude(device, &view, "x");
  EXPECT_NE(text.find("Version: 2.7\n"), std::string::npos);
  EXPECT_NE(text.find("Friendly name: nvs Videohub gateway\n"), std::string::npos);  // falls back to the model
  EXPECT_EQ(text.find("Unique ID:"), std::string::npos);                              // left out when unknown
  device.model = "evil\nINPUT LABELS:";
  EXPECT_NE(Prelude(device, &view, "x").find("Model name: evil INPUT LABELS:\n"), std::string::npos);
}

TEST(VideohubSerialise, DeviceResyncIsThePreludeWithoutPreambleAndEnd) {
  const RouterView view = SmallView();
  const std::string prelude = Prelude(Device(), &view, "panel-2");
  const std::string preamble = "PROTOCOL PREAMBLE:\nVersion: 2.8\n\n", end = "END PRELUDE:\n\n";
  EXPECT_EQ(DeviceResync(Device(), &view, "panel-2"),
            prelude.substr(preamble.size(), prelude.size() - preamble.size() - end.size()));
  EXPECT_EQ(DeviceResync(Device(), nullptr, "panel-2"), "VIDEOHUB DEVICE:\nDevice present: false\n\n");
}

TEST(VideohubSerialise, AckAndNak) {
  EXPECT_EQ(Ack(), "ACK\n\n");
  EXPECT_EQ(Nak(), "NAK\n\n");
}

TEST(VideohubSerialise, LockLettersArePerViewer) {
  const RouterView view = SmallView();
  const std::vector<int> all = {0, 1, 2};
  EXPECT_EQ(LocksBlock(view, all, "panel-1"), "VIDEO OUTPUT LOCKS:\n0 U\n1 O\n2 L\n\n");
  EXPECT_EQ(LocksBlock(view, all, "panel-2"), "VIDEO OUTPUT LOCKS:\n0 U\n1 L\n2 O\n\n");
  EXPECT_EQ(LocksBlock(view, all, "panel-3"), "VIDEO OUTPUT LOCKS:\n0 U\n1 L\n2 L\n\n");
  EXPECT_EQ(LocksBlock(view, all, ""), "VIDEO OUTPUT LOCKS:\n0 U\n1 L\n2 L\n\n");
}

TEST(VideohubSerialise, BlocksListOnlyTheGivenItems) {
  const RouterView view = SmallView();
  EXPECT_EQ(RoutingBlock(view, {2, 0}), "VIDEO OUTPUT ROUTING:\n2 1\n0 1\n\n");
  EXPECT_EQ(LabelsBlock(view, true, {1}), "INPUT LABELS:\n1 Kamera S\xc3\xbc" "d\n\n");
  EXPECT_EQ(LabelsBlock(view, false, {1}), "OUTPUT LABELS:\n1 \n\n");
  EXPECT_EQ(LocksBlock(view, {2}, "panel-2"), "VIDEO OUTPUT LOCKS:\n2 O\n\n");
  // Indices the view does not have are skipped; nothing left, nothing to send.
  EXPECT_EQ(RoutingBlock(view, {-1, 3, 1}), "VIDEO OUTPUT ROUTING:\n1 0\n\n");
  EXPECT_EQ(RoutingBlock(view, {}), "");
  EXPECT_EQ(LabelsBlock(view, true, {2}), "");
  EXPECT_EQ(LocksBlock(view, {7}, "x"), "");
}

TEST(VideohubSerialise, LabelsCannotBreakTheFraming) {
  RouterView view = SmallView();
  view.input_labels[0] = "two\nlines\r\nand\n\nVIDEO OUTPUT ROUTING:\n0 0";
  const std::string text = LabelsBlock(view, true, {0, 1});
  EXPECT_EQ(text, "INPUT LABELS:\n0 two lines  and  VIDEO OUTPUT ROUTING: 0 0\n1 Kamera S\xc3\xbc" "d\n\n");
  EXPECT_EQ(ReadAll({text}).size(), 1u);
}

TEST(VideohubSerialise, DumpBlockForEachHeader) {
  const RouterView view = SmallView();
  EXPECT_EQ(DumpBlock(view, "INPUT LABELS", "x"), LabelsBlock(view, true, {0, 1}));
  EXPECT_EQ(DumpBlock(view, "OUTPUT LABELS", "x"), LabelsBlock(view, false, {0, 1, 2}));
  EXPECT_EQ(DumpBlock(view, "VIDEO OUTPUT LOCKS", "panel-2"), LocksBlock(view, {0, 1, 2}, "panel-2"));
  EXPECT_EQ(DumpBlock(view, "VIDEO OUTPUT ROUTING", "x"), "VIDEO OUTPUT ROUTING:\n0 1\n1 0\n2 1\n\n");
  EXPECT_EQ(DumpBlock(view, "PING", "x"), "");
  EXPECT_EQ(DumpBlock(view, "VIDEOHUB DEVICE", "x"), "");
  // What ParseRequest asks for, DumpBlock answers.
  for (std::string_view header : {kInputLabels, kOutputLabels, kVideoOutputLocks, kVideoOutputRouting}) {
    const auto request = std::get<DumpRequest>(ParseRequest(B(std::string(header)), view.inputs, view.outputs));
    const auto blocks = ReadAll({DumpBlock(view, request.header, "x")});
    ASSERT_EQ(blocks.size(), 1u);
    EXPECT_EQ(blocks[0].header, header);
  }
}

// ---------------------------------------------------------------------------
// Diff

TEST(VideohubDiff, NoChange) {
  EXPECT_FALSE(Diff(SmallView(), SmallView()).any());
  EXPECT_FALSE(Changes{}.any());
}

TEST(VideohubDiff, EachKindOfChange) {
  const RouterView before = SmallView();
  RouterView after = before;
  after.routes[2] = 0;
  after.routes[0] = 0;
  after.input_labels[1] = "CAM 2";
  after.output_labels[1] = "Clean";
  after.lock_owners[0] = "panel-3";        // taken
  after.lock_owners[1] = std::nullopt;     // released
  after.lock_owners[2] = "panel-1";        // owner changed: 'L' -> 'L' for a third client, still listed
  const Changes changes = Diff(before, after);
  EXPECT_TRUE(changes.any());
  EXPECT_EQ(changes.routes, (std::vector<int>{0, 2}));
  EXPECT_EQ(changes.input_labels, (std::vector<int>{1}));
  EXPECT_EQ(changes.output_labels, (std::vector<int>{1}));
  EXPECT_EQ(changes.locks, (std::vector<int>{0, 1, 2}));
  // Blocks of exactly the changes, for one viewer.
  EXPECT_EQ(RoutingBlock(after, changes.routes), "VIDEO OUTPUT ROUTING:\n0 0\n2 0\n\n");
  EXPECT_EQ(LocksBlock(after, changes.locks, "panel-1"), "VIDEO OUTPUT LOCKS:\n0 L\n1 U\n2 O\n\n");
}

TEST(VideohubDiff, OnlyOneKind) {
  RouterView after = SmallView();
  after.output_labels[2] = "MON";
  const Changes changes = Diff(SmallView(), after);
  EXPECT_TRUE(changes.any());
  EXPECT_TRUE(changes.routes.empty());
  EXPECT_TRUE(changes.input_labels.empty());
  EXPECT_TRUE(changes.locks.empty());
  EXPECT_EQ(changes.output_labels, (std::vector<int>{2}));
}

TEST(VideohubDiff, NewSizeListsEverything) {
  RouterView after = SmallView();
  after.outputs = 4;
  after.routes.push_back(0);
  after.output_labels.push_back("Output 4");
  after.lock_owners.push_back(std::nullopt);
  const Changes changes = Diff(SmallView(), after);
  EXPECT_EQ(changes.routes, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(changes.input_labels, (std::vector<int>{0, 1}));
  EXPECT_EQ(changes.output_labels, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(changes.locks, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_TRUE(Diff(RouterView{}, SmallView()).any());
}

// ---------------------------------------------------------------------------
// nvsd's dump

TEST(VideohubViewFromDump, SpecExample) {
  // SPEC.md §6.1's example state.
  const auto state = nlohmann::json::parse(
      R"({"inputs":2,"outputs":2,"routes":[1,1],"input_labels":["Input 1","Cam \"B\""],)"
      R"("output_labels":["Output 1","Ausgang 2 ü"],"locks":[null,"panel-1"],)"
      R"("salvos":[{"name":"a","routes":[{"output":0,"input":1}]}]})");
  std::string error;
  const auto view = ViewFromDump(state, &error);
  ASSERT_TRUE(view.has_value()) << error;
  EXPECT_EQ(view->inputs, 2);
  EXPECT_EQ(view->outputs, 2);
  EXPECT_EQ(view->routes, (std::vector<int>{1, 1}));
  EXPECT_EQ(view->input_labels, (std::vector<std::string>{"Input 1", "Cam \"B\""}));
  EXPECT_EQ(view->output_labels, (std::vector<std::string>{"Output 1", "Ausgang 2 \xc3\xbc"}));
  EXPECT_EQ(view->lock_owners, (std::vector<std::optional<std::string>>{std::nullopt, "panel-1"}));
  EXPECT_EQ(LocksBlock(*view, {0, 1}, "panel-1"), "VIDEO OUTPUT LOCKS:\n0 U\n1 O\n\n");
}

TEST(VideohubViewFromDump, MalformedDumpsNameTheMember) {
  const auto good = nlohmann::json::parse(
      R"({"inputs":2,"outputs":2,"routes":[1,1],"input_labels":["a","b"],"output_labels":["c","d"],)"
      R"("locks":[null,"p"],"salvos":[]})");
  ASSERT_TRUE(ViewFromDump(good, nullptr).has_value());
  struct Row {
    const char* pointer;
    nlohmann::json value;  // null with `remove`: the member is removed
    bool remove;
    const char* mentions;
  };
  const Row rows[] = {
      {"/inputs", nullptr, true, "inputs"},
      {"/locks", nullptr, true, "locks"},
      {"/inputs", 0, false, "inputs"},
      {"/inputs", 1025, false, "inputs"},
      {"/inputs", 2.0, false, "inputs"},
      {"/inputs", "2", false, "inputs"},
      {"/outputs", -1, false, "outputs"},
      {"/outputs", 18446744073709551615ull, false, "outputs"},
      {"/routes", nlohmann::json::array({1}), false, "routes"},
      {"/routes/0", 2, false, "routes"},
      {"/routes/0", -1, false, "routes"},
      {"/routes/0", true, false, "routes"},
      {"/input_labels", nlohmann::json::array({"a"}), false, "input_labels"},
      {"/input_labels/1", 5, false, "input_labels"},
      {"/output_labels", "cd", false, "output_labels"},
      {"/locks/0", 5, false, "locks"},
      {"/locks/0", "", false, "locks"},
      {"/locks", nlohmann::json::array({nullptr, nullptr, nullptr}), false, "locks"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(std::string(row.pointer) + " " + row.value.dump());
    nlohmann::json state = good;
    const nlohmann::json::json_pointer pointer(row.pointer);
    if (row.remove) {
      state.erase(pointer.back());
    } else {
      state[pointer] = row.value;
    }
    std::string error;
    EXPECT_FALSE(ViewFromDump(state, &error).has_value());
    EXPECT_NE(error.find(row.mentions), std::string::npos) << error;
    EXPECT_FALSE(ViewFromDump(state, nullptr).has_value());
  }
  std::string error;
  EXPECT_FALSE(ViewFromDump(nlohmann::json::array({1, 2}), &error).has_value());
  EXPECT_FALSE(error.empty());
}

// ---------------------------------------------------------------------------
// Round trip: Prelude -> BlockReader (at random split points) -> the expected
// blocks, and the status blocks parse back (as a client would send them) to
// the view's own routes and labels.

std::string RandomLabel(std::mt19937& rng) {
  static const char* const kPieces[] = {"a", "Z", "7", " ", "Cam", "-", ":", "\xc3\xbc", "\xe6\x91\x84",
                                        "\xf0\x9f\x8e\xa5", "\n", "\r", "\r\n", "\"", "\\"};
  std::string label;
  const int pieces = std::uniform_int_distribution<int>(0, 24)(rng);
  for (int i = 0; i < pieces; ++i) {
    const char* piece = kPieces[std::uniform_int_distribution<std::size_t>(0, std::size(kPieces) - 1)(rng)];
    if (label.size() + std::char_traits<char>::length(piece) > kMaxLabelBytes) break;
    label += piece;
  }
  return label;
}

std::string Sanitised(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

TEST(VideohubRoundTrip, PreludeReadsBackAsTheExpectedBlocks) {
  std::mt19937 rng(20240611);
  const std::string viewer = "panel-1";
  const std::optional<std::string> owners[] = {std::nullopt, viewer, std::string("panel-2"),
                                               std::string("automation")};
  for (int iteration = 0; iteration < 300; ++iteration) {
    SCOPED_TRACE("iteration " + std::to_string(iteration));
    RouterView view;
    view.inputs = std::uniform_int_distribution<int>(1, 40)(rng);
    view.outputs = std::uniform_int_distribution<int>(1, 40)(rng);
    for (int o = 0; o < view.outputs; ++o) {
      view.routes.push_back(std::uniform_int_distribution<int>(0, view.inputs - 1)(rng));
      view.output_labels.push_back(RandomLabel(rng));
      view.lock_owners.push_back(owners[std::uniform_int_distribution<int>(0, 3)(rng)]);
    }
    for (int i = 0; i < view.inputs; ++i) view.input_labels.push_back(RandomLabel(rng));
    DeviceInfo device = Device();

    const std::string text = Prelude(device, &view, viewer);
    std::vector<std::string> pieces;
    for (std::size_t at = 0; at < text.size();) {
      const std::size_t length = std::uniform_int_distribution<std::size_t>(1, 64)(rng);
      pieces.push_back(text.substr(at, length));
      at += length;
    }
    const std::vector<Block> blocks = ReadAll(pieces);

    std::vector<Block> expected;
    expected.push_back(B("PROTOCOL PREAMBLE", {"Version: 2.8"}));
    expected.push_back(B("VIDEOHUB DEVICE", {"Device present: true", "Model name: nvs Videohub gateway",
                                             "Friendly name: Studio A", "Unique ID: nvs-0001",
                                             "Video inputs: " + std::to_string(view.inputs),
                                             "Video processing units: 0",
                                             "Video outputs: " + std::to_string(view.outputs),
                                             "Video monitoring outputs: 0", "Serial ports: 0"}));
    Block inputs = B("INPUT LABELS"), outputs = B("OUTPUT LABELS"), locks = B("VIDEO OUTPUT LOCKS"),
          routing = B("VIDEO OUTPUT ROUTING");
    for (int i = 0; i < view.inputs; ++i) inputs.lines.push_back(std::to_string(i) + " " + Sanitised(view.input_labels[i]));
    for (int o = 0; o < view.outputs; ++o) {
      const auto& owner = view.lock_owners[o];
      outputs.lines.push_back(std::to_string(o) + " " + Sanitised(view.output_labels[o]));
      locks.lines.push_back(std::to_string(o) + (!owner ? " U" : *owner == viewer ? " O" : " L"));
      routing.lines.push_back(std::to_string(o) + " " + std::to_string(view.routes[o]));
    }
    expected.insert(expected.end(), {inputs, outputs, locks, routing, B("END PRELUDE")});
    ASSERT_EQ(blocks, expected);

    // The status blocks, sent back by a client, are valid requests for the
    // same routes and (sanitised) labels.
    const auto take = ParseRequest(blocks[5], view.inputs, view.outputs);
    ASSERT_TRUE(std::holds_alternative<RouteTake>(take)) << ReasonOf(take);
    for (int o = 0; o < view.outputs; ++o) {
      EXPECT_EQ(std::get<RouteTake>(take).routes[o], std::make_pair(o, view.routes[o]));
    }
    for (const bool input : {true, false}) {
      const auto change = ParseRequest(blocks[input ? 2 : 3], view.inputs, view.outputs);
      ASSERT_TRUE(std::holds_alternative<LabelChange>(change)) << ReasonOf(change);
      const auto& labels = input ? view.input_labels : view.output_labels;
      ASSERT_EQ(std::get<LabelChange>(change).labels.size(), labels.size());
      for (std::size_t k = 0; k < labels.size(); ++k) {
        EXPECT_EQ(std::get<LabelChange>(change).labels[k], std::make_pair(static_cast<int>(k), Sanitised(labels[k])));
      }
    }
    // Nothing changed, nothing to send; and every diff lists what it must.
    EXPECT_FALSE(Diff(view, view).any());
  }
}

}  // namespace
}  // namespace nvs::videohub
