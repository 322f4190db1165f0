// Crash durability: a child process commits rows with synchronous=FULL and
// reports each acknowledged commit on a pipe; the parent kills it with
// SIGKILL at random moments. After every kill the database passes
// integrity_check and holds every acknowledged row.

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "asqlite/asqlite.hpp"
#include "support/temp_dir.hpp"

extern char** environ;

namespace asqlite {
namespace {

class AsyncCrash : public test::temp_dir_test {};

/// Rounds of: start the crash writer with `writers` coroutines, let it
/// commit for a random while, kill it with SIGKILL, then check the file.
/// Returns the most group commits one child reported.
std::uint64_t kill_rounds(const std::string& db_path, int rounds, int writers, std::uint32_t seed) {
    {
        connection c(db_path);
        c.exec("CREATE TABLE acked (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)");
    }
    std::mt19937 rng(seed);
    std::set<long long> acknowledged;
    std::uint64_t groups = 0;
    long long next_id = 1;
    for (int round = 0; round < rounds; ++round) {
        int fds[2];
        EXPECT_EQ(::pipe(fds), 0);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&actions, fds[0]);
        const std::string first = std::to_string(next_id);
        const std::string count = std::to_string(writers);
        char* child_argv[] = {const_cast<char*>(ASQLITE_CRASH_WRITER_EXE),
                              const_cast<char*>(db_path.c_str()), const_cast<char*>(first.c_str()),
                              const_cast<char*>(count.c_str()), nullptr};
        pid_t pid = 0;
        EXPECT_EQ(
            posix_spawn(&pid, ASQLITE_CRASH_WRITER_EXE, &actions, nullptr, child_argv, environ), 0);
        posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);

        // Let it commit for a random while, then kill it mid-flight.
        const auto lifetime = std::chrono::milliseconds(30 + rng() % 250);
        std::this_thread::sleep_for(lifetime);
        EXPECT_EQ(::kill(pid, SIGKILL), 0);
        int status = 0;
        EXPECT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFSIGNALED(status)) << "round " << round << ": the child exited early";

        // Everything the child printed before dying was acknowledged.
        std::string out;
        char buf[4096];
        ssize_t n = 0;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fds[0]);
        std::size_t pos = 0;
        while (true) {
            const auto nl = out.find('\n', pos);
            if (nl == std::string::npos) {
                break;  // a partial last line was never fully acknowledged
            }
            const std::string line = out.substr(pos, nl - pos);
            pos = nl + 1;
            if (line.rfind("g ", 0) == 0) {
                groups = std::max<std::uint64_t>(groups, std::stoull(line.substr(2)));
                continue;
            }
            const long long id = std::stoll(line);
            acknowledged.insert(id);
            next_id = std::max(next_id, id + 1);
        }

        connection c(db_path);
        EXPECT_EQ(c.scalar<std::string>("PRAGMA integrity_check"), "ok") << "round " << round;
        const auto present = c.query<long long>("SELECT id FROM acked");
        const std::set<long long> rows(present.begin(), present.end());
        for (const auto id : acknowledged) {
            if (rows.count(id) == 0) {
                ADD_FAILURE() << "acknowledged row " << id << " lost in round " << round;
                return groups;
            }
        }
        // Rows written but not acknowledged when the kill landed may be
        // there, whole; the next round starts past every id in use.
        EXPECT_EQ(c.scalar<std::int64_t>("SELECT count(*) FROM acked WHERE length(payload) <> 200"),
                  0)
            << "round " << round;
        if (!present.empty()) {
            next_id = std::max(next_id, *rows.rbegin() + 1);
        }
    }
    EXPECT_GT(acknowledged.size(), static_cast<std::size_t>(rounds))
        << "the child acknowledged too few commits for the test to mean much";
    return groups;
}

TEST_F(AsyncCrash, EveryAcknowledgedCommitSurvivesKillNine) {
    kill_rounds(db_path, 20, 1, 20261126);
}

TEST_F(AsyncCrash, EveryAcknowledgedGroupCommitSurvivesKillNine) {
    // 64 writers at once: their writes share group commits (each
    // acknowledged only after its group's COMMIT), and the kill lands
    // inside groups.
    const std::uint64_t groups = kill_rounds(db_path, 30, 64, 20261207);
    EXPECT_GT(groups, 0U) << "no group commit formed: the test did not test them";
}

}  // namespace
}  // namespace asqlite
