// Versioned migrations on real database files: order, records and
// checksums, refusals that change nothing, a failing script rolled back,
// concurrent starters (threads and processes), baselines, and the
// asqlite-migrate CLI.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/migrate.hpp"
#include "support/check.hpp"
#include "support/shell.hpp"
#include "support/temp_dir.hpp"

#ifndef ASQLITE_MIGRATE_EXE
#error "test/CMakeLists.txt defines ASQLITE_MIGRATE_EXE"
#endif

namespace asqlite {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::fails_with;
using test::run_result;
using test::shell_quote;
using test::slurp;

const std::vector<migration> three = {
    {1, "create_items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"},
    {2, "index_items", "CREATE INDEX ix_items_name ON items (name);"},
    {3, "add_price",
     "ALTER TABLE items ADD COLUMN price INTEGER NOT NULL DEFAULT 0;\n"
     "INSERT INTO items (name, price) VALUES ('first', 5);"},
};

std::error_code refused() {
    return make_error_code(errc::migration_refused);
}

class Migrate : public test::temp_dir_test {
  protected:
    engine quiet_engine() const {
        engine_options o;
        o.path = db_path;
        o.echo = false;
        return engine(o);
    }
    std::int64_t current() const {
        auto c = quiet_engine().connect();
        return migration_state(c, three).current();
    }
    bool has_table(std::string_view name) const {
        auto c = quiet_engine().connect();
        return asqlite::has_table(c, name);
    }
    void write(const std::string& file, const std::string& text) const {
        std::ofstream(dir.path() / "migrations" / file) << text;
    }
};

TEST_F(Migrate, AppliesInOrderOnceAndRecordsEach) {
    const auto e = quiet_engine();
    EXPECT_EQ(migrate(e, three), (std::vector<std::int64_t>{1, 2, 3}));
    EXPECT_TRUE(migrate(e, three).empty()) << "applied twice";
    auto c = e.connect();
    EXPECT_EQ(c.scalar<int>("SELECT price FROM items WHERE name = 'first'"), 5);
    const auto s = migration_state(c, three);
    ASSERT_EQ(s.applied.size(), 3u);
    EXPECT_TRUE(s.pending.empty());
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(s.applied[i].version, three[i].version);
        EXPECT_EQ(s.applied[i].name, three[i].name);
        EXPECT_EQ(s.applied[i].checksum, migration_checksum(three[i].sql));
        EXPECT_EQ(s.applied[i].applied_at.size(), 19u) << s.applied[i].applied_at;
    }
    // The list's order does not matter; the versions do.
    const std::vector<migration> shuffled = {three[2], three[0], three[1]};
    EXPECT_EQ(migration_state(c, shuffled).current(), 3);
}

TEST_F(Migrate, UpToAVersionAndNeverDown) {
    const auto e = quiet_engine();
    EXPECT_EQ(migrate(e, three, {.to = 2}), (std::vector<std::int64_t>{1, 2}));
    EXPECT_FALSE(has_table("nothing"));
    EXPECT_EQ(current(), 2);
    EXPECT_TRUE(fails_with([&] { migrate(e, three, {.to = 1}); }, refused(),
                           {"at migration 2", "no down migrations"}));
    EXPECT_TRUE(
        fails_with([&] { migrate(e, three, {.to = 4}); }, refused(), {"there is no migration 4"}));
    EXPECT_EQ(current(), 2);
    EXPECT_EQ(migrate(e, three), (std::vector<std::int64_t>{3}));
}

TEST_F(Migrate, DryRunReportsAndChangesNothing) {
    const auto e = quiet_engine();
    EXPECT_EQ(migrate(e, three, {.dry_run = true}), (std::vector<std::int64_t>{1, 2, 3}));
    EXPECT_FALSE(has_table("items"));
    EXPECT_FALSE(has_table(migrations_table));
    migrate(e, three, {.to = 1});
    EXPECT_EQ(migrate(e, three, {.to = 2, .dry_run = true}), (std::vector<std::int64_t>{2}));
    EXPECT_EQ(current(), 1);
}

