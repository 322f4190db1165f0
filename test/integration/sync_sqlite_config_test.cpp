// configure_sqlite(): SQLite's process-wide settings. They are fixed once
// SQLite is initialised, so each case runs in a fresh process of its own (a
// death test in the "threadsafe" style re-executes this binary for just that
// case) and passes when that process exits 0.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "asqlite/connection.hpp"
#include "asqlite/sqlite_config.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace {

using asqlite::errc;
using asqlite::make_error_code;
using asqlite::sqlite_config;
using asqlite::test::fails_with;

class SqliteConfig : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// Runs `checks` (returning an AssertionResult) and exits the process: 0 when
// they held, 1 with the failure on stderr otherwise. Everything `checks`
// owns is destroyed before the exit, so its temporary files go too.
template <class F>
[[noreturn]] void exit_with(F&& checks) {
    int code = 1;
    try {
        const ::testing::AssertionResult r = checks();
        if (!r) {
            std::fprintf(stderr, "%s\n", r.message());
        }
        code = r ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "threw: %s\n", e.what());
    }
    std::exit(code);
}

// Opens a connection on a fresh file and runs a few statements, so SQLite
// has allocated; returns sqlite3_memory_used() while the connection is open.
sqlite3_int64 memory_used_by_some_work() {
    const asqlite::test::temp_dir dir;
    asqlite::connection c(dir.file("t.db"));
    c.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    c.execute("INSERT INTO t (v) VALUES (?)", std::string(500, 'x'));
    if (c.scalar<int>("SELECT count(*) FROM t") != 1) {
        throw std::runtime_error("the statements did not run");
    }
    return sqlite3_memory_used();
}

::testing::AssertionResult memory_used_is(bool nonzero) {
    const sqlite3_int64 used = memory_used_by_some_work();
    if ((used != 0) == nonzero) {
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "sqlite3_memory_used() is " << used;
}

TEST_F(SqliteConfig, ByDefaultTurnsSqlitesMemoryStatisticsOff) {
    EXPECT_EXIT(exit_with([] {
                    asqlite::configure_sqlite();
                    return memory_used_is(false);
                }),
                ::testing::ExitedWithCode(0), "");
}

TEST_F(SqliteConfig, KeepsMemoryStatisticsWhenAsked) {
    EXPECT_EXIT(exit_with([] {
                    asqlite::configure_sqlite({.memory_statistics = true});
                    return memory_used_is(true);
                }),
                ::testing::ExitedWithCode(0), "");
}

// Without the call SQLite keeps its default, statistics on: the check in the
// first case can tell the two apart.
TEST_F(SqliteConfig, WithoutTheCallSqliteKeepsItsDefaults) {
    EXPECT_EXIT(exit_with([] { return memory_used_is(true); }), ::testing::ExitedWithCode(0), "");
}

TEST_F(SqliteConfig, AfterSqliteIsInUseIsAClearErrorAndChangesNothing) {
    EXPECT_EXIT(exit_with([]() -> ::testing::AssertionResult {
                    const asqlite::test::temp_dir dir;
                    asqlite::connection c(dir.file("t.db"));
                    c.exec("CREATE TABLE t (v TEXT)");
                    auto refused = fails_with([] { asqlite::configure_sqlite(); },
                                              make_error_code(errc::misuse),
                                              {"already initialised", "first thing in main()"});
                    if (!refused) {
                        return refused;
                    }
                    // The connection goes on working, statistics still on.
                    c.execute("INSERT INTO t (v) VALUES (?)", "kept");
                    if (c.scalar<std::string>("SELECT v FROM t") != "kept") {
                        return ::testing::AssertionFailure() << "the row was lost";
                    }
                    if (sqlite3_memory_used() == 0) {
                        return ::testing::AssertionFailure() << "statistics were turned off";
                    }
                    return ::testing::AssertionSuccess();
                }),
                ::testing::ExitedWithCode(0), "");
}

TEST_F(SqliteConfig, RepeatsWithTheSameSettingsAreAcceptedOthersRefused) {
    EXPECT_EXIT(exit_with([]() -> ::testing::AssertionResult {
                    asqlite::configure_sqlite();
                    asqlite::configure_sqlite({.memory_statistics = false});
                    auto refused =
                        fails_with([] { asqlite::configure_sqlite({.memory_statistics = true}); },
                                   make_error_code(errc::misuse), {"other settings"});
                    if (!refused) {
                        return refused;
                    }
                    return memory_used_is(false);
                }),
                ::testing::ExitedWithCode(0), "");
}

}  // namespace
