// Transactions and the writer lane: commit visibility, rollback on
// destruction / exception / cancellation, write routing, concurrent writers
// without "database is locked", and cancellation of a running statement.

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>

#include "asqlite/asqlite.hpp"
#include "sql_text.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using test::run_coro;
namespace asio = boost::asio;

constexpr std::string_view long_query =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c WHERE x < 0";
// A write that runs until it is interrupted.
constexpr std::string_view endless_insert =
    "INSERT INTO items (name) SELECT 'r' || x FROM (WITH RECURSIVE c(x) AS "
    "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)";

class AsyncTx : public test::temp_dir_test {
  protected:
    void SetUp() override {
        auto c = connection(db_path);
        c.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)");
    }
    engine_options options() {
        engine_options o;
        o.path = db_path;
        o.pool_size = 4;
        o.threads = 2;
        return o;
    }
    void concurrent_writers(const engine_options& o);
    /// The engine of options(), waiting out SQLITE_BUSY for `busy_timeout`.
    async_engine engine_with_busy_timeout(std::chrono::milliseconds busy_timeout) {
        engine_options o = options();
        o.busy_timeout = busy_timeout;
        return create_async_engine(io.get_executor(), o);
    }
    /// A connection holding the database's write lock (BEGIN IMMEDIATE),
    /// standing in for another process.
    connection hold_write_lock() {
        connection c(db_path);
        c.exec("BEGIN IMMEDIATE");
        return c;
    }
    /// Inside a transaction begun with SQL on `s`: begin() is refused, and
    /// write(fn) joins the transaction (inserting `name`).
    static asio::awaitable<void> begin_refused_write_joins(session& s, std::string name) {
        const auto nested = co_await test::error_of(s.begin());
        EXPECT_TRUE(nested && nested->code() == make_error_code(errc::transaction_state));
        co_await s.write(
            [&](connection& c) { c.execute("INSERT INTO items (name) VALUES (?)", name); });
    }
    std::int64_t count_items() {
        return connection(db_path).scalar<std::int64_t>("SELECT count(*) FROM items");
    }
    asio::io_context io;
};

TEST_F(AsyncTx, CommitIsVisibleToOtherSessions) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto a = co_await db.session();
        auto b = co_await db.session();
        auto tx = co_await a.begin();
        EXPECT_TRUE(a.in_transaction());
        co_await a.execute("INSERT INTO items (name) VALUES (?)", "one");
        EXPECT_EQ(co_await a.scalar<int>("SELECT count(*) FROM items"), 1) << "own write visible";
        EXPECT_EQ(co_await b.scalar<int>("SELECT count(*) FROM items"), 0) << "not yet committed";
        co_await tx.commit();
        EXPECT_FALSE(a.in_transaction());
        EXPECT_EQ(co_await b.scalar<int>("SELECT count(*) FROM items"), 1);
    }());
    EXPECT_EQ(count_items(), 1);
}

TEST_F(AsyncTx, DroppedTransactionRollsBack) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto a = co_await db.session();
        {
            auto tx = co_await a.begin();
            co_await a.execute("INSERT INTO items (name) VALUES ('dropped')");
        }
        EXPECT_FALSE(a.in_transaction());
        EXPECT_EQ(co_await a.scalar<int>("SELECT count(*) FROM items"), 0);
        // The writer lane is free again: a new transaction commits.
        auto tx = co_await a.begin();
        co_await a.execute("INSERT INTO items (name) VALUES ('kept')");
        co_await tx.commit();
    }());
    EXPECT_EQ(count_items(), 1);
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(AsyncTx, ExceptionInTheCoroutineRollsBack) {
    auto db = create_async_engine(io.get_executor(), options());
    EXPECT_THROW(run_coro(io,
                          [&]() -> asio::awaitable<void> {
                              auto s = co_await db.session();
                              auto tx = co_await s.begin();
                              co_await s.execute("INSERT INTO items (name) VALUES ('x')");
                              throw std::runtime_error("handler failed");
                          }()),
                 std::runtime_error);
    EXPECT_EQ(count_items(), 0);
    const auto st = db.stats();
    EXPECT_EQ(st.in_use, 0u);
    EXPECT_EQ(st.writer_in_use, 0u);
}