TEST_F(Migrate, AScriptChangedAfterItWasAppliedIsRefused) {
    const auto e = quiet_engine();
    migrate(e, three, {.to = 2});
    auto edited = three;
    edited[1].sql = "CREATE INDEX ix_items_name ON items (name DESC);";
    EXPECT_TRUE(fails_with([&] { migrate(e, edited); }, refused(),
                           {"migration 2 (index_items) changed after it was applied",
                            migration_checksum(three[1].sql), "nothing was applied"}));
    EXPECT_EQ(current(), 2) << "migration 3 ran although the set was refused";
    auto c = e.connect();
    EXPECT_TRUE(fails_with([&] { migration_state(c, edited); }, refused(), {"changed"}));
}

TEST_F(Migrate, ADatabaseNewerThanTheProgramIsRefused) {
    const auto e = quiet_engine();
    migrate(e, three);
    const std::vector<migration> older(three.begin(), three.begin() + 2);
    EXPECT_TRUE(
        fails_with([&] { migrate(e, older); }, refused(),
                   {"records migration 3 (add_price)", "newer than this program's latest (2)"}));
    EXPECT_EQ(current(), 3);
}

TEST_F(Migrate, GapsAreRefusedInTheProgramAndInTheDatabase) {
    const auto e = quiet_engine();
    const std::vector<migration> gap = {three[0], three[2]};
    EXPECT_TRUE(fails_with([&] { migrate(e, gap); }, refused(), {"version 2 is missing"}));
    EXPECT_FALSE(has_table("items"));
    auto twice = three;
    twice[2].version = 2;
    EXPECT_TRUE(fails_with([&] { migrate(e, twice); }, refused(), {"version 2 is used twice"}));
    auto zero = three;
    zero[0].version = 0;
    EXPECT_TRUE(fails_with([&] { migrate(e, zero); }, refused(), {"versions start at 1"}));

    migrate(e, three);
    auto c = e.connect();
    c.execute("DELETE FROM asqlite_migrations WHERE version = 2");
    EXPECT_TRUE(fails_with([&] { migrate(e, three); }, refused(),
                           {"records migration 3 (add_price) but not 2"}));
}

TEST_F(Migrate, AFailingScriptRollsBackAndSaysWhichStatement) {
    const auto e = quiet_engine();
    auto broken = three;
    broken[1].sql =
        "CREATE TABLE audit (x INTEGER);\n"
        "INSERT INTO no_such_table VALUES (1);\n"
        "CREATE TABLE never (y INTEGER);";
    const auto failure = test::catch_error([&] { migrate(e, broken); });
    ASSERT_TRUE(failure);
    EXPECT_EQ(primary_code(failure->code()), errc::error);
    EXPECT_TRUE(contains(failure->message(), "migration 2 (index_items) failed"));
    EXPECT_TRUE(contains(failure->message(), "stays at version 1"));
    EXPECT_TRUE(contains(failure->message(), "no_such_table"));
    EXPECT_EQ(failure->sql(), "INSERT INTO no_such_table VALUES (1);");
    EXPECT_TRUE(contains(failure->what(), "INSERT INTO no_such_table"));
    EXPECT_EQ(current(), 1);
    EXPECT_FALSE(has_table("audit")) << "the failed script's first statement stayed";
    EXPECT_FALSE(has_table("never"));
    // Fixed, it applies: a script that failed was never recorded.
    EXPECT_EQ(migrate(e, three), (std::vector<std::int64_t>{2, 3}));
}

