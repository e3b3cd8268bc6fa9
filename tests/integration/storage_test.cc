// Storage faults (issue 14), with real processes and real filesystems: a
// small tmpfs filling up, a state dir remounted read-only, a flipped byte in
// a journal segment or a checkpoint, two nvsd on one state dir, a long tail,
// a SIGTERM. Each finding of the outside test is a test named after it; each
// failed on the nvsd before the fix. (The same faults one write at a time,
// with EIO on fsync, short writes and lost unsynced data, are in the unit
// tests over FaultyStateDir: tests/unit/journal_test.cc, recovery_test.cc.)
//
// The mounts need root (the tests say so and skip without it); every mount
// is lazily unmounted when its test ends, passed or failed.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "nvs/supervisor/journal.h"
#include "nvsd_harness.h"
#include "variant_harness.h"

namespace nvs::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
namespace fs = std::filesystem;

json Route(int output, int input) {
  return {{"op", "route"}, {"client", "st"}, {"routes", {{{"output", output}, {"input", input}}}}};
}
json Label(const std::string& text) {
  return {{"op", "label"}, {"client", "st"}, {"kind", "input"}, {"labels", {{{"index", 3}, {"text", text}}}}};
}

// A member deep in a reply, or null when it is not there (never a throw:
// the tests also run against older nvsd, whose status is shaped otherwise).
json At(const json& value, const std::string& pointer) {
  const json::json_pointer at(pointer);
  return value.contains(at) ? value.at(at) : json();
}

