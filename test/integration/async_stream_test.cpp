// Streaming rows (asqlite/stream.hpp) on real database files: every row in
// order, batches stepped only as the consumer takes them, bounded memory, the
// connection and the read transaction given back on every way out (end,
// early break, error, cancellation), checkpoints after, many streams beside
// a writer on a small pool, and completion tokens.

#include <gtest/gtest.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/describe/class.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <tuple>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace asqlite::test_stream {
struct numbered {
    std::int64_t x = 0;
    std::string label;
};
BOOST_DESCRIBE_STRUCT(numbered, (), (x, label))
}  // namespace asqlite::test_stream

namespace asqlite {
namespace {

using test::run_coro;
using test_stream::numbered;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

constexpr std::string_view all_rows = "SELECT x, label FROM n ORDER BY x";

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

/// Resident memory of this process in bytes.
std::int64_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::int64_t pages = 0;
    std::int64_t resident = 0;
    statm >> pages >> resident;
    return resident * 4096;
}

class Stream : public test::temp_dir_test {
  protected:
    void seed(std::int64_t rows) {
        auto c = create_engine(options()).connect();
        c.exec("CREATE TABLE IF NOT EXISTS n (x INTEGER PRIMARY KEY, label TEXT NOT NULL)");
        c.execute(
            "INSERT INTO n (x, label) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
            "FROM c WHERE x < ?) SELECT x, printf('row %d', x) FROM c",
            rows);
    }
    engine_options options() const {
        engine_options o;
        o.path = db_path;
        o.pool_size = 3;  // two read connections and the writer
        o.threads = 2;
        o.echo = false;
        return o;
    }
    /// Whether a TRUNCATE checkpoint completes now (no reader holds an old
    /// snapshot), after a write that gives it something to do.
    bool checkpoint_completes() const {
        connection_options o;
        o.busy_timeout = 0ms;
        connection c(db_path, o);
        c.execute("INSERT INTO n (x, label) VALUES ((SELECT max(x) + 1 FROM n), 'more')");
        const auto [busy, log, done] =
            c.one<std::tuple<int, int, int>>("PRAGMA wal_checkpoint(TRUNCATE)");
        return busy == 0;
    }
    asio::io_context io;
};

TEST_F(Stream, EveryRowInOrderSteppedABatchAhead) {
    seed(10'000);
    auto db = create_async_engine(io.get_executor(), options());
    std::int64_t count = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto rows = co_await s.stream<std::tuple<std::int64_t, std::string>>(all_rows);
        EXPECT_LE(rows.rows_stepped(), stream_batch_rows) << "stepped ahead of the consumer";
        EXPECT_EQ(db.stats().in_use, 1u) << "the stream holds one read connection";
        while (auto row = co_await rows.next()) {
            ++count;
            EXPECT_EQ(std::get<0>(*row), count);
            EXPECT_EQ(std::get<1>(*row), "row " + std::to_string(count));
            EXPECT_LE(rows.rows_stepped(), static_cast<std::size_t>(count) + stream_batch_rows);
        }
        EXPECT_EQ(db.stats().in_use, 0u) << "the end gives the connection back";
        EXPECT_FALSE(co_await rows.next()) << "after the end, the end again";
    }());
    EXPECT_EQ(count, 10'000);
    EXPECT_TRUE(checkpoint_completes());
}

TEST_F(Stream, StructsScalarsParametersAndEmptyResults) {
    seed(1'000);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        std::string low = "row 99";  // a parameter that changes after the stream opened
        auto structs = co_await s.stream<numbered>(
            "SELECT x, label FROM n WHERE x BETWEEN ? AND ? AND label <> ? ORDER BY x", 10, 600,
            low);
        low = "changed";
        std::int64_t n = 0;
        while (auto r = co_await structs.next()) {
            EXPECT_NE(r->x, 99);
            EXPECT_EQ(r->label, "row " + std::to_string(r->x));
            ++n;
        }
        EXPECT_EQ(n, 590);
        auto scalars = co_await s.stream<std::int64_t>("SELECT x FROM n WHERE x > ?", 995);
        std::int64_t sum = 0;
        while (auto x = co_await scalars.next()) {
            sum += *x;
        }
        EXPECT_EQ(sum, 996 + 997 + 998 + 999 + 1000);
        auto none = co_await s.stream<std::int64_t>("SELECT x FROM n WHERE x < 0");
        EXPECT_FALSE(co_await none.next());
        EXPECT_EQ(db.stats().in_use, 0u);
    }());
}

