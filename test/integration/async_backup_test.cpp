// Online backup: async_engine::backup() copies a live database in steps on
// the blocking pool while writers go on; the copy is one consistent moment,
// holds every transaction acknowledged before the backup began, passes
// integrity_check, and a cancelled or failed backup leaves nothing behind.
// asqlite-backup is the same for operators.

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;

class AsyncBackup : public test::temp_dir_test {
  protected:
    void SetUp() override {
        connection c(db_path);
        // Two tables written in one transaction each time: a copy of one
        // moment has as many rows in both.
        c.exec(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);"
            "CREATE TABLE b (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)");
        c.exec("BEGIN");
        for (int i = 0; i < 2000; ++i) {
            c.execute("INSERT INTO a (payload) VALUES (?)", std::string(300, 'a'));
            c.execute("INSERT INTO b (payload) VALUES (?)", std::string(300, 'b'));
        }
        c.exec("COMMIT");
    }
    engine_options options() const {
        engine_options o;
        o.path = db_path;
        o.pool_size = 4;
        return o;
    }
    /// Files in the test's directory whose name starts with `prefix`.
    std::vector<std::string> files_starting(const std::string& prefix) const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(fs::path(db_path).parent_path())) {
            const std::string name = e.path().filename().string();
            if (name.rfind(prefix, 0) == 0) {
                out.push_back(name);
            }
        }
        return out;
    }
    std::string copy_path() const { return (fs::path(db_path).parent_path() / "copy.db").string(); }
    asio::io_context io;
};

TEST_F(AsyncBackup, ACopyUnder64WritersIsConsistentAndHoldsEveryEarlierCommit) {
    auto db = create_async_engine(io.get_executor(), options());
    constexpr int writers = 64;
    std::atomic<bool> stop{false};
    std::set<std::int64_t> acknowledged;  // ids of a, committed (io thread only)
    std::set<std::int64_t> before_backup;
    std::vector<backup_progress> progress;
    int writers_done = 0;
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                while (!stop) {
                    auto both = [](connection& c) {
                        c.execute("INSERT INTO a (payload) VALUES (?)", std::string(300, 'a'));
                        const std::int64_t id = c.last_insert_rowid();
                        c.execute("INSERT INTO b (id, payload) VALUES (?, ?)", id,
                                  std::string(300, 'b'));
                        return id;
                    };
                    acknowledged.insert(co_await s.write(both));
                }
                ++writers_done;
            },
            test::rethrow_failure);
    }
    std::exception_ptr failure;
    bool backed_up = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await test::sleep_for(std::chrono::milliseconds(50));  // writers at full speed
            before_backup = acknowledged;
            backup_options how;
            how.pages_per_step = 16;  // many steps, writers committing between them
            how.on_progress = [&](const backup_progress& p) { progress.push_back(p); };
            co_await db.backup(copy_path(), how);
            backed_up = true;
            co_await test::sleep_for(std::chrono::milliseconds(20));
            stop = true;
        },
        [&](std::exception_ptr ep) {
            failure = ep;
            stop = true;
        });
    io.run();
    if (failure) {
        std::rethrow_exception(failure);
    }
    ASSERT_TRUE(backed_up);
    EXPECT_EQ(writers_done, writers);
    ASSERT_GT(progress.size(), 3U) << "the copy took too few steps to test anything";
    EXPECT_EQ(progress.back().remaining, 0U);
    EXPECT_GT(db.stats().group_commits, 0U);

    connection copy(copy_path());
    EXPECT_EQ(copy.scalar<std::string>("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(copy.scalar<std::int64_t>("SELECT count(*) FROM a"),
              copy.scalar<std::int64_t>("SELECT count(*) FROM b"));
    EXPECT_EQ(copy.scalar<std::int64_t>("SELECT count(*) FROM a JOIN b USING (id)"),
              copy.scalar<std::int64_t>("SELECT count(*) FROM a"));
    const auto ids = copy.query<std::int64_t>("SELECT id FROM a");
    const std::set<std::int64_t> in_copy(ids.begin(), ids.end());
    for (const auto id : before_backup) {
        ASSERT_TRUE(in_copy.count(id)) << "row " << id << ", acknowledged before the backup";
    }
    // A moment: the writes went on after it.
    connection live(db_path);
    EXPECT_LT(in_copy.size(),
              static_cast<std::size_t>(live.scalar<std::int64_t>("SELECT count(*) FROM a")));
    EXPECT_TRUE(files_starting("copy.db.asqlite-partial").empty());
}

