// Savepoints for users: session::begin_nested() inside a begin() transaction
// gives a savepoint that rolls the transaction back to where it was made
// unless released; dropped, it is rolled back before the next statement.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <set>
#include <string>
#include <vector>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

namespace asio = boost::asio;
using test::run_coro;

class AsyncSavepoint : public test::temp_dir_test,
                       public ::testing::WithParamInterface<std::size_t> {
  protected:
    void SetUp() override {
        connection c(db_path);
        c.exec("CREATE TABLE t (v TEXT PRIMARY KEY)");
    }
    engine_options options() const {
        engine_options o;
        o.path = db_path;
        o.pool_size = GetParam();  // 1: one connection does both
        return o;
    }
    std::set<std::string> values() {
        connection c(db_path);
        const auto rows = c.query<std::string>("SELECT v FROM t");
        return {rows.begin(), rows.end()};
    }
    asio::io_context io;
};

asio::awaitable<void> insert(session& s, std::string v) {
    co_await s.execute("INSERT INTO t (v) VALUES (?)", v);
}

TEST_P(AsyncSavepoint, ReleasedKeepsRolledBackAndDroppedUndo) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        co_await insert(s, "before");
        {
            auto kept = co_await s.begin_nested();
            co_await insert(s, "kept");
            co_await kept.release();
            EXPECT_FALSE(kept.active());
        }
        {
            auto undone = co_await s.begin_nested();
            co_await insert(s, "undone");
            co_await undone.rollback();
        }
        {
            auto dropped = co_await s.begin_nested();
            co_await insert(s, "dropped");
        }  // rolled back before the next statement
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM t WHERE v = 'dropped'"), 0);
        co_await insert(s, "after");
        co_await tx.commit();
    }());
    EXPECT_EQ(values(), (std::set<std::string>{"before", "kept", "after"}));
}

TEST_P(AsyncSavepoint, NestedSavepointsEndWithTheOuterOne) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        auto outer = co_await s.begin_nested();
        co_await insert(s, "outer");
        auto inner = co_await s.begin_nested();
        co_await insert(s, "inner");
        co_await outer.rollback();  // takes the inner one with it
        EXPECT_FALSE(outer.active());
        auto e = co_await test::error_of(inner.release());
        EXPECT_TRUE(e && e->code() == errc::transaction_state);
        {
            auto ok = co_await s.begin_nested();
            co_await insert(s, "sibling");
            auto deeper = co_await s.begin_nested();
            co_await insert(s, "deeper");
            co_await deeper.release();
            co_await ok.release();
        }
        co_await tx.commit();
    }());
    EXPECT_EQ(values(), (std::set<std::string>{"sibling", "deeper"}));
}

TEST_P(AsyncSavepoint, ADroppedSavepointIsNotCommitted) {
    // Dropped inner-first, then the outer one: the commit right after
    // rolls back to the outer one first.
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        co_await insert(s, "kept");
        {
            auto outer = co_await s.begin_nested();
            co_await insert(s, "outer");
            auto inner = co_await s.begin_nested();
            co_await insert(s, "inner");
        }
        co_await tx.commit();
    }());
    EXPECT_EQ(values(), (std::set<std::string>{"kept"}));
}

TEST_P(AsyncSavepoint, AFailureInsideASavepointLeavesTheTransactionUsable) {
    // The way nested transactions are used: try a part, undo just that part
    // when it fails, go on.
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        co_await insert(s, "a");
        for (const std::string v : {"b", "a", "c"}) {
            auto part = co_await s.begin_nested();
            co_await insert(s, v + "-first");
            auto e = co_await test::error_of(insert(s, v));
            if (e) {
                EXPECT_EQ(e->code(), errc::constraint_primarykey);
                co_await part.rollback();
            } else {
                co_await part.release();
            }
        }
        co_await tx.commit();
    }());
    EXPECT_EQ(values(), (std::set<std::string>{"a", "b-first", "b", "c-first", "c"}));
}

TEST_P(AsyncSavepoint, OnlyInsideABeginTransaction) {
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto outside = co_await test::error_of(s.begin_nested());
        EXPECT_TRUE(outside && outside->code() == errc::transaction_state);
        auto tx = co_await s.begin();
        auto sp = co_await s.begin_nested();
        co_await insert(s, "x");
        co_await tx.commit();
        // The transaction has ended: the savepoint with it.
        auto late = co_await test::error_of(sp.release());
        EXPECT_TRUE(late && late->code() == errc::transaction_state);
        co_await s.execute("BEGIN IMMEDIATE");
        auto by_sql = co_await test::error_of(s.begin_nested());
        EXPECT_TRUE(by_sql && by_sql->code() == errc::transaction_state);
        co_await s.execute("ROLLBACK");
    }());
    EXPECT_EQ(values(), (std::set<std::string>{"x"}));
}

TEST_P(AsyncSavepoint, SavepointsOfWriteFnComposeWithGroupCommit) {
    // write(fn) bodies with savepoints of their own, many at once so that
    // they share group commits: each keeps exactly what it released.
    auto db = create_async_engine(io.get_executor(), options());
    constexpr int writers = 16;
    constexpr int rounds = 8;
    int done = 0;
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(
            io,
            [&, w]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                for (int i = 0; i < rounds; ++i) {
                    const std::string v = std::to_string(w) + "-" + std::to_string(i);
                    auto fn = [v](connection& c) {
                        c.exec("SAVEPOINT mine");
                        c.execute("INSERT INTO t (v) VALUES (?)", "undone" + v);
                        c.exec("ROLLBACK TO mine");
                        c.execute("INSERT INTO t (v) VALUES (?)", "kept" + v);
                        c.exec("RELEASE mine");
                    };
                    co_await s.write(fn);
                }
                ++done;
            },
            test::rethrow_failure);
    }
    io.run();
    EXPECT_EQ(done, writers);
    const auto got = values();
    EXPECT_EQ(got.size(), static_cast<std::size_t>(writers * rounds));
    for (int w = 0; w < writers; ++w) {
        for (int i = 0; i < rounds; ++i) {
            const std::string v = std::to_string(w) + "-" + std::to_string(i);
            EXPECT_TRUE(got.count("kept" + v)) << v;
        }
    }
    if (GetParam() > 1) {
        EXPECT_GT(db.stats().group_commits, 0U) << "no group formed: nothing was composed";
    }
}

INSTANTIATE_TEST_SUITE_P(Lanes, AsyncSavepoint, ::testing::Values(4, 1),
                         [](const ::testing::TestParamInfo<std::size_t>& info) {
                             return info.param == 1 ? std::string("single_connection")
                                                    : std::string("writer_lane");
                         });

}  // namespace
}  // namespace asqlite