int Shell(const std::string& command) {
  const int raw = std::system((command + " >/dev/null 2>&1").c_str());
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

#define NVS_NEED_ROOT()                                                                   \
  if (geteuid() != 0) GTEST_SKIP() << "mounts a filesystem: run as root (CI does)"; \
  static_assert(true)

// A mount that is undone when the test ends, however it ends.
class Mount {
 public:
  // A tmpfs of `size` (e.g. "2m") on `dir` (created if need be).
  static Mount Tmpfs(const fs::path& dir, const std::string& size) {
    fs::create_directories(dir);
    Mount m(dir);
    m.ok_ = Shell("mount -t tmpfs -o size=" + size + ",mode=0700 nvs-test " + dir.string()) == 0;
    return m;
  }
  // `dir` bind-mounted on itself, so it can be made read-only and back.
  static Mount Bind(const fs::path& dir) {
    Mount m(dir);
    m.ok_ = Shell("mount --bind " + dir.string() + " " + dir.string()) == 0;
    return m;
  }
  // An ext4 image of `size` on a loop device at `dir`, that turns itself
  // read-only on an error (errors=remount-ro, as a real server's would).
  static Mount Ext4(const fs::path& image, const fs::path& dir, const std::string& size) {
    fs::create_directories(dir);
    Mount m(dir);
    m.image_ = image;
    m.ok_ = Shell("truncate -s " + size + " " + image.string()) == 0 &&
            Shell("mkfs.ext4 -q -F " + image.string()) == 0 && m.MountImage();
    return m;
  }
  Mount(Mount&& other) noexcept : dir_(std::move(other.dir_)), image_(std::move(other.image_)), ok_(other.ok_) {
    other.ok_ = false;
  }
  ~Mount() {
    if (ok_) Shell("umount -l " + dir_.string());
  }
  bool ok() const { return ok_; }
  bool ReadOnly(bool read_only) {
    return Shell("mount -o remount,bind," + std::string(read_only ? "ro " : "rw ") + dir_.string()) == 0;
  }
  // ext4: an error as the kernel would report one (the filesystem goes
  // read-only at once, with files open for writing).
  bool TriggerError() {
    const std::string device = fs::path(Output("findmnt -n -o SOURCE " + dir_.string())).filename().string();
    std::ofstream trigger("/sys/fs/ext4/" + device + "/trigger_fs_error");
    trigger << "nvs storage test\n";
    trigger.flush();
    if (!trigger) return false;
    // Read-only: the mount says `ro` (Linux 5), or `emergency_ro` and the
    // mount stays `rw` (Linux 6.x). (Not a search for "ro": the option
    // errors=remount-ro has it from the start.)
    std::stringstream options(Output("findmnt -n -o OPTIONS " + dir_.string()));
    for (std::string option; std::getline(options, option, ',');) {
      if (option == "ro" || option == "emergency_ro") return true;
    }
    return false;
  }
  // ext4: unmounted, checked (e2fsck -fy, as an operator would after an
  // error), mounted again read-write.
  bool Repair() {
    if (Shell("umount " + dir_.string()) != 0) return false;
    const int fsck = Shell("e2fsck -fy " + image_.string());
    return (fsck == 0 || fsck == 1) && MountImage();
  }

 private:
  explicit Mount(fs::path dir) : dir_(std::move(dir)) {}
  bool MountImage() {
    return Shell("mount -o loop,errors=remount-ro " + image_.string() + " " + dir_.string()) == 0;
  }
  static std::string Output(const std::string& command) {
    std::string out;
    if (FILE* pipe = popen(command.c_str(), "r")) {
      char buffer[512];
      while (std::size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
      pclose(pipe);
    }
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }
  fs::path dir_;
  fs::path image_;
  bool ok_ = false;
};

// Fills the filesystem of `file` until a write fails with ENOSPC. True if it did.
bool FillDisk(const fs::path& file) {
  const int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const std::string chunk(4096, 'x');
  for (;;) {
    const ssize_t n = write(fd, chunk.data(), chunk.size());
    if (n < 0) {
      const bool full = errno == ENOSPC;
      close(fd);
      return full;
    }
  }
}

std::string ReadFile(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void WriteFile(const fs::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}
void FlipByte(const fs::path& file, std::size_t offset) {
  std::string bytes = ReadFile(file);
  ASSERT_LT(offset, bytes.size()) << file;
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x04);
  WriteFile(file, bytes);
}

std::string Nvs(const std::string& args, int* status, const fs::path& dir) {
  return RunCapture(std::string(NVS_CLI) + " " + args, dir / "nvs.stderr", status);
}

// The journal, record by record (what `nvs journal export` reads).
std::vector<json> JournalRecords(const fs::path& state_dir) {
  std::vector<json> out;
  auto journal = supervisor::ReadJournal(state_dir);
  if (!journal.ok()) return out;
  for (const auto& text : journal.value().records) out.push_back(json::parse(text, nullptr, false));
  return out;
}

// What the journal says was committed: request id -> seq. Fails the test if
// a seq was admitted twice or an id committed twice.
std::map<std::string, std::uint64_t> CommittedIds(const fs::path& state_dir) {
  std::map<std::uint64_t, std::string> admitted;
  std::map<std::string, std::uint64_t> committed;
  for (const auto& r : JournalRecords(state_dir)) {
    if (!r.is_object()) continue;
    if (r["t"] == "admit") {
      const auto seq = r["seq"].get<std::uint64_t>();
      EXPECT_EQ(admitted.count(seq), 0u) << "seq " << seq << " was admitted twice (a seq reused)";
      admitted[seq] = r.value("id", "");
    } else if (r["t"] == "verdict" && r["verdict"] == "COMMIT") {
      const auto seq = r["seq"].get<std::uint64_t>();
      const std::string id = admitted.count(seq) ? admitted[seq] : "";
      EXPECT_EQ(committed.count(id), 0u) << "request " << id << " was committed twice";
      committed[id] = seq;
    }
  }
  return committed;
}

// The routes a sequence of committed route commands leaves (by seq).
struct RouteModel {
  std::map<std::uint64_t, std::pair<int, int>> by_seq;  // seq -> (output, input)
  std::map<std::string, std::pair<int, int>> sent;       // id -> (output, input)
  std::map<std::string, std::uint64_t> acknowledged;     // id -> seq, answered `committed`
  std::set<std::string> refused;                         // answered `unavailable`

  void Answer(const std::string& id, const json& reply) {
    ASSERT_TRUE(reply.is_object()) << id << ": no reply";
    const std::string status = reply.value("status", "");
    if (status == "committed") {
      acknowledged[id] = reply["seq"].get<std::uint64_t>();
      by_seq[reply["seq"].get<std::uint64_t>()] = sent[id];
    } else {
      ASSERT_EQ(status, "unavailable") << reply.dump();
      refused.insert(id);
    }
  }
  // Checks the variants' routes against the acknowledged commands.
  void Check(const json& dump) const {
    ASSERT_TRUE(dump.is_object()) << "no dump";
    std::map<int, int> expected;
    for (const auto& [seq, route] : by_seq) expected[route.first] = route.second;
    for (const auto& [output, input] : expected) {
      EXPECT_EQ(dump["result"]["state"]["routes"][output], input) << "output " << output;
    }
  }
};

struct Sender {
  NvsdHarness& nvsd;
  RouteModel& model;
  int next = 0;
  json Send(const std::string& prefix) { return SendMany(prefix, 1).front(); }
  // `n` commands out at once, then their replies, in order.
  std::vector<json> SendMany(const std::string& prefix, int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      const std::string id = prefix + "-" + std::to_string(next);
      const auto route = std::make_pair(next % 16, (next * 7 + 3) % 16);
      ++next;
      model.sent[id] = route;
      ids.push_back(nvsd.SendCommand(Route(route.first, route.second), id));
    }
    std::vector<json> replies;
    for (const auto& id : ids) {
      replies.push_back(nvsd.ReplyTo(id));
      model.Answer(id, replies.back());
    }
    return replies;
  }
};

// After a SIGKILL: a restarted nvsd has the state `before` (the variants'
// dump when it was killed), answers every acknowledged id from its journal
// with its seq and applies none again; the journal holds exactly the
// acknowledged commits, none answered `unavailable`, no seq twice, and
// `nvs journal check` passes.
void CheckAfterRestart(const NvsdOptions& options, const RouteModel& model, const json& before, const fs::path& dir) {
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    const json after = nvsd.Query({{"op", "dump"}});
    EXPECT_EQ(after["result"], before["result"]) << "the state changed across the restart";
    model.Check(after);
    for (const auto& [id, seq] : model.acknowledged) {
      const json retried = nvsd.ReplyTo(nvsd.SendCommand(Route(0, 0), id));
      EXPECT_EQ(retried["status"], "committed") << id;
      EXPECT_EQ(retried["seq"], seq) << id << " was applied again";
    }
    EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before["result"]) << "a retry changed the state";
  }
  const auto committed = CommittedIds(dir / "state");
  for (const auto& [id, seq] : model.acknowledged) {
    EXPECT_EQ(committed.count(id) ? committed.at(id) : 0, seq) << id << " acknowledged, not in the journal";
  }
  for (const auto& id : model.refused) EXPECT_EQ(committed.count(id), 0u) << id << " answered unavailable, committed";
  int exit_code = 0;
  const std::string checked = Nvs("journal check " + (dir / "state").string(), &exit_code, dir);
  EXPECT_EQ(exit_code, 0) << checked;
}

