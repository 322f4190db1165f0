#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "asqlite/connection.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using asqlite::connection;
using asqlite::connection_options;
using asqlite::errc;
using asqlite::primary_code;
using asqlite::test::catch_error;
using asqlite::test::contains;
using asqlite::test::fails_with;

class Connection : public asqlite::test::temp_dir_test {};

TEST_F(Connection, OpensAFileWithTheDefaultPragmasInEffect) {
    connection c(db_path);
    EXPECT_TRUE(fs::exists(db_path));
    EXPECT_EQ(c.path(), db_path);
    EXPECT_EQ(c.journal_mode(), "wal");
    EXPECT_EQ(c.scalar<int>("PRAGMA synchronous"), 1);  // NORMAL
    EXPECT_EQ(c.scalar<int>("PRAGMA foreign_keys"), 1);
    EXPECT_EQ(c.scalar<int>("PRAGMA busy_timeout"), 5000);
    EXPECT_EQ(c.scalar<int>("PRAGMA query_only"), 0);
    EXPECT_FALSE(c.in_transaction());
    EXPECT_FALSE(c.echo());
    EXPECT_NE(c.native_handle(), nullptr);
}

TEST_F(Connection, AppliesConfiguredPragmas) {
    connection_options o;
    o.journal_mode = "delete";
    o.synchronous = "full";
    o.foreign_keys = false;
    o.busy_timeout = std::chrono::milliseconds{1234};
    connection c(db_path, o);
    EXPECT_EQ(c.journal_mode(), "delete");
    EXPECT_EQ(c.scalar<int>("PRAGMA synchronous"), 2);  // FULL
    EXPECT_EQ(c.scalar<int>("PRAGMA foreign_keys"), 0);
    EXPECT_EQ(c.scalar<int>("PRAGMA busy_timeout"), 1234);
}

TEST_F(Connection, SynchronousOffAndExtra) {
    connection_options o;
    o.synchronous = "off";
    EXPECT_EQ(connection(db_path, o).scalar<int>("PRAGMA synchronous"), 0);
    o.synchronous = "extra";
    EXPECT_EQ(connection(db_path, o).scalar<int>("PRAGMA synchronous"), 3);
}

TEST_F(Connection, WalModePersistsInTheFile) {
    { connection c(db_path); }
    connection_options o;
    o.read_only = true;  // does not set journal_mode itself
    connection c(db_path, o);
    EXPECT_EQ(c.journal_mode(), "wal");
}

TEST_F(Connection, ConnectionsOpeningANewDatabaseAtOnceAllSucceed) {
    // Each turns the new file to WAL, which takes an exclusive lock; SQLite
    // fails all but one at once with SQLITE_BUSY (its busy handler would
    // deadlock there), and the open waits and tries again.
    for (int round = 0; round < 20; ++round) {
        const std::string path = dir.file("race" + std::to_string(round) + ".db");
        constexpr int openers = 4;
        std::atomic<int> ready{0};
        std::atomic<int> opened{0};
        std::vector<std::string> failures(openers);
        std::vector<std::thread> threads;
        for (int i = 0; i < openers; ++i) {
            threads.emplace_back([&, i] {
                ready.fetch_add(1);
                while (ready.load() < openers) {
                    std::this_thread::yield();
                }
                try {
                    connection c(path);
                    if (c.journal_mode() == "wal") {
                        opened.fetch_add(1);
                    }
                } catch (const std::exception& e) {
                    failures[static_cast<std::size_t>(i)] = e.what();
                }
            });
        }
        for (auto& t : threads) {
            t.join();
        }
        for (const auto& f : failures) {
            EXPECT_EQ(f, "");
        }
        EXPECT_EQ(opened.load(), openers);
    }
}

TEST(ConnectionMemory, MemoryDatabase) {
    connection c(":memory:");
    EXPECT_EQ(c.path(), ":memory:");
    EXPECT_EQ(c.journal_mode(), "memory");  // WAL is impossible in memory
    EXPECT_EQ(c.scalar<int>("PRAGMA foreign_keys"), 1);
    c.exec("CREATE TABLE t(x)");
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 0);
    // Each ":memory:" connection is a database of its own.
    connection other(":memory:");
    EXPECT_EQ(other.scalar<int>("SELECT count(*) FROM sqlite_schema"), 0);
}

