#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/schema.hpp"
#include "support/check.hpp"
#include "support/temp_dir.hpp"

namespace {

using namespace std::chrono;
using asqlite::column_type;
using asqlite::connection;
using asqlite::errc;
using asqlite::file_info;
using asqlite::metadata;
using asqlite::table;
using asqlite::table_report;
using asqlite::table_status;
using asqlite::test::catch_error;
using asqlite::test::contains;
using asqlite::test::fails_with;

int count_objects(connection& c, std::string_view type, std::string_view name) {
    return c.scalar<int>("SELECT count(*) FROM sqlite_schema WHERE type = ? AND name = ?", type,
                         name);
}

metadata two_tables() {
    metadata m;
    m.add(table(
        "authors",
        {{.name = "id", .type = column_type::integer, .primary_key = true, .autoincrement = true},
         {.name = "name", .type = column_type::text, .not_null = true, .unique = true}}));
    m.add(table("books",
                {{.name = "id", .type = column_type::integer, .primary_key = true},
                 {.name = "author_id", .type = column_type::integer, .not_null = true},
                 {.name = "title", .type = column_type::varchar, .default_sql = "'untitled'"}},
                {{.name = "ix_books_author", .columns = {"author_id"}}}));
    return m;
}

void expect_report(const std::vector<table_report>& got,
                   const std::vector<std::pair<std::string, table_status>>& expected) {
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].table, expected[i].first);
        EXPECT_EQ(got[i].status, expected[i].second) << got[i].table;
    }
}

TEST(SchemaDb, CreateAllCreatesTablesAndIndexes) {
    connection c(":memory:");
    const auto m = two_tables();
    expect_report(m.create_all(c),
                  {{"authors", table_status::created}, {"books", table_status::created}});
    EXPECT_EQ(count_objects(c, "table", "authors"), 1);
    EXPECT_EQ(count_objects(c, "table", "books"), 1);
    EXPECT_EQ(count_objects(c, "index", "ix_books_author"), 1);
    EXPECT_FALSE(c.in_transaction());
}

TEST(SchemaDb, CreateAllIsIdempotent) {
    connection c(":memory:");
    const auto m = two_tables();
    m.create_all(c);
    c.execute("INSERT INTO authors(name) VALUES (?)", "kept");
    const int objects = c.scalar<int>("SELECT count(*) FROM sqlite_schema");
    expect_report(m.create_all(c), {{"authors", table_status::already_present},
                                    {"books", table_status::already_present}});
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema"), objects);
    EXPECT_EQ(c.scalar<std::string>("SELECT name FROM authors"), "kept");
}

TEST(SchemaDb, CreateAllAddsAMissingIndexToAnExistingTable) {
    connection c(":memory:");
    const auto m = two_tables();
    m.create_all(c);
    c.exec("DROP INDEX ix_books_author");
    expect_report(m.create_all(c), {{"authors", table_status::already_present},
                                    {"books", table_status::already_present}});
    EXPECT_EQ(count_objects(c, "index", "ix_books_author"), 1);
}

TEST(SchemaDb, DryRunChangesNothing) {
    connection c(":memory:");
    const auto m = two_tables();
    expect_report(m.create_all(c, {.dry_run = true}),
                  {{"authors", table_status::created}, {"books", table_status::created}});
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM sqlite_schema"), 0);
    c.exec(m.tables()[0].create_sql());
    expect_report(m.create_all(c, {.dry_run = true}),
                  {{"authors", table_status::already_present}, {"books", table_status::created}});
    EXPECT_EQ(count_objects(c, "table", "books"), 0);
}