// The state dir on its own 2 MiB tmpfs, and nvsd's options for it (two
// variants, a checkpoint every 25 commands).
struct SmallDisk {
  fs::path dir = MakeTempDir("/tmp/nvs-full-XXXXXX");
  Mount disk = Mount::Tmpfs(dir / "state", "2m");
  NvsdOptions options{{"router-a", "router-b"}, {{"state_dir", (dir / "state").string()}, {"checkpoint_interval", 25}}};
  static fs::path MakeTempDir(std::string pattern) { return mkdtemp(pattern.data()); }
};

// ---- 1. disk full ------------------------------------------------------------------

// An outside test put the state dir on a 2 MiB tmpfs and filled it: a failed
// partial write left a torn record mid-segment with later records after it;
// at the restart the segment was cut there, 87 acknowledged commits were
// lost, seqs were reused, a retried acknowledged id was applied again, six
// commands answered `unavailable` had been applied, and `nvs status` said
// healthy throughout. Here: the disk fills mid-traffic, is freed, nvsd goes
// on by itself, and after a SIGKILL and a restart the journal, the state and
// the answers to retries agree with what clients were told.
TEST(Storage, AFullDiskLosesNoAcknowledgedCommitAndAppliesNothingAnsweredUnavailable) {
  NVS_NEED_ROOT();
  SmallDisk rig;
  ASSERT_TRUE(rig.disk.ok());
  const fs::path& dir = rig.dir;
  const NvsdOptions& options = rig.options;
  RouteModel model;
  json before;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    Sender sender{nvsd, model};
    for (int i = 0; i < 40; ++i) ASSERT_EQ(sender.Send("a")["status"], "committed");
    ASSERT_TRUE(FillDisk(dir / "state" / "balloon"));
    // What fitted in the last page still commits; then `unavailable`.
    json refused;
    for (int i = 0; i < 400 && refused.is_null(); ++i) {
      const json reply = sender.Send("b");
      if (reply["status"] == "unavailable") refused = reply;
    }
    ASSERT_TRUE(refused.is_object()) << "400 commands on a full disk, all committed";
    EXPECT_NE(refused.value("reason", "").find("No space left"), std::string::npos) << refused.dump();
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sender.Send("c")["status"], "unavailable");
    // Visible: status, the event, `nvs status`; reads are still answered.
    const json status = nvsd.Status();
    EXPECT_EQ(At(status, "/nvsd/journal/state"), "degraded") << status.dump();
    EXPECT_EQ(At(status, "/nvsd/journal/trouble/kind"), "full") << status.dump();
    EXPECT_TRUE(nvsd.WaitEvent([](const json& e) { return e["event"] == "journal" && e["state"] == "degraded"; })
                    .is_object());
    int exit_code = 0;
    const std::string said = Nvs("status --endpoint " + nvsd.client_endpoint(), &exit_code, nvsd.dir());
    EXPECT_NE(exit_code, 0) << said;
    EXPECT_EQ(nvsd.Query({{"op", "dump"}})["status"], "answered");
    // Space again: nvsd resumes by itself.
    fs::remove(dir / "state" / "balloon");
    EXPECT_TRUE(nvsd.WaitEvent([](const json& e) { return e["event"] == "journal" && e["state"] == "ok"; })
                    .is_object());
    for (int i = 0; i < 20; ++i) EXPECT_EQ(sender.Send("d")["status"], "committed");
    before = nvsd.Query({{"op", "dump"}});
    model.Check(before);
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  EXPECT_GE(model.refused.size(), 6u);
  CheckAfterRestart(options, model, before, dir);
}

// The same under pipelined load: 16 commands out at once, queued in nvsd
// while the one before them is in flight, when the disk fills: whatever
// was queued is refused or committed, and a restart finds nothing it could
// carry out that a client was told was not.
TEST(Storage, AFullDiskUnderPipelinedLoadLosesNoAcknowledgedCommitAndAppliesNothingAnsweredUnavailable) {
  NVS_NEED_ROOT();
  SmallDisk rig;
  ASSERT_TRUE(rig.disk.ok());
  const fs::path& dir = rig.dir;
  const NvsdOptions& options = rig.options;
  RouteModel model;
  json before;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    Sender sender{nvsd, model};
    for (int i = 0; i < 4; ++i) {
      for (const auto& reply : sender.SendMany("a", 16)) ASSERT_EQ(reply["status"], "committed") << reply.dump();
    }
    ASSERT_TRUE(FillDisk(dir / "state" / "balloon"));
    bool refused = false;
    for (int i = 0; i < 40 && !refused; ++i) {
      for (const auto& reply : sender.SendMany("b", 16)) refused = refused || reply["status"] == "unavailable";
    }
    ASSERT_TRUE(refused) << "640 commands on a full disk, all committed";
    // (Committed or refused: the mark of a retry may fit where a failed
    // write was cut back, and the journal be `ok` for a moment.)
    sender.SendMany("c", 16);
    fs::remove(dir / "state" / "balloon");
    // (The state, not the event: a moment of `ok` above published one.)
    EXPECT_TRUE(nvsd.WaitStatus([](const json& st) { return At(st, "/nvsd/journal/state") == "ok"; },
                                milliseconds(20000))
                    .is_object());
    for (int i = 0; i < 2; ++i) {
      for (const auto& reply : sender.SendMany("d", 16)) EXPECT_EQ(reply["status"], "committed") << reply.dump();
    }
    before = nvsd.Query({{"op", "dump"}});
    model.Check(before);
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  CheckAfterRestart(options, model, before, dir);
}

