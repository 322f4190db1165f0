// The bounded pool against real SQLite files and real threads: the bound,
// FIFO hand-off, timeouts, cancellation (and its race with release),
// recycling, and that no sqlite3 call runs on an io thread.
//
// A session holds a connection only while a transaction is open on it; the
// tests hold one with a read transaction (`BEGIN`), and the waiting happens
// at the next statement that needs a connection.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>

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

class AsyncPool : public test::temp_dir_test {
  protected:
    engine_options options(std::size_t pool_size) {
        engine_options o;
        o.path = db_path;
        o.pool_size = pool_size;
        o.threads = 2;
        o.on_connect = [this](connection&) { opens.fetch_add(1); };
        return o;
    }
    asio::io_context io;
    std::atomic<int> opens{0};
};

TEST_F(AsyncPool, ThousandCoroutinesNeverExceedTheBound) {
    auto db = create_async_engine(io.get_executor(), options(10));
    std::atomic<int> finished{0};
    std::atomic<std::size_t> max_in_use{0};
    for (int i = 0; i < 1000; ++i) {
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                co_await s.execute("BEGIN");  // holds a read connection until COMMIT
                const auto in_use = db.stats().in_use;
                std::size_t seen = max_in_use.load();
                while (in_use > seen && !max_in_use.compare_exchange_weak(seen, in_use)) {
                }
                EXPECT_EQ(co_await s.scalar<int>("SELECT ?", i), i);
                co_await s.execute("COMMIT");
                finished.fetch_add(1);
            },
            asio::detached);
    }
    test::run_io(io, 2);
    EXPECT_EQ(finished.load(), 1000);
    EXPECT_LE(max_in_use.load(), 10u);
    EXPECT_GE(max_in_use.load(), 2u) << "the test did not create contention";
    const auto st = db.stats();
    EXPECT_LE(opens.load(), 10);
    EXPECT_EQ(st.opened, static_cast<std::uint64_t>(opens.load()));
    EXPECT_LE(st.size, 10u);
    EXPECT_EQ(st.in_use, 0u);
    EXPECT_EQ(st.waiters, 0u);
    EXPECT_EQ(st.acquires, 1000u);
    EXPECT_EQ(st.timeouts, 0u);
}

TEST_F(AsyncPool, NoSqliteCallRunsOnAnIoThread) {
    std::mutex m;
    std::set<std::thread::id> sqlite_threads;
    auto o = options(4);
    o.on_connect = [&](connection& c) {
        {
            std::lock_guard lock(m);
            sqlite_threads.insert(std::this_thread::get_id());
        }
        // A SQL function that reports the thread each statement runs on.
        sqlite3_create_function(
            c.native_handle(), "thread_marker", 0, SQLITE_UTF8, &sqlite_threads,
            [](sqlite3_context* ctx, int, sqlite3_value**) {
                static std::mutex fm;
                std::lock_guard lock(fm);
                static_cast<std::set<std::thread::id>*>(sqlite3_user_data(ctx))
                    ->insert(std::this_thread::get_id());
                sqlite3_result_int(ctx, 1);
            },
            nullptr, nullptr);
    };
    auto db = create_async_engine(io.get_executor(), o);
    std::mutex io_m;
    std::set<std::thread::id> io_threads;
    for (int i = 0; i < 50; ++i) {
        asio::co_spawn(
            asio::make_strand(io),
            [&]() -> asio::awaitable<void> {
                {
                    std::lock_guard lock(io_m);
                    io_threads.insert(std::this_thread::get_id());
                }
                auto s = co_await db.session();
                EXPECT_EQ(co_await s.scalar<int>("SELECT thread_marker()"), 1);
                co_await s.run([&](connection&) {
                    std::lock_guard lock(m);
                    sqlite_threads.insert(std::this_thread::get_id());
                });
                std::lock_guard lock(io_m);
                io_threads.insert(std::this_thread::get_id());
            },
            asio::detached);
    }
    test::run_io(io, 2);
    ASSERT_FALSE(sqlite_threads.empty());
    ASSERT_FALSE(io_threads.empty());
    for (const auto& id : sqlite_threads) {
        EXPECT_EQ(io_threads.count(id), 0u) << "a sqlite3 call ran on an io thread";
    }
}

TEST_F(AsyncPool, PoolTimeoutHasItsOwnError) {
    auto o = options(1);
    o.pool_timeout = 100ms;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto held = co_await db.session();
        co_await held.execute("BEGIN");
        const auto start = std::chrono::steady_clock::now();
        try {
            auto s = co_await db.session();
            co_await s.execute("SELECT 1");
            ADD_FAILURE() << "a statement ran past the bound";
        } catch (const error& e) {
            EXPECT_EQ(e.code(), make_error_code(errc::pool_timeout));
            EXPECT_NE(e.message().find("pool_timeout"), std::string::npos);
        }
        const auto waited = std::chrono::steady_clock::now() - start;
        EXPECT_GE(waited, 90ms);
        EXPECT_LT(waited, 2s);
    }());
    const auto st = db.stats();
    EXPECT_EQ(st.timeouts, 1u);
    EXPECT_EQ(st.waiters, 0u);
    EXPECT_EQ(st.in_use, 0u);
}