TEST_F(AsyncTx, RunningStatementIsCancelledAndTheConnectionServesOn) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
        const auto start = std::chrono::steady_clock::now();
        auto r = co_await (s.execute(long_query) || timer.async_wait(asio::use_awaitable));
        const auto took = std::chrono::steady_clock::now() - start;
        EXPECT_EQ(r.index(), 1u);
        EXPECT_LT(took, 500ms) << "the statement kept running after cancellation";
        // Same session, same connection: it is healthy and free.
        EXPECT_EQ(co_await s.scalar<int>("SELECT 1"), 1);
    }());
    EXPECT_EQ(db.stats().closed, 0u) << "a cancelled read leaves the connection reusable";
}

TEST_F(AsyncTx, CancellationInsideATransactionRollsBack) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        try {
            auto tx = co_await s.begin();
            co_await s.execute("INSERT INTO items (name) VALUES ('cancelled')");
            asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
            auto r = co_await (s.execute(long_query) || timer.async_wait(asio::use_awaitable));
            EXPECT_EQ(r.index(), 1u);
            throw std::runtime_error("request cancelled");  // the handler gives up
        } catch (const std::runtime_error&) {
        }
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 0);
    }());
    EXPECT_EQ(count_items(), 0);
}

TEST_F(AsyncTx, CancelledAwaitCompletesWithOperationAborted) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        asio::cancellation_signal signal;
        std::exception_ptr outcome;
        bool done = false;
        s.run([](connection& c) { return c.scalar<std::int64_t>(long_query); },
              asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr ep, std::int64_t) {
                  outcome = ep;
                  done = true;
              }));
        co_await test::sleep_for(30ms);
        signal.emit(asio::cancellation_type::terminal);
        while (!done) {
            co_await test::sleep_for(5ms);
        }
        EXPECT_EQ(error_code_of(outcome), make_error_code(asio::error::operation_aborted));
        EXPECT_EQ(co_await s.scalar<int>("SELECT 2"), 2);
    }());
}

TEST_F(AsyncTx, BareWritesGoToTheWriterLane) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        // The session's own connection is a read connection.
        EXPECT_EQ(co_await s.scalar<int>("PRAGMA query_only"), 1);
        auto r = co_await s.execute("INSERT INTO items (name) VALUES (?)", "bare");
        EXPECT_EQ(r.rows_affected(), 1);
        auto id = co_await s.one<std::int64_t>("INSERT INTO items (name) VALUES (?) RETURNING id",
                                               "returning");
        EXPECT_GT(id, 0);
        // write(fn): a whole transaction in one hop.
        auto n = co_await s.write([](connection& c) {
            c.execute("INSERT INTO items (name) VALUES ('w1')");
            c.execute("INSERT INTO items (name) VALUES ('w2')");
            return c.scalar<int>("SELECT count(*) FROM items");
        });
        EXPECT_EQ(n, 4);
        try {
            co_await s.write([](connection& c) {
                c.execute("INSERT INTO items (name) VALUES ('w3')");
                c.execute("INSERT INTO items (name) VALUES ('w1')");  // UNIQUE violation
            });
            ADD_FAILURE() << "constraint violation not reported";
        } catch (const error& e) {
            EXPECT_EQ(e.code(), make_error_code(errc::constraint_unique));
        }
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 4) << "w3 rolled back";
        // run() outside a transaction reads only.
        try {
            co_await s.run([](connection& c) { c.exec("DELETE FROM items"); });
            ADD_FAILURE() << "run() wrote through a read connection";
        } catch (const error& e) {
            EXPECT_EQ(primary_code(e.code()), errc::readonly);
        }
    }());
    EXPECT_EQ(count_items(), 4);
}

TEST_F(AsyncTx, ConcurrentWritersNeverSeeBusy) {
    concurrent_writers(options());
}

TEST_F(AsyncTx, ConcurrentWritersNeverSeeBusyWithoutGroupCommit) {
    auto o = options();
    o.group_commit = false;
    concurrent_writers(o);
}

