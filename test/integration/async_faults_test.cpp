// Faults and hostile input through the async engine: a full disk, a
// read-only database, the file deleted under an open pool, a corrupt file, a
// schema changed by another connection, SQL injection, huge values, invalid
// UTF-8. Each gives a clear error, the pool keeps serving, nothing committed
// is lost.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using test::run_coro;
namespace asio = boost::asio;

struct named_item {
    std::int64_t id = 0;
    std::string name;
    std::optional<std::string> data;
};
BOOST_DESCRIBE_STRUCT(named_item, (), (id, name, data))

class AsyncFaults : public test::temp_dir_test {
  protected:
    void SetUp() override {
        connection c(db_path);
        c.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, data BLOB)");
        c.execute("INSERT INTO items (name) VALUES ('committed')");
    }
    engine_options options() {
        engine_options o;
        o.path = db_path;
        o.pool_size = 3;
        o.threads = 2;
        return o;
    }
    asio::io_context io;
};

TEST_F(AsyncFaults, DiskFullIsAClearErrorAndThePoolServesOn) {
    auto o = options();
    o.on_connect = [](connection& c) { c.exec("PRAGMA max_page_count = 40"); };
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        bool full = false;
        for (int i = 0; i < 100 && !full; ++i) {
            try {
                co_await s.execute("INSERT INTO items (name, data) VALUES ('big', ?)",
                                   blob(8000, std::byte{1}));
            } catch (const error& e) {
                EXPECT_EQ(primary_code(e.code()), errc::full) << e.what();
                EXPECT_NE(e.message().find("full"), std::string::npos) << e.message();
                full = true;
            }
        }
        EXPECT_TRUE(full) << "max_page_count never filled up";
        auto other = co_await db.session();
        EXPECT_EQ(co_await other.scalar<std::string>("SELECT name FROM items WHERE id = 1"),
                  "committed");
        // A small write still fits into the pages already there.
        co_await other.execute("DELETE FROM items WHERE name = 'big'");
        co_await other.execute("INSERT INTO items (name) VALUES ('after')");
    }());
    connection c(db_path);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM items WHERE name IN ('committed', 'after')"), 2);
}

TEST_F(AsyncFaults, ReadOnlyDatabaseRefusesWritesClearly) {
    auto o = options();
    o.path = fmt::format("file:{}?mode=ro", db_path);
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 1);
        try {
            co_await s.execute("INSERT INTO items (name) VALUES ('nope')");
            ADD_FAILURE() << "a write to a read-only database succeeded";
        } catch (const error& e) {
            EXPECT_EQ(primary_code(e.code()), errc::readonly) << e.what();
            EXPECT_NE(e.message().find("readonly"), std::string::npos) << e.message();
        }
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 1);
    }());
}

TEST_F(AsyncFaults, FileDeletedUnderAnOpenPool) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        {
            auto s = co_await db.session();
            co_await s.execute("INSERT INTO items (name) VALUES ('before')");
        }
        for (const auto* suffix : {"", "-wal", "-shm"}) {
            std::filesystem::remove(db_path + suffix);
        }
        auto s = co_await db.session();
        try {
            co_await s.execute("INSERT INTO items (name) VALUES ('after delete')");
            ADD_FAILURE() << "a write into a deleted database file succeeded";
        } catch (const error& e) {
            EXPECT_EQ(primary_code(e.code()), errc::readonly) << e.what();
        }
        // The engine did not crash and still answers.
        EXPECT_EQ(co_await s.scalar<int>("SELECT 1"), 1);
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(AsyncFaults, FileReplacedUnderAnOpenPool) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        {
            auto s = co_await db.session();
            co_await s.execute("INSERT INTO items (name) VALUES ('before')");
        }
        // Another program swaps in a different database file at the same path.
        const auto other = dir.file("other.db");
        {
            connection c(other);
            c.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, data BLOB)");
        }
        std::filesystem::rename(other, db_path);
        auto s = co_await db.session();
        try {
            co_await s.execute("INSERT INTO items (name) VALUES ('into the old inode')");
            ADD_FAILURE() << "a write went to the replaced file";
        } catch (const error& e) {
            EXPECT_EQ(e.code(), make_error_code(errc::readonly_dbmoved)) << e.what();
            EXPECT_NE(e.message().find("moved or replaced"), std::string::npos) << e.message();
        }
        // The writer was closed; its replacement opens the new file and works.
        co_await s.execute("INSERT INTO items (name) VALUES ('into the new file')");
    }());
    // The old connections' WAL still sits beside the path, so what a reader
    // of the path sees includes the commits made before the swap: nothing
    // committed is lost, and the file is sound.
    connection c(db_path);
    EXPECT_EQ(c.scalar<std::string>("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM items WHERE name IN ('committed', 'before', "
                            "'into the new file')"),
              3);
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM items WHERE name = 'into the old inode'"), 0);
}