// Found by a review of the fix above: while the disk was full, a retry of a
// command committed (and on disk) long before, read in the turn nvsd tried
// the journal again, was taken for a reply resting on the records that try
// lost: answered `unavailable`, its id forgotten and its commit undone, so
// the next retry applied it a second time. A retry rests on its verdict
// record, already on disk: it is answered `committed`, with its seq, however
// often the journal fails meanwhile.
TEST(Storage, RetriesOfCommittedCommandsWhileTheDiskIsFullAreAnsweredCommittedAndNeverUndone) {
  NVS_NEED_ROOT();
  char pattern[] = "/tmp/nvs-retry-full-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  Mount disk = Mount::Tmpfs(dir / "state", "2m");
  ASSERT_TRUE(disk.ok());
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", (dir / "state").string()}});
  RouteModel model;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    Sender sender{nvsd, model};
    for (int i = 0; i < 20; ++i) ASSERT_EQ(sender.Send("a")["status"], "committed");
    const auto acknowledged = model.acknowledged;
    ASSERT_TRUE(FillDisk(dir / "state" / "balloon"));
    json refused;
    for (int i = 0; i < 400 && refused.is_null(); ++i) {
      const json reply = sender.Send("b");
      if (reply["status"] == "unavailable") refused = reply;
    }
    ASSERT_TRUE(refused.is_object()) << "400 commands on a full disk, all committed";
    // Retries, pipelined, until nvsd has tried the journal again (and
    // failed) three times: some of them are read in those turns. (A try
    // whose small record still fits in the last page ends the trouble: a new
    // command brings it back, until not even that fits.)
    const auto attempts = [&] { return At(nvsd.Status(), "/nvsd/journal/trouble/attempts"); };
    ASSERT_TRUE(attempts().is_number()) << "this nvsd does not count its tries: the test cannot tell when to stop";
    int retried = 0;
    for (json tries = attempts(); !(tries.is_number() && tries.get<int>() >= 3) && retried < 200'000;
         tries = attempts()) {
      if (tries.is_null()) {
        sender.Send("b");
        continue;
      }
      std::vector<std::string> ids;
      for (const auto& [id, seq] : acknowledged) ids.push_back(nvsd.SendCommand(Route(0, 0), id));
      for (const auto& id : ids) {
        const json reply = nvsd.ReplyTo(id);
        ASSERT_EQ(reply["status"], "committed") << id << ": " << reply.dump();
        ASSERT_EQ(reply["seq"], acknowledged.at(id)) << id;
        ++retried;
      }
    }
    EXPECT_LT(retried, 200'000);
    fs::remove(dir / "state" / "balloon");
    EXPECT_TRUE(nvsd.WaitEvent([](const json& e) { return e["event"] == "journal" && e["state"] == "ok"; })
                    .is_object());
    // Once more now the journal takes records again: still answered, not applied.
    for (const auto& [id, seq] : acknowledged) {
      const json reply = nvsd.ReplyTo(nvsd.SendCommand(Route(0, 0), id));
      EXPECT_EQ(reply["status"], "committed") << id;
      EXPECT_EQ(reply["seq"], seq) << id << " was applied again";
    }
    model.Check(nvsd.Query({{"op", "dump"}}));
  }
  CommittedIds(dir / "state");  // (fails the test on an id committed twice)
}

// ---- 2. a quarantine report that cannot be written -------------------------------------

int CountKiller(const std::vector<json>& lines) {
  return static_cast<int>(std::count_if(lines.begin(), lines.end(), [](const json& line) {
    return line.dump().find("KILLER") != std::string::npos;
  }));
}

// The quarantine folder full (its own small tmpfs): a poison was answered
// `quarantined` and, its report unwritten, delivered again after a restart.
// Now it is answered `unavailable` until the report is on disk, a restart
// retests it on fresh processes instead of delivering it, and once there is
// space it is quarantined for good.
TEST(Storage, APoisonIsNotAnsweredQuarantinedUntilItsReportIsOnDiskNorDeliveredAgainAfterARestart) {
  NVS_NEED_ROOT();
  char pattern[] = "/tmp/nvs-qfull-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  Mount reports = Mount::Tmpfs(state / "quarantine", "64k");
  ASSERT_TRUE(reports.ok());
  NvsdOptions options({VariantSpec("router-a", {"--fault", "crash-on=KILLER"}),
                       VariantSpec("router-b", {"--fault", "crash-on=KILLER"}), "router-c"},
                      {{"state_dir", state.string()}});
  options.log_dir = dir;
  ASSERT_TRUE(FillDisk(state / "quarantine" / "balloon"));
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    const json first = nvsd.ReplyTo(nvsd.SendCommand(Label("KILLER"), "poison-1"));
    EXPECT_EQ(first["status"], "unavailable") << first.dump();
    EXPECT_NE(first.value("reason", "").find("report cannot be written"), std::string::npos) << first.dump();
    EXPECT_EQ(At(nvsd.Status(), "/nvsd/journal/state"), "degraded");
    // Resent meanwhile: not `quarantined` either (nvsd would forget it).
    const json again = nvsd.Command(Label("KILLER"));
    EXPECT_EQ(again["status"], "unavailable") << again.dump();
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  {
    // Restarted, still no space: the undecided admit is retested on fresh
    // processes, not delivered; still `unavailable`.
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitReady());
    ASSERT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) { return !LogEvents(log, "quarantined_in_memory").empty(); },
                                 milliseconds(20000)));
    const json resent = nvsd.Command(Label("KILLER"));
    EXPECT_EQ(resent["status"], "unavailable") << resent.dump();
    // Space again: the report is written, the block is for good.
    fs::remove(state / "quarantine" / "balloon");
    ASSERT_TRUE(nvsd.WaitEvent([](const json& e) { return e["event"] == "journal" && e["state"] == "ok"; })
                    .is_object());
    const json blocked = nvsd.Command(Label("KILLER"));
    EXPECT_EQ(blocked["status"], "quarantined") << blocked.dump();
    ASSERT_TRUE(fs::exists(state / "quarantine" / (blocked.value("report", "") + ".json")));
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    EXPECT_EQ(nvsd.Command(Label("KILLER"))["status"], "quarantined");
    EXPECT_EQ(nvsd.ReplyTo(nvsd.SendCommand(Label("KILLER"), "poison-1"))["status"], "quarantined");
    EXPECT_EQ(nvsd.Command(Label("fine"))["status"], "committed");
    for (const std::string name : {"router-a", "router-b", "router-c"}) {
      EXPECT_EQ(CountKiller(nvsd.DeliveredTo(name)), 1)
          << name << ": the poison is delivered once, before it was known";
    }
  }
}