void AsyncTx::concurrent_writers(const engine_options& o) {
    // 64 writers mixing begin() transactions and autocommit inserts, with
    // a read after each, on two io threads.
    auto db = create_async_engine(io.get_executor(), o);
    std::atomic<int> ok{0};
    std::atomic<int> failures{0};
    constexpr int writers = 64;
    constexpr int per_writer = 10;
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(
            asio::make_strand(io),
            [&, w]() -> asio::awaitable<void> {
                try {
                    auto s = co_await db.session();
                    for (int i = 0; i < per_writer; ++i) {
                        const auto name = fmt::format("w{}-{}", w, i);
                        if (i % 2 == 0) {
                            auto tx = co_await s.begin();
                            co_await s.execute("INSERT INTO items (name) VALUES (?)", name);
                            co_await tx.commit();
                        } else {
                            co_await s.execute("INSERT INTO items (name) VALUES (?)", name);
                        }
                        co_await s.scalar<int>("SELECT count(*) FROM items");
                        ok.fetch_add(1);
                    }
                } catch (const std::exception& e) {
                    failures.fetch_add(1);
                    ADD_FAILURE() << e.what();
                }
            },
            asio::detached);
    }
    test::run_io(io, 2);
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(ok.load(), writers * per_writer);
    EXPECT_EQ(count_items(), writers * per_writer);
    const auto st = db.stats();
    EXPECT_EQ(st.in_use, 0u);
    EXPECT_EQ(st.timeouts, 0u);
}

TEST_F(AsyncTx, BeginTakesTheWriterButNoReadConnection) {
    auto o = options();
    o.pool_size = 2;  // one read connection and the writer
    o.pool_timeout = 300ms;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto reader = co_await db.session();
        co_await reader.execute("BEGIN");
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM items"), 0);
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        // The writer is not open yet: the first statement waits for it.
        co_await s.execute("INSERT INTO items (name) VALUES ('a')");
        EXPECT_EQ(db.stats().in_use, 2u);  // the reader's read transaction, the writer
        EXPECT_EQ(db.stats().writer_in_use, 1u);
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 1);
        co_await tx.commit();
        EXPECT_EQ(db.stats().writer_in_use, 0u);
        // The read transaction began before the commit: it still sees none.
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM items"), 0);
        co_await reader.execute("COMMIT");
    }());
    EXPECT_EQ(count_items(), 1);
    EXPECT_EQ(db.stats().in_use, 0u);
}

// A transaction's BEGIN IMMEDIATE runs with its first statement. Another
// process's write lock (here a connection of the test thread, standing in
// for one) shows where SQLite's lock is taken.
TEST_F(AsyncTx, ATransactionWithoutStatementsNeverTakesTheDatabaseLock) {
    auto db = engine_with_busy_timeout(0ms);
    connection other = hold_write_lock();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        {
            auto tx = co_await s.begin();
            EXPECT_TRUE(s.in_transaction());
            co_await tx.commit();
        }
        {
            auto tx = co_await s.begin();
            co_await tx.rollback();
        }
        { auto dropped = co_await s.begin(); }
        EXPECT_FALSE(s.in_transaction());
        auto tx = co_await s.begin();
        auto e = co_await test::error_of(s.execute("INSERT INTO items (name) VALUES ('x')"));
        EXPECT_TRUE(e && primary_code(e->code()) == errc::busy)
            << (e ? e->what() : "the first statement did not take the lock");
    }());
    other.exec("ROLLBACK");
    EXPECT_EQ(db.stats().writer_in_use, 0u);
    EXPECT_EQ(count_items(), 0);
}

TEST_F(AsyncTx, BusyOnTheFirstStatementIsWaitedOutInsideTheTransaction) {
    auto db = engine_with_busy_timeout(10s);
    connection other = hold_write_lock();
    other.exec("INSERT INTO items (name) VALUES ('other')");
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        asio::steady_timer release(co_await asio::this_coro::executor, 100ms);
        release.async_wait([&](boost::system::error_code) { other.exec("COMMIT"); });
        co_await s.execute("INSERT INTO items (name) VALUES ('a')");
        // BEGIN ran after the other commit: this transaction sees its row.
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 2);
        co_await s.execute("INSERT INTO items (name) VALUES ('b')");
        co_await tx.commit();
    }());
    EXPECT_EQ(count_items(), 3);
    EXPECT_GT(db.stats().busy_retries, 0u);
}

