// The transcripts in tests/simulation/testdata: each is a scenario with
// what must happen at every step (transcript.h). On a difference the test
// prints the whole transcript as it ran; NVS_REWRITE_TRANSCRIPTS=1 writes it
// over the file instead (then read the diff before committing it).
#include "transcript.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace nvs::simulation {
namespace {

const std::filesystem::path kDir = NVS_TRANSCRIPTS_DIR;

class Transcript : public testing::TestWithParam<std::string> {};

TEST_P(Transcript, HappensAsWritten) {
  const auto path = kDir / (GetParam() + ".txt");
  std::ifstream in(path);
  ASSERT_TRUE(in.is_open()) << path;
  std::stringstream text;
  text << in.rdbuf();
  const std::string ran = RunTranscript(text.str());
  const char* rewrite = std::getenv("NVS_REWRITE_TRANSCRIPTS");
  if (rewrite != nullptr && std::string(rewrite) == "1") {
    std::ofstream(path) << ran;
    return;
  }
  EXPECT_EQ(text.str(), ran) << "the transcript " << path << " as it ran:\n" << ran;
}

std::vector<std::string> All() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kDir)) {
    if (entry.path().extension() == ".txt") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Testdata, Transcript, testing::ValuesIn(All()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace nvs::simulation