TEST_F(Stream, AnEarlyBreakGivesBackTheConnectionAndTheSnapshot) {
    seed(10'000);
    auto db = create_async_engine(io.get_executor(), options());
    bool blocked_while_open = false;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto rows = co_await s.stream<numbered>(all_rows);
        for (int i = 0; i < 10; ++i) {
            ASQLITE_CO_ASSERT(co_await rows.next());
        }
        // The open stream's snapshot holds the checkpoint back.
        blocked_while_open = !checkpoint_completes();
    }());  // the stream is destroyed at the break; run_coro runs its cleanup
    EXPECT_TRUE(blocked_while_open);
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes()) << "the abandoned stream still holds a read transaction";
}

TEST_F(Stream, AStreamDroppedUnreadOrAfterItsLastRowGivesBackItsConnection) {
    seed(300);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        { auto unread = co_await s.stream<numbered>(all_rows); }
        {
            auto read_all = co_await s.stream<numbered>(all_rows);
            for (int i = 0; i < 300; ++i) {
                ASQLITE_CO_ASSERT(co_await read_all.next());
            }
            // dropped before next() said the end
        }
        auto moved = co_await s.stream<numbered>(all_rows);
        auto other = std::move(moved);
        EXPECT_FALSE(moved.valid());
        other = co_await s.stream<numbered>(all_rows);  // the first is closed
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes());
}

TEST_F(Stream, ErrorsAreTheOperationsErrorsAndHoldNothing) {
    seed(10);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto bad_sql = co_await test::error_of(s.stream<numbered>("SELECT nope FROM n"));
        EXPECT_TRUE(test::error_matches(bad_sql, errc::error, {"no such column: nope"}));
        auto bad_map = co_await test::error_of(s.stream<numbered>("SELECT x FROM n"));
        EXPECT_TRUE(test::error_matches(bad_map, errc::column_not_found, {"label"}));
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes());
}

TEST_F(Stream, InsideATransactionItReadsTheTransactionsOwnWrites) {
    seed(1'000);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        co_await s.execute("DELETE FROM n WHERE x > 500");
        {
            auto rows = co_await s.stream<numbered>(all_rows);
            std::int64_t n = 0;
            while (auto r = co_await rows.next()) {
                ++n;
            }
            EXPECT_EQ(n, 500) << "the stream did not see the transaction's delete";
            EXPECT_EQ(db.stats().in_use, 1u) << "only the transaction's connection";
        }
        {
            // Dropped half way: its statement stays on the writer until the
            // transaction's next operation finalizes it.
            auto rows = co_await s.stream<numbered>(all_rows);
            for (std::size_t i = 0; i < stream_batch_rows + 3; ++i) {
                ASQLITE_CO_ASSERT(co_await rows.next());
            }
        }
        co_await s.execute("INSERT INTO n (x, label) VALUES (5000, 'new')");
        co_await tx.commit();
        EXPECT_EQ(co_await s.scalar<std::int64_t>("SELECT count(*) FROM n"), 501);
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes()) << "a dropped stream's statement outlived its transaction";
}

TEST_F(Stream, ADroppedTransactionFinalizesItsStreamsStatement) {
    seed(1'000);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        {
            auto tx = co_await s.begin();
            auto rows = co_await s.stream<numbered>(all_rows);
            ASQLITE_CO_ASSERT(co_await rows.next());
            // rows, then tx, dropped: the rollback finalizes the statement
        }
        // In a read transaction begun with SQL, too.
        co_await s.execute("BEGIN");
        {
            auto rows = co_await s.stream<std::int64_t>("SELECT x FROM n");
            ASQLITE_CO_ASSERT(co_await rows.next());
        }
        EXPECT_EQ(co_await s.scalar<std::int64_t>("SELECT count(*) FROM n"), 1000);
        co_await s.execute("COMMIT");
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes());
}

TEST_F(Stream, CancellingANextStopsTheStatementAndTheStreamLetsGo) {
    seed(300);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        // The first batch is the table's first rows; the second steps on
        // into 2 * 10^8 values before its next row.
        auto rows = co_await s.stream<std::int64_t>(
            "SELECT x FROM n UNION ALL SELECT * FROM (WITH RECURSIVE c(v) AS (SELECT 1 UNION "
            "ALL SELECT v + 1 FROM c WHERE v < 200000000) SELECT v FROM c WHERE v = 200000000)");
        for (std::size_t i = 0; i < stream_batch_rows; ++i) {
            ASQLITE_CO_ASSERT(co_await rows.next());
        }
        const auto started = std::chrono::steady_clock::now();
        auto outcome = co_await (rows.next() || test::sleep_for(100ms));
        EXPECT_EQ(outcome.index(), 1u) << "the statement should still be running";
        EXPECT_LT(std::chrono::steady_clock::now() - started, 10s) << "the cancel did not stop it";
        auto again = co_await test::error_of(rows.next());
        ASQLITE_CO_ASSERT(again);
        EXPECT_EQ(again->code(), make_error_code(asio::error::operation_aborted));
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes());
}