// When BEGIN fails, the statement does not run and BEGIN stays pending: the
// session's next statements are still inside the transaction, never in
// autocommit.
TEST_F(AsyncTx, AFailedBeginLeavesTheTransactionWhole) {
    auto db = engine_with_busy_timeout(30ms);
    connection other = hold_write_lock();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        auto e = co_await test::error_of(s.execute("INSERT INTO items (name) VALUES ('a')"));
        EXPECT_TRUE(e && primary_code(e->code()) == errc::busy);
        other.exec("ROLLBACK");
        co_await s.execute("INSERT INTO items (name) VALUES ('b')");
        co_await s.execute("INSERT INTO items (name) VALUES ('c')");
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 2);
        co_await tx.rollback();
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 0);
    }());
    EXPECT_EQ(count_items(), 0);
}

// A first statement cancelled leaves BEGIN pending (cancelled in the queue:
// nothing ran), or the transaction open (cancelled after it ran), or, when
// the cancellation interrupts the INSERT itself, the transaction rolled back
// by SQLite (what follows then fails). Never does what follows run in
// autocommit: the rollback removes all of it.
TEST_F(AsyncTx, ACancelledFirstStatementLeavesTheTransactionWhole) {
    auto o = options();
    o.threads = 1;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("DELETE FROM items");  // opens the writer connection
        {
            // The one worker is busy: the first statement waits in the
            // queue, and is cancelled there.
            auto slow = co_await db.session();
            bool slow_done = false;
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    asio::steady_timer stop(co_await asio::this_coro::executor, 200ms);
                    co_await (slow.scalar<int>(long_query) || stop.async_wait(asio::use_awaitable));
                    slow_done = true;
                },
                asio::detached);
            // Until the worker has taken it (writer jobs would go ahead of
            // it in the queue): it holds a read connection then.
            for (int i = 0; i < 5000 && db.stats().in_use == 0; ++i) {
                co_await test::sleep_for(1ms);
            }
            co_await test::sleep_for(5ms);
            auto tx = co_await s.begin();
            asio::steady_timer timer(co_await asio::this_coro::executor, 2ms);
            auto r = co_await (s.execute("INSERT INTO items (name) VALUES ('queued')") ||
                               timer.async_wait(asio::use_awaitable));
            EXPECT_EQ(r.index(), 1u) << "the statement was not cancelled in the queue" << slow_done;
            co_await s.execute("INSERT INTO items (name) VALUES ('after-queued')");
            co_await tx.rollback();
            while (!slow_done) {
                co_await test::sleep_for(1ms);
            }
        }
        for (int round = 0; round < 20; ++round) {
            auto tx = co_await s.begin();
            // From no wait at all to long after the statement ran.
            asio::steady_timer timer(co_await asio::this_coro::executor,
                                     std::chrono::microseconds(round * round * 10));
            co_await (
                s.execute("INSERT INTO items (name) VALUES (?)", fmt::format("first-{}", round)) ||
                timer.async_wait(asio::use_awaitable));
            const auto second = co_await test::error_of(
                s.execute("INSERT INTO items (name) VALUES (?)", fmt::format("second-{}", round)));
            if (second) {
                EXPECT_EQ(second->code(), make_error_code(errc::transaction_state))
                    << second->what();
            }
            co_await tx.rollback();
        }
    }());
    EXPECT_EQ(count_items(), 0);
    EXPECT_EQ(db.stats().in_use, 0u);
}