TEST(SchemaDb, CreateAllIsOneTransaction) {
    connection c(":memory:");
    metadata m;
    m.add(table("good", {{.name = "x"}}));
    m.add(table("bad", {{.name = "x", .default_sql = "nonsense("}}));
    auto e = catch_error([&] { m.create_all(c); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::error);
    EXPECT_TRUE(contains(e->message(), "incomplete input"));
    EXPECT_TRUE(contains(e->sql(), "\"bad\""));
    // The first table was rolled back with the second.
    EXPECT_EQ(count_objects(c, "table", "good"), 0);
    EXPECT_FALSE(c.in_transaction());
}

// Inside a transaction the caller opened (a session's write(fn) or begin()),
// create_all joins it: the caller's COMMIT or ROLLBACK decides.
TEST(SchemaDb, CreateAllInsideATransactionJoinsIt) {
    connection c(":memory:");
    {
        auto tx = c.begin();
        expect_report(two_tables().create_all(c),
                      {{"authors", table_status::created}, {"books", table_status::created}});
        EXPECT_TRUE(c.in_transaction());
        tx.rollback();
    }
    EXPECT_EQ(count_objects(c, "table", "authors"), 0);
    {
        auto tx = c.begin();
        two_tables().create_all(c);
        tx.commit();
    }
    EXPECT_EQ(count_objects(c, "table", "authors"), 1);
    EXPECT_EQ(count_objects(c, "index", "ix_books_author"), 1);
}

// A failure inside the caller's transaction undoes create_all's own work
// (its savepoint) and leaves the caller's transaction open.
TEST(SchemaDb, AFailedCreateAllInsideATransactionUndoesOnlyItself) {
    connection c(":memory:");
    auto tx = c.begin();
    c.exec("CREATE TABLE kept (v INTEGER)");
    metadata bad;
    bad.add(table("fine", {{.name = "v", .type = column_type::integer}}));
    // An index named like an existing table: SQLite refuses it.
    bad.add(table("broken", {{.name = "v", .type = column_type::integer}},
                  {{.name = "kept", .columns = {"v"}}}));
    EXPECT_THROW(bad.create_all(c), asqlite::error);
    EXPECT_TRUE(c.in_transaction());
    EXPECT_EQ(count_objects(c, "table", "fine"), 0);
    EXPECT_EQ(count_objects(c, "table", "kept"), 1);
    tx.commit();
    EXPECT_EQ(count_objects(c, "table", "kept"), 1);
}

TEST(SchemaDb, DropAll) {
    connection c(":memory:");
    const auto m = two_tables();
    m.create_all(c);
    c.exec("DROP TABLE authors");
    // Reverse registration order; a table that was not there is reported absent.
    expect_report(m.drop_all(c),
                  {{"books", table_status::dropped}, {"authors", table_status::absent}});
    EXPECT_EQ(count_objects(c, "table", "books"), 0);
    EXPECT_EQ(count_objects(c, "index", "ix_books_author"), 0);
    expect_report(m.drop_all(c),
                  {{"books", table_status::absent}, {"authors", table_status::absent}});
    expect_report(m.create_all(c),
                  {{"authors", table_status::created}, {"books", table_status::created}});
}

TEST(SchemaDb, RenderedConstraintsAreEnforced) {
    connection c(":memory:");
    two_tables().create_all(c);
    c.execute("INSERT INTO authors(name) VALUES (?)", "ann");
    auto e = catch_error([&] { c.execute("INSERT INTO authors(name) VALUES (?)", "ann"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code(), errc::constraint_unique);
    EXPECT_TRUE(contains(e->message(), "UNIQUE constraint failed: authors.name"));
    EXPECT_TRUE(fails_with([&] { c.execute("INSERT INTO authors(name) VALUES (NULL)"); },
                           errc::constraint_notnull, {"NOT NULL constraint failed: authors.name"}));
    // AUTOINCREMENT really rendered: SQLite keeps a sqlite_sequence row.
    EXPECT_EQ(c.scalar<int>("SELECT seq FROM sqlite_sequence WHERE name = 'authors'"), 1);
    // DEFAULT applied.
    c.execute("INSERT INTO books(author_id) VALUES (1)");
    EXPECT_EQ(c.scalar<std::string>("SELECT title FROM books"), "untitled");
}

TEST(SchemaDb, CompositeKeyIsEnforced) {
    connection c(":memory:");
    const table t("pairs", {{.name = "a", .type = column_type::integer, .primary_key = true},
                            {.name = "b", .type = column_type::text, .primary_key = true}});
    c.exec(t.create_sql());
    c.execute("INSERT INTO pairs VALUES (1, 'x')");
    c.execute("INSERT INTO pairs VALUES (1, 'y')");
    EXPECT_TRUE(fails_with([&] { c.execute("INSERT INTO pairs VALUES (1, 'x')"); },
                           errc::constraint_primarykey, {"pairs.a, pairs.b"}));
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM pragma_table_info('pairs') WHERE pk > 0"), 2);
}

TEST(SchemaDb, OddIdentifiersWorkInRealSql) {
    connection c(":memory:");
    const table t("my \"odd\" table",
                  {{.name = "order", .type = column_type::integer},
                   {.name = "two words", .type = column_type::text}},
                  {{.name = "ix \"q\"", .columns = {"two words"}}});
    metadata m;
    m.add(t);
    expect_report(m.create_all(c), {{"my \"odd\" table", table_status::created}});
    c.execute(R"(INSERT INTO "my ""odd"" table"("order", "two words") VALUES (?, ?))", 1, "x");
    EXPECT_EQ(c.scalar<std::string>(R"(SELECT "two words" FROM "my ""odd"" table")"), "x");
    EXPECT_EQ(count_objects(c, "index", "ix \"q\""), 1);
    expect_report(m.drop_all(c), {{"my \"odd\" table", table_status::dropped}});
}

TEST(SchemaDb, DefaultCurrentTimestampIsAppliedAndParsed) {
    connection c(":memory:");
    c.exec(table("ev", {{.name = "id", .type = column_type::integer, .primary_key = true},
                        {.name = "at",
                         .type = column_type::datetime,
                         .not_null = true,
                         .default_sql = "CURRENT_TIMESTAMP"}})
               .create_sql());
    const auto before = floor<seconds>(system_clock::now());
    c.execute("INSERT INTO ev DEFAULT VALUES");
    const auto at = c.scalar<asqlite::timestamp>("SELECT at FROM ev");
    EXPECT_GE(at, before - 1s);
    EXPECT_LE(at, system_clock::now() + 1s);
}

class FileInfo : public asqlite::test::temp_dir_test {
  protected:
    void SetUp() override { asqlite::file_info_metadata().create_all(c); }

    std::int64_t insert(const std::string& file_id, const std::string& request_id,
                        const std::string& name) {
        return c
            .execute(
                "INSERT INTO fileinfo(file_id, filename, file_path, description, file_size, "
                "request_id) VALUES (?, ?, ?, ?, ?, ?)",
                file_id, name, "/files/" + name, std::nullopt, 12, request_id)
            .last_insert_id();
    }
    file_info by_file_id(const std::string& file_id) {
        return c.one<file_info>(
            fmt::format("SELECT {} FROM fileinfo WHERE file_id = ?", asqlite::file_info_columns),
            file_id);
    }

    connection c{db_path};
};

TEST_F(FileInfo, RoundTripWithDefaults) {
    const auto before = floor<seconds>(system_clock::now());
    const auto id = insert("md5-1", "req-1", "a.txt");
    const auto f = by_file_id("md5-1");
    EXPECT_EQ(f.id, id);
    EXPECT_EQ(f.file_id, "md5-1");
    EXPECT_EQ(f.filename, "a.txt");
    EXPECT_EQ(f.file_path, "/files/a.txt");
    EXPECT_EQ(f.description, std::nullopt);
    EXPECT_EQ(f.file_size, 12);
    EXPECT_EQ(f.status, 0);  // DEFAULT 0
    EXPECT_EQ(f.request_id, "req-1");
    EXPECT_GE(f.create_time, before - 1s);  // DEFAULT CURRENT_TIMESTAMP, parsed
    EXPECT_LE(f.create_time, system_clock::now() + 1s);
    // SELECT * maps the same way.
    const auto all = c.query<file_info>("SELECT * FROM fileinfo");
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].create_time, f.create_time);
}

TEST_F(FileInfo, UpdateLikeTheSeed) {
    const auto id = insert("md5-1", "req-1", "a.txt");
    c.execute("UPDATE fileinfo SET status = 1, file_size = ? WHERE id = ?", 99, id);
    const auto f = by_file_id("md5-1");
    EXPECT_EQ(f.status, 1);
    EXPECT_EQ(f.file_size, 99);
}

TEST_F(FileInfo, DuplicateFileIdIsAUniqueViolation) {
    insert("md5-1", "req-1", "a.txt");
    auto e = catch_error([&] { insert("md5-1", "req-2", "b.txt"); });
    ASSERT_TRUE(e);
    EXPECT_EQ(asqlite::primary_code(e->code()), errc::constraint);
    EXPECT_EQ(e->code(), errc::constraint_unique);
    EXPECT_TRUE(contains(e->message(), "UNIQUE constraint failed: fileinfo.file_id"));
    EXPECT_TRUE(contains(e->sql(), "INSERT INTO fileinfo"));
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM fileinfo"), 1);
}

TEST_F(FileInfo, NullFileIdsDoNotCollide) {
    c.execute("INSERT INTO fileinfo(filename, file_path) VALUES ('a', '/a')");
    c.execute("INSERT INTO fileinfo(filename, file_path) VALUES ('b', '/b')");
    EXPECT_EQ(c.scalar<int>("SELECT count(*) FROM fileinfo WHERE file_id IS NULL"), 2);
}

TEST_F(FileInfo, RequiredColumns) {
    EXPECT_TRUE(fails_with([&] { c.execute("INSERT INTO fileinfo(file_path) VALUES (?)", "/x"); },
                           errc::constraint_notnull, {"fileinfo.filename"}));
}

TEST_F(FileInfo, LookupsByRequestIdUseTheIndex) {
    insert("md5-1", "req-1", "a.txt");
    insert("md5-2", "req-1", "b.txt");
    insert("md5-3", "req-2", "c.txt");
    const auto files =
        c.query<file_info>(fmt::format("SELECT {} FROM fileinfo WHERE request_id = ? ORDER BY id",
                                       asqlite::file_info_columns),
                           "req-1");
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(files[1].filename, "b.txt");
    const auto plan =
        c.execute("EXPLAIN QUERY PLAN SELECT * FROM fileinfo WHERE request_id = ?", "req-1");
    ASSERT_FALSE(plan.empty());
    EXPECT_TRUE(contains(plan[0].get<std::string>("detail"), "ix_fileinfo_request_id"));
}

TEST_F(FileInfo, MissingRowIsNone) {
    EXPECT_EQ(c.one_or_none<file_info>(fmt::format("SELECT {} FROM fileinfo WHERE file_id = ?",
                                                   asqlite::file_info_columns),
                                       "absent"),
              std::nullopt);
}

class InitDb : public asqlite::test::temp_dir_test {
  protected:
    InitDb() {
        asqlite::logger::global().set_sink(
            [this](asqlite::log_level, std::string_view m) { lines.emplace_back(m); });
    }
    ~InitDb() override { asqlite::logger::global().set_sink({}); }

    asqlite::engine make_engine() {
        asqlite::engine_options o;
        o.path = db_path;
        return asqlite::create_engine(o);
    }
    std::vector<std::string> lines;
};

TEST_F(InitDb, CreatesFileInfoOnce) {
    const auto e = make_engine();
    expect_report(asqlite::init_db(e, asqlite::file_info_metadata()),
                  {{"fileinfo", table_status::created}});
    EXPECT_TRUE(std::filesystem::exists(db_path));
    ASSERT_FALSE(lines.empty());
    // Echo is on for the sync engine: the DDL went through the log ...
    bool saw_ddl = false;
    for (const auto& l : lines) {
        saw_ddl = saw_ddl || contains(l, "CREATE TABLE IF NOT EXISTS \"fileinfo\"");
    }
    EXPECT_TRUE(saw_ddl);
    // ... and init_db ends with one summary line.
    EXPECT_TRUE(contains(lines.back(), "init_db"));
    EXPECT_TRUE(contains(lines.back(), db_path));
    EXPECT_TRUE(contains(lines.back(), "fileinfo created"));

    expect_report(asqlite::init_db(e, asqlite::file_info_metadata()),
                  {{"fileinfo", table_status::already_present}});
    EXPECT_TRUE(contains(lines.back(), "fileinfo already present"));

    connection c(db_path);
    EXPECT_EQ(count_objects(c, "table", "fileinfo"), 1);
    EXPECT_EQ(count_objects(c, "index", "ix_fileinfo_request_id"), 1);
    EXPECT_EQ(c.journal_mode(), "wal");
}

TEST_F(InitDb, CustomMetadata) {
    const auto e = make_engine();
    const auto m = two_tables();
    expect_report(asqlite::init_db(e, m),
                  {{"authors", table_status::created}, {"books", table_status::created}});
    connection c(db_path);
    EXPECT_EQ(count_objects(c, "table", "fileinfo"), 0);
}

TEST_F(InitDb, MissingDirectory) {
    asqlite::engine_options o;
    o.path = dir.file("missing/x.db");
    const auto e = asqlite::create_engine(o);
    EXPECT_TRUE(
        fails_with([&] { asqlite::init_db(e); }, errc::directory_missing, {dir.file("missing")}));
    EXPECT_FALSE(std::filesystem::exists(dir.file("missing")));
}

}  // namespace
