// A session holds no connection of its own: each statement runs on the
// connection a worker finds idle when it runs it (the most recently used,
// whose caches are warm), and a session keeps a connection only while a
// transaction is open on it. Real SQLite files, real threads.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using test::run_coro;
using test::sleep_for;
namespace asio = boost::asio;

class IdleConnection : public test::temp_dir_test {
  protected:
    engine_options options(std::size_t pool_size, std::size_t threads) {
        engine_options o;
        o.path = db_path;
        o.pool_size = pool_size;
        o.threads = threads;
        o.echo = false;
        o.on_connect = [this](connection& c) {
            opens.fetch_add(1);
            // ran(): counts the statements that really ran.
            sqlite3_create_function(
                c.native_handle(), "ran", 0, SQLITE_UTF8, &ran,
                [](sqlite3_context* ctx, int, sqlite3_value**) {
                    static_cast<std::atomic<int>*>(sqlite3_user_data(ctx))->fetch_add(1);
                    sqlite3_result_int(ctx, 1);
                },
                nullptr, nullptr);
        };
        return o;
    }
    void make_table(async_engine& db) {
        run_coro(io, [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await s.execute("CREATE TABLE t (n INTEGER)");
            co_await s.execute("INSERT INTO t VALUES (1), (2), (3)");
        }());
        io.restart();
    }
    asio::io_context io;
    std::atomic<int> opens{0};
    std::atomic<int> ran{0};
};

TEST_F(IdleConnection, ReadsOpenNoMoreConnectionsThanThereAreWorkers) {
    // 64 coroutines, one session per read, as a server does: the reads share
    // the connections the two workers use, instead of spreading over nine.
    auto db = create_async_engine(io.get_executor(), options(10, 2));
    make_table(db);
    constexpr int coroutines = 64;
    constexpr int reads_each = 20;
    std::atomic<int> sum{0};
    for (int i = 0; i < coroutines; ++i) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                for (int k = 0; k < reads_each; ++k) {
                    auto s = co_await db.session();
                    sum.fetch_add(co_await s.scalar<int>("SELECT sum(n) FROM t"));
                }
            },
            asio::detached);
    }
    io.run();
    EXPECT_EQ(sum.load(), coroutines * reads_each * 6);
    EXPECT_LE(opens.load(), 3) << "the writer, and one read connection per worker at most";
    const auto st = db.stats();
    EXPECT_EQ(st.in_use, 0u);
    EXPECT_EQ(st.waiters, 0u);
}

TEST_F(IdleConnection, ASessionHoldsAConnectionOnlyInsideATransaction) {
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto reader = co_await db.session();
        EXPECT_EQ(db.stats().in_use, 0u);
        co_await reader.execute("BEGIN");
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM t"), 3);
        EXPECT_EQ(db.stats().in_use, 1u);
        {
            auto writer = co_await db.session();
            co_await writer.execute("INSERT INTO t VALUES (4)");
            EXPECT_EQ(co_await writer.scalar<int>("SELECT count(*) FROM t"), 4);
        }
        // Same connection, same read transaction: the insert is not seen.
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM t"), 3);
        co_await reader.execute("COMMIT");
        EXPECT_EQ(db.stats().in_use, 0u);
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM t"), 4);
        EXPECT_EQ(db.stats().in_use, 0u);
    }());
}

TEST_F(IdleConnection, AStatementWaitsInTurnWhileEveryConnectionIsHeld) {
    auto db = create_async_engine(io.get_executor(), options(3, 2));  // two readers
    make_table(db);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto a = co_await db.session();
        auto b = co_await db.session();
        co_await a.execute("BEGIN");
        co_await a.scalar<int>("SELECT count(*) FROM t");
        co_await b.execute("BEGIN");
        co_await b.scalar<int>("SELECT count(*) FROM t");
        EXPECT_EQ(db.stats().in_use, 2u);
        bool done = false;
        int value = 0;
        co_await sleep_for(20ms);
        const auto jobs_before = db.stats().blocking_jobs;
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [&]() -> asio::awaitable<void> {
                auto c = co_await db.session();
                value = co_await c.scalar<int>("SELECT 7");
                done = true;
            },
            asio::detached);
        co_await sleep_for(50ms);
        EXPECT_FALSE(done) << "ran past the bound";
        EXPECT_EQ(db.stats().waiters, 1u);
        // One unbound job found nothing idle; then the statement checked
        // a connection out in turn, without a second job (which would queue
        // behind every statement in the pool and join the line late).
        EXPECT_EQ(db.stats().blocking_jobs - jobs_before, 1u);
        co_await a.execute("COMMIT");
        for (int i = 0; i < 1000 && !done; ++i) {
            co_await sleep_for(1ms);
        }
        EXPECT_TRUE(done);
        EXPECT_EQ(value, 7);
        co_await b.execute("COMMIT");
    }());
    const auto st = db.stats();
    EXPECT_EQ(st.in_use, 0u);
    EXPECT_EQ(st.waiters, 0u);
}