TEST_F(Migrate, ConcurrentStartersApplyEachMigrationOnce) {
    // Migrations that count their runs: each must run once however many
    // starters race for them.
    const std::vector<migration> counted = {
        {1, "runs", "CREATE TABLE runs (version INTEGER);"},
        {2, "second", "INSERT INTO runs VALUES (2);"},
        {3, "third", "INSERT INTO runs VALUES (3);"},
        {4, "fourth", "INSERT INTO runs VALUES (4);"},
    };
    constexpr int starters = 4;
    std::atomic<int> ready{0};
    std::vector<std::vector<std::int64_t>> applied(starters);
    std::vector<std::string> failures(starters);
    std::vector<std::thread> threads;
    for (int i = 0; i < starters; ++i) {
        threads.emplace_back([&, i] {
            const auto e = quiet_engine();  // each its own engine and connection
            ready.fetch_add(1);
            while (ready.load() < starters) {
                std::this_thread::yield();
            }
            try {
                applied[static_cast<std::size_t>(i)] = migrate(e, counted);
            } catch (const std::exception& ex) {
                failures[static_cast<std::size_t>(i)] = ex.what();
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    std::multiset<std::int64_t> all;
    for (int i = 0; i < starters; ++i) {
        EXPECT_EQ(failures[static_cast<std::size_t>(i)], "");
        all.insert(applied[static_cast<std::size_t>(i)].begin(),
                   applied[static_cast<std::size_t>(i)].end());
    }
    EXPECT_EQ(all, (std::multiset<std::int64_t>{1, 2, 3, 4}));
    auto c = quiet_engine().connect();
    EXPECT_EQ(c.query<std::int64_t>("SELECT version FROM runs ORDER BY version"),
              (std::vector<std::int64_t>{2, 3, 4}));
}

TEST_F(Migrate, BaselineRecordsAnInitDbSchemaWithoutRunningIt) {
    // A project's version 1 is what init_db makes; its database from
    // before migrations is recorded at 1, and only version 2 runs.
    const auto e = quiet_engine();
    init_db(e, file_info_metadata());
    auto c = e.connect();
    c.execute("INSERT INTO fileinfo (file_id, filename, file_path) VALUES ('a', 'a.txt', '/a')");
    const table& fileinfo = *file_info_metadata().find("fileinfo");
    std::string v1 = fileinfo.create_sql() + ";\n";
    for (const auto& index : fileinfo.create_index_sql()) {
        v1 += index + ";\n";
    }
    const std::vector<migration> project = {
        {1, "fileinfo", v1},
        {2, "fileinfo_note", "ALTER TABLE fileinfo ADD COLUMN note TEXT;"},
    };
    EXPECT_TRUE(fails_with([&] { baseline(e, project, 3); }, refused(), {"from 1 to 2"}));
    baseline(e, project, 1);
    EXPECT_EQ(migrate(e, project), (std::vector<std::int64_t>{2}));
    EXPECT_EQ(c.scalar<std::string>("SELECT filename FROM fileinfo WHERE file_id = 'a'"), "a.txt");
    c.execute("UPDATE fileinfo SET note = 'kept' WHERE file_id = 'a'");
    EXPECT_TRUE(fails_with([&] { baseline(e, project, 1); }, refused(),
                           {"records migrations already (up to 2)"}));
}

TEST_F(Migrate, LoadsADirectoryInVersionOrder) {
    fs::create_directory(dir.path() / "migrations");
    write("0002_index_items.sql", three[1].sql);
    write("0001_create_items.sql", three[0].sql);
    write("3_add_price.sql", three[2].sql);
    write("README.md", "not a migration");
    const auto loaded = load_migrations(dir.path() / "migrations");
    ASSERT_EQ(loaded.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(loaded[i].version, three[i].version);
        EXPECT_EQ(loaded[i].name, three[i].name);
        EXPECT_EQ(loaded[i].sql, three[i].sql);
    }
}

TEST_F(Migrate, ADirectoryWithABadNameADuplicateOrAGapIsRefused) {
    const auto m = dir.path() / "migrations";
    EXPECT_TRUE(fails_with([&] { load_migrations(m); }, refused(), {"does not exist"}));
    fs::create_directory(m);
    write("1_create.sql", "SELECT 1;");
    write("create.sql", "SELECT 1;");
    EXPECT_TRUE(fails_with([&] { load_migrations(m); }, refused(), {"create.sql", "<version>_"}));
    fs::remove(m / "create.sql");
    write("2_bad-name.sql", "SELECT 1;");
    EXPECT_TRUE(fails_with([&] { load_migrations(m); }, refused(), {"2_bad-name.sql"}));
    fs::remove(m / "2_bad-name.sql");
    write("01_again.sql", "SELECT 1;");
    EXPECT_TRUE(fails_with([&] { load_migrations(m); }, refused(), {"version 1 is used twice"}));
    fs::remove(m / "01_again.sql");
    write("3_later.sql", "SELECT 1;");
    EXPECT_TRUE(fails_with([&] { load_migrations(m); }, refused(), {"version 2 is missing"}));
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

class MigrateCli : public Migrate {
  protected:
    void SetUp() override {
        fs::create_directory(dir.path() / "migrations");
        for (const auto& m : three) {
            write(fmt::format("{:04}_{}.sql", m.version, m.name), m.sql);
        }
    }
    /// The shell command running asqlite-migrate on the test's database and
    /// scripts with `args`, its output in files named after `tag`.
    std::string command(const std::string& args, const std::string& tag) const {
        std::string unset;
        for (const auto& name : test::engine_env_names()) {
            unset += " -u " + name;
        }
        return "env" + unset + " " + shell_quote(ASQLITE_MIGRATE_EXE) + " --db " +
               shell_quote(db_path) + " --dir " +
               shell_quote((dir.path() / "migrations").string()) + " " + args + " >" +
               shell_quote(dir.file(tag + ".out")) + " 2>" + shell_quote(dir.file(tag + ".err"));
    }
    run_result result(int status, const std::string& tag) const {
        run_result r;
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        r.out = slurp(dir.file(tag + ".out"));
        r.err = slurp(dir.file(tag + ".err"));
        return r;
    }
    run_result run(const std::string& args) const {
        return result(std::system(command(args, "cli").c_str()), "cli");
    }
};

TEST_F(MigrateCli, StatusUpAndDryRun) {
    auto r = run("status");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "version 0 of 3"));
    EXPECT_TRUE(contains(r.out, "create_items"));
    EXPECT_TRUE(contains(r.out, "pending"));

    r = run("up --dry-run --to 2");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "-- migration 1 (create_items): would be applied"));
    EXPECT_TRUE(contains(r.out, three[1].sql));
    EXPECT_FALSE(contains(r.out, "add_price"));
    EXPECT_FALSE(has_table("items"));

    r = run("--quiet up --to 2");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "applied 1 (create_items)"));
    EXPECT_TRUE(contains(r.out, "applied 2 (index_items)"));
    EXPECT_EQ(current(), 2);

    r = run("up");  // echo on: the SQL goes to stderr
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.out, "applied 3 (add_price)"));
    EXPECT_TRUE(contains(r.err, "ALTER TABLE items ADD COLUMN price"));
    r = run("up");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_TRUE(contains(r.out, "nothing to apply"));
    r = run("status");
    EXPECT_TRUE(contains(r.out, "version 3 of 3"));
    EXPECT_TRUE(contains(r.out, "applied 20"));  // the date
}