// SQLite rolls back a whole transaction when a write in it is interrupted.
// What the session sends after that must not run in autocommit: it fails,
// and so does commit(); nothing of the transaction is kept.
TEST_F(AsyncTx, AnInterruptedWriteEndsTheTransactionAndNothingRunsInAutocommit) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        for (const bool try_commit : {true, false}) {
            auto tx = co_await s.begin();
            co_await s.execute("INSERT INTO items (name) VALUES ('before')");
            asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
            auto r = co_await (s.execute(endless_insert) || timer.async_wait(asio::use_awaitable));
            EXPECT_EQ(r.index(), 1u);
            auto after =
                co_await test::error_of(s.execute("INSERT INTO items (name) VALUES ('after')"));
            EXPECT_TRUE(after && after->code() == make_error_code(errc::transaction_state))
                << (after ? after->what() : "the statement ran in autocommit");
            if (try_commit) {
                auto commit = co_await test::error_of(tx.commit());
                EXPECT_TRUE(commit && commit->code() == make_error_code(errc::transaction_state))
                    << (commit ? commit->what() : "commit() reported success");
            } else {
                co_await tx.rollback();
            }
            EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 0);
        }
        // The session and the writer serve on.
        auto tx = co_await s.begin();
        co_await s.execute("INSERT INTO items (name) VALUES ('kept')");
        co_await tx.commit();
    }());
    EXPECT_EQ(count_items(), 1);
    EXPECT_EQ(db.stats().in_use, 0u);
}

// On a single connection (:memory:, pool_size 1), a transaction dropped
// uncommitted is rolled back by the next statement's job; begin() right
// after it must not mistake it for one begun with SQL.
TEST_F(AsyncTx, BeginRightAfterADroppedTransactionOnASingleConnection) {
    for (const bool memory : {true, false}) {
        asio::io_context ctx;
        engine_options o = options();
        if (memory) {
            o.path = ":memory:";
        } else {
            o.pool_size = 1;
        }
        auto db = create_async_engine(ctx.get_executor(), o);
        run_coro(ctx, [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            if (memory) {
                co_await s.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)");
            }
            {
                auto dropped = co_await s.begin();
                co_await s.execute("INSERT INTO items (name) VALUES ('dropped')");
            }
            auto tx = co_await s.begin();
            co_await s.execute("INSERT INTO items (name) VALUES ('kept')");
            co_await tx.commit();
            EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 1) << memory;
            EXPECT_EQ(co_await s.scalar<std::string>("SELECT name FROM items"), "kept");
        }());
    }
    EXPECT_EQ(count_items(), 1);
}

TEST_F(AsyncTx, MemoryDatabaseTransactionsUseTheSingleConnection) {
    engine_options o;
    o.path = ":memory:";
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("CREATE TABLE m (v INTEGER)");
        {
            auto tx = co_await s.begin();
            co_await s.execute("INSERT INTO m VALUES (1)");
        }
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM m"), 0);
        auto tx = co_await s.begin();
        co_await s.execute("INSERT INTO m VALUES (2)");
        co_await tx.commit();
        EXPECT_EQ(co_await s.scalar<int>("SELECT v FROM m"), 2);
        try {
            auto tx2 = co_await s.begin();
            auto tx3 = co_await s.begin();
            ADD_FAILURE() << "nested begin accepted";
        } catch (const error& e) {
            EXPECT_EQ(e.code(), make_error_code(errc::transaction_state));
        }
    }());
}

// Transactions begun with SQL through execute(), as on one connection.
// BEGIN IMMEDIATE is a write statement: it goes to the writer, and the
// session keeps the writer until SQLite's transaction ends.
TEST_F(AsyncTx, BeginImmediateThroughExecuteHoldsTheWriterUntilRollback) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto other = co_await db.session();
        co_await s.execute("BEGIN IMMEDIATE");
        EXPECT_TRUE(s.in_transaction());
        EXPECT_EQ(db.stats().writer_in_use, 1u);
        co_await s.execute("INSERT INTO items (name) VALUES ('a')");
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 1) << "own write";
        EXPECT_EQ(co_await other.scalar<int>("SELECT count(*) FROM items"), 0) << "uncommitted";
        // A failing statement does not end the transaction (as in SQLite).
        const auto dup =
            co_await test::error_of(s.execute("INSERT INTO items (name) VALUES ('a')"));  // UNIQUE
        EXPECT_TRUE(dup && primary_code(dup->code()) == errc::constraint);
        EXPECT_TRUE(s.in_transaction());
        co_await s.execute("ROLLBACK");
        EXPECT_FALSE(s.in_transaction());
        EXPECT_EQ(db.stats().writer_in_use, 0u);
    }());
    EXPECT_EQ(count_items(), 0);
}