TEST_F(AsyncFaults, CorruptFileFailsEveryAcquireClearly) {
    const auto bad = dir.file("corrupt.db");
    {
        std::ofstream out(bad, std::ios::binary);
        for (int i = 0; i < 4096; ++i) {
            out.put(static_cast<char>((i * 7919) & 0xff));
        }
    }
    auto o = options();
    o.path = bad;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 3; ++i) {
            try {
                auto s = co_await db.session();
                co_await s.scalar<int>("SELECT count(*) FROM sqlite_schema");
                ADD_FAILURE() << "a corrupt file served a query";
            } catch (const error& e) {
                EXPECT_EQ(primary_code(e.code()), errc::notadb) << e.what();
                EXPECT_NE(e.message().find("not a database"), std::string::npos) << e.message();
            }
        }
    }());
    const auto st = db.stats();
    EXPECT_EQ(st.size, 0u);
    EXPECT_EQ(st.waiters, 0u);
    EXPECT_EQ(st.opening, 0u);
}

TEST_F(AsyncFaults, SchemaChangedByAnotherConnectionWhileStatementsAreCached) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto before = co_await s.execute("SELECT * FROM items");
        EXPECT_EQ(before.columns().size(), 3u);
        co_await s.run([this](connection&) {
            connection other(db_path);
            other.exec("ALTER TABLE items ADD COLUMN extra INTEGER DEFAULT 7");
        });
        auto after = co_await s.execute("SELECT * FROM items");  // same cached statement
        EXPECT_EQ(after.columns().size(), 4u);
        EXPECT_EQ(after[0].get<int>("extra"), 7);
        co_await s.run([this](connection&) { connection(db_path).exec("DROP TABLE items"); });
        try {
            co_await s.execute("SELECT * FROM items");
            ADD_FAILURE() << "a dropped table was queried";
        } catch (const error& e) {
            EXPECT_NE(e.message().find("no such table"), std::string::npos) << e.message();
        }
    }());
}

// A single-row read matches columns to the struct by name. The snapshot keeps
// a statement's column names between reads of the same statement; SQLite
// prepares the statement again after a schema change, and the new names
// must be the ones matched.
TEST_F(AsyncFaults, ARenamedColumnReachesSingleRowReadsOfACachedStatement) {
    auto o = options();
    o.pool_size = 2;  // one read connection: every read uses the same cached statement
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        constexpr std::string_view sql = "SELECT * FROM items WHERE id = ?";
        for (int i = 0; i < 3; ++i) {
            const auto row = co_await s.one_or_none<named_item>(sql, 1);
            ASQLITE_CO_ASSERT(row.has_value());
            EXPECT_EQ(row->name, "committed");
        }
        co_await s.run([this](connection&) {
            connection(db_path).exec("ALTER TABLE items RENAME COLUMN name TO title");
        });
        // The same cached statement, prepared again by SQLite: its second
        // column is "title" now, which named_item does not have.
        const auto e = co_await test::error_of(s.one_or_none<named_item>(sql, 1));
        ASQLITE_CO_ASSERT(e.has_value());
        EXPECT_TRUE(e->code() == make_error_code(errc::column_not_found) ||
                    e->code() == make_error_code(errc::extra_column))
            << e->message();
        EXPECT_EQ(co_await s.scalar<std::string>("SELECT title FROM items WHERE id = 1"),
                  "committed");
    }());
}

TEST_F(AsyncFaults, HostileValuesStayData) {
    auto o = options();
    o.on_connect = [](connection& c) {
        sqlite3_limit(c.native_handle(), SQLITE_LIMIT_LENGTH, 2'000'000);
    };
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        const std::string injection = "x'); DROP TABLE items; --";
        co_await s.execute("INSERT INTO items (name) VALUES (?)", injection);
        EXPECT_EQ(
            co_await s.scalar<std::string>("SELECT name FROM items WHERE name = ?", injection),
            injection);
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 2);

        const std::string invalid_utf8("\xff\xfe\x80 ok \xc3\x28", 9);
        auto id = co_await s.one<std::int64_t>("INSERT INTO items (name) VALUES (?) RETURNING id",
                                               invalid_utf8);
        EXPECT_EQ(co_await s.scalar<std::string>("SELECT name FROM items WHERE id = ?", id),
                  invalid_utf8);

        const std::string large(1'500'000, 'L');
        auto big =
            co_await s.one<std::int64_t>("INSERT INTO items (name) VALUES (?) RETURNING id", large);
        EXPECT_EQ(
            co_await s.scalar<std::int64_t>("SELECT length(name) FROM items WHERE id = ?", big),
            1'500'000);
        try {
            co_await s.execute("INSERT INTO items (data) VALUES (?)", blob(3'000'000));
            ADD_FAILURE() << "a value over SQLITE_LIMIT_LENGTH was accepted";
        } catch (const error& e) {
            EXPECT_EQ(primary_code(e.code()), errc::toobig) << e.what();
        }
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 4);
    }());
}

}  // namespace
}  // namespace asqlite
