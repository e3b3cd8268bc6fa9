// The simulator itself: a schedule is a function of its seed, its checks
// see what they should, and a few shapes of schedule keep their promises.
#include "simulator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nvs::simulation {
namespace {

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST(Simulator, TheSameSeedIsTheSameSchedule) {
  const auto spec = ScheduleSpec::FromSeed(7);
  const auto first = RunSchedule(spec, true);
  const auto second = RunSchedule(spec, true);
  EXPECT_EQ(Joined(first.transcript), Joined(second.transcript));
  EXPECT_GT(first.steps, 0);
}

// A hand-made schedule: `clients` clients of `requests` requests, `poison`
// of them poison, no other fault; run with its transcript.
ScheduleResult RunSmall(std::uint64_t seed, int clients, int requests, int poison) {
  ScheduleSpec spec;
  spec.seed = seed;
  spec.clients = clients;
  spec.requests = requests;
  spec.poison = poison;
  const auto result = RunSchedule(spec, true);
  EXPECT_TRUE(result.violations.empty()) << Joined(result.transcript);
  return result;
}

TEST(Simulator, AQuietScheduleCommitsAndQuarantinesNothing) {
  const auto result = RunSmall(11, 2, 6, 0);
  EXPECT_GT(result.commits, 0) << Joined(result.transcript);
  EXPECT_EQ(result.quarantined, 0) << Joined(result.transcript);
}

TEST(Simulator, APoisonIsQuarantinedAndNeverSentAgain) {
  const auto result = RunSmall(3, 1, 4, 1);
  EXPECT_EQ(result.quarantined, 1) << Joined(result.transcript);
}

// Schedules that found a defect of nvsd (each failed when its fix was
// reverted, at the time it was found). A change to nvsd's message order
// can move a schedule off the moment it once hit, so each defect keeps
// several; the full run (Simulation.Schedules*, scripts/simulate) keeps
// looking for the rest.
void ExpectKept(const std::vector<std::uint64_t>& seeds) {
  for (const auto seed : seeds) {
    const auto result = RunSchedule(ScheduleSpec::FromSeed(seed), /*keep_transcript=*/false);
    if (!result.violations.empty()) {
      const auto shown = RunSchedule(ScheduleSpec::FromSeed(seed), /*keep_transcript=*/true);
      ADD_FAILURE() << ScheduleSpec::FromSeed(seed).Describe() << ": " << result.violations.front() << "\n"
                    << Joined(shown.transcript);
    }
  }
}

// A poison in flight when nvsd was killed: the restarted nvsd retests the
// command its journal shows admitted and undecided, and quarantines it;
// never simply delivered again (without the retest, these deliver it to a
// fresh router-a).
TEST(SimulatorFound, APoisonInFlightWhenNvsdDiesIsNeverDeliveredAgain) { ExpectKept({1283, 1737, 2855}); }

// A journal segment in doubt (a failed fsync that could not be cut off)
// never recovered: every turn's failing flush put the retry off by a
// second, and turns come every heartbeat. (And a retry of a request whose
// reply was held in doubt was answered `unavailable` although its commit
// could still stand.)
TEST(SimulatorFound, AJournalInDoubtRecovers) { ExpectKept({288, 611, 1400, 1879, 2695}); }

// Standby: a periodic checkpoint asked the backups for their digest before
// sending them the command just committed, so every checkpoint was
// rejected and sent all variants through a sync round, during which a hung
// active had no backup to probe with and its benign command was quarantined.
TEST(SimulatorFound, AStandbyCheckpointComparesTheBackupsAfterTheCommand) { ExpectKept({1338, 1877}); }

// A sync round during journal trouble made a commit that could still be
// undone part of the checkpoint: undone, it stayed applied, and its client,
// told `not carried out`, found it in the state.
TEST(SimulatorFound, ARoundDuringJournalTroubleKeepsTheCheckpoint) {
  ExpectKept({86104, 25087, 26654, 30093, 36605, 40042});
}

// After a command killed every variant, the first one back rebuilt the
// state alone and its state became the checkpoint: a variant that corrupts
// its state on one command handed that state to the others.
TEST(SimulatorFound, NoVariantAloneRebuildsTheStateForTheOthers) { ExpectKept({3914, 6063, 8985, 11005, 12567}); }

// An unresolved digest tie chose the faulty variant's state while the third
// variant was coming back; nvsd now waits for it as a witness.
TEST(SimulatorFound, ADigestTieWaitsForAWitness) { ExpectKept({23827, 82167, 91022}); }

// fsync "always" with one fsync per command: a commit is answered once its
// verdict is written, and synced with the next admit. A power cut then
// lost an answered verdict: the start finds the admit undecided and must
// commit it again at its seq (with recovery abandoning it, as before, these
// lose an acknowledged commit).
TEST(SimulatorFound, ACommitAnsweredBeforeItsVerdictsFsyncSurvivesAPowerCut) { ExpectKept({4308, 9101, 38957}); }

// A failed write cut back a verdict already answered: it is written again
// before the journal's `mark`.
TEST(SimulatorFound, AVerdictAnsweredBeforeAFailedWriteIsWrittenAgain) { ExpectKept({50168, 13387}); }

// A retry of a command found undecided at start, arriving while its retest
// ran, was queued and answered `unavailable` (a queue deadline); the retest
// then committed it. A retry now waits for what the retest decides.
TEST(SimulatorFound, ARetryOfACommandBeingSettledAtStartGetsItsOutcome) { ExpectKept({17933}); }

// A command committed by the retest at start went to the variants as a
// catch-up while the start-up round restored them from a tail without it:
// they ended without it. The retest now waits for the round, and no round
// starts while it runs.
TEST(SimulatorFound, ACommitFromTheRetestAtStartReachesEveryVariant) { ExpectKept({116}); }

// A commit of the retest at start, remembered for a retry, was lost to a
// failed sync with no reply waiting on it: the retry was told `committed`
// and the journal had no commit. Every record nvsd goes on as decided is
// now written again before the journal's mark.
TEST(SimulatorFound, ACommitFromTheRetestAtStartLostToAFailedSyncIsWrittenAgain) {
  ExpectKept({5253, 9288, 29960, 77471, 84277});
}

// A poison whose quarantine report could not be written (the disk nearly
// full) was answered `unavailable` at once, its admit left undecided so
// that a start retests it; after a power cut the start's fresh processes
// agreed on it, and it was committed: a client told `not carried out`
// found it carried out. The reply now waits for a journal `mark` after the
// admit, and a start abandons (never commits) an agreed admit a mark
// follows.
TEST(SimulatorFound, APoisonAnsweredUnavailableForWantOfItsReportIsNeverCarriedOutLater) { ExpectKept({217293}); }

}  // namespace
}  // namespace nvs::simulation
