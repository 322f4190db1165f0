// Queries (SELECT) queued behind one another on a worker share one read
// transaction: the worker begins it for the first when more queries wait,
// and only queries submitted before it began may join (so each sees every
// commit that completed before it was issued). Real SQLite files, real
// threads.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "asqlite/asqlite.hpp"
#include "engine_core.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using test::run_coro;
namespace asio = boost::asio;

class SharedRead : public test::temp_dir_test {
  protected:
    engine_options options(std::size_t threads) {
        engine_options o;
        o.path = db_path;
        o.pool_size = 10;
        o.threads = threads;
        o.echo = false;
        return o;
    }
    void make_table(async_engine& db, int rows) {
        run_coro(io, [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await s.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, sq INTEGER)");
            co_await s.write([rows](connection& c) {
                for (int i = 1; i <= rows; ++i) {
                    c.execute("INSERT INTO t VALUES (?, ?)", i, i * i);
                }
            });
            co_await s.execute("CREATE TABLE c (v INTEGER)");
            co_await s.execute("INSERT INTO c VALUES (0)");
        }());
        io.restart();
    }
    /// Runs `coroutines` coroutines to their end, each awaiting body(i, k)
    /// for k = 0 .. each - 1.
    template <class Body>
    void run_each(int coroutines, int each, Body body) {
        for (int i = 0; i < coroutines; ++i) {
            asio::co_spawn(
                io,
                [&body, i, each]() -> asio::awaitable<void> {
                    for (int k = 0; k < each; ++k) {
                        co_await body(i, k);
                    }
                },
                asio::detached);
        }
        io.run();
    }
    /// Holds the engine's one worker until `queued` reaches `count`, so that
    /// the queries counted there wait behind one another (and share a read
    /// transaction) however slow the machine: a test that asserts sharing
    /// does not depend on the io thread outrunning the worker. One io
    /// thread: a coroutine counted just before its co_await has submitted
    /// its query by the time the release below can run. (The lambdas
    /// capture only `this` and references: GCC 12 destroys a lambda made
    /// inside a co_await expression twice, see docs/async.md.)
    void hold_worker_until(async_engine& db, const std::atomic<int>& queued, int count) {
        released_ = false;
        asio::co_spawn(
            io,
            [this, &db]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                co_await s.run([this](connection&) {
                    while (!released_.load()) {
                        std::this_thread::sleep_for(1ms);
                    }
                });
            },
            asio::detached);
        asio::co_spawn(
            io,
            [this, &queued, count]() -> asio::awaitable<void> {
                while (queued.load() < count) {
                    co_await test::sleep_for(1ms);
                }
                released_ = true;
            },
            asio::detached);
    }
    /// Once every operation has completed (io.run() returned), no
    /// connection is checked out: a completion never runs before the
    /// connection it used is back.
    static void expect_idle(async_engine& db) { EXPECT_EQ(db.stats().in_use, 0u); }
    asio::io_context io;
    std::atomic<bool> released_{false};  // hold_worker_until's worker may go on
};

TEST(IsSelect, OnlyStatementsThatBeginWithSelect) {
    EXPECT_TRUE((detail::sql_kind_of("SELECT 1") == detail::sql_kind::query));
    EXPECT_TRUE((detail::sql_kind_of("  \n\tselect * FROM t") == detail::sql_kind::query));
    EXPECT_TRUE((detail::sql_kind_of("SeLeCt(1)") == detail::sql_kind::query));
    EXPECT_TRUE((detail::sql_kind_of("SELECT*FROM t") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("SELECT") == detail::sql_kind::query));  // nothing to run
    EXPECT_FALSE((detail::sql_kind_of("SELECTED") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("selection") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x") ==
                  detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("INSERT INTO t SELECT 1") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("BEGIN") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("-- SELECT\nDELETE FROM t") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("PRAGMA synchronous=OFF") == detail::sql_kind::query));
    EXPECT_FALSE((detail::sql_kind_of("") == detail::sql_kind::query));
}