TEST(ConnectionMemory, EmptyPathIsMemory) {
    connection c("");
    EXPECT_EQ(c.path(), ":memory:");
}

TEST(ConnectionMemory, RejectsUnknownPragmaValues) {
    connection_options o;
    o.journal_mode = "bogus; DROP TABLE x";
    EXPECT_TRUE(fails_with([&] { connection c(":memory:", o); }, errc::invalid_option,
                           {"journal_mode", "'bogus; DROP TABLE x'"}));
    o = {};
    o.synchronous = "sometimes";
    EXPECT_TRUE(fails_with([&] { connection c(":memory:", o); }, errc::invalid_option,
                           {"synchronous", "'sometimes'"}));
}

TEST(ConnectionMemory, ForeignKeysAreEnforced) {
    connection c(":memory:");
    c.exec(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));");
    auto e = catch_error([&] { c.execute("INSERT INTO child(parent_id) VALUES (?)", 42); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::constraint_foreignkey);
    EXPECT_EQ(primary_code(e->code()), errc::constraint);
    EXPECT_TRUE(contains(e->message(), "FOREIGN KEY constraint failed"));
    EXPECT_EQ(e->sql(), "INSERT INTO child(parent_id) VALUES (?)");
}

// Real SQLite errors: `ec == errc::constraint` holds for each constraint
// kind, the extended value for its own kind only, and the code's message
// names the kind.
TEST(ConnectionMemory, EveryConstraintKindMatchesErrcConstraint) {
    connection c(":memory:");
    c.exec(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL, "
        "k INTEGER CHECK (k > 0));"
        "INSERT INTO t VALUES (1, 'a', 'x', 1);");
    const std::pair<std::string, errc> cases[] = {
        {"INSERT INTO t VALUES (2, 'a', 'x', 1)", errc::constraint_unique},
        {"INSERT INTO t VALUES (2, 'b', NULL, 1)", errc::constraint_notnull},
        {"INSERT INTO t VALUES (2, 'b', 'x', 0)", errc::constraint_check},
        {"INSERT INTO t VALUES (1, 'b', 'x', 1)", errc::constraint_primarykey},
    };
    for (const auto& [sql, kind] : cases) {
        auto e = catch_error([&] { c.execute(sql); });
        ASSERT_TRUE(e) << sql;
        EXPECT_EQ(e->code(), errc::constraint) << sql;
        EXPECT_EQ(e->code(), kind) << sql;
        EXPECT_NE(e->code(), kind == errc::constraint_unique ? errc::constraint_notnull
                                                             : errc::constraint_unique)
            << sql;
        EXPECT_NE(e->code().message(), "constraint failed") << sql;
        EXPECT_TRUE(contains(e->code().message(), "constraint failed")) << sql;
    }
}

TEST(ConnectionMemory, ForeignKeysOffAreNotEnforced) {
    connection_options o;
    o.foreign_keys = false;
    connection c(":memory:", o);
    c.exec(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
        "CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id));");
    EXPECT_NO_THROW(c.execute("INSERT INTO child(parent_id) VALUES (?)", 42));
}

TEST(ConnectionMemory, ExecRunsMultiStatementScripts) {
    connection c(":memory:");
    c.exec(R"sql(
        -- a schema and some data
        CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT);
        INSERT INTO t(name) VALUES ('a');
        INSERT INTO t(name) VALUES ('b'); /* block comment */
        INSERT INTO t(name) VALUES ('c');
        SELECT * FROM t;   -- a query in a script is stepped through and ignored
        UPDATE t SET name = upper(name) WHERE id > 1;
    )sql");
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 3);
    EXPECT_EQ(c.query<std::string>("SELECT name FROM t ORDER BY id"),
              (std::vector<std::string>{"a", "B", "C"}));
    EXPECT_NO_THROW(c.exec(""));
    EXPECT_NO_THROW(c.exec("  -- only a comment\n"));
}