// ---- 3. read-only -------------------------------------------------------------------

// The state dir's ext4 turned read-only on an error under a running nvsd
// (errors=remount-ro; the kernel's own error trigger, as a failing disk
// would): commands are refused with the reason and never carried out, a
// poison is not dispatched (its admit cannot be made durable) and so never
// answered `quarantined` without its report, reads go on, `nvs status` says
// so. After e2fsck and a restart, nothing acknowledged is lost and nothing
// refused was applied. (An outside test: a poison answered `quarantined` was
// delivered again after the restart in 22 of 22 trials; in 3 of 19 an
// acknowledged commit had no verdict after recovery.)
TEST(Storage, AStateDirTurnedReadOnlyRefusesCommandsWithTheReasonAndLosesNothing) {
  NVS_NEED_ROOT();
  char pattern[] = "/tmp/nvs-ro-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  Mount disk = Mount::Ext4(dir / "state.img", state, "32M");
  ASSERT_TRUE(disk.ok()) << "cannot make or mount an ext4 image (loop devices?)";
  NvsdOptions options({VariantSpec("router-a", {"--fault", "crash-on=KILLER"}),
                       VariantSpec("router-b", {"--fault", "crash-on=KILLER"}), "router-c"},
                      {{"state_dir", state.string()}, {"checkpoint_interval", 7}});
  options.log_dir = dir;
  RouteModel model;
  json before;
  bool held = false;
  std::pair<int, int> held_route;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    Sender sender{nvsd, model};
    for (int i = 0; i < 30; ++i) ASSERT_EQ(sender.Send("a")["status"], "committed");
    before = nvsd.Query({{"op", "dump"}});
    ASSERT_TRUE(disk.TriggerError()) << "ext4 did not turn read-only";
    // The next command: refused, or, when its own admit's write is the
    // one that fails, held. ext4 cannot cut that admit back, so it may be
    // on disk, and a start that finds it may carry it out: no client is
    // told `not carried out` before nvsd knows (status counts it among
    // replies_in_doubt).
    held_route = std::make_pair(5, 11);
    const std::string b = nvsd.SendCommand(Route(held_route.first, held_route.second), "b-held");
    json first;
    const json seen = nvsd.WaitStatus(
        [&](const json& s) {
          if (first = nvsd.ReplyTo(b, milliseconds(1)); first.is_object()) return true;
          return s["nvsd"]["journal"].value("replies_in_doubt", 0) >= 1;
        },
        milliseconds(20000));
    ASSERT_TRUE(seen.is_object()) << "b-held was neither answered nor held";
    held = !first.is_object();
    if (!held) {
      EXPECT_EQ(first["status"], "unavailable") << first.dump();
      EXPECT_NE(first.value("reason", "").find("read-only"), std::string::npos) << first.dump();
      model.refused.insert("b-held");
    }
    const json refused = sender.Send("b");
    EXPECT_EQ(refused["status"], "unavailable") << refused.dump();
    EXPECT_NE(refused.value("reason", "").find("read-only"), std::string::npos) << refused.dump();
    const json poison = nvsd.ReplyTo(nvsd.SendCommand(Label("KILLER"), "poison-ro"));
    EXPECT_EQ(poison["status"], "unavailable") << poison.dump();
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sender.Send("c")["status"], "unavailable");
    const json status = nvsd.Status();
    EXPECT_EQ(At(status, "/nvsd/journal/state"), "degraded") << status.dump();
    EXPECT_EQ(At(status, "/nvsd/journal/trouble/kind"), "read_only") << status.dump();
    int exit_code = 0;
    Nvs("status --endpoint " + nvsd.client_endpoint(), &exit_code, nvsd.dir());
    EXPECT_NE(exit_code, 0);
    EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before["result"]) << "a refused command was applied";
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  ASSERT_TRUE(disk.Repair());
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    if (held) {
      // Its client's retry: committed once, whether the start found its
      // admit (and carried it out) or not (and it runs now).
      const json retried = nvsd.ReplyTo(nvsd.SendCommand(Route(held_route.first, held_route.second), "b-held"));
      ASSERT_EQ(retried["status"], "committed") << retried.dump();
      model.sent["b-held"] = held_route;
      model.Answer("b-held", retried);
      before["result"]["state"]["routes"][held_route.first] = held_route.second;
    }
    EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before["result"]);
    for (const auto& [id, seq] : model.acknowledged) {
      EXPECT_EQ(nvsd.ReplyTo(nvsd.SendCommand(Route(0, 0), id))["seq"], seq) << id;
    }
    for (const std::string name : {"router-a", "router-b", "router-c"}) {
      EXPECT_EQ(CountKiller(nvsd.DeliveredTo(name)), 0) << name << ": sent a command whose admit was not on disk";
    }
    // Its first delivery is now, with a journal behind it.
    const json quarantined = nvsd.ReplyTo(nvsd.SendCommand(Label("KILLER"), "poison-ro"));
    EXPECT_EQ(quarantined["status"], "quarantined") << quarantined.dump();
    EXPECT_EQ(nvsd.Command(Label("KILLER"))["status"], "quarantined");
  }
  const auto committed = CommittedIds(state);
  EXPECT_EQ(committed.size(), model.acknowledged.size() + 0);
  for (const auto& id : model.refused) EXPECT_EQ(committed.count(id), 0u) << id;
}

