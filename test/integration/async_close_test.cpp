// Shutting the engine down never blocks an io thread on running statements:
// close(), the destructor and reset_default_engine() interrupt them;
// async_close() lets them finish up to a deadline, then interrupts them,
// blocking no thread. The queries here never end by themselves, so a
// shutdown that waited for them would hang the test.

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <future>
#include <vector>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace std::chrono_literals;
using test::sleep_for;
namespace asio = boost::asio;

// Counts up forever; started() tells the test it is under way.
constexpr std::string_view endless_query =
    "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c";
// Runs long enough to be still running when the close begins, then ends.
constexpr std::string_view bounded_query =
    "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
    "SELECT count(*) FROM c";

class AsyncClose : public test::temp_dir_test {
  protected:
    engine_options options(std::size_t pool_size = 8) {
        engine_options o;
        o.path = db_path;
        o.pool_size = pool_size;
        o.threads = 2;
        o.on_connect = [this](connection& c) {
            sqlite3_create_function(
                c.native_handle(), "started", 0, SQLITE_UTF8, &started,
                [](sqlite3_context* ctx, int, sqlite3_value**) {
                    static_cast<std::atomic<int>*>(sqlite3_user_data(ctx))->fetch_add(1);
                    sqlite3_result_int(ctx, 1);
                },
                nullptr, nullptr);
        };
        return o;
    }
    /// Starts `n` runs of `sql`, each in a session of its own, recording
    /// how each ended in outcomes (null: success).
    void start_queries(async_engine& db, std::size_t n, std::string_view sql) {
        outcomes.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            asio::co_spawn(
                io,
                [&, i, sql]() -> asio::awaitable<void> {
                    auto s = co_await db.session();
                    co_await record(s.scalar<std::int64_t>(sql), outcomes[i]);
                },
                asio::detached);
        }
    }
    /// Awaits `op` and records how it ended (an empty code: success).
    template <class T>
    static asio::awaitable<void> record(asio::awaitable<T> op,
                                        std::optional<std::error_code>& outcome) {
        try {
            co_await std::move(op);
            outcome = std::error_code{};
        } catch (const error& e) {
            outcome = e.code();
        }
    }
    /// Calls shut() on the io thread once a statement has started, and
    /// runs io to its end.
    template <class Shut>
    void shut_once_started(Shut shut) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                co_await until_started(1);
                shut();
            },
            asio::detached);
        io.run();
    }
    /// Waits on the io thread until `n` queries have started.
    asio::awaitable<void> until_started(int n) {
        while (started.load() < n) {
            co_await sleep_for(1ms);
        }
    }
    asio::io_context io;
    std::atomic<int> started{0};
    std::vector<std::optional<std::error_code>> outcomes;
};

TEST_F(AsyncClose, CloseOnTheIoThreadInterruptsRunningStatements) {
    auto db = create_async_engine(io.get_executor(), options());
    start_queries(db, 6, endless_query);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            // Both workers are inside a query, four more are queued.
            co_await until_started(2);
            db.close();
        },
        asio::detached);
    io.run();
    for (const auto& o : outcomes) {
        ASSERT_TRUE(o.has_value());
        EXPECT_EQ(*o, make_error_code(errc::pool_closed)) << o->message();
    }
}

TEST_F(AsyncClose, AnInterruptedStatementSaysTheEngineWasClosed) {
    auto db = std::make_unique<async_engine>(io.get_executor(), options());
    std::optional<error> failure;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db->session();
            try {
                co_await s.scalar<std::int64_t>(endless_query);
            } catch (const error& e) {
                failure = e;
            }
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await until_started(1);
            db.reset();  // the destructor closes
        },
        asio::detached);
    io.run();
    ASSERT_TRUE(failure.has_value());
    EXPECT_EQ(failure->code(), make_error_code(errc::pool_closed));
    EXPECT_NE(failure->message().find("interrupted"), std::string::npos) << failure->message();
}

TEST_F(AsyncClose, AsyncCloseLetsRunningStatementsFinishWithinTheGrace) {
    auto db = create_async_engine(io.get_executor(), options());
    start_queries(db, 2, bounded_query);
    std::optional<std::error_code> refused;
    bool closed = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await until_started(2);
            auto close = db.async_close(60s, asio::deferred);
            // New work is refused from the moment the close begins.
            std::move(close)([&](std::exception_ptr ep) {
                EXPECT_FALSE(ep);
                closed = true;
            });
            auto s = co_await test::error_of(db.session());
            refused = s ? s->code() : std::error_code{};
        },
        asio::detached);
    io.run();
    EXPECT_TRUE(closed);
    ASSERT_TRUE(refused.has_value());
    EXPECT_EQ(*refused, make_error_code(errc::pool_closed));
    for (const auto& o : outcomes) {
        ASSERT_TRUE(o.has_value());
        EXPECT_FALSE(*o) << o->message();  // finished normally
    }
}