TEST_F(SharedRead, QueuedQueriesShareAReadTransactionAndEachGetsItsOwnRow) {
    auto db = create_async_engine(io.get_executor(), options(1));
    make_table(db, 1000);
    const auto before = db.stats();
    constexpr int coroutines = 64;
    constexpr int reads_each = 20;
    std::atomic<int> right{0};
    std::atomic<int> wrong{0};
    // The one worker is held until every coroutine's first query is queued
    // behind it: the first of them begins a read transaction that covers
    // the other 63, which join it. (Later rounds share too, as much as the
    // io thread keeps the queue filled: not asserted.)
    std::atomic<int> queued{0};
    hold_worker_until(db, queued, coroutines);
    run_each(coroutines, reads_each, [&](int i, int k) -> asio::awaitable<void> {
        const int n = 1 + (i * reads_each + k) % 1000;
        auto s = co_await db.session();
        queued.fetch_add(k == 0 ? 1 : 0);
        const auto sq = co_await s.scalar<int>("SELECT sq FROM t WHERE n = ?", n);
        (sq == n * n ? right : wrong).fetch_add(1);
    });
    EXPECT_EQ(right.load(), coroutines * reads_each);
    EXPECT_EQ(wrong.load(), 0);
    const auto after = db.stats();
    EXPECT_GE(after.shared_reads - before.shared_reads, static_cast<std::uint64_t>(coroutines - 1));
    expect_idle(db);
}

TEST_F(SharedRead, AQuerySeesEveryCommitThatCompletedBeforeItWasIssued) {
    // One coroutine commits v = 1, 2, 3, ... (autocommit, on the writer);
    // readers keep the queue full and check that no query returns a value
    // older than the last commit that had completed when it was issued.
    auto db = create_async_engine(io.get_executor(), options(2));
    make_table(db, 10);
    constexpr int commits = 300;
    constexpr int readers = 32;
    int committed = 0;  // one io thread: no lock needed
    bool done = false;
    int stale = 0;
    int reads = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            for (int v = 1; v <= commits; ++v) {
                auto s = co_await db.session();
                co_await s.execute("UPDATE c SET v = ?", v);
                committed = v;
            }
            done = true;
        },
        asio::detached);
    for (int i = 0; i < readers; ++i) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                while (!done) {
                    const int floor = committed;
                    auto s = co_await db.session();
                    const int v = co_await s.scalar<int>("SELECT v FROM c");
                    ++reads;
                    if (v < floor) {
                        ++stale;
                        ADD_FAILURE() << "read " << v << " after " << floor << " had committed";
                    }
                }
            },
            asio::detached);
    }
    io.run();
    EXPECT_EQ(stale, 0);
    EXPECT_GT(reads, commits);
    EXPECT_GT(db.stats().shared_reads, 0u);
    io.restart();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        EXPECT_EQ(co_await s.scalar<int>("SELECT v FROM c"), commits);
    }());
}

TEST_F(SharedRead, AFailingQueryFailsAloneAndTheOthersStillShare) {
    auto db = create_async_engine(io.get_executor(), options(1));
    make_table(db, 100);
    constexpr int coroutines = 32;
    constexpr int reads_each = 10;
    std::atomic<int> right{0};
    std::atomic<int> failed{0};
    std::atomic<int> other{0};
    std::atomic<int> queued{0};  // the first round queues behind the held worker
    hold_worker_until(db, queued, coroutines);
    run_each(coroutines, reads_each, [&](int i, int k) -> asio::awaitable<void> {
        auto s = co_await db.session();
        queued.fetch_add(k == 0 ? 1 : 0);
        if ((i + k) % 4 == 0) {
            auto e = co_await test::error_of(
                s.scalar<int>("SELECT n FROM missing_table WHERE n = ?", k));
            const bool named =
                e && std::string(e->what()).find("missing_table") != std::string::npos;
            (named ? failed : other).fetch_add(1);
        } else {
            const int n = 1 + (i + k) % 100;
            const auto sq = co_await s.scalar<int>("SELECT sq FROM t WHERE n = ?", n);
            (sq == n * n ? right : other).fetch_add(1);
        }
    });
    EXPECT_EQ(failed.load(), coroutines * reads_each / 4);
    EXPECT_EQ(right.load(), coroutines * reads_each * 3 / 4);
    EXPECT_EQ(other.load(), 0);
    EXPECT_GT(db.stats().shared_reads, 0u);
    expect_idle(db);
}