TEST(ConnectionMemory, ExecStopsAtTheFailingStatement) {
    connection c(":memory:");
    auto e = catch_error(
        [&] { c.exec("CREATE TABLE a(x); INSERT INTO nosuch VALUES (1); CREATE TABLE b(x);"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::error);
    EXPECT_TRUE(contains(e->message(), "no such table: nosuch"));
    EXPECT_EQ(e->sql(), "INSERT INTO nosuch VALUES (1);") << "not just the failing statement";
    // Statements before the failure ran (no implicit transaction), later ones did not.
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE name = 'a'"), 1);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE name = 'b'"), 0);
}

TEST(ConnectionMemory, ExecReportsStepErrors) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(x UNIQUE); INSERT INTO t VALUES (1);");
    auto e = catch_error([&] { c.exec("INSERT INTO t VALUES (2); INSERT INTO t VALUES (1);"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::constraint_unique);
    EXPECT_TRUE(contains(e->message(), "UNIQUE constraint failed: t.x"));
    EXPECT_EQ(e->sql(), "INSERT INTO t VALUES (1);");
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 2);
}

TEST(ConnectionMemory, LastInsertRowidAndChanges) {
    connection c(":memory:");
    c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)");
    EXPECT_EQ(c.last_insert_rowid(), 0);
    c.execute("INSERT INTO t(v) VALUES (?)", 10);
    EXPECT_EQ(c.last_insert_rowid(), 1);
    EXPECT_EQ(c.changes(), 1);
    c.execute("INSERT INTO t(id, v) VALUES (?, ?)", 41, 20);
    EXPECT_EQ(c.last_insert_rowid(), 41);
    c.exec("INSERT INTO t(v) VALUES (1), (2), (3)");
    EXPECT_EQ(c.changes(), 3);
    EXPECT_EQ(c.last_insert_rowid(), 44);
    c.execute("UPDATE t SET v = v + 1 WHERE v < ?", 15);
    EXPECT_EQ(c.changes(), 4);
    c.execute("DELETE FROM t WHERE id = ?", 999);
    EXPECT_EQ(c.changes(), 0);
}

TEST_F(Connection, NotADatabaseFailsAtOpen) {
    {
        std::ofstream garbage(db_path, std::ios::binary);
        for (int i = 0; i < 256; ++i) {
            garbage << "this is not a SQLite database, just text. ";
        }
    }
    const auto size = fs::file_size(db_path);
    auto e = catch_error([&] { connection c(db_path); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::notadb);
    EXPECT_TRUE(contains(e->message(), "file is not a database"));
    EXPECT_TRUE(contains(e->message(), db_path));
    // The file is left alone.
    EXPECT_EQ(fs::file_size(db_path), size);
}

TEST_F(Connection, NotADatabaseFailsAtOpenReadOnly) {
    {
        std::ofstream garbage(db_path, std::ios::binary);
        garbage << std::string(8192, '\x5a');
    }
    connection_options o;
    o.read_only = true;
    EXPECT_TRUE(fails_with([&] { connection c(db_path, o); }, errc::notadb,
                           {"file is not a database", db_path}));
}

TEST_F(Connection, ReadOnlyOptionRefusesWrites) {
    {
        connection c(db_path);
        c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    }
    connection_options o;
    o.read_only = true;
    connection c(db_path, o);
    EXPECT_EQ(c.scalar<int>("SELECT x FROM t"), 1);
    auto e = catch_error([&] { c.execute("INSERT INTO t VALUES (?)", 2); });
    ASSERT_TRUE(e);
    EXPECT_EQ(primary_code(e->code()), errc::readonly);
    EXPECT_TRUE(contains(e->message(), "readonly database"));
    EXPECT_EQ(e->sql(), "INSERT INTO t VALUES (?)");
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 1);
}

