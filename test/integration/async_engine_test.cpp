// The async engine end to end: sessions, typed results, errors, completion
// tokens, the shared :memory: database and the process-default engine.

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdlib>
#include <future>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using test::run_coro;
namespace asio = boost::asio;

class AsyncEngine : public test::temp_dir_test {
  protected:
    engine_options options() {
        engine_options o;
        o.path = db_path;
        o.pool_size = 4;
        o.threads = 2;
        return o;
    }
    void create_schema() { init_db(create_engine(options()), file_info_metadata()); }
    asio::io_context io;
};

TEST_F(AsyncEngine, ExecuteAndTypedReadsThroughASession) {
    create_schema();
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto inserted = co_await s.execute(
            "INSERT INTO fileinfo (file_id, filename, file_path, request_id) VALUES (?, ?, ?, ?)",
            "abc", "a.txt", "/f/a.txt", "req-1");
        EXPECT_EQ(inserted.rows_affected(), 1);
        EXPECT_GT(inserted.last_insert_id(), 0);

        auto count = co_await s.scalar<std::int64_t>("SELECT count(*) FROM fileinfo");
        EXPECT_EQ(count, 1);
        auto row = co_await s.one<file_info>(
            fmt::format("SELECT {} FROM fileinfo WHERE file_id = ?", file_info_columns), "abc");
        EXPECT_EQ(row.filename, "a.txt");
        EXPECT_EQ(row.status, 0);
        EXPECT_EQ(row.request_id, "req-1");
        auto none = co_await s.one_or_none<file_info>("SELECT * FROM fileinfo WHERE file_id = ?",
                                                      "missing");
        EXPECT_FALSE(none.has_value());
        auto names = co_await s.all<std::tuple<std::string, std::int64_t>>(
            "SELECT filename, status FROM fileinfo");
        ASQLITE_CO_ASSERT(names.size() == 1u);
        EXPECT_EQ(std::get<0>(names[0]), "a.txt");
        auto total = co_await s.run([](connection& c) {
            return c.scalar<std::int64_t>("SELECT count(*) FROM fileinfo") * 10;
        });
        EXPECT_EQ(total, 10);
    }());
}

TEST_F(AsyncEngine, SqliteErrorsReachTheAwaitWithCodeMessageAndSql) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        try {
            co_await s.execute("SELEC 1");
            ADD_FAILURE() << "invalid SQL did not throw";
        } catch (const error& e) {
            EXPECT_EQ(primary_code(e.code()), errc::error);
            EXPECT_NE(e.message().find("syntax error"), std::string::npos) << e.message();
            EXPECT_EQ(e.sql(), "SELEC 1");
        }
        co_await s.execute("CREATE TABLE t (k TEXT UNIQUE)");
        co_await s.execute("INSERT INTO t VALUES (?)", "x");
        try {
            co_await s.execute("INSERT INTO t VALUES (?)", "x");
            ADD_FAILURE() << "UNIQUE violation did not throw";
        } catch (const error& e) {
            EXPECT_EQ(e.code(), make_error_code(errc::constraint_unique));
            EXPECT_NE(e.message().find("UNIQUE"), std::string::npos) << e.message();
        }
        // The session stays usable after errors.
        EXPECT_EQ(co_await s.scalar<std::int64_t>("SELECT count(*) FROM t"), 1);
        // Exceptions thrown by run() come back as they are.
        try {
            co_await s.run([](connection&) -> int { throw std::logic_error("boom"); });
            ADD_FAILURE() << "run() swallowed an exception";
        } catch (const std::logic_error& e) {
            EXPECT_STREQ(e.what(), "boom");
        }
    }());
}

