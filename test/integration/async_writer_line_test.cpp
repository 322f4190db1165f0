// The line for the writer: writes outside a transaction (autocommit
// statements, write(fn)) and the first statement of a begin() transaction
// that found the writer busy wait for it in their own job, and the writer
// passes from job to job on the worker. What a user sees of that line:
// order, pool_timeout, cancellation, shutdown, pre_ping, and transactions
// that take the writer with their first statement.

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace boost::asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using test::run_coro;
namespace asio = boost::asio;

class AsyncWriterLine : public test::temp_dir_test {
  protected:
    void SetUp() override {
        auto c = connection(db_path);
        c.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE)");
        c.exec("INSERT INTO items (name) VALUES ('seed')");
    }
    engine_options options() {
        engine_options o;
        o.path = db_path;
        o.pool_size = 3;
        o.threads = 2;
        return o;
    }
    async_engine engine_with_pool_timeout(std::chrono::milliseconds timeout) {
        auto o = options();
        o.pool_timeout = timeout;
        return create_async_engine(io.get_executor(), o);
    }
    std::vector<std::string> names() {
        return connection(db_path).query<std::string>("SELECT name FROM items ORDER BY id");
    }
    /// `s` holds the writer: a transaction begun with SQL.
    static asio::awaitable<void> hold_writer(session& s) {
        co_await s.execute("BEGIN IMMEDIATE");
        co_await s.execute("INSERT INTO items (name) VALUES ('holder')");
    }
    static asio::awaitable<void> insert(session& s, std::string name) {
        co_await s.execute("INSERT INTO items (name) VALUES (?)", name);
    }
    /// Waits (on timers) until `flag` is set by another coroutine.
    static asio::awaitable<void> until(const bool& flag) {
        while (!flag) {
            co_await test::sleep_for(1ms);
        }
    }
    /// `writers` coroutines, each on executor_of(w) with a session of its
    /// own, make `rounds` writes each through write_one(session, name, k)
    /// with io running on two threads; then every write must be there and
    /// the writer free.
    template <class ExecutorOf, class WriteOne>
    void run_writers(async_engine& db, int writers, int rounds, ExecutorOf executor_of,
                     WriteOne write_one) {
        std::atomic<int> ok{0};
        for (int w = 0; w < writers; ++w) {
            asio::co_spawn(
                executor_of(),
                [&, w]() -> asio::awaitable<void> {
                    auto s = co_await db.session();
                    for (int i = 0; i < rounds; ++i) {
                        co_await write_one(s, fmt::format("w{}-{}", w, i), w + i);
                        ok.fetch_add(1);
                    }
                },
                [](std::exception_ptr ep) {
                    if (ep) {
                        std::rethrow_exception(ep);
                    }
                });
        }
        test::run_io(io, 2);
        EXPECT_EQ(ok.load(), writers * rounds);
        EXPECT_EQ(names().size(), static_cast<std::size_t>(writers * rounds + 1));
        const auto st = db.stats();
        EXPECT_EQ(st.writer_in_use, 0u);
        EXPECT_EQ(st.in_use, 0u);
    }
    asio::io_context io;
};

TEST_F(AsyncWriterLine, WritesWaitInTurnAndRunWhenTheWriterIsFree) {
    auto db = create_async_engine(io.get_executor(), options());
    std::vector<std::string> finished;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto ex = co_await asio::this_coro::executor;
        // Three writers line up behind the holder: two autocommit
        // statements and a write(fn).
        std::atomic<int> done{0};
        for (int i = 0; i < 3; ++i) {
            asio::co_spawn(
                ex,
                [&, i]() -> asio::awaitable<void> {
                    auto s = co_await db.session();
                    const std::string name = fmt::format("w{}", i);
                    if (i == 1) {
                        co_await s.write([&](connection& c) {
                            c.execute("INSERT INTO items (name) VALUES (?)", name);
                        });
                    } else {
                        co_await insert(s, name);
                    }
                    finished.push_back(name);
                    done.fetch_add(1);
                },
                asio::detached);
            co_await test::sleep_for(5ms);  // in this order
        }
        co_await test::sleep_for(30ms);
        EXPECT_EQ(done.load(), 0) << "a write ran while the writer was held";
        EXPECT_EQ(db.stats().writer_waiters, 3u);
        co_await holder.execute("COMMIT");
        while (done.load() < 3) {
            co_await test::sleep_for(1ms);
        }
    }());
    // They ran in line order (ids are given in commit order); their
    // completions may come home in another order.
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "w0", "w1", "w2"}));
    std::sort(finished.begin(), finished.end());
    EXPECT_EQ(finished, (std::vector<std::string>{"w0", "w1", "w2"}));
    EXPECT_EQ(db.stats().writer_in_use, 0u);
    EXPECT_EQ(db.stats().writer_waiters, 0u);
}