// "cannot bind: Address already in use" was what a restart on a read-only
// state dir said.
TEST(Storage, AStartOnAReadOnlyStateDirSaysSoAndNamesIt) {
  NVS_NEED_ROOT();
  char pattern[] = "/tmp/nvs-rostart-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  fs::create_directories(state);
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}});
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    ASSERT_EQ(nvsd.Command(Route(1, 2))["status"], "committed");
  }
  Mount bind = Mount::Bind(state);
  ASSERT_TRUE(bind.ok());
  ASSERT_TRUE(bind.ReadOnly(true));
  NvsdHarness nvsd(options);
  const auto exited = nvsd.WaitNvsdExit(milliseconds(20000));
  ASSERT_TRUE(exited.has_value()) << "nvsd runs on a read-only state dir";
  EXPECT_NE(*exited, 0);
  const std::string log = nvsd.NvsdLog();
  EXPECT_NE(log.find("read-only"), std::string::npos) << log;
  EXPECT_NE(log.find(state.string()), std::string::npos) << log;
  EXPECT_EQ(log.find("Address already in use"), std::string::npos) << log;
}

// ---- 4. flipped bytes --------------------------------------------------------------

// Segment offsets of each record (after the magic line).
std::vector<std::size_t> RecordOffsets(const fs::path& segment) {
  const std::string bytes = ReadFile(segment);
  std::vector<std::size_t> out;
  std::size_t at = supervisor::kJournalMagic.size();
  for (const auto& record : supervisor::ScanJournal(bytes).records) {
    out.push_back(at);
    at += 8 + record.size();
  }
  return out;
}

// One flipped byte in the newest segment was taken for a torn tail and cut
// at warn level: 25 and 43 acknowledged commits silently lost. Now nvsd
// refuses to start and names the file and offset; `nvs journal check` says
// the same; `nvs journal repair` says exactly what it would drop, and with
// --yes drops only that, keeping the records after it.
TEST(Storage, AFlippedByteInTheNewestSegmentIsNotTakenForATornTail) {
  char pattern[] = "/tmp/nvs-flip-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 1000}});
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    for (int i = 0; i < 30; ++i) {
      ASSERT_EQ(nvsd.ReplyTo(nvsd.SendCommand(Route(i % 16, i % 5), "r" + std::to_string(i)))["status"], "committed");
    }
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  const fs::path segment = supervisor::JournalSegments(state / "journal").back();
  const auto offsets = RecordOffsets(segment);
  ASSERT_GT(offsets.size(), 40u);
  const std::size_t flipped = offsets[20] + 12;  // in a record's payload, 40 records after it
  FlipByte(segment, flipped);
  FlipByte(segment, offsets[30] + 12);  // and a second span further on (a repair dropped only the first)
  {
    NvsdHarness nvsd(options);
    const auto exited = nvsd.WaitNvsdExit(milliseconds(20000));
    ASSERT_TRUE(exited.has_value()) << "nvsd started on a damaged journal";
    const std::string log = nvsd.NvsdLog();
    EXPECT_NE(log.find(segment.string()), std::string::npos) << log;
    EXPECT_NE(log.find("offset " + std::to_string(offsets[20])), std::string::npos) << log;
    EXPECT_NE(log.find("nvs journal"), std::string::npos) << "the way out is named: " << log;
    EXPECT_EQ(log.find("journal_tail_cut"), std::string::npos) << log;
  }
  int status = 0;
  const std::string checked = Nvs("journal check " + state.string(), &status, dir);
  EXPECT_EQ(status, 1) << checked;
  EXPECT_NE(checked.find("DAMAGED at offset " + std::to_string(offsets[20])), std::string::npos) << checked;
  const std::string plan = Nvs("journal repair " + state.string(), &status, dir);
  EXPECT_NE(status, 0);
  EXPECT_NE(plan.find("nothing changed"), std::string::npos) << plan;
  EXPECT_NE(plan.find("at offset " + std::to_string(offsets[30])), std::string::npos) << plan;
  EXPECT_EQ(ReadFile(segment).size(), fs::file_size(segment));
  // A .damaged from an earlier repair is never overwritten.
  WriteFile(segment.string() + ".damaged", "an earlier original");
  const std::string repaired = Nvs("journal repair --yes " + state.string(), &status, dir);
  EXPECT_EQ(status, 0) << repaired;
  EXPECT_EQ(ReadFile(segment.string() + ".damaged"), "an earlier original");
  EXPECT_TRUE(fs::exists(segment.string() + ".damaged.1"));
  EXPECT_EQ(Nvs("journal check " + state.string(), &status, dir).find("DAMAGED"), std::string::npos);
  EXPECT_EQ(status, 0);
  {
    // Only the damaged record is gone: later commits are still there.
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    EXPECT_EQ(nvsd.ReplyTo(nvsd.SendCommand(Route(0, 0), "r29"))["status"], "committed");
    EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"]["state"]["routes"][13], 29 % 5);
  }
  fs::remove_all(dir);
}

