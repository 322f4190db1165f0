#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "asqlite/connection.hpp"
#include "support/check.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

#ifndef ASQLITE_INIT_DB_EXE
#error "test/CMakeLists.txt defines ASQLITE_INIT_DB_EXE"
#endif

namespace {

namespace fs = std::filesystem;
using asqlite::test::contains;
using asqlite::test::run_result;
using asqlite::test::shell_quote;
using asqlite::test::slurp;

class Cli : public asqlite::test::temp_dir_test {
  protected:
    /// Runs asqlite-init-db in the temp dir with a clean asqlite environment
    /// plus `env` ("NAME=value ..."), and the given arguments.
    run_result run(const std::string& args, const std::string& env = {}) {
        std::string unset;
        for (const auto& name : asqlite::test::engine_env_names()) {
            unset += " -u " + name;
        }
        const auto out = dir.path() / "cli.out";
        const auto err = dir.path() / "cli.err";
        const std::string cmd = "cd " + shell_quote(dir.path().string()) + " && env" + unset + " " +
                                env + " " + shell_quote(ASQLITE_INIT_DB_EXE) + " " + args + " >" +
                                shell_quote(out.string()) + " 2>" + shell_quote(err.string());
        const int status = std::system(cmd.c_str());
        run_result r;
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = slurp(out);
        r.err = slurp(err);
        fs::remove(out);
        fs::remove(err);
        return r;
    }

    static bool has_fileinfo(const std::string& path) {
        asqlite::connection c(path);
        return c.scalar<int>(
                   "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = "
                   "'fileinfo'") == 1;
    }
};

TEST_F(Cli, HelpPrintsUsage) {
    const auto r = run("--help");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "usage: asqlite-init-db"));
    EXPECT_TRUE(contains(r.out, "--db PATH"));
    EXPECT_TRUE(contains(r.out, "SQLITE_DB_PATH"));
    EXPECT_TRUE(r.err.empty()) << r.err;
    // --help creates nothing.
    EXPECT_FALSE(fs::exists(dir.path() / "autobots.db"));
    EXPECT_EQ(run("-h").exit_code, 0);
}

TEST_F(Cli, DbFlagCreatesTheTable) {
    const auto r = run("--db " + shell_quote(db_path));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "fileinfo: created"));
    // The sync engine echoes its SQL, and init_db logs its summary.
    EXPECT_TRUE(contains(r.err, "CREATE TABLE IF NOT EXISTS \"fileinfo\""));
    EXPECT_TRUE(contains(r.err, "init_db"));
    EXPECT_TRUE(has_fileinfo(db_path));
    asqlite::connection c(db_path);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE name = "
                            "'ix_fileinfo_request_id'"),
              1);
    EXPECT_EQ(c.journal_mode(), "wal");
}

TEST_F(Cli, RunningTwiceIsFine) {
    ASSERT_EQ(run("--db " + shell_quote(db_path)).exit_code, 0);
    {
        asqlite::connection c(db_path);
        c.execute("INSERT INTO fileinfo(filename, file_path) VALUES ('a', '/a')");
    }
    const auto r = run("--db " + shell_quote(db_path));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "fileinfo: already present"));
    asqlite::connection c(db_path);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM fileinfo"), 1);
}

TEST_F(Cli, DbEqualsFormAndUrls) {
    EXPECT_EQ(run("--db=" + shell_quote(db_path)).exit_code, 0);
    EXPECT_TRUE(has_fileinfo(db_path));
    const std::string other = dir.file("url.db");
    const auto r = run("--db " + shell_quote("sqlite:///" + other));  // absolute: 4 slashes
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has_fileinfo(other));
    const auto rel = run("--db sqlite:///relative.db");
    EXPECT_EQ(rel.exit_code, 0) << rel.err;
    EXPECT_TRUE(has_fileinfo(dir.file("relative.db")));
}