TEST_F(AsyncTx, BeginImmediateThroughExecuteCommitsAndFreesTheWriter) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        for (const char* end : {"COMMIT", "END"}) {  // the second time a known write
            co_await s.execute("BEGIN IMMEDIATE");
            co_await s.execute("INSERT INTO items (name) VALUES (?)", std::string_view(end));
            co_await s.execute(end);
            EXPECT_FALSE(s.in_transaction());
            EXPECT_EQ(db.stats().writer_in_use, 0u);
        }
        // The writer is free: a begin() transaction of another session runs.
        auto t = co_await db.session();
        auto tx = co_await t.begin();
        co_await t.execute("INSERT INTO items (name) VALUES ('tx')");
        co_await tx.commit();
        co_await s.execute("BEGIN EXCLUSIVE");
        co_await begin_refused_write_joins(s, "w");
        co_await s.execute("COMMIT");
    }());
    EXPECT_EQ(count_items(), 4);
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(AsyncTx, ASessionEndingInsideBeginImmediateRollsBack) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        {
            auto s = co_await db.session();
            co_await s.execute("BEGIN IMMEDIATE");
            co_await s.execute("INSERT INTO items (name) VALUES ('lost')");
        }
        // The writer was rolled back before anyone else got it.
        auto t = co_await db.session();
        co_await t.execute("INSERT INTO items (name) VALUES ('kept')");
        EXPECT_EQ(co_await t.scalar<int>("SELECT count(*) FROM items"), 1);
    }());
    EXPECT_EQ(count_items(), 1);
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

// BEGIN (deferred) and SAVEPOINT are read statements: they start a read
// transaction on a read connection. A write inside fails clearly, and never
// runs on the writer in autocommit, outside the transaction (not even a
// statement already known to write, which otherwise goes straight there).
TEST_F(AsyncTx, AWriteInsideAReadTransactionFailsAndDoesNotEscapeIt) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("INSERT INTO items (name) VALUES (?)", "known");  // now a known write
        for (const char* begin : {"BEGIN", "SAVEPOINT sp"}) {
            co_await s.execute(begin);
            const auto e =
                co_await test::error_of(s.execute("INSERT INTO items (name) VALUES (?)", "x"));
            EXPECT_TRUE(e && e->code() == make_error_code(errc::transaction_state)) << begin;
            if (e) {
                EXPECT_NE(std::string(e->what()).find("read transaction"), std::string::npos);
            }
            const auto nested = co_await test::error_of(s.begin());
            EXPECT_TRUE(nested && nested->code() == make_error_code(errc::transaction_state));
            const auto w = co_await test::error_of(
                s.write([](connection& c) { c.execute("INSERT INTO items (name) VALUES ('w')"); }));
            EXPECT_TRUE(w && w->code() == make_error_code(errc::transaction_state));
            co_await s.execute(std::string_view(begin) == "BEGIN" ? "ROLLBACK" : "RELEASE sp");
        }
        // Outside the transaction the same statement is routed to the writer.
        co_await s.execute("INSERT INTO items (name) VALUES (?)", "after");
    }());
    EXPECT_EQ(count_items(), 2);
}