TEST_F(AsyncPool, CancellationByOrOperatorLeavesNoTrace) {
    auto db = create_async_engine(io.get_executor(), options(1));
    run_coro(io, [&]() -> asio::awaitable<void> {
        std::optional<session> held(co_await db.session());
        co_await held->execute("BEGIN");
        auto waiting = co_await db.session();
        asio::steady_timer timer(co_await asio::this_coro::executor, 30ms);
        auto outcome =
            co_await (waiting.scalar<int>("SELECT 4") || timer.async_wait(asio::use_awaitable));
        EXPECT_EQ(outcome.index(), 1u) << "the timer should win";
        auto st = db.stats();
        EXPECT_EQ(st.waiters, 0u);
        EXPECT_EQ(st.cancellations, 1u);
        EXPECT_EQ(st.in_use, 1u);
        co_await held->execute("COMMIT");
        EXPECT_EQ(db.stats().in_use, 0u);
        // The permit was not leaked: the next statement gets the one connection.
        EXPECT_EQ(co_await waiting.scalar<int>("SELECT 5"), 5);
        EXPECT_EQ(db.stats().size, 1u);
    }());
    EXPECT_EQ(opens.load(), 1);
}

TEST_F(AsyncPool, CancellationBySignalCompletesWithOperationAborted) {
    auto db = create_async_engine(io.get_executor(), options(1));
    asio::cancellation_signal signal;
    std::exception_ptr outcome;
    bool completed = false;
    std::optional<session> held;
    std::optional<session> waiting;
    db.session([&](std::exception_ptr ep, session s) {
        ASSERT_FALSE(ep);
        held.emplace(std::move(s));
        held->async_execute("BEGIN", std::tuple<>{}, [&](std::exception_ptr ep1, result) {
            ASSERT_FALSE(ep1);
            db.session([&](std::exception_ptr ep2, session s2) {
                ASSERT_FALSE(ep2);
                waiting.emplace(std::move(s2));
                waiting->async_execute("SELECT 1", std::tuple<>{},
                                       asio::bind_cancellation_slot(
                                           signal.slot(), [&](std::exception_ptr ep3, result) {
                                               completed = true;
                                               outcome = ep3;
                                           }));
                asio::post(io, [&] { signal.emit(asio::cancellation_type::terminal); });
            });
        });
    });
    io.run();
    ASSERT_TRUE(completed);
    EXPECT_EQ(error_code_of(outcome), make_error_code(asio::error::operation_aborted));
    EXPECT_EQ(db.stats().in_use, 1u);  // the held one
    EXPECT_EQ(db.stats().waiters, 0u);
    held.reset();  // rolls back on the blocking pool, then gives it back
    io.restart();
    io.run();
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_EQ(db.stats().waiters, 0u);
}

TEST_F(AsyncPool, ReleaseAndCancelRaceThousandsOfTimes) {
    auto db = create_async_engine(io.get_executor(), options(1));
    std::mt19937 rng(12345);
    int granted = 0;
    int aborted = 0;
    constexpr int rounds = 2000;
    run_coro(
        io,
        [&]() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            for (int i = 0; i < rounds; ++i) {
                auto held = std::make_shared<session>(co_await db.session());
                co_await held->execute("BEGIN");
                const auto release_after = std::chrono::microseconds(rng() % 200);
                const auto cancel_after = std::chrono::microseconds(rng() % 200);
                // The release comes from another strand, so it can land on
                // either side of the cancellation.
                std::atomic<bool> released{false};
                asio::co_spawn(
                    asio::make_strand(io),
                    [held, release_after, &released]() -> asio::awaitable<void> {
                        co_await sleep_for(release_after);
                        co_await held->execute("COMMIT");  // gives the connection back
                        released = true;
                    },
                    asio::detached);
                asio::steady_timer timer(ex, cancel_after);
                {
                    auto waiting = co_await db.session();
                    auto r = co_await (waiting.scalar<int>("SELECT 1") ||
                                       timer.async_wait(asio::use_awaitable));
                    if (r.index() == 0) {
                        ++granted;
                    } else {
                        ++aborted;
                    }
                }  // a granted session goes back here
                while (!released) {
                    co_await sleep_for(50us);
                }
                // Whatever happened, nothing is held or waiting now.
                const auto st = db.stats();
                ASQLITE_CO_ASSERT(st.in_use == 0u);
                ASQLITE_CO_ASSERT(st.waiters == 0u);
                ASQLITE_CO_ASSERT(st.size <= 1u);
            }
        }(),
        2);
    EXPECT_EQ(granted + aborted, rounds);
    EXPECT_GT(granted, 0);
    EXPECT_GT(aborted, 0);
    EXPECT_EQ(opens.load(), 1) << "the single connection was never lost and reopened";
}