TEST_F(IdleConnection, AReadCancelledWhileQueuedNeverRuns) {
    // One worker, busy with a long statement: the read queues behind it, is
    // cancelled there, and never reaches SQLite.
    auto db = create_async_engine(io.get_executor(), options(4, 1));
    make_table(db);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto slow = co_await db.session();
        bool slow_done = false;
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [&]() -> asio::awaitable<void> {
                EXPECT_EQ(co_await slow.scalar<int>(
                              "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                              "WHERE x < 300000) SELECT count(*) FROM c"),
                          300000);
                slow_done = true;
            },
            asio::detached);
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        auto s = co_await db.session();
        asio::steady_timer timer(co_await asio::this_coro::executor, 2ms);
        const auto failure = co_await test::error_of([&]() -> asio::awaitable<void> {
            auto r =
                co_await (s.scalar<int>("SELECT ran()") || timer.async_wait(asio::use_awaitable));
            EXPECT_EQ(r.index(), 1u);
            co_return;
        }());
        EXPECT_FALSE(failure.has_value());
        while (!slow_done) {
            co_await sleep_for(1ms);
        }
    }());
    EXPECT_EQ(ran.load(), 0) << "the cancelled read ran";
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(IdleConnection, CancellationRacingTheWorkerLeavesNothingBehind) {
    // The cancellation lands before, during or after the worker takes the
    // read: each round ends with the row or operation_aborted, and no
    // connection stays checked out.
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    std::mt19937 rng(4242);
    int finished = 0;
    int aborted = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        for (int i = 0; i < 500; ++i) {
            auto s = co_await db.session();
            asio::steady_timer timer(ex, std::chrono::microseconds(rng() % 300));
            try {
                auto r = co_await (s.scalar<int>("SELECT count(*) FROM t WHERE ran()") ||
                                   timer.async_wait(asio::use_awaitable));
                if (r.index() == 0) {
                    EXPECT_EQ(std::get<0>(r), 3);
                    ++finished;
                } else {
                    ++aborted;
                }
            } catch (const error& e) {
                EXPECT_EQ(e.code(), make_error_code(asio::error::operation_aborted));
                ++aborted;
            }
            ASQLITE_CO_ASSERT(db.stats().in_use == 0u);
        }
    }());
    EXPECT_EQ(finished + aborted, 500);
    EXPECT_GT(finished, 0);
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_EQ(db.stats().waiters, 0u);
}

TEST_F(IdleConnection, ManyRowReadsInsideOneWriteTransaction) {
    // Inside begin() statements run on the writer; each single-row read's
    // snapshot must live until its continuation has read it, and go back to
    // the cache of the thread that reads it (more reads than the cache holds).
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        for (int i = 0; i < 600; ++i) {
            ASQLITE_CO_ASSERT(co_await s.one<int>("SELECT ? + 1", i) == i + 1);
            const auto row =
                co_await s.one_or_none<std::tuple<int, std::string>>("SELECT ?, 'row ' || ?", i, i);
            ASQLITE_CO_ASSERT(row.has_value());
            ASQLITE_CO_ASSERT(std::get<1>(*row) == "row " + std::to_string(i));
        }
        co_await tx.commit();
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(IdleConnection, CancellingARunningReadStopsItAndGivesTheConnectionBack) {
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        // Completes once the statement is under way (ran() is in its first row).
        auto once_running = [&]() -> asio::awaitable<void> {
            for (int i = 0; i < 5000 && ran.load() == 0; ++i) {
                co_await sleep_for(1ms);
            }
        };
        const auto start = std::chrono::steady_clock::now();
        const auto failure = co_await test::error_of([&]() -> asio::awaitable<void> {
            co_await (s.scalar<int>("WITH RECURSIVE c(x) AS (SELECT ran() UNION ALL SELECT x + 1 "
                                    "FROM c WHERE x < 100000000) SELECT count(*) FROM c") ||
                      once_running());
        }());
        EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "the statement was not stopped";
        EXPECT_EQ(ran.load(), 1) << "the statement should have been running";
        EXPECT_FALSE(failure.has_value()) << "the wait wins, the statement is abandoned";
        EXPECT_EQ(db.stats().in_use, 0u);
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM t"), 3);
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(IdleConnection, RunKeepsTheConnectionOfATransactionItOpensAndGivesItBackAfter) {
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.run([](connection& c) {
            c.exec("BEGIN");
            return c.scalar<int>("SELECT count(*) FROM t");
        });
        EXPECT_EQ(db.stats().in_use, 1u);
        EXPECT_EQ(co_await s.run([](connection& c) { return c.in_transaction(); }), true);
        co_await s.run([](connection& c) { c.exec("COMMIT"); });
        EXPECT_EQ(db.stats().in_use, 0u);
    }());
}

TEST_F(IdleConnection, FuturesCompleteWhileTheEngineRunsElsewhere) {
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    auto guard = asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });
    std::future<session> got = db.session(asio::use_future);
    session s = got.get();
    std::future<int> value = s.run(
        [](connection& c) { return c.scalar<int>("SELECT sum(n) FROM t"); }, asio::use_future);
    EXPECT_EQ(value.get(), 6);
    std::future<result> rows =
        s.async_execute("SELECT n FROM t WHERE n > ?", std::tuple{1}, asio::use_future);
    EXPECT_EQ(rows.get().size(), 2u);
    guard.reset();
    runner.join();
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(IdleConnection, RunTakesAnyTokenWithoutAHeldConnection) {
    auto db = create_async_engine(io.get_executor(), options(4, 2));
    make_table(db);
    std::optional<session> s;
    int value = 0;
    std::exception_ptr failure;
    db.session([&](std::exception_ptr ep, session got) {
        ASSERT_FALSE(ep);
        s.emplace(std::move(got));
        s->run([](connection& c) { return c.scalar<int>("SELECT max(n) FROM t"); },
               [&](std::exception_ptr ep2, int v) {
                   failure = ep2;
                   value = v;
               });
    });
    io.run();
    EXPECT_FALSE(failure);
    EXPECT_EQ(value, 3);
    EXPECT_EQ(db.stats().in_use, 0u);
}

}  // namespace
}  // namespace asqlite