// On a single connection (pool_size 1, or :memory:) every transaction begun
// with SQL is that connection's, reads and writes alike.
TEST_F(AsyncTx, TransactionsBegunWithSqlOnASingleConnection) {
    auto o = options();
    o.pool_size = 1;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("BEGIN IMMEDIATE");
        EXPECT_TRUE(s.in_transaction());
        co_await s.execute("INSERT INTO items (name) VALUES ('rolled back')");
        co_await s.write([](connection& c) {  // joins it
            c.execute("INSERT INTO items (name) VALUES ('rolled back too')");
        });
        co_await s.execute("ROLLBACK");
        EXPECT_FALSE(s.in_transaction());
        co_await s.execute("BEGIN");
        co_await s.execute("INSERT INTO items (name) VALUES ('kept')");
        co_await begin_refused_write_joins(s, "w");
        co_await s.execute("COMMIT");
    }());
    EXPECT_EQ(count_items(), 2);
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST(SqlEnd, ReadsHowAStatementEndsATransaction) {
    using detail::sql_end;
    using detail::sql_end_of;
    EXPECT_EQ(sql_end_of("COMMIT"), sql_end::commit);
    EXPECT_EQ(sql_end_of("  commit transaction;"), sql_end::commit);
    EXPECT_EQ(sql_end_of("End"), sql_end::commit);
    EXPECT_EQ(sql_end_of("-- done\n/* really */ COMMIT"), sql_end::commit);
    EXPECT_EQ(sql_end_of("ROLLBACK"), sql_end::rollback);
    EXPECT_EQ(sql_end_of("rollback transaction"), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION t"), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION TO SAVEPOINT sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION t TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("COMMITTED"), sql_end::none);
    EXPECT_EQ(sql_end_of("INSERT INTO t VALUES ('COMMIT')"), sql_end::none);
    EXPECT_EQ(sql_end_of("RELEASE sp"), sql_end::none);
    EXPECT_EQ(sql_end_of(""), sql_end::none);
    EXPECT_EQ(sql_end_of("/* unterminated"), sql_end::none);
}

// SQLite rolls back a whole transaction when a write in it is interrupted.
// In a transaction begun with SQL, the session then keeps the writer and
// refuses statements until the user ends it: nothing meant to be inside
// runs in autocommit. ROLLBACK then succeeds; COMMIT fails.
TEST_F(AsyncTx, AnInterruptedWriteInsideBeginImmediateRefusesStatementsUntilItEnds) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        for (const char* end : {"ROLLBACK", "COMMIT"}) {
            co_await s.execute("BEGIN IMMEDIATE");
            co_await s.execute("INSERT INTO items (name) VALUES ('before')");
            asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
            auto r = co_await (s.execute(endless_insert) || timer.async_wait(asio::use_awaitable));
            EXPECT_EQ(r.index(), 1u);
            EXPECT_TRUE(s.in_transaction());
            for (int i = 0; i < 2; ++i) {
                auto after =
                    co_await test::error_of(s.execute("INSERT INTO items (name) VALUES ('after')"));
                EXPECT_TRUE(after && after->code() == make_error_code(errc::transaction_state))
                    << (after ? after->what() : "the statement ran in autocommit");
            }
            const auto w = co_await test::error_of(
                s.write([](connection& c) { c.execute("INSERT INTO items (name) VALUES ('w')"); }));
            EXPECT_TRUE(w && w->code() == make_error_code(errc::transaction_state));
            EXPECT_EQ(db.stats().writer_in_use, 1u);
            const auto ended = co_await test::error_of(s.execute(end));
            if (std::string_view(end) == "ROLLBACK") {
                EXPECT_FALSE(ended) << ended->what();
            } else {
                EXPECT_TRUE(ended && ended->code() == make_error_code(errc::transaction_state));
            }
            EXPECT_FALSE(s.in_transaction());
            EXPECT_EQ(db.stats().writer_in_use, 0u);
            EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), 0);
        }
        co_await s.execute("INSERT INTO items (name) VALUES ('kept')");  // serves on
    }());
    EXPECT_EQ(count_items(), 1);
}

// In the rollback-journal modes a reader's lock makes COMMIT fail with
// SQLITE_BUSY; SQLite keeps the transaction, and COMMIT is waited out up to
// busy_timeout like any BUSY.
TEST_F(AsyncTx, ACommitThroughExecuteWaitsOutAReadersLock) {
    auto o = options();
    o.journal_mode = "delete";
    o.busy_timeout = 5s;
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto reader = co_await db.session();
        co_await reader.execute("BEGIN");
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM items"), 0);  // SHARED lock
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [&]() -> asio::awaitable<void> {
                co_await test::sleep_for(200ms);
                co_await reader.execute("COMMIT");
            },
            asio::detached);
        auto s = co_await db.session();
        co_await s.execute("BEGIN IMMEDIATE");
        co_await s.execute("INSERT INTO items (name) VALUES ('x')");
        const auto retries = db.stats().busy_retries;
        const auto commit = co_await test::error_of(s.execute("COMMIT"));
        EXPECT_FALSE(commit) << commit->what();
        EXPECT_GT(db.stats().busy_retries, retries);
        EXPECT_FALSE(s.in_transaction());
    }());
    EXPECT_EQ(count_items(), 1);
    EXPECT_EQ(db.stats().in_use, 0u);
}

