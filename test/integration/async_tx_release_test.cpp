// A transaction gives its connection back the moment it ends (commit,
// rollback, or dropped), on every pool shape: a :memory: database and
// pool_size 1 (one connection for everything) as well as a file database
// with a writer lane. Waiters already in line are woken then.

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <string>
#include <vector>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using namespace std::chrono_literals;
using test::run_coro;
namespace asio = boost::asio;

enum class shape { memory, single_file, pooled_file };
enum class ending { commit, rollback, drop };

std::string name_of(shape s) {
    switch (s) {
        case shape::memory:
            return "memory";
        case shape::single_file:
            return "pool_size1";
        case shape::pooled_file:
            return "pool_size4";
    }
    return "?";
}

class TxRelease : public test::temp_dir_test, public ::testing::WithParamInterface<shape> {
  protected:
    engine_options options() const {
        engine_options o;
        o.threads = 2;
        // Short enough that a connection kept by mistake fails the test
        // quickly; long enough for any machine once the connection is back.
        o.pool_timeout = 3s;
        switch (GetParam()) {
            case shape::memory:
                o.path = ":memory:";
                break;
            case shape::single_file:
                o.path = db_path;
                o.pool_size = 1;
                break;
            case shape::pooled_file:
                o.path = db_path;
                o.pool_size = 4;
                break;
        }
        return o;
    }
    static asio::awaitable<void> create_table(session& s) {
        co_await s.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)");
    }
    /// Polls until someone waits for a connection (or 10 s have passed).
    static asio::awaitable<bool> until_someone_waits(async_engine& db) {
        for (int i = 0; i < 10'000; ++i) {
            if (db.stats().waiters > 0) {
                co_return true;
            }
            co_await test::sleep_for(1ms);
        }
        co_return false;
    }
    /// Ends `tx` the way `how` says.
    static asio::awaitable<void> end(transaction& tx, ending how) {
        switch (how) {
            case ending::commit:
                co_await tx.commit();
                break;
            case ending::rollback:
                co_await tx.rollback();
                break;
            case ending::drop:
                tx = transaction{};
                break;
        }
    }
    asio::io_context io;
};

TEST_P(TxRelease, CommitAndRollbackGiveTheConnectionBackBeforeTheyComplete) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await create_table(s);
        for (const ending how : {ending::commit, ending::rollback}) {
            auto tx = co_await s.begin();
            co_await s.execute("INSERT INTO items (name) VALUES ('a')");
            EXPECT_EQ(db.stats().in_use, 1U);
            co_await end(tx, how);
            EXPECT_FALSE(s.in_transaction());
            const auto st = db.stats();
            EXPECT_EQ(st.in_use, 0U) << static_cast<int>(how);
            EXPECT_EQ(st.idle, st.size) << static_cast<int>(how);
        }
        // The session itself is still alive: a second one gets the connection.
        auto other = co_await db.session();
        EXPECT_EQ(co_await other.scalar<int>("SELECT count(*) FROM items"), 1);
    }());
}

TEST_P(TxRelease, AWaiterAlreadyInLineIsWokenWhenTheTransactionEnds) {
    for (const ending how : {ending::commit, ending::rollback, ending::drop}) {
        asio::io_context ctx;
        auto db = create_async_engine(ctx.get_executor(), options());
        bool waiter_done = false;
        run_coro(ctx, [&]() -> asio::awaitable<void> {
            auto s1 = co_await db.session();
            co_await create_table(s1);
            co_await s1.execute("DELETE FROM items");  // (the file outlives each round)
            std::optional<transaction> tx(co_await s1.begin());
            co_await s1.execute("INSERT INTO items (name) VALUES ('first')");
            // A second session's write waits for the connection s1's
            // transaction holds (the only one, or the writer lane's).
            asio::co_spawn(
                ctx,
                [&]() -> asio::awaitable<void> {
                    auto s2 = co_await db.session();
                    co_await s2.execute("INSERT INTO items (name) VALUES ('second')");
                    waiter_done = true;
                },
                [](std::exception_ptr ep) {
                    if (ep) {
                        std::rethrow_exception(ep);
                    }
                });
            EXPECT_TRUE(co_await until_someone_waits(db));
            co_await end(*tx, how);
            // s1 stays alive (and idle) until the waiter has finished.
            for (int i = 0; i < 10'000 && !waiter_done; ++i) {
                co_await test::sleep_for(1ms);
            }
            EXPECT_TRUE(waiter_done) << static_cast<int>(how);
            const int expected = how == ending::commit ? 2 : 1;
            EXPECT_EQ(co_await s1.scalar<int>("SELECT count(*) FROM items"), expected);
        }());
        EXPECT_TRUE(waiter_done) << static_cast<int>(how);
    }
}

TEST_P(TxRelease, ManyConcurrentSessionsMixTransactionsAndReads) {
    auto db = create_async_engine(io.get_executor(), options());
    constexpr int sessions = 30;
    int committed = 0;
    int reads = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await create_table(s);
    }());
    io.restart();
    for (int i = 0; i < sessions; ++i) {
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                for (int round = 0; round < 5; ++round) {
                    if (i % 3 == 0) {
                        auto tx = co_await s.begin();
                        co_await s.execute("INSERT INTO items (name) VALUES (?)",
                                           fmt::format("s{}r{}", i, round));
                        co_await s.scalar<int>("SELECT count(*) FROM items");
                        co_await tx.commit();
                        ++committed;
                    } else {
                        co_await s.scalar<int>("SELECT count(*) FROM items");
                        ++reads;
                    }
                }
            },
            [](std::exception_ptr ep) {
                if (ep) {
                    std::rethrow_exception(ep);
                }
            });
    }
    test::run_io(io);
    EXPECT_EQ(committed, 10 * 5);
    EXPECT_EQ(reads, 20 * 5);
    EXPECT_EQ(db.stats().in_use, 0U);
    EXPECT_EQ(db.stats().timeouts, 0U);
    io.restart();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM items"), committed);
    }());
}

INSTANTIATE_TEST_SUITE_P(Shapes, TxRelease,
                         ::testing::Values(shape::memory, shape::single_file, shape::pooled_file),
                         [](const auto& info) { return name_of(info.param); });

}  // namespace
}  // namespace asqlite