TEST_F(Connection, ReadOnlyUriRefusesWrites) {
    {
        connection_options o;
        o.journal_mode = "delete";
        connection c(db_path, o);
        c.exec("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    }
    connection c("file:" + db_path + "?mode=ro");
    EXPECT_EQ(c.scalar<int>("SELECT x FROM t"), 1);
    EXPECT_TRUE(
        fails_with([&] { c.exec("DELETE FROM t"); }, errc::readonly, {"readonly database"}));
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 1);
}

TEST_F(Connection, ReadOnlyOpenOfAMissingFileFails) {
    connection_options o;
    o.read_only = true;
    auto e = catch_error([&] { connection c(db_path, o); });
    ASSERT_TRUE(e);
    EXPECT_EQ(primary_code(e->code()), errc::cantopen);
    EXPECT_TRUE(contains(e->message(), db_path));
    EXPECT_FALSE(fs::exists(db_path));
}

TEST_F(Connection, QueryOnlyRefusesWrites) {
    {
        connection c(db_path);
        c.exec("CREATE TABLE t(x)");
    }
    connection_options o;
    o.query_only = true;
    connection c(db_path, o);
    EXPECT_EQ(c.scalar<int>("PRAGMA query_only"), 1);
    auto e = catch_error([&] { c.execute("INSERT INTO t VALUES (1)"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(primary_code(e->code()), errc::readonly);
    EXPECT_TRUE(contains(e->message(), "readonly database"));
}

TEST_F(Connection, MissingDirectoryIsAnErrorAndIsNotCreated) {
    const fs::path missing = dir.path() / "nope";
    const std::string path = (missing / "x.db").string();
    auto e = catch_error([&] { connection c(path); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::directory_missing);
    EXPECT_TRUE(contains(e->message(), "'" + missing.string() + "'"));
    EXPECT_TRUE(contains(e->message(), "does not exist"));
    EXPECT_FALSE(fs::exists(missing));
}

TEST_F(Connection, MissingNestedDirectoryIsNotCreated) {
    const fs::path missing = dir.path() / "a" / "b";
    EXPECT_TRUE(fails_with([&] { connection c((missing / "x.db").string()); },
                           errc::directory_missing, {missing.string()}));
    EXPECT_FALSE(fs::exists(dir.path() / "a"));
}

TEST_F(Connection, ParentThatIsAFileIsMissingDirectory) {
    { std::ofstream f(dir.file("plain")); }
    EXPECT_TRUE(fails_with([&] { connection c(dir.file("plain") + "/x.db"); },
                           errc::directory_missing, {dir.file("plain")}));
}

TEST_F(Connection, DirectoryAsDatabaseCannotOpen) {
    auto e = catch_error([&] { connection c(dir.path().string()); });
    ASSERT_TRUE(e);
    EXPECT_EQ(primary_code(e->code()), errc::cantopen);
    EXPECT_TRUE(contains(e->message(), dir.path().string()));
}

TEST_F(Connection, RelativePathInAnExistingDirectory) {
    const auto old = fs::current_path();
    fs::current_path(dir.path());
    {
        connection c("rel.db");
        c.exec("CREATE TABLE t(x)");
    }
    fs::current_path(old);
    EXPECT_TRUE(fs::exists(dir.path() / "rel.db"));
}

TEST_F(Connection, DataSurvivesReopen) {
    {
        connection c(db_path);
        c.exec("CREATE TABLE t(x TEXT)");
        c.execute("INSERT INTO t VALUES (?)", "kept");
    }
    connection c(db_path);
    EXPECT_EQ(c.scalar<std::string>("SELECT x FROM t"), "kept");
}

TEST_F(Connection, MoveKeepsTheDatabase) {
    connection a(db_path);
    a.exec("CREATE TABLE t(x)");
    connection b(std::move(a));
    b.execute("INSERT INTO t VALUES (1)");
    connection c(":memory:");
    c = std::move(b);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 1);
    EXPECT_EQ(c.path(), db_path);
}

class Transaction : public asqlite::test::temp_dir_test {
  protected:
    void SetUp() override { c.exec("CREATE TABLE t(x INTEGER)"); }
    connection c{db_path};
    int count() { return c.scalar<int>("SELECT count(*) FROM t"); }
};

TEST_F(Transaction, CommitKeepsChanges) {
    {
        auto tx = c.begin();
        EXPECT_TRUE(c.in_transaction());
        c.execute("INSERT INTO t VALUES (1)");
        tx.commit();
        EXPECT_FALSE(c.in_transaction());
    }
    EXPECT_EQ(count(), 1);
    connection other(db_path);
    EXPECT_EQ(other.scalar<int>("SELECT count(*) FROM t"), 1);
}

TEST_F(Transaction, RollbackDiscardsChanges) {
    auto tx = c.begin();
    c.execute("INSERT INTO t VALUES (1)");
    tx.rollback();
    EXPECT_FALSE(c.in_transaction());
    EXPECT_EQ(count(), 0);
}

TEST_F(Transaction, DestructorRollsBack) {
    {
        auto tx = c.begin();
        c.execute("INSERT INTO t VALUES (1)");
        EXPECT_EQ(count(), 1);
    }
    EXPECT_FALSE(c.in_transaction());
    EXPECT_EQ(count(), 0);
}

TEST_F(Transaction, DestructorRollsBackWhenAnExceptionUnwinds) {
    try {
        auto tx = c.begin();
        c.execute("INSERT INTO t VALUES (1)");
        c.execute("INSERT INTO nosuch VALUES (1)");
        tx.commit();
    } catch (const asqlite::error&) {
    }
    EXPECT_FALSE(c.in_transaction());
    EXPECT_EQ(count(), 0);
}

TEST_F(Transaction, StateErrors) {
    auto tx = c.begin();
    EXPECT_TRUE(
        fails_with([&] { auto nested = c.begin(); }, errc::transaction_state, {"already open"}));
    tx.commit();
    EXPECT_TRUE(fails_with([&] { tx.commit(); }, errc::transaction_state, {"already finished"}));
    EXPECT_TRUE(fails_with([&] { tx.rollback(); }, errc::transaction_state, {"already finished"}));
}

TEST_F(Transaction, ImmediateTakesTheWriteLockAtBegin) {
    connection_options o;
    o.busy_timeout = std::chrono::milliseconds{0};
    connection other(db_path, o);
    auto tx = c.begin(asqlite::transaction_mode::immediate);
    auto e = catch_error([&] { auto tx2 = other.begin(asqlite::transaction_mode::immediate); });
    ASSERT_TRUE(e);
    EXPECT_EQ(primary_code(e->code()), errc::busy);
    EXPECT_TRUE(contains(e->message(), "database is locked"));
    EXPECT_FALSE(other.in_transaction());
    // WAL: the reader is not blocked by the writer.
    EXPECT_EQ(other.scalar<int>("SELECT count(*) FROM t"), 0);
    tx.commit();
    EXPECT_NO_THROW(other.begin().commit());
}

TEST_F(Transaction, DeferredTakesNoLockAtBegin) {
    connection_options o;
    o.busy_timeout = std::chrono::milliseconds{0};
    connection other(db_path, o);
    auto tx = c.begin(asqlite::transaction_mode::deferred);
    EXPECT_TRUE(c.in_transaction());
    auto tx2 = other.begin(asqlite::transaction_mode::immediate);
    other.execute("INSERT INTO t VALUES (1)");
    tx2.commit();
    tx.commit();
}

}  // namespace

namespace {

TEST_F(Connection, WritesSaysWhatSqliteSaysWhenItCompilesTheStatement) {
    connection c(db_path);
    c.exec("CREATE TABLE t (x)");
    EXPECT_TRUE(c.writes("INSERT INTO t VALUES (1)"));
    EXPECT_TRUE(c.writes("WITH v(n) AS (SELECT 1) INSERT INTO t SELECT n FROM v"));
    EXPECT_TRUE(c.writes("PRAGMA user_version = 3"));
    EXPECT_TRUE(c.writes("BEGIN IMMEDIATE"));
    EXPECT_FALSE(c.writes("SELECT x FROM t"));
    EXPECT_FALSE(c.writes("WITH v(n) AS (SELECT 1) SELECT n FROM v"));
    EXPECT_FALSE(c.writes("PRAGMA user_version"));
    EXPECT_FALSE(c.writes("BEGIN"));
    // Compiled into the cache, and nothing ran.
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM t"), 0);
    EXPECT_TRUE(c.cache_size() >= 8u);
    EXPECT_TRUE(fails_with([&] { c.writes("INSERT INTO nowhere VALUES (1)"); }, errc::error,
                           {"no such table: nowhere"}));
}

TEST_F(Connection, WritesAnswersOnAConnectionThatRejectsWrites) {
    connection_options o;
    o.reject_writes = true;
    connection c(db_path, o);
    EXPECT_TRUE(c.writes("CREATE TABLE t (x)"));
    EXPECT_TRUE(fails_with([&] { c.execute("CREATE TABLE t (x)"); }, errc::needs_writer,
                           {"statement writes"}));
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema"), 0);
}

}  // namespace