TEST_F(AsyncPool, OldConnectionsAreRecycledAtCheckout) {
    auto o = options(2);
    o.pool_recycle = 300ms;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        {
            auto s = co_await db.session();
            co_await s.execute("SELECT 1");
        }
        co_await sleep_for(500ms);
        auto s = co_await db.session();
        co_await s.execute("SELECT 1");
    }());
    const auto st = db.stats();
    EXPECT_EQ(st.opened, 2u);
    EXPECT_EQ(st.closed, 1u);
    EXPECT_EQ(opens.load(), 2);
    EXPECT_EQ(st.size, 1u);
}

TEST_F(AsyncPool, PrePingChecksEveryCheckout) {
    auto o = options(3);
    o.pre_ping = true;
    std::atomic<int> pings{0};
    o.on_connect = [&](connection& c) {
        opens.fetch_add(1);
        // Count the pings: SQLite traces every statement the connection runs.
        sqlite3_trace_v2(
            c.native_handle(), SQLITE_TRACE_STMT,
            [](unsigned, void* ctx, void* stmt, void*) {
                if (std::string_view(sqlite3_sql(static_cast<sqlite3_stmt*>(stmt))) == "SELECT 1") {
                    static_cast<std::atomic<int>*>(ctx)->fetch_add(1);
                }
                return 0;
            },
            &pings);
    };
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 20; ++i) {
            auto s = co_await db.session();
            EXPECT_EQ(co_await s.scalar<int>("SELECT ?", i), i);
        }
    }());
    // Every checkout of an idle connection is pinged; the first statement
    // opened the connection it ran on, which needs none.
    EXPECT_EQ(pings.load(), 19);
    EXPECT_EQ(db.stats().acquires, 20u);
    EXPECT_EQ(opens.load(), 1);
}

TEST_F(AsyncPool, SafeOnAMultiThreadedIoContext) {
    auto db = create_async_engine(io.get_executor(), options(4));
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("CREATE TABLE counter (n INTEGER)");
    }());
    io.restart();
    std::atomic<int> done{0};
    for (int i = 0; i < 200; ++i) {
        asio::co_spawn(
            asio::make_strand(io),
            [&, i]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                if (i % 4 == 0) {
                    auto tx = co_await s.begin();
                    co_await s.execute("INSERT INTO counter VALUES (?)", i);
                    co_await tx.commit();
                } else {
                    co_await s.scalar<std::int64_t>("SELECT count(*) FROM counter");
                }
                done.fetch_add(1);
            },
            asio::detached);
    }
    test::run_io(io, 4);
    EXPECT_EQ(done.load(), 200);
    io.restart();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        EXPECT_EQ(co_await s.scalar<std::int64_t>("SELECT count(*) FROM counter"), 50);
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
}

// Destroying the engine does not wait for running statements: it interrupts
// them (the query below never ends by itself).
TEST_F(AsyncPool, ShutdownFailsWaitersAndInterruptsWorkInFlight) {
    auto o = options(1);
    std::atomic<bool> started{false};
    o.on_connect = [&](connection& c) {
        // started(): tells the test that the long query is under way.
        sqlite3_create_function(
            c.native_handle(), "started", 0, SQLITE_UTF8, &started,
            [](sqlite3_context* ctx, int, sqlite3_value**) {
                static_cast<std::atomic<bool>*>(sqlite3_user_data(ctx))->store(true);
                sqlite3_result_int(ctx, 1);
            },
            nullptr, nullptr);
    };
    auto db = std::make_unique<async_engine>(io.get_executor(), o);
    std::exception_ptr waiter_error;
    bool waiter_done = false;
    bool query_done = false;
    std::optional<session> held;
    std::optional<session> waiting;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            held.emplace(co_await db->session());
            held->async_execute(
                "WITH RECURSIVE c(x) AS (SELECT started() UNION ALL SELECT x + 1 FROM c) "
                "SELECT count(*) FROM c",
                std::tuple<>{}, [&](std::exception_ptr ep, result) {
                    query_done = true;
                    EXPECT_EQ(error_code_of(ep), make_error_code(errc::pool_closed));
                });
            while (!started) {
                co_await sleep_for(100us);
            }
            // The pool's one connection runs the long query: this statement
            // waits for it, and the engine is destroyed meanwhile.
            waiting.emplace(co_await db->session());
            waiting->async_execute("SELECT 1", std::tuple<>{}, [&](std::exception_ptr ep, result) {
                waiter_done = true;
                waiter_error = ep;
            });
            db.reset();  // with a statement waiting and a query running
        },
        asio::detached);
    io.run();
    EXPECT_TRUE(query_done);
    ASSERT_TRUE(waiter_done);
    EXPECT_EQ(error_code_of(waiter_error), make_error_code(errc::pool_closed));
    // The surviving session fails cleanly on its next operation.
    ASSERT_TRUE(held.has_value());
    io.restart();
    std::exception_ptr late;
    held->async_execute("SELECT 1", std::tuple<>{},
                        [&](std::exception_ptr ep, result) { late = ep; });
    io.run();
    EXPECT_EQ(error_code_of(late), make_error_code(errc::pool_closed));
    held.reset();
    waiting.reset();
}

}  // namespace
}  // namespace asqlite
