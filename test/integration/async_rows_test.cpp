// session::one() and one_or_none() copy the row into the connection's buffer
// on the blocking pool and build the result on the caller's side
// (detail/row_snapshot.hpp). These tests hold that path to the same contract
// as connection::one()/one_or_none(): every column type, NULL, empty results,
// the mapping check, the row-count errors, large values, and the writer lane.

#include <gtest/gtest.h>

#include <boost/asio/detached.hpp>
#include <boost/describe/class.hpp>

#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace asqlite::test_rows {

struct sample {
    std::int64_t id = 0;
    double ratio = 0;
    std::string name;
    blob data;
    std::optional<std::string> note;
    std::optional<std::int64_t> count;
};
BOOST_DESCRIBE_STRUCT(sample, (), (id, ratio, name, data, note, count))

struct needs_missing {
    std::int64_t id = 0;
    std::string missing;
};
BOOST_DESCRIBE_STRUCT(needs_missing, (), (id, missing))

}  // namespace asqlite::test_rows

namespace asqlite {
namespace {

using test::run_coro;
using test_rows::needs_missing;
using test_rows::sample;
namespace asio = boost::asio;

constexpr std::string_view select_sample =
    "SELECT id, ratio, name, data, note, count FROM samples WHERE id = ?";

class AsyncRows : public test::temp_dir_test {
  protected:
    void SetUp() override {
        test::temp_dir_test::SetUp();
        auto c = create_engine(options()).connect();
        c.execute(
            "CREATE TABLE samples (id INTEGER PRIMARY KEY, ratio REAL, name TEXT, data BLOB, "
            "note TEXT, count INTEGER)");
        c.execute("INSERT INTO samples VALUES (1, 0.25, 'first', x'00ff10', NULL, 7)");
        c.execute("INSERT INTO samples VALUES (2, 2, 'second', x'', 'a note', NULL)");
    }
    engine_options options() {
        engine_options o;
        o.path = db_path;
        o.pool_size = 3;
        o.threads = 2;
        o.echo = false;
        return o;
    }
    template <class F>
    void with_session(F body) {
        auto db = create_async_engine(io.get_executor(), options());
        run_coro(io, [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await body(s);
        }());
    }
    asio::io_context io;
};

TEST_F(AsyncRows, EveryColumnTypeAndNullArriveIntact) {
    with_session([](session& s) -> asio::awaitable<void> {
        const auto a = co_await s.one<sample>(select_sample, 1);
        EXPECT_EQ(a.id, 1);
        EXPECT_DOUBLE_EQ(a.ratio, 0.25);
        EXPECT_EQ(a.name, "first");
        EXPECT_EQ(a.data, (blob{std::byte{0x00}, std::byte{0xff}, std::byte{0x10}}));
        EXPECT_FALSE(a.note.has_value());
        EXPECT_EQ(a.count, 7);
        const auto b = co_await s.one_or_none<sample>(select_sample, 2);
        ASQLITE_CO_ASSERT(b.has_value());
        EXPECT_DOUBLE_EQ(b->ratio, 2.0);  // an INTEGER read as double
        EXPECT_TRUE(b->data.empty());
        EXPECT_EQ(b->note, "a note");
        EXPECT_FALSE(b->count.has_value());
        // Tuples and single values map by position.
        const auto t = co_await s.one<std::tuple<std::string, std::int64_t>>(
            "SELECT name, count FROM samples WHERE id = ?", 1);
        EXPECT_EQ(t, std::make_tuple(std::string("first"), std::int64_t{7}));
        EXPECT_EQ(co_await s.one<std::string>("SELECT name FROM samples WHERE id = 2"), "second");
    });
}

TEST_F(AsyncRows, EmptyResultsAndRowCountErrors) {
    with_session([](session& s) -> asio::awaitable<void> {
        EXPECT_FALSE((co_await s.one_or_none<sample>(select_sample, 99)).has_value());
        const auto none = co_await test::error_of(s.one<sample>(select_sample, 99));
        EXPECT_TRUE(test::error_matches(none, make_error_code(errc::no_rows), {}));
        EXPECT_EQ(none ? std::string(none->sql()) : std::string(), select_sample);
        // (Each error is awaited into a variable first: GCC 12 rejects a
        // braced list in the same expression as a co_await.)
        constexpr std::string_view two_rows = "SELECT id FROM samples";
        const auto from_one = co_await test::error_of(s.one<std::int64_t>(two_rows));
        EXPECT_TRUE(test::error_matches(from_one, make_error_code(errc::too_many_rows), {}));
        const auto from_one_or_none =
            co_await test::error_of(s.one_or_none<std::int64_t>(two_rows));
        EXPECT_TRUE(
            test::error_matches(from_one_or_none, make_error_code(errc::too_many_rows), {}));
        // The session is still usable after each of them.
        EXPECT_EQ(co_await s.one<std::int64_t>("SELECT count(*) FROM samples"), 2);
    });
}

TEST_F(AsyncRows, MappingErrorsNameTheColumnEvenWithoutARow) {
    with_session([](session& s) -> asio::awaitable<void> {
        // No row comes back: the mapping is checked all the same.
        const auto unmapped = co_await test::error_of(
            s.one_or_none<needs_missing>("SELECT id FROM samples WHERE id = 99"));
        EXPECT_TRUE(
            test::error_matches(unmapped, make_error_code(errc::column_not_found), {"missing"}));
        const auto text_as_integer =
            co_await test::error_of(s.one<std::int64_t>("SELECT name FROM samples WHERE id = 1"));
        EXPECT_TRUE(
            test::error_matches(text_as_integer, make_error_code(errc::type_mismatch), {"'name'"}));
        const auto null_as_string =
            co_await test::error_of(s.one<std::string>("SELECT note FROM samples WHERE id = 1"));
        EXPECT_TRUE(test::error_matches(null_as_string, make_error_code(errc::null_value), {}));
    });
}

TEST_F(AsyncRows, LargeValuesThenSmallOnesOnTheSameConnection) {
    // A value far beyond what the buffer keeps between rows; the next,
    // small, row must come back intact after the buffer has been let go.
    const std::string big(300 * 1024, 'x');
    with_session([&](session& s) -> asio::awaitable<void> {
        co_await s.execute("UPDATE samples SET name = ? WHERE id = 2", big);
        for (int round = 0; round < 3; ++round) {
            EXPECT_EQ(co_await s.one<std::string>("SELECT name FROM samples WHERE id = 2"), big);
            const auto a = co_await s.one<sample>(select_sample, 1);
            EXPECT_EQ(a.name, "first");
            EXPECT_EQ(a.data.size(), 3u);
        }
    });
}

TEST_F(AsyncRows, AWriteWithReturningGoesToTheWriterAndComesBackMapped) {
    with_session([](session& s) -> asio::awaitable<void> {
        // Outside a transaction a write is moved to the writer lane; the row
        // it returns is read from the writer connection's buffer.
        const auto id = co_await s.one<std::int64_t>(
            "INSERT INTO samples (ratio, name, data) VALUES (1.5, 'third', x'01') RETURNING id");
        EXPECT_EQ(id, 3);
        auto tx = co_await s.begin();
        const auto row = co_await s.one_or_none<std::tuple<std::string, double>>(
            "UPDATE samples SET name = 'renamed' WHERE id = ? RETURNING name, ratio", id);
        co_await tx.commit();
        ASQLITE_CO_ASSERT(row.has_value());
        EXPECT_EQ(std::get<0>(*row), "renamed");
        EXPECT_DOUBLE_EQ(std::get<1>(*row), 1.5);
        EXPECT_EQ(co_await s.one<std::string>("SELECT name FROM samples WHERE id = 3"), "renamed");
    });
}

TEST_F(AsyncRows, ConcurrentSessionsEachGetTheirOwnRows) {
    // Many coroutines reading different rows at once over few connections:
    // a buffer must never hand one session's row to another.
    auto db = create_async_engine(io.get_executor(), options());
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto tx = co_await s.begin();
        for (int i = 3; i <= 200; ++i) {
            co_await s.execute("INSERT INTO samples (id, name) VALUES (?, ?)", i,
                               fmt::format("row-{}", i));
        }
        co_await tx.commit();
    }());
    int mismatches = 0;
    int reads = 0;
    for (int c = 0; c < 16; ++c) {
        asio::co_spawn(
            io,
            [&, c]() -> asio::awaitable<void> {
                for (int k = 0; k < 50; ++k) {
                    const int id = 3 + (c * 50 + k) % 198;
                    auto s = co_await db.session();
                    const auto name =
                        co_await s.one<std::string>("SELECT name FROM samples WHERE id = ?", id);
                    ++reads;
                    if (name != fmt::format("row-{}", id)) {
                        ++mismatches;
                    }
                }
            },
            asio::detached);
    }
    const pool_stats before = db.stats();
    io.restart();
    io.run();
    EXPECT_EQ(reads, 16 * 50);
    EXPECT_EQ(mismatches, 0);
    // The blocking pool's counters: one job per read at least (connection
    // opens are jobs too), handed back in batches of one or more.
    const pool_stats after = db.stats();
    EXPECT_GE(after.blocking_jobs - before.blocking_jobs, 16u * 50u);
    EXPECT_GE(after.handovers - before.handovers, 1u);
    EXPECT_LE(after.handovers - before.handovers, after.blocking_jobs - before.blocking_jobs);
    EXPECT_GE(after.thread_sleeps, after.thread_wakes);
}

}  // namespace
}  // namespace asqlite