// In a closed segment a flipped byte made nvsd skip its records and forget
// their request ids, so retries of acknowledged commands were applied again.
TEST(Storage, AFlippedByteInAClosedSegmentStopsRecoveryRatherThanForgetIds) {
  char pattern[] = "/tmp/nvs-flipclosed-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 5},
                                                  {"journal_segment_bytes", 4096}});
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    for (int i = 0; i < 60; ++i) ASSERT_EQ(nvsd.Command(Route(i % 16, i % 7))["status"], "committed");
  }
  const auto segments = supervisor::JournalSegments(state / "journal");
  ASSERT_GE(segments.size(), 3u);
  const fs::path closed = segments[segments.size() - 2];
  const auto offsets = RecordOffsets(closed);
  ASSERT_GE(offsets.size(), 3u);
  FlipByte(closed, offsets[1] + 10);
  NvsdHarness nvsd(options);
  const auto exited = nvsd.WaitNvsdExit(milliseconds(20000));
  ASSERT_TRUE(exited.has_value()) << "nvsd started on a damaged closed segment";
  const std::string log = nvsd.NvsdLog();
  EXPECT_NE(log.find(closed.string()), std::string::npos) << log;
  int status = 0;
  EXPECT_NE(Nvs("journal check " + state.string(), &status, dir).find(closed.filename().string()), std::string::npos);
  EXPECT_EQ(status, 1);
  fs::remove_all(dir);
}

// checkpoint.json had no checksum: a changed route digit started nvsd on a
// silently different state. Now the checksum fails, nvsd says which file,
// and starts from the previous checkpoint and a longer replay, on the same
// state as before.
TEST(Storage, AChangedCheckpointFallsBackToThePreviousOneNotToADifferentState) {
  char pattern[] = "/tmp/nvs-ckpt-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 5}});
  json before;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    for (int i = 0; i < 23; ++i) ASSERT_EQ(nvsd.Command(Route(i % 16, (i + 3) % 10))["status"], "committed");
    ASSERT_TRUE(nvsd.WaitStatus([](const json& s) { return s["nvsd"]["checkpoint_seq"] == 20; }).is_object());
    before = nvsd.Query({{"op", "dump"}})["result"];
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  ASSERT_TRUE(fs::exists(state / "checkpoint.prev.json"));
  std::string text = ReadFile(state / "checkpoint.json");
  const auto at = text.find("\"routes\":[") + 10;
  ASSERT_NE(at, std::string::npos + 10);
  text[at] = text[at] == '1' ? '2' : '1';  // one route digit
  WriteFile(state / "checkpoint.json", text);
  NvsdHarness nvsd(options);
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before) << "started on a different state";
  const std::string log = nvsd.NvsdLog();
  EXPECT_NE(log.find((state / "checkpoint.json").string()), std::string::npos) << log;
  EXPECT_NE(log.find("checksum"), std::string::npos) << log;
  fs::remove_all(dir);
}

// Moving checkpoint.json away, as the old message advised, made nvsd refuse
// to start though the whole journal was there. With no checkpoint and the
// journal from its first segment, the state is rebuilt from the journal.
TEST(Storage, WithNoCheckpointLeftTheStateIsRebuiltFromTheWholeJournal) {
  char pattern[] = "/tmp/nvs-nockpt-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 5}});
  json before;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    for (int i = 0; i < 23; ++i) ASSERT_EQ(nvsd.Command(Route(i % 16, (i + 4) % 10))["status"], "committed");
    before = nvsd.Query({{"op", "dump"}})["result"];
  }
  fs::rename(state / "checkpoint.json", dir / "checkpoint.json.aside");
  fs::rename(state / "checkpoint.prev.json", dir / "checkpoint.prev.json.aside");
  NvsdHarness nvsd(options);
  ASSERT_TRUE(nvsd.WaitAllHealthy());
  EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before);
  EXPECT_EQ(nvsd.Command(Route(1, 1))["status"], "committed");
  fs::remove_all(dir);
}