TEST_F(Cli, QuietDoesNotEcho) {
    const auto r = run("--quiet --db " + shell_quote(db_path));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(contains(r.err, "CREATE TABLE"));
    EXPECT_TRUE(contains(r.err, "init_db"));
    EXPECT_TRUE(has_fileinfo(db_path));
}

TEST_F(Cli, HonoursSqliteDbPath) {
    const auto r = run("", "SQLITE_DB_PATH=" + shell_quote(db_path));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has_fileinfo(db_path));
    EXPECT_FALSE(fs::exists(dir.path() / "autobots.db"));
    const std::string url_db = dir.file("from_url.db");
    EXPECT_EQ(run("", "SQLITE_DB_PATH=" + shell_quote("sqlite:///" + url_db)).exit_code, 0);
    EXPECT_TRUE(has_fileinfo(url_db));
}

TEST_F(Cli, DbFlagOverridesTheEnvironment) {
    const std::string env_db = dir.file("env.db");
    const auto r = run("--db " + shell_quote(db_path), "SQLITE_DB_PATH=" + shell_quote(env_db));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has_fileinfo(db_path));
    EXPECT_FALSE(fs::exists(env_db));
}

TEST_F(Cli, DefaultsToAutobotsDbInTheWorkingDirectory) {
    const auto r = run("");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has_fileinfo(dir.file("autobots.db")));
}

TEST_F(Cli, MissingDirectoryFails) {
    const auto r = run("--db " + shell_quote(dir.file("nope/x.db")));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "asqlite-init-db: error:"));
    EXPECT_TRUE(contains(r.err, dir.file("nope")));
    EXPECT_TRUE(contains(r.err, "does not exist"));
    EXPECT_FALSE(fs::exists(dir.file("nope")));
}

TEST_F(Cli, UnwritableDirectoryFails) {
    // Tests run as root, which can write nearly anywhere; /proc refuses
    // new files even to root.
    auto r = run("--db /proc/x.db");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "asqlite-init-db: error:"));
    EXPECT_TRUE(contains(r.err, "/proc/x.db"));
    EXPECT_TRUE(contains(r.err, "unable to open database file")) << r.err;
    EXPECT_FALSE(fs::exists("/proc/x.db"));

    r = run("--db /proc/asqlite-nope/x.db");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "/proc/asqlite-nope"));
    EXPECT_TRUE(contains(r.err, "does not exist"));
}

TEST_F(Cli, FileThatIsNotADatabaseFails) {
    {
        std::ofstream garbage(db_path, std::ios::binary);
        for (int i = 0; i < 200; ++i) {
            garbage << "garbage bytes, not SQLite ";
        }
    }
    const auto before = slurp(db_path);
    const auto r = run("--db " + shell_quote(db_path));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "file is not a database"));
    EXPECT_TRUE(contains(r.err, db_path));
    EXPECT_EQ(slurp(db_path), before);
}

TEST_F(Cli, MalformedPoolSizeFails) {
    for (const char* bad : {"ten", "0", "-3"}) {
        const auto r = run("--db " + shell_quote(db_path), std::string("ASQLITE_POOL_SIZE=") + bad);
        EXPECT_NE(r.exit_code, 0) << bad;
        EXPECT_TRUE(contains(r.err, std::string("ASQLITE_POOL_SIZE='") + bad + "'"));
    }
    EXPECT_FALSE(fs::exists(db_path));
}

TEST_F(Cli, MalformedSqliteDbPathFails) {
    const auto r = run("", "SQLITE_DB_PATH=postgres://h/db");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "postgres://h/db"));
    EXPECT_TRUE(contains(r.err, "not an SQLite URL"));
}

TEST_F(Cli, UnknownFlagFails) {
    auto r = run("--frobnicate");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(contains(r.err, "unknown or incomplete argument '--frobnicate'"));
    EXPECT_TRUE(contains(r.err, "usage: asqlite-init-db"));
    EXPECT_FALSE(fs::exists(dir.path() / "autobots.db"));
    // --db without its value is incomplete.
    r = run("--db");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(contains(r.err, "'--db'"));
}

}  // namespace
