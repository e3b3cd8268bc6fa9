// Finding 4 of the security review (issue 15): the state dir was trusted
// without checking its owner or links. nvsd took a 0700 dir owned by
// `nobody`, followed a `journal` link (chmod'ed a root folder to 0700 and
// wrote into it), appended variant stderr to a root file through a linked
// log, obeyed a forged quarantine report, returned a root-only file through
// a linked snapshot, and overwrote a root file through a linked `.tmp`. And
// a secret key owned by another user was accepted. Each is refused now,
// naming the path and the reason; the attacker's files are made as `nobody`
// (chown), the target files are root's and stay untouched.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "nvsd_harness.h"
#include "security_support.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

#define NVS_NEED_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "plays another user (nobody): run as root (CI does)"; \
  static_assert(true)

class StateDir : public SecurityTest {
 protected:
  // A root-owned file an attacker wants written or read.
  fs::path Victim(const std::string& name, const std::string& text) {
    const fs::path victim = dir() / name;
    std::ofstream(victim) << text;
    fs::permissions(victim, fs::perms::owner_read | fs::perms::owner_write);
    return victim;
  }
  static std::string Read(const fs::path& file) {
    std::ifstream in(file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static void Nobody(const fs::path& path) { ASSERT_EQ(lchown(path.c_str(), kNobody, kNobody), 0) << path; }

  // Starts nvsd on `state`; expects it to refuse, with every one of `says` in its log.
  void ExpectRefused(const fs::path& state, const std::vector<std::string>& says) {
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}, {{"state_dir", state.string()}}));
    const auto exited = nvsd.WaitNvsdExit(milliseconds(15000));
    ASSERT_TRUE(exited.has_value()) << "nvsd started on " << state;
    for (const auto& text : says) EXPECT_NE(nvsd.NvsdLog().find(text), std::string::npos) << text << "\n" << nvsd.NvsdLog();
  }
  // A state dir nvsd made and used once (a journal, logs, a report folder).
  fs::path UsedStateDir() {
    const fs::path state = dir() / "state";
    NvsdHarness nvsd(NvsdOptions({"router-a", "router-b"}, {{"state_dir", state.string()}}));
    EXPECT_TRUE(nvsd.WaitReady());
    EXPECT_EQ(nvsd.Command({{"op", "route"}, {"routes", {{{"output", 1}, {"input", 2}}}}})["status"], "committed");
    return state;
  }
};

TEST_F(StateDir, OneOwnedByAnotherUserIsRefused) {
  NVS_NEED_ROOT();
  const fs::path state = dir() / "state";
  fs::create_directory(state);
  fs::permissions(state, fs::perms::owner_all);
  Nobody(state);
  ExpectRefused(state, {state.string() + " is owned by uid 65534", "not by nvsd's user"});
  EXPECT_FALSE(fs::exists(state / "journal")) << "nvsd wrote into it";
}

TEST_F(StateDir, OneUnderAFolderOthersCanReplaceIsRefused) {
  NVS_NEED_ROOT();
  const fs::path open = dir() / "open";
  fs::create_directory(open);
  fs::permissions(open, fs::perms::all);  // 0777, not sticky
  ExpectRefused(open / "state", {"the folder " + open.string() + " above it can be written by group or others"});
}

TEST_F(StateDir, ALinkedJournalFolderIsNotFollowed) {
  NVS_NEED_ROOT();
  const fs::path state = UsedStateDir();
  const fs::path elsewhere = dir() / "root-folder";
  fs::create_directory(elsewhere);
  fs::permissions(elsewhere, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                 fs::perms::others_read | fs::perms::others_exec);  // 0755
  fs::remove_all(state / "journal");
  fs::create_directory_symlink(elsewhere, state / "journal");
  Nobody(state / "journal");
  ExpectRefused(state, {(state / "journal").string() + " is a symbolic link"});
  EXPECT_EQ(fs::status(elsewhere).permissions() & fs::perms::others_read, fs::perms::others_read)
      << "nvsd chmod'ed the folder the link points to";
  EXPECT_TRUE(fs::is_empty(elsewhere)) << "nvsd wrote into the folder the link points to";
}

TEST_F(StateDir, ALinkedVariantLogIsNotAppendedTo) {
  NVS_NEED_ROOT();
  const fs::path state = UsedStateDir();
  const fs::path victim = Victim("shadow", "root's secrets\n");
  fs::remove(state / "logs" / "router-a.log");
  fs::create_symlink(victim, state / "logs" / "router-a.log");
  Nobody(state / "logs" / "router-a.log");
  ExpectRefused(state, {(state / "logs" / "router-a.log").string() + " is a symbolic link"});
  EXPECT_EQ(Read(victim), "root's secrets\n");
}

TEST_F(StateDir, AReportAnotherUserWroteIsRefused) {
  NVS_NEED_ROOT();
  const fs::path state = UsedStateDir();
  const fs::path forged = state / "quarantine" / "q-000000000009-00000000.json";
  std::ofstream(forged) << json{{"id", "q-000000000009-00000000"}, {"fingerprint", "0000"}, {"status", "released"}}.dump();
  fs::permissions(forged, fs::perms::owner_read | fs::perms::owner_write);
  Nobody(forged);
  ExpectRefused(state, {forged.string() + " is owned by uid 65534"});
}

TEST_F(StateDir, ALinkedSnapshotOrTemporaryFileIsRefused) {
  NVS_NEED_ROOT();
  const fs::path state = UsedStateDir();
  const fs::path victim = Victim("root-only", "only root reads this\n");
  for (const std::string name : {"q-000000000001-00000000.state.json", "q-000000000001-00000000.json.tmp"}) {
    const fs::path link = state / "quarantine" / name;
    fs::create_symlink(victim, link);
    Nobody(link);
    ExpectRefused(state, {link.string() + " is a symbolic link"});
    fs::remove(link);
  }
  EXPECT_EQ(Read(victim), "only root reads this\n");
}

TEST_F(StateDir, AGroupWritableFileInItIsRefused) {
  NVS_NEED_ROOT();
  const fs::path state = UsedStateDir();
  fs::permissions(state / "checkpoint.json", fs::perms::group_write, fs::perm_options::add);
  ExpectRefused(state, {(state / "checkpoint.json").string() + " can be written by group or others"});
}

TEST_F(StateDir, ASecretKeyOwnedByAnotherUserIsRefused) {
  NVS_NEED_ROOT();
  NvsdOptions options({"router-a", "router-b"});
  options.curve = true;
  fs::path keys;
  {
    NvsdHarness nvsd(options);  // (makes the keys)
    ASSERT_TRUE(nvsd.WaitReady());
    keys = nvsd.keys_dir();
    fs::copy(keys, dir() / "keys");
  }
  keys = dir() / "keys";
  Nobody(keys / "nvsd.key");
  NvsdOptions with_foreign_key({"router-a", "router-b"},
                               {{"client_curve", {{"secret_key_file", (keys / "nvsd.key").string()},
                                                  {"authorized_keys_file", (keys / "authorized_keys").string()}}}});
  NvsdHarness nvsd(with_foreign_key);
  ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(15000)).has_value()) << "nvsd took a secret key another user owns";
  EXPECT_NE(nvsd.NvsdLog().find("nvsd.key: owned by uid 65534"), std::string::npos) << nvsd.NvsdLog();
}

}  // namespace
}  // namespace nvs::testing