// Whether a statement writes is SQLite's answer when it compiles it
// (sqlite3_stmt_readonly): a statement whose first words do not say (WITH,
// PRAGMA) is compiled on a read connection and, when it writes, waits for
// the writer like any other write; when it only reads, it runs at once.
TEST_F(AsyncWriterLine, StatementsWhoseWordsDoNotTellAreRoutedBySqlite) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto ex = co_await asio::this_coro::executor;
        bool inserted = false;
        bool pragma_set = false;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                co_await s.execute(
                    "WITH x(n) AS (SELECT 'cte') INSERT INTO items (name) SELECT n FROM x");
                inserted = true;
            },
            asio::detached);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                co_await s.execute("PRAGMA user_version = 7");
                pragma_set = true;
            },
            asio::detached);
        for (int i = 0; i < 5000 && db.stats().writer_waiters < 2; ++i) {
            co_await test::sleep_for(1ms);
        }
        EXPECT_EQ(db.stats().writer_waiters, 2u) << "the writes did not wait for the writer";
        auto reader = co_await db.session();
        // Reads of the same shapes run on a read connection meanwhile.
        EXPECT_EQ(co_await reader.scalar<int>(
                      "WITH x AS (SELECT name FROM items) SELECT count(*) FROM x"),
                  1);
        EXPECT_EQ(co_await reader.scalar<int>("PRAGMA user_version"), 0);
        EXPECT_FALSE(inserted);
        EXPECT_FALSE(pragma_set);
        co_await holder.execute("COMMIT");
        co_await until(inserted);
        co_await until(pragma_set);
        EXPECT_EQ(co_await reader.scalar<int>("PRAGMA user_version"), 7);
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "cte"}));
    EXPECT_EQ(db.stats().writer_in_use, 0u);
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(AsyncWriterLine, AWriteWaitingInLineTimesOutWithPoolTimeout) {
    auto db = engine_with_pool_timeout(100ms);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        const auto start = std::chrono::steady_clock::now();
        const auto e = co_await test::error_of(insert(s, "late"));
        const auto waited = std::chrono::steady_clock::now() - start;
        ASQLITE_CO_ASSERT(e.has_value());
        EXPECT_EQ(e->code(), make_error_code(errc::pool_timeout));
        EXPECT_GE(waited, 90ms);
        EXPECT_LT(waited, 2s);
        const auto w = co_await test::error_of(
            s.write([](connection& c) { c.exec("INSERT INTO items (name) VALUES ('late2')"); }));
        ASQLITE_CO_ASSERT(w.has_value());
        EXPECT_EQ(w->code(), make_error_code(errc::pool_timeout));
        co_await holder.execute("COMMIT");
        co_await insert(s, "after");  // the line serves on
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "after"}));
    EXPECT_EQ(db.stats().timeouts, 2u);
}

TEST_F(AsyncWriterLine, AWriteWaitingInLineIsCancelledAtOnceAndNeverRuns) {
    auto db = create_async_engine(io.get_executor(), options());
    std::atomic<bool> ran{false};
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        asio::steady_timer timer(co_await asio::this_coro::executor, 30ms);
        const auto start = std::chrono::steady_clock::now();
        try {
            co_await (s.write([&](connection& c) {
                ran = true;
                c.exec("INSERT INTO items (name) VALUES ('cancelled')");
            }) || timer.async_wait(asio::use_awaitable));
        } catch (const error& e) {
            ADD_FAILURE() << "the timer's branch should win: " << e.what();
        }
        EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
        EXPECT_EQ(db.stats().writer_waiters, 0u);
        // And by a cancellation signal, for an autocommit statement.
        asio::cancellation_signal signal;
        std::optional<error> failure;
        bool completed = false;
        asio::co_spawn(co_await asio::this_coro::executor, insert(s, "cancelled2"),
                       asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr ep) {
                           completed = true;
                           try {
                               if (ep) {
                                   std::rethrow_exception(ep);
                               }
                           } catch (const error& e) {
                               failure = e;
                           }
                       }));
        co_await test::sleep_for(20ms);
        EXPECT_FALSE(completed);
        signal.emit(asio::cancellation_type::terminal);
        co_await test::sleep_for(20ms);
        EXPECT_TRUE(completed);
        ASQLITE_CO_ASSERT(failure.has_value());
        EXPECT_EQ(failure->code(), make_error_code(asio::error::operation_aborted));
        co_await holder.execute("COMMIT");
        co_await insert(s, "after");
    }());
    EXPECT_FALSE(ran.load());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "after"}));
    EXPECT_EQ(db.stats().cancellations, 2u);
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