// The same for commit(): BUSY is waited out while SQLite keeps the
// transaction; past busy_timeout the commit fails and rolls back, and the
// writer is free at once.
TEST_F(AsyncTx, CommitWaitsOutAReadersLockAndRollsBackPastTheBusyTimeout) {
    for (const auto busy_timeout : {5000ms, 50ms}) {
        asio::io_context ctx;
        auto o = options();
        o.journal_mode = "delete";
        o.busy_timeout = busy_timeout;
        auto db = create_async_engine(ctx.get_executor(), o);
        const bool waits = busy_timeout > 1s;
        run_coro(ctx, [&]() -> asio::awaitable<void> {
            auto reader = co_await db.session();
            co_await reader.execute("BEGIN");
            EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM items"), 0);
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    co_await test::sleep_for(300ms);
                    co_await reader.execute("COMMIT");
                },
                asio::detached);
            auto s = co_await db.session();
            auto tx = co_await s.begin();
            co_await s.execute("INSERT INTO items (name) VALUES ('x')");
            const auto retries = db.stats().busy_retries;
            const auto commit = co_await test::error_of(tx.commit());
            EXPECT_GT(db.stats().busy_retries, retries);
            if (waits) {
                EXPECT_FALSE(commit) << commit->what();
            } else {
                EXPECT_TRUE(commit && primary_code(commit->code()) == errc::busy);
            }
            EXPECT_FALSE(s.in_transaction());
            co_await test::sleep_for(400ms);          // the reader is done
            EXPECT_EQ(db.stats().writer_in_use, 0u);  // given back (rolled back on the way)
            EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), waits ? 1 : 0);
            // The writer serves on.
            co_await s.execute("INSERT INTO items (name) VALUES ('y')");
        }());
        EXPECT_EQ(count_items(), waits ? 2 : 1) << busy_timeout.count();
        connection(db_path).exec("DELETE FROM items");
    }
}

// A cancellation that races with the hand-over of the writer: the holder's
// commit gives the writer, on the worker, to the write waiting in line, which
// runs at once; the cancellation comes while that write runs or after it.
// Either way the outcome and the data agree: the write reports success and
// its row is there, or it reports operation_aborted (as asqlite::error, not
// Asio's system_error) and nothing of it is written. The writer is free.
TEST_F(AsyncTx, ACancellationRacingTheWritersHandOverLeavesAConsistentOutcome) {
    auto db = create_async_engine(io.get_executor(), options());
    int written = 0;
    int aborted = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.execute("INSERT INTO items (name) VALUES ('known')");  // a known write now
        for (int round = 0; round < 10; ++round) {
            auto holder = co_await db.session();
            auto tx = co_await holder.begin();
            co_await holder.execute("INSERT INTO items (name) VALUES (?)",
                                    fmt::format("held{}", round));
            auto w = co_await db.session();
            asio::cancellation_signal signal;
            std::exception_ptr outcome;
            bool done = false;
            const std::string name = fmt::format("raced{}", round);
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    co_await w.execute("INSERT INTO items (name) VALUES (?)", name);
                },
                asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr ep) {
                    outcome = ep;
                    done = true;
                }));
            co_await test::sleep_for(5ms);  // w waits in line for the writer
            EXPECT_EQ(db.stats().writer_waiters, 1u);
            co_await tx.commit();                            // gives the writer to w...
            signal.emit(asio::cancellation_type::terminal);  // ...which runs, or ran
            while (!done) {
                co_await test::sleep_for(1ms);
            }
            const auto rows = co_await s.scalar<int>("SELECT count(*) FROM items WHERE name = ?",
                                                     std::string_view(name));
            if (!outcome) {
                EXPECT_EQ(rows, 1);
                ++written;
                continue;
            }
            try {
                std::rethrow_exception(outcome);
            } catch (const error& e) {
                EXPECT_EQ(e.code(), make_error_code(asio::error::operation_aborted)) << e.what();
            } catch (const std::exception& e) {
                ADD_FAILURE() << "not an asqlite::error: " << e.what();
            }
            EXPECT_EQ(rows, 0);
            ++aborted;
        }
    }());
    EXPECT_EQ(written + aborted, 10);
    EXPECT_EQ(count_items(), 1 + 10 + written);
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

}  // namespace
}  // namespace asqlite