// A checkpoint with a good checksum that every variant refuses (here an
// out-of-range route, as a bug could write): nvsd used to go unavailable
// without naming the file. Now status and the event name it and the way out.
TEST(Storage, ACheckpointEveryVariantRefusesIsNamed) {
  char pattern[] = "/tmp/nvs-badckpt-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 5}});
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    for (int i = 0; i < 5; ++i) ASSERT_EQ(nvsd.Command(Route(i, i))["status"], "committed");
    ASSERT_TRUE(nvsd.WaitStatus([](const json& s) { return s["nvsd"]["checkpoint_seq"] == 5; }).is_object());
  }
  auto parsed = supervisor::ParseCheckpoint(ReadFile(state / "checkpoint.json"));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  supervisor::Checkpoint bad = parsed.value();
  json st = json::parse(bad.state);
  st["routes"][0] = 999;
  bad.state = st.dump();
  WriteFile(state / "checkpoint.json", supervisor::FormatCheckpoint(bad));
  NvsdHarness nvsd(options);
  // (At once, before the harness's event subscription is surely up: the log.)
  ASSERT_TRUE(nvsd.WaitNvsdLog([](const std::string& log) { return !LogEvents(log, "checkpoint_refused").empty(); }));
  const json logged = LogEvents(nvsd.NvsdLog(), "checkpoint_refused").front();
  EXPECT_EQ(logged["file"], (state / "checkpoint.json").string()) << logged.dump();
  const json status = nvsd.Status();
  const std::string reason = At(status, "/nvsd/unavailable_reason").is_string()
                                 ? At(status, "/nvsd/unavailable_reason").get<std::string>()
                                 : "";
  EXPECT_NE(reason.find((state / "checkpoint.json").string()), std::string::npos) << status.dump();
  EXPECT_NE(reason.find("nvs journal check"), std::string::npos) << status.dump();
  EXPECT_EQ(nvsd.Command(Route(1, 1))["status"], "unavailable");
  int exit_code = 0;
  Nvs("status --endpoint " + nvsd.client_endpoint(), &exit_code, nvsd.dir());
  EXPECT_NE(exit_code, 0);
  fs::remove_all(dir);
}

// ---- 5. two nvsd on one state dir -------------------------------------------------------

// Two nvsd (different endpoints) on one state dir both ran without a word,
// interleaved their appends, and thousands of acknowledged commits were lost.
TEST(Storage, ASecondNvsdOnTheSameStateDirRefusesAtOnceNamingTheHoldersPid) {
  char pattern[] = "/tmp/nvs-twice-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}});
  NvsdHarness first(options);
  ASSERT_TRUE(first.WaitAllHealthy());
  NvsdHarness second(options);
  const auto exited = second.WaitNvsdExit(milliseconds(20000));
  ASSERT_TRUE(exited.has_value()) << "a second nvsd runs on the state dir";
  EXPECT_NE(*exited, 0);
  const std::string log = second.NvsdLog();
  EXPECT_NE(log.find("pid " + std::to_string(first.nvsd_pid())), std::string::npos) << log;
  EXPECT_NE(log.find(state.string()), std::string::npos) << log;
  EXPECT_EQ(first.Command(Route(2, 2))["status"], "committed");
  // And `nvs journal repair --yes` will not touch it either.
  int status = 0;
  Nvs("journal repair --yes " + state.string(), &status, dir);
  EXPECT_NE(status, 0);
  fs::remove_all(dir);
}

// ---- 6. a long tail, SIGTERM -------------------------------------------------------------

// More than about 1,100 commands since the last checkpoint were replayed
// into every variant at once: each exceeded 1,024 unanswered requests, was
// killed as "fell behind", and nvsd never served again. Now the tail is
// paced as live traffic is.
TEST(Storage, ALongCommittedTailIsCaughtUpPacedNotKilledAsFallingBehind) {
  char pattern[] = "/tmp/nvs-tail-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 100000}});
  json before;
  const int kTail = 2500;
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    std::vector<std::string> ids;
    for (int i = 0; i < kTail; ++i) {
      ids.push_back(nvsd.SendCommand(Route(i % 16, i % 11)));
      if (ids.size() == 200) {
        for (const auto& id : ids) ASSERT_EQ(nvsd.ReplyTo(id)["status"], "committed");
        ids.clear();
      }
    }
    for (const auto& id : ids) ASSERT_EQ(nvsd.ReplyTo(id)["status"], "committed");
    before = nvsd.Query({{"op", "dump"}})["result"];
    ASSERT_TRUE(SignalProcess(nvsd.nvsd_pid(), SIGKILL));  // no final checkpoint
    ASSERT_TRUE(nvsd.WaitNvsdExit(milliseconds(10000)));
  }
  NvsdHarness nvsd(options);
  ASSERT_TRUE(nvsd.WaitAllHealthy(milliseconds(60000)));
  EXPECT_EQ(nvsd.Query({{"op", "dump"}})["result"], before);
  EXPECT_EQ(nvsd.Command(Route(3, 3))["status"], "committed");
  const std::string log = nvsd.NvsdLog();
  EXPECT_EQ(log.find("fell behind"), std::string::npos) << log.substr(0, 4000);
  EXPECT_TRUE(LogEvents(log, "variant_failed").empty());
  fs::remove_all(dir);
}

// SIGTERM wrote no checkpoint, so every restart replayed the tail.
TEST(Storage, SigtermWritesACheckpoint) {
  char pattern[] = "/tmp/nvs-term-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  const fs::path state = dir / "state";
  NvsdOptions options({"router-a", "router-b"}, {{"state_dir", state.string()}, {"checkpoint_interval", 100000}});
  {
    NvsdHarness nvsd(options);
    ASSERT_TRUE(nvsd.WaitAllHealthy());
    for (int i = 0; i < 12; ++i) ASSERT_EQ(nvsd.Command(Route(i, 1))["status"], "committed");
  }  // SIGTERM
  auto parsed = supervisor::ParseCheckpoint(ReadFile(state / "checkpoint.json"));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed.value().seq, 12u);
  EXPECT_EQ(parsed.value().commits, 12u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nvs::testing