TEST_F(SharedRead, TheReadTransactionEndsOnceTheQueueRunsDry) {
    // A snapshot kept open would stop a checkpoint from emptying the WAL.
    auto db = create_async_engine(io.get_executor(), options(1));
    make_table(db, 100);
    std::atomic<int> queued{0};
    hold_worker_until(db, queued, 32);
    run_each(32, 10, [&](int, int k) -> asio::awaitable<void> {
        auto s = co_await db.session();
        queued.fetch_add(k == 0 ? 1 : 0);
        co_await s.scalar<int>("SELECT sq FROM t WHERE n = ?", k + 1);
    });
    EXPECT_GT(db.stats().shared_reads, 0u);
    expect_idle(db);
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(db_path.c_str(), &raw), SQLITE_OK);
    // Reading first finds the database in WAL mode.
    ASSERT_EQ(sqlite3_exec(raw, "SELECT count(*) FROM t", nullptr, nullptr, nullptr), SQLITE_OK);
    int wal_frames = -1;
    int backfilled = -1;
    const int rc = sqlite3_wal_checkpoint_v2(raw, nullptr, SQLITE_CHECKPOINT_TRUNCATE, &wal_frames,
                                             &backfilled);
    sqlite3_close(raw);
    EXPECT_EQ(rc, SQLITE_OK) << "a reader still holds a snapshot";
    EXPECT_EQ(wal_frames, 0);
}

// A query that ran inside a shared read transaction completes only once
// that transaction has ended and its connection is back in the pool: when
// the last completion has run, nothing is checked out. The end of the
// transaction is made slow here (the echo of its COMMIT sleeps), so a
// completion handed over before it would be seen every time.
TEST_F(SharedRead, TheLastCompletionRunsAfterTheSharedConnectionIsBack) {
    engine_options o = options(1);
    std::atomic<int> slow_commits{0};
    logger::global().set_sink([&](log_level, std::string_view line) {
        if (line.find("COMMIT") != std::string_view::npos) {
            slow_commits.fetch_add(1);
            std::this_thread::sleep_for(50ms);
        }
    });
    struct restore_sink {
        ~restore_sink() { logger::global().set_sink({}); }
    } restore;
    auto db = create_async_engine(io.get_executor(), o);
    make_table(db, 100);
    o.echo = true;
    auto echoed = create_async_engine(io.get_executor(), o);
    for (int round = 0; round < 3; ++round) {
        std::atomic<int> queued{0};  // each round's queries share
        hold_worker_until(echoed, queued, 16);
        run_each(16, 1, [&](int i, int) -> asio::awaitable<void> {
            auto s = co_await echoed.session();
            queued.fetch_add(1);
            co_await s.scalar<int>("SELECT sq FROM t WHERE n = ?", i + 1);
        });
        // io.run() has returned: every completion has run.
        EXPECT_EQ(echoed.stats().in_use, 0u) << round;
        io.restart();
    }
    EXPECT_GT(echoed.stats().shared_reads, 0u);
    EXPECT_GT(slow_commits.load(), 0);
}

TEST_F(SharedRead, CancellingAQueryInsideASharedTransactionStopsOnlyIt) {
    auto db = create_async_engine(io.get_executor(), options(1));
    make_table(db, 100);
    std::atomic<int> right{0};
    std::atomic<int> wrong{0};
    bool cancelled = false;
    bool stop = false;
    for (int i = 0; i < 8; ++i) {
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
                int k = 0;
                while (!stop) {
                    const int n = 1 + (i * 7 + k++) % 100;
                    auto s = co_await db.session();
                    const auto sq = co_await s.scalar<int>("SELECT sq FROM t WHERE n = ?", n);
                    (sq == n * n ? right : wrong).fetch_add(1);
                }
            },
            asio::detached);
    }
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await test::sleep_for(20ms);
            auto s = co_await db.session();
            // Runs for minutes unless interrupted; the wait wins.
            const auto start = std::chrono::steady_clock::now();
            const auto first = co_await (
                s.scalar<std::int64_t>(
                    "SELECT (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 10000000000) SELECT count(*) FROM c)") ||
                test::sleep_for(50ms));
            cancelled = first.index() == 1 && std::chrono::steady_clock::now() - start < 5s;
            co_await test::sleep_for(20ms);
            stop = true;
        },
        asio::detached);
    io.run();
    EXPECT_TRUE(cancelled);
    EXPECT_GT(right.load(), 0);
    EXPECT_EQ(wrong.load(), 0);
    expect_idle(db);
}

}  // namespace
}  // namespace asqlite