TEST_F(AsyncEngine, CallbackAndFutureTokensWork) {
    auto db = create_async_engine(io.get_executor(), options());
    std::int64_t rows = -1;
    bool got_session = false;
    db.session([&](std::exception_ptr ep, session s) {
        ASSERT_FALSE(ep);
        got_session = s.valid();
        auto holder = std::make_shared<session>(std::move(s));
        holder->async_execute("SELECT 1 UNION ALL SELECT 2", std::tuple<>{},
                              [&, holder](std::exception_ptr ep2, result r) {
                                  ASSERT_FALSE(ep2);
                                  rows = static_cast<std::int64_t>(r.size());
                              });
    });
    io.run();
    EXPECT_TRUE(got_session);
    EXPECT_EQ(rows, 2);

    // use_future with the io_context running on another thread.
    io.restart();
    auto guard = asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });
    auto s = db.session(asio::use_future).get();
    ASSERT_TRUE(s.valid());
    auto r = s.async_execute("SELECT ? + 1", std::tuple{41}, asio::use_future).get();
    EXPECT_EQ(r[0].get<int>(0), 42);
    auto failing = s.async_execute("SELECT * FROM nowhere", std::tuple<>{}, asio::use_future);
    EXPECT_THROW(failing.get(), error);
    s = session{};
    guard.reset();
    runner.join();
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(AsyncEngine, MemoryDatabaseIsSharedByEverySession) {
    engine_options o;
    o.path = ":memory:";
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        {
            auto a = co_await db.session();
            co_await a.execute("CREATE TABLE shared_t (v INTEGER)");
            co_await a.execute("INSERT INTO shared_t VALUES (7)");
        }
        auto b = co_await db.session();
        EXPECT_EQ(co_await b.scalar<int>("SELECT v FROM shared_t"), 7);
    }());
    // A second engine's :memory: database is its own.
    auto other = create_async_engine(io.get_executor(), o);
    io.restart();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto c = co_await other.session();
        EXPECT_EQ(
            co_await c.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE name = 'shared_t'"),
            0);
    }());
}

TEST_F(AsyncEngine, DefaultEngineComesFromTheEnvironment) {
    ::setenv("SQLITE_DB_PATH", db_path.c_str(), 1);
    ::setenv("ASQLITE_POOL_SIZE", "3", 1);
    create_schema();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await get_async_session();
        co_await s.execute("INSERT INTO fileinfo (filename, file_path) VALUES ('d', '/d')");
        auto ex = co_await asio::this_coro::executor;
        EXPECT_EQ(default_engine(ex).options().pool_size, 3u);
        EXPECT_EQ(default_engine(ex).options().path, db_path);
        // The seed's async_session_local pattern.
        session_factory async_session_local(default_engine(ex));
        auto s2 = co_await async_session_local();
        EXPECT_EQ(co_await s2.scalar<int>("SELECT count(*) FROM fileinfo"), 1);
    }());
    reset_default_engine();
    ::unsetenv("SQLITE_DB_PATH");
    ::unsetenv("ASQLITE_POOL_SIZE");
}

TEST_F(AsyncEngine, InvalidOptionsAreRejectedAtCreation) {
    auto o = options();
    o.pool_size = 0;
    try {
        create_async_engine(io.get_executor(), o);
        FAIL() << "pool_size 0 accepted";
    } catch (const error& e) {
        EXPECT_EQ(e.code(), make_error_code(errc::invalid_option));
        EXPECT_NE(e.message().find("pool_size"), std::string::npos);
    }
}

TEST_F(AsyncEngine, OpenFailureReachesTheWaiter) {
    auto o = options();
    o.path = dir.file("missing-dir/x.db");
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        try {
            auto s = co_await db.session();  // holds no connection yet
            co_await s.execute("SELECT 1");
            ADD_FAILURE() << "a statement on a missing directory";
        } catch (const error& e) {
            EXPECT_EQ(e.code(), make_error_code(errc::directory_missing));
            EXPECT_NE(e.message().find("missing-dir"), std::string::npos);
        }
    }());
    const auto st = db.stats();
    EXPECT_EQ(st.size, 0u);
    EXPECT_EQ(st.waiters, 0u);
    EXPECT_EQ(st.opening, 0u);
}

}  // namespace
}  // namespace asqlite