TEST_F(Stream, CancellingTheOpeningStopsItsFirstBatchAndHoldsNothing) {
    seed(10);
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        const auto started = std::chrono::steady_clock::now();
        auto outcome = co_await (
            s.stream<std::int64_t>("SELECT * FROM (WITH RECURSIVE c(v) AS (SELECT 1 UNION ALL "
                                   "SELECT v + 1 FROM c WHERE v < 200000000) SELECT v FROM c "
                                   "WHERE v = 200000000)") ||
            test::sleep_for(100ms));
        EXPECT_EQ(outcome.index(), 1u) << "the first batch should still be stepping";
        EXPECT_LT(std::chrono::steady_clock::now() - started, 10s) << "the cancel did not stop it";
        // The session is usable, and a new stream works.
        auto rows = co_await s.stream<std::int64_t>("SELECT x FROM n");
        std::int64_t n = 0;
        while (co_await rows.next()) {
            ++n;
        }
        EXPECT_EQ(n, 10);
    }());
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_TRUE(checkpoint_completes());
}

TEST_F(Stream, ManyStreamsOnASmallPoolBesideAWriter) {
    seed(5'000);
    auto db = create_async_engine(io.get_executor(), options());
    constexpr int streams = 6;  // three times the read connections
    std::atomic<int> finished{0};
    std::atomic<int> written{0};
    for (int i = 0; i < streams; ++i) {
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                auto rows = co_await s.stream<std::int64_t>("SELECT x FROM n WHERE x <= 5000");
                std::int64_t sum = 0;
                while (auto x = co_await rows.next()) {
                    sum += *x;
                    if (*x % 1000 == 0) {
                        co_await test::sleep_for(1ms);  // a slow consumer
                    }
                }
                EXPECT_EQ(sum, 5000LL * 5001 / 2);
                finished.fetch_add(1);
            },
            [](std::exception_ptr ep) { EXPECT_FALSE(ep); });
    }
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            for (int i = 0; i < 50; ++i) {
                co_await s.execute("INSERT INTO n (x, label) VALUES (?, 'new')", 100'000 + i);
                written.fetch_add(1);
            }
        },
        [](std::exception_ptr ep) { EXPECT_FALSE(ep); });
    io.run_for(120s);
    EXPECT_EQ(finished.load(), streams);
    EXPECT_EQ(written.load(), 50);
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(Stream, CallbackTokens) {
    seed(600);
    auto db = create_async_engine(io.get_executor(), options());
    std::int64_t count = 0;
    bool ended = false;
    std::exception_ptr failure;
    std::optional<session> s;
    std::optional<row_stream<std::int64_t>> rows;
    std::function<void()> pull = [&] {
        rows->next([&](std::exception_ptr ep, std::optional<std::int64_t> x) {
            if (ep || !x) {
                failure = ep;
                ended = true;
                return;
            }
            ++count;
            pull();
        });
    };
    db.session([&](std::exception_ptr ep, session opened) {
        ASSERT_FALSE(ep);
        s.emplace(std::move(opened));
        s->stream<std::int64_t>("SELECT x FROM n",
                                [&](std::exception_ptr ep2, row_stream<std::int64_t> r) {
                                    ASSERT_FALSE(ep2);
                                    rows.emplace(std::move(r));
                                    pull();
                                });
    });
    io.run_for(60s);
    EXPECT_TRUE(ended);
    EXPECT_FALSE(failure);
    EXPECT_EQ(count, 600);
    rows.reset();
    s.reset();
    EXPECT_EQ(db.stats().in_use, 0u);
}

TEST_F(Stream, MemoryStaysBoundedOverAHugeResult) {
    // 2,000,000 rows of about 40 bytes (fewer under the sanitizers, whose
    // quarantine and shadow memory make resident size meaningless).
    const std::int64_t total = sanitized ? 100'000 : 2'000'000;
    seed(total);
    auto db = create_async_engine(io.get_executor(), options());
    std::int64_t count = 0;
    std::int64_t growth = 0;
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto rows = co_await s.stream<numbered>(
            "SELECT x, label || ' with some more text to carry' AS label FROM n ORDER BY x");
        const std::int64_t before = resident_bytes();
        while (auto r = co_await rows.next()) {
            if (++count % 100'000 == 0) {
                growth = std::max(growth, resident_bytes() - before);
            }
        }
    }());
    EXPECT_EQ(count, total);
    if (!sanitized) {
        EXPECT_LT(growth, 64 << 20) << "resident memory grew by " << growth << " bytes";
    }
}

}  // namespace
}  // namespace asqlite