TEST_F(AsyncWriterLine, ClosingTheEngineFailsWritesWaitingInLine) {
    auto db = create_async_engine(io.get_executor(), options());
    std::optional<error> failure;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto ex = co_await asio::this_coro::executor;
        bool done = false;
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                failure = co_await test::error_of(insert(s, "never"));
                done = true;
            },
            asio::detached);
        co_await test::sleep_for(20ms);
        EXPECT_FALSE(done);
        db.close();
        co_await until(done);
    }());
    ASSERT_TRUE(failure.has_value());
    EXPECT_EQ(failure->code(), make_error_code(errc::pool_closed));
    EXPECT_EQ(names(), (std::vector<std::string>{"seed"}));  // the holder rolled back
}

// begin() with the writer busy returns at once; its first statement waits in
// line and takes the writer, with BEGIN IMMEDIATE, in the same job.
TEST_F(AsyncWriterLine, BeginWithTheWriterBusyTakesItWithTheFirstStatement) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        auto tx = co_await s.begin();  // does not wait for the holder
        EXPECT_TRUE(s.in_transaction());
        EXPECT_EQ(db.stats().writer_waiters, 0u);
        bool first_done = false;
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [&]() -> asio::awaitable<void> {
                co_await insert(s, "t1");
                first_done = true;
            },
            asio::detached);
        co_await test::sleep_for(20ms);
        EXPECT_FALSE(first_done);
        EXPECT_EQ(db.stats().writer_waiters, 1u);
        co_await holder.execute("COMMIT");
        co_await until(first_done);
        // The transaction holds the writer now: a bare write waits for it,
        // and a reader does not see t1 before the commit.
        EXPECT_EQ(db.stats().writer_in_use, 1u);
        co_await insert(s, "t2");
        auto reader = co_await db.session();
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM items WHERE name LIKE 't%'"),
                  0);
        co_await tx.commit();
        EXPECT_EQ(co_await reader.scalar<int>("SELECT count(*) FROM items WHERE name LIKE 't%'"),
                  2);
        EXPECT_EQ(db.stats().writer_in_use, 0u);
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "t1", "t2"}));
}

TEST_F(AsyncWriterLine, AFailedFirstStatementAfterBeginKeepsTheTransaction) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        std::optional<error> duplicate;
        bool done = false;
        asio::co_spawn(
            co_await asio::this_coro::executor,
            [&]() -> asio::awaitable<void> {
                duplicate = co_await test::error_of(insert(s, "seed"));  // UNIQUE
                done = true;
            },
            asio::detached);
        co_await test::sleep_for(10ms);
        co_await holder.execute("COMMIT");
        co_await until(done);
        ASQLITE_CO_ASSERT(duplicate.has_value());
        EXPECT_EQ(primary_code(duplicate->code()), errc::constraint);
        // BEGIN ran with it: the transaction holds the writer, and what
        // follows is inside it.
        EXPECT_EQ(db.stats().writer_in_use, 1u);
        co_await insert(s, "kept");
        co_await tx.rollback();
        EXPECT_EQ(db.stats().writer_in_use, 0u);
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder"}));
}

TEST_F(AsyncWriterLine, AFirstStatementCancelledInLineLeavesTheTransactionWhole) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        asio::steady_timer timer(co_await asio::this_coro::executor, 20ms);
        const auto outcome =
            co_await (insert(s, "cancelled") || timer.async_wait(asio::use_awaitable));
        EXPECT_EQ(outcome.index(), 1u);
        EXPECT_EQ(db.stats().writer_waiters, 0u);
        co_await holder.execute("COMMIT");
        // Nothing of the transaction ran: its next statement begins it.
        co_await insert(s, "next");
        co_await tx.commit();
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "next"}));
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

TEST_F(AsyncWriterLine, FirstStatementTimesOutAndTheEmptyTransactionCommitsNothing) {
    auto db = engine_with_pool_timeout(50ms);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        const auto e = co_await test::error_of(insert(s, "late"));
        ASQLITE_CO_ASSERT(e.has_value());
        EXPECT_EQ(e->code(), make_error_code(errc::pool_timeout));
        co_await tx.commit();  // no statement ran
        EXPECT_FALSE(s.in_transaction());
        co_await holder.execute("ROLLBACK");
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed"}));
}

TEST_F(AsyncWriterLine, ADroppedTransactionThatTookTheWriterLateRollsBack) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto holder = co_await db.session();
        co_await hold_writer(holder);
        auto s = co_await db.session();
        {
            auto tx = co_await s.begin();
            bool done = false;
            asio::co_spawn(
                co_await asio::this_coro::executor,
                [&]() -> asio::awaitable<void> {
                    co_await insert(s, "dropped");
                    done = true;
                },
                asio::detached);
            co_await test::sleep_for(10ms);
            co_await holder.execute("COMMIT");
            co_await until(done);
        }  // dropped uncommitted
        co_await insert(s, "after");
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "holder", "after"}));
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

