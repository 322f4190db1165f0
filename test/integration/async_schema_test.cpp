// A user's own tables through the async engine: declared with the schema
// facility, created from a session (write(fn), or inside begin()), read
// and written as a Describe struct. And what a write inside run(fn) outside
// a transaction gets: one documented error, whatever kind of write it is.

#include <gtest/gtest.h>

#include <boost/describe/class.hpp>

#include "asqlite/asqlite.hpp"
#include "support/async_helpers.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

using test::run_coro;
namespace asio = boost::asio;

struct note {
    std::optional<std::int64_t> id;
    std::string title;
    std::optional<std::string> body;
};
BOOST_DESCRIBE_STRUCT(note, (), (id, title, body))

metadata notes_schema() {
    metadata m;
    m.add(table("notes",
                {{.name = "id", .type = column_type::integer, .primary_key = true},
                 {.name = "title", .type = column_type::text, .not_null = true, .unique = true},
                 {.name = "body", .type = column_type::text}},
                {{.name = "ix_notes_body", .columns = {"body"}}}));
    return m;
}

class AsyncSchema : public test::temp_dir_test, public ::testing::WithParamInterface<bool> {
  protected:
    engine_options options() const {
        engine_options o;
        o.threads = 2;
        if (GetParam()) {
            o.path = ":memory:";
        } else {
            o.path = db_path;
            o.pool_size = 4;
        }
        return o;
    }
    asio::io_context io;
};

TEST_P(AsyncSchema, CreateAllInsideWriteThenTypedRows) {
    auto db = create_async_engine(io.get_executor(), options());
    const metadata schema = notes_schema();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        auto report = co_await s.write([&](connection& c) { return schema.create_all(c); });
        ASQLITE_CO_ASSERT(report.size() == 1);
        EXPECT_EQ(report[0].status, table_status::created);
        report = co_await s.write([&](connection& c) { return schema.create_all(c); });
        EXPECT_EQ(report[0].status, table_status::already_present);

        co_await s.execute("INSERT INTO notes (title, body) VALUES (?, ?)", "first", "hello");
        co_await s.execute("INSERT INTO notes (title) VALUES (?)", "second");
        auto all = co_await s.all<note>("SELECT id, title, body FROM notes ORDER BY id");
        ASQLITE_CO_ASSERT(all.size() == 2);
        EXPECT_EQ(all[0].title, "first");
        EXPECT_EQ(all[0].body, "hello");
        EXPECT_FALSE(all[1].body.has_value());
        auto one = co_await s.one_or_none<note>("SELECT id, title, body FROM notes WHERE title = ?",
                                                "second");
        ASQLITE_CO_ASSERT(one.has_value());
        EXPECT_EQ(one->id, all[1].id);
        // Only the user's table: the seed's fileinfo is not created.
        EXPECT_EQ(
            co_await s.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE name = 'fileinfo'"),
            0);
    }());
}

TEST_P(AsyncSchema, CreateAllInsideABeginTransactionFollowsItsCommitOrRollback) {
    auto db = create_async_engine(io.get_executor(), options());
    const metadata schema = notes_schema();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        {
            auto tx = co_await s.begin();
            co_await s.run([&](connection& c) { schema.create_all(c); });
            co_await tx.rollback();
        }
        const std::string_view exists =
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'notes'";
        EXPECT_EQ(co_await s.scalar<int>(exists), 0);
        auto tx = co_await s.begin();
        co_await s.run([&](connection& c) { schema.create_all(c); });
        co_await s.execute("INSERT INTO notes (title) VALUES ('kept')");
        co_await tx.commit();
        EXPECT_EQ(co_await s.scalar<int>(exists), 1);
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM notes"), 1);
    }());
}

// On a file database run(fn) outside a transaction runs on a read
// connection: every kind of write there gets the same documented error.
TEST(AsyncRunRefusesWrites, EveryKindOfWriteGetsOneDocumentedError) {
    const test::temp_dir dir;
    const std::string path = dir.file("w.db");
    {
        connection c(path);
        c.exec("CREATE TABLE t (v INTEGER)");
    }
    asio::io_context io;
    engine_options o;
    o.path = path;
    o.pool_size = 4;
    o.threads = 2;
    auto db = create_async_engine(io.get_executor(), o);
    const metadata schema = notes_schema();
    run_coro(io, [&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        const std::function<void(connection&)> writes[] = {
            [](connection& c) { c.execute("INSERT INTO t VALUES (1)"); },
            [](connection& c) { c.exec("INSERT INTO t VALUES (2)"); },
            [&](connection& c) { schema.create_all(c); },
        };
        for (const auto& w : writes) {
            auto e = co_await test::error_of(s.run(w));
            ASQLITE_CO_ASSERT(e.has_value());
            EXPECT_EQ(e->code(), make_error_code(errc::readonly));
            EXPECT_NE(e->code(), make_error_code(errc::needs_writer));
            EXPECT_NE(e->message().find("write(fn)"), std::string::npos) << e->message();
            EXPECT_NE(e->message().find("begin()"), std::string::npos) << e->message();
            const std::string what = e->what();
            // Said once.
            EXPECT_EQ(what.find("read connection"), what.rfind("read connection")) << what;
        }
        // Reads in run(fn) are fine, and nothing was written.
        EXPECT_EQ(
            co_await s.run([](connection& c) { return c.scalar<int>("SELECT count(*) FROM t"); }),
            0);
        // The same work through write(fn) succeeds.
        co_await s.write([](connection& c) { c.execute("INSERT INTO t VALUES (1)"); });
        EXPECT_EQ(co_await s.scalar<int>("SELECT count(*) FROM t"), 1);
    }());
}

INSTANTIATE_TEST_SUITE_P(MemoryAndFile, AsyncSchema, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "memory" : "file"; });

}  // namespace
}  // namespace asqlite