TEST_F(AsyncClose, AsyncCloseInterruptsWhatStillRunsAfterTheGraceWithoutBlockingTheIoThread) {
    auto db = create_async_engine(io.get_executor(), options());
    start_queries(db, 3, endless_query);
    int ticks_during_close = 0;
    bool closing = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await until_started(2);
            closing = true;
            // A callback token; the io thread keeps running other work.
            db.async_close(50ms, [&](std::exception_ptr ep) {
                EXPECT_FALSE(ep);
                closing = false;
            });
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            while (!closing) {
                co_await sleep_for(1ms);
            }
            while (closing) {
                ++ticks_during_close;
                co_await sleep_for(1ms);
            }
        },
        asio::detached);
    io.run();
    EXPECT_FALSE(closing);
    // The 1 ms ticker expires before the 50 ms grace: it ran while the
    // engine was closing.
    EXPECT_GT(ticks_during_close, 0);
    for (const auto& o : outcomes) {
        ASSERT_TRUE(o.has_value());
        EXPECT_EQ(*o, make_error_code(errc::pool_closed)) << o->message();
    }
}

TEST_F(AsyncClose, AsyncCloseOfAClosedEngineCompletesAtOnceAndTheDestructorDoesNotWait) {
    auto db = create_async_engine(io.get_executor(), options());
    test::run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        EXPECT_EQ(co_await s.scalar<int>("SELECT 1"), 1);
        co_await db.async_close(1s);
        co_await db.async_close(1s);  // closed already
        db.close();                   // idempotent
        auto late = co_await test::error_of(s.scalar<int>("SELECT 1"));
        ASQLITE_CO_ASSERT(late.has_value());
        EXPECT_EQ(late->code(), make_error_code(errc::pool_closed));
    }());
}

TEST_F(AsyncClose, TwoAsyncClosesBothCompleteAndTheDestructorMayComeFirst) {
    auto db = std::make_unique<async_engine>(io.get_executor(), options());
    start_queries(*db, 2, endless_query);
    int completed = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await until_started(2);
            db->async_close(1h, [&](std::exception_ptr ep) {
                EXPECT_FALSE(ep);
                ++completed;
            });
            db->async_close(1h, [&](std::exception_ptr ep) {
                EXPECT_FALSE(ep);
                ++completed;
            });
            // Destroyed with both in flight and the grace far away: the
            // destructor interrupts the queries; both closes complete.
            db.reset();
        },
        asio::detached);
    io.run();
    EXPECT_EQ(completed, 2);
    for (const auto& o : outcomes) {
        ASSERT_TRUE(o.has_value());
        EXPECT_EQ(*o, make_error_code(errc::pool_closed)) << o->message();
    }
}

TEST_F(AsyncClose, AsyncCloseWorksWithUseFuture) {
    auto db = create_async_engine(io.get_executor(), options());
    std::thread runner;
    auto guard = asio::make_work_guard(io);
    runner = std::thread([&] { io.run(); });
    std::future<void> done = db.async_close(1s, asio::use_future);
    EXPECT_NO_THROW(done.get());
    guard.reset();
    runner.join();
}

TEST_F(AsyncClose, ResetDefaultEngineOnTheIoThreadInterruptsRunningStatements) {
    set_default_engine(create_async_engine(io.get_executor(), options()));
    std::optional<std::error_code> outcome;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await get_async_session();
            co_await record(s.scalar<std::int64_t>(endless_query), outcome);
        },
        asio::detached);
    shut_once_started([] { reset_default_engine(); });
    ASSERT_TRUE(outcome.has_value());
    EXPECT_EQ(*outcome, make_error_code(errc::pool_closed));
}

// The writer lane's statement is interrupted too, and a write interrupted
// by close leaves nothing half done in the file.
TEST_F(AsyncClose, CloseInterruptsAWriteOnTheWriterLane) {
    {
        connection c(db_path);
        c.exec("CREATE TABLE t (v INTEGER)");
    }
    auto db = create_async_engine(io.get_executor(), options());
    std::optional<std::error_code> outcome;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await record(s.execute("INSERT INTO t SELECT x FROM (WITH RECURSIVE c(x) AS (SELECT "
                                      "started() UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)"),
                            outcome);
        },
        asio::detached);
    shut_once_started([&] { db.close(); });
    ASSERT_TRUE(outcome.has_value());
    EXPECT_EQ(*outcome, make_error_code(errc::pool_closed));
    EXPECT_EQ(connection(db_path).scalar<int>("SELECT count(*) FROM t"), 0);
}

}  // namespace
}  // namespace asqlite