TEST_F(MigrateCli, RefusalsExitWithOneAndUsageWithTwo) {
    ASSERT_EQ(run("--quiet up").exit_code, 0);
    write("0002_index_items.sql", "CREATE INDEX ix_items_name ON items (name, id);");
    auto r = run("--quiet up");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "migration 2 (index_items) changed after it was applied"));
    r = run("baseline 1");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "records migrations already"));
    EXPECT_EQ(run("sideways").exit_code, 2);
    EXPECT_EQ(run("up --to soon").exit_code, 2);
    EXPECT_EQ(run("status --dry-run").exit_code, 2);
    r = result(std::system((shell_quote(ASQLITE_MIGRATE_EXE) + " status >" +
                            shell_quote(dir.file("x.out")) + " 2>" + shell_quote(dir.file("x.err")))
                               .c_str()),
               "x");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(contains(r.err, "--dir is required"));
}

TEST_F(MigrateCli, TwoProcessesStartingAtOnceApplyEachOnce) {
    write("0004_count.sql", "CREATE TABLE runs (n INTEGER);");
    write("0005_once.sql", "INSERT INTO runs VALUES (5);");
    const auto started = [&](const std::string& tag) {
        return "(" + command("--quiet up", tag) + "; echo $? >" +
               shell_quote(dir.file(tag + ".rc")) + ") &";
    };
    ASSERT_EQ(std::system((started("a") + " " + started("b") + " wait").c_str()), 0);
    const auto a = result(0, "a");
    const auto b = result(0, "b");
    EXPECT_EQ(slurp(dir.file("a.rc")), "0\n") << a.err;
    EXPECT_EQ(slurp(dir.file("b.rc")), "0\n") << b.err;
    for (int v = 1; v <= 5; ++v) {
        const std::string line = fmt::format("applied {} (", v);
        EXPECT_NE(contains(a.out, line), contains(b.out, line))
            << "version " << v << " applied by both or neither:\n"
            << a.out << "---\n"
            << b.out;
    }
    auto c = quiet_engine().connect();
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM runs"), 1);
}

}  // namespace
}  // namespace asqlite