// With pre_ping, a writer that fails its ping is closed and the write waits
// for a fresh one.
TEST_F(AsyncWriterLine, PrePingReplacesAWriterThatFailsItsPing) {
    auto o = options();
    o.pre_ping = true;
    std::atomic<int> opens{0};
    std::atomic<int> refuse_pings{0};
    o.on_connect = [&](connection& c) {
        opens.fetch_add(1);
        // The ping (SELECT 1) is refused while refuse_pings > 0, once each.
        sqlite3_set_authorizer(
            c.native_handle(),
            [](void* ctx, int action, const char*, const char*, const char*, const char*) {
                auto& refuse = *static_cast<std::atomic<int>*>(ctx);
                if (action == SQLITE_SELECT && refuse.load() > 0) {
                    refuse.fetch_sub(1);
                    return SQLITE_DENY;
                }
                return SQLITE_OK;
            },
            &refuse_pings);
    };
    auto db = create_async_engine(io.get_executor(), o);
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await insert(s, "a");  // opens a reader (refused there) and the writer
        const int before = opens.load();
        refuse_pings = 1;
        co_await insert(s, "b");  // the writer's ping fails: a new writer
        EXPECT_EQ(refuse_pings.load(), 0);
        EXPECT_EQ(opens.load(), before + 1);
    }());
    EXPECT_EQ(names(), (std::vector<std::string>{"seed", "a", "b"}));
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

// commit() gives the writer back on the worker as soon as COMMIT is done. A
// cancellation of the commit that arrives after that (here: the io thread is
// held up until the worker has committed, and pool_recycle makes the release
// close the writer) must not reach the given-back connection: the commit
// has happened, and reports it. (Before the fix: a write into the closed
// connection, a crash in release builds.)
TEST_F(AsyncWriterLine, ACommitCancelledAfterTheWriterWentBackIsHarmless) {
    auto o = options();
    o.pool_recycle = 1ms;  // the writer is closed when given back
    auto db = create_async_engine(io.get_executor(), o);
    int committed = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto ex = co_await asio::this_coro::executor;
        for (int round = 0; round < 5; ++round) {
            auto tx = co_await s.begin();
            co_await insert(s, fmt::format("r{}", round));
            co_await test::sleep_for(3ms);  // older than pool_recycle
            asio::cancellation_signal signal;
            std::exception_ptr outcome;
            bool done = false;
            asio::co_spawn(ex, tx.commit(),
                           asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr ep) {
                               outcome = ep;
                               done = true;
                           }));
            asio::post(ex, [&] {
                std::this_thread::sleep_for(50ms);  // the worker commits and closes the writer
                signal.emit(asio::cancellation_type::terminal);
            });
            co_await until(done);
            EXPECT_FALSE(outcome) << "the commit ran before the cancellation";
            committed += outcome ? 0 : 1;
        }
    }());
    EXPECT_EQ(names().size(), static_cast<std::size_t>(1 + committed));
    EXPECT_EQ(db.stats().writer_in_use, 0u);
}

// Writes from coroutines on two io threads without a strand (allowed without
// cancellation): a job can be granted, run and completed on other threads
// while the thread that queued it is still inside the call. The operation's
// state is handed over under the lane's lock before anyone can grant it.
TEST_F(AsyncWriterLine, WritesOnTwoIoThreadsWithoutAStrand) {
    auto db = create_async_engine(io.get_executor(), options());
    run_writers(
        db, 16, 60, [&] { return io.get_executor(); },
        [](session& s, std::string name, int) { return insert(s, std::move(name)); });
}

// Many writers of every kind at once, on several io threads: each write
// lands once, and the writer is free at the end.
TEST_F(AsyncWriterLine, EveryKindOfWriteInterleavedOnSeveralThreads) {
    auto db = create_async_engine(io.get_executor(), options());
    run_writers(
        db, 24, 12, [&] { return asio::make_strand(io); },
        [](session& s, std::string name, int k) -> asio::awaitable<void> {
            switch (k % 3) {
                case 0: {
                    auto tx = co_await s.begin();
                    co_await insert(s, name);
                    co_await tx.commit();
                    break;
                }
                case 1:
                    co_await s.write([&](connection& c) {
                        c.execute("INSERT INTO items (name) VALUES (?)", name);
                    });
                    break;
                default:
                    co_await insert(s, name);
            }
        });
}

}  // namespace
}  // namespace asqlite