TEST_F(AsyncBackup, ACancelledBackupLeavesNothingBehind) {
    auto db = create_async_engine(io.get_executor(), options());
    asio::cancellation_signal cancel;
    std::exception_ptr outcome;
    bool done = false;
    int steps = 0;
    backup_options how;
    how.pages_per_step = 1;
    how.on_progress = [&](const backup_progress&) {
        if (++steps == 3) {
            cancel.emit(asio::cancellation_type::terminal);
        }
    };
    db.backup(copy_path(), how,
              asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr ep) {
                  outcome = ep;
                  done = true;
              }));
    io.run();
    ASSERT_TRUE(done);
    EXPECT_EQ(error_code_of(outcome), make_error_code(asio::error::operation_aborted));
    EXPECT_EQ(steps, 3);
    EXPECT_FALSE(fs::exists(copy_path()));
    EXPECT_TRUE(files_starting("copy.db").empty());
}

TEST_F(AsyncBackup, AnExistingDestinationIsNeverOverwritten) {
    { std::ofstream(copy_path()) << "precious"; }
    auto db = create_async_engine(io.get_executor(), options());
    test::run_coro(io, [&]() -> asio::awaitable<void> {
        auto e = co_await test::error_of(db.backup(copy_path()));
        EXPECT_TRUE(e && e->code() == errc::invalid_option);
        EXPECT_TRUE(e && std::string(e->what()).find("exists") != std::string::npos);
        auto bad = co_await test::error_of(db.backup(""));
        EXPECT_TRUE(bad && bad->code() == errc::invalid_option);
        backup_options zero;
        zero.pages_per_step = 0;
        auto steps = co_await test::error_of(
            db.backup((fs::path(db_path).parent_path() / "other.db").string(), zero));
        EXPECT_TRUE(steps && steps->code() == errc::invalid_option);
        auto nowhere = co_await test::error_of(
            db.backup((fs::path(db_path).parent_path() / "missing" / "x.db").string()));
        EXPECT_TRUE(nowhere && primary_code(nowhere->code()) == errc::cantopen);
    }());
    EXPECT_EQ(test::slurp(copy_path()), "precious");
    EXPECT_EQ(files_starting("copy.db").size(), 1U);
    EXPECT_TRUE(files_starting("other.db").empty());
}

/// asqlite-backup with `args` (already quoted); exit code and output.
test::run_result backup_cli(const std::string& args, const std::string& dir) {
    const std::string out = dir + "/cli.out";
    const std::string err = dir + "/cli.err";
    const std::string cmd = std::string(ASQLITE_BACKUP_EXE) + " " + args + " >" +
                            test::shell_quote(out) + " 2>" + test::shell_quote(err);
    const int status = std::system(cmd.c_str());
    test::run_result r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = test::slurp(out);
    r.err = test::slurp(err);
    fs::remove(out);
    fs::remove(err);
    return r;
}

TEST_F(AsyncBackup, TheCliCopiesAndSaysWhyItCannot) {
    const std::string dir = fs::path(db_path).parent_path().string();
    auto ok = backup_cli(test::shell_quote(db_path) + " " + test::shell_quote(copy_path()), dir);
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_NE(ok.out.find("100%"), std::string::npos) << ok.out;
    {
        connection copy(copy_path());
        EXPECT_EQ(copy.scalar<std::string>("PRAGMA integrity_check"), "ok");
        EXPECT_EQ(copy.scalar<int>("SELECT count(*) FROM a"), 2000);
    }
    auto again = backup_cli(test::shell_quote(db_path) + " " + test::shell_quote(copy_path()), dir);
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_NE(again.err.find("exists"), std::string::npos) << again.err;
    auto missing = backup_cli(
        test::shell_quote(dir + "/nope.db") + " " + test::shell_quote(dir + "/nope-copy.db"), dir);
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("nope.db"), std::string::npos) << missing.err;
    EXPECT_FALSE(fs::exists(dir + "/nope.db"));
    EXPECT_EQ(backup_cli(test::shell_quote(db_path), dir).exit_code, 2);
    EXPECT_EQ(backup_cli("--bogus a b", dir).exit_code, 2);
}

}  // namespace
}  // namespace asqlite
