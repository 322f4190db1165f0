#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "asqlite/file_info.hpp"
#include "asqlite/schema.hpp"
#include "support/check.hpp"

namespace {

using asqlite::column_def;
using asqlite::column_type;
using asqlite::errc;
using asqlite::index_def;
using asqlite::table;
using asqlite::test::contains;
using asqlite::test::fails_with;

TEST(Schema, TypeNames) {
    EXPECT_EQ(asqlite::to_sql(column_type::integer), "INTEGER");
    EXPECT_EQ(asqlite::to_sql(column_type::real), "REAL");
    EXPECT_EQ(asqlite::to_sql(column_type::text), "TEXT");
    EXPECT_EQ(asqlite::to_sql(column_type::varchar), "VARCHAR");
    EXPECT_EQ(asqlite::to_sql(column_type::blob), "BLOB");
    EXPECT_EQ(asqlite::to_sql(column_type::boolean), "BOOLEAN");
    EXPECT_EQ(asqlite::to_sql(column_type::datetime), "DATETIME");
    EXPECT_EQ(asqlite::to_sql(column_type::numeric), "NUMERIC");
}

TEST(Schema, RendersEveryColumnClause) {
    const table t(
        "items",
        {
            {.name = "id",
             .type = column_type::integer,
             .primary_key = true,
             .autoincrement = true},
            {.name = "name", .type = column_type::varchar, .not_null = true, .unique = true},
            {.name = "price", .type = column_type::real, .default_sql = "0.5"},
            {.name = "label",
             .type = column_type::text,
             .default_sql = asqlite::sql_literal("it's")},
            {.name = "data", .type = column_type::blob},
            {.name = "created",
             .type = column_type::datetime,
             .not_null = true,
             .default_sql = "CURRENT_TIMESTAMP"},
        });
    EXPECT_EQ(t.create_sql(),
              "CREATE TABLE IF NOT EXISTS \"items\" (\n"
              "    \"id\" INTEGER PRIMARY KEY AUTOINCREMENT,\n"
              "    \"name\" VARCHAR NOT NULL UNIQUE,\n"
              "    \"price\" REAL DEFAULT (0.5),\n"
              "    \"label\" TEXT DEFAULT ('it''s'),\n"
              "    \"data\" BLOB,\n"
              "    \"created\" DATETIME NOT NULL DEFAULT (CURRENT_TIMESTAMP)\n"
              ")");
    EXPECT_TRUE(t.create_index_sql().empty());
    EXPECT_EQ(t.drop_sql(), "DROP TABLE IF EXISTS \"items\"");
}

TEST(Schema, SinglePrimaryKeyWithoutAutoincrement) {
    const table t("t", {{.name = "id", .type = column_type::integer, .primary_key = true}});
    EXPECT_EQ(t.create_sql(),
              "CREATE TABLE IF NOT EXISTS \"t\" (\n    \"id\" INTEGER PRIMARY KEY\n)");
}

TEST(Schema, CompositeKeyBecomesATableConstraint) {
    const table t("pairs", {
                               {.name = "a", .type = column_type::integer, .primary_key = true},
                               {.name = "b", .type = column_type::text, .primary_key = true},
                               {.name = "v", .type = column_type::numeric},
                           });
    EXPECT_EQ(t.create_sql(),
              "CREATE TABLE IF NOT EXISTS \"pairs\" (\n"
              "    \"a\" INTEGER,\n"
              "    \"b\" TEXT,\n"
              "    \"v\" NUMERIC,\n"
              "    PRIMARY KEY (\"a\", \"b\")\n"
              ")");
}

TEST(Schema, RendersIndexes) {
    const table t(
        "t",
        {{.name = "a", .type = column_type::integer}, {.name = "b", .type = column_type::text}},
        {{.name = "ix_t_a", .columns = {"a"}},
         {.name = "ux_t_ab", .columns = {"a", "b"}, .unique = true}});
    const std::vector<std::string> expected = {
        "CREATE INDEX IF NOT EXISTS \"ix_t_a\" ON \"t\" (\"a\")",
        "CREATE UNIQUE INDEX IF NOT EXISTS \"ux_t_ab\" ON \"t\" (\"a\", \"b\")",
    };
    EXPECT_EQ(t.create_index_sql(), expected);
}

TEST(Schema, QuotesOddIdentifiers) {
    EXPECT_EQ(asqlite::quote_identifier("plain"), "\"plain\"");
    EXPECT_EQ(asqlite::quote_identifier("we\"ird"), "\"we\"\"ird\"");
    EXPECT_EQ(asqlite::quote_identifier("select"), "\"select\"");
    EXPECT_EQ(asqlite::sql_literal("it's"), "'it''s'");
    EXPECT_EQ(asqlite::sql_literal(""), "''");

    const table t("my \"odd\" table",
                  {{.name = "order", .type = column_type::integer},
                   {.name = "two words", .type = column_type::text}},
                  {{.name = "ix \"q\"", .columns = {"two words"}}});
    EXPECT_EQ(t.create_sql(),
              "CREATE TABLE IF NOT EXISTS \"my \"\"odd\"\" table\" (\n"
              "    \"order\" INTEGER,\n"
              "    \"two words\" TEXT\n"
              ")");
    EXPECT_EQ(t.create_index_sql().at(0),
              "CREATE INDEX IF NOT EXISTS \"ix \"\"q\"\"\" ON \"my \"\"odd\"\" table\" "
              "(\"two words\")");
    EXPECT_EQ(t.drop_sql(), "DROP TABLE IF EXISTS \"my \"\"odd\"\" table\"");
}

TEST(Schema, RejectsEmptyTableName) {
    EXPECT_TRUE(fails_with([] { table("", {{.name = "a"}}); }, errc::invalid_option,
                           {"table name is empty"}));
}

TEST(Schema, RejectsTableWithoutColumns) {
    EXPECT_TRUE(fails_with([] { table("t", {}); }, errc::invalid_option, {"'t'", "no columns"}));
}

TEST(Schema, RejectsUnnamedColumn) {
    EXPECT_TRUE(fails_with([] { table("t", {{.name = ""}}); }, errc::invalid_option,
                           {"'t'", "unnamed column"}));
}

TEST(Schema, RejectsDuplicateColumn) {
    EXPECT_TRUE(fails_with(
        [] {
            table("t", {{.name = "a"}, {.name = "b"}, {.name = "a"}});
        },
        errc::invalid_option, {"'t'", "'a'", "twice"}));
}

TEST(Schema, RejectsAutoincrementOutsideAnIntegerKey) {
    EXPECT_TRUE(fails_with(
        [] { table("t", {{.name = "id", .type = column_type::integer, .autoincrement = true}}); },
        errc::invalid_option, {"t.id", "autoincrement"}));
    EXPECT_TRUE(fails_with(
        [] {
            table("t", {{.name = "id",
                         .type = column_type::text,
                         .primary_key = true,
                         .autoincrement = true}});
        },
        errc::invalid_option, {"t.id", "INTEGER primary key"}));
}

TEST(Schema, RejectsAutoincrementInACompositeKey) {
    // SQLite allows AUTOINCREMENT only on a single-column INTEGER PRIMARY KEY;
    // rendering the composite key would silently drop it.
    EXPECT_TRUE(fails_with(
        [] {
            table("t", {{.name = "id",
                         .type = column_type::integer,
                         .primary_key = true,
                         .autoincrement = true},
                        {.name = "k", .type = column_type::text, .primary_key = true}});
        },
        errc::invalid_option, {"t.id", "autoincrement"}));
}

TEST(Schema, RejectsBadIndexes) {
    EXPECT_TRUE(fails_with([] { table("t", {{.name = "a"}}, {{.name = "", .columns = {"a"}}}); },
                           errc::invalid_option, {"'t'", "index without a name"}));
    EXPECT_TRUE(fails_with([] { table("t", {{.name = "a"}}, {{.name = "ix", .columns = {}}}); },
                           errc::invalid_option, {"'t'", "columns"}));
    EXPECT_TRUE(fails_with(
        [] {
            table("t", {{.name = "a"}}, {{.name = "ix_b", .columns = {"a", "b"}}});
        },
        errc::column_not_found, {"'ix_b'", "'b'", "'t'"}));
}

TEST(Schema, MetadataRegistry) {
    asqlite::metadata m;
    EXPECT_TRUE(m.tables().empty());
    m.add(table("a", {{.name = "x"}}));
    m.add(table("b", {{.name = "y"}}));
    ASSERT_EQ(m.tables().size(), 2u);
    EXPECT_EQ(m.tables()[0].name(), "a");
    ASSERT_NE(m.find("b"), nullptr);
    EXPECT_EQ(m.find("b")->columns().at(0).name, "y");
    EXPECT_EQ(m.find("c"), nullptr);
    EXPECT_TRUE(fails_with([&] { m.add(table("a", {{.name = "z"}})); }, errc::invalid_option,
                           {"'a'", "already registered"}));
    EXPECT_EQ(m.tables().size(), 2u);
    EXPECT_EQ(m.find("a")->columns().at(0).name, "x");
}

TEST(Schema, StatusNames) {
    EXPECT_EQ(asqlite::to_string(asqlite::table_status::created), "created");
    EXPECT_EQ(asqlite::to_string(asqlite::table_status::already_present), "already present");
    EXPECT_EQ(asqlite::to_string(asqlite::table_status::dropped), "dropped");
    EXPECT_EQ(asqlite::to_string(asqlite::table_status::absent), "absent");
}

TEST(Schema, FileInfoTableMatchesTheSeed) {
    const table& t = asqlite::file_info_table();
    EXPECT_EQ(t.name(), "fileinfo");
    EXPECT_EQ(t.create_sql(),
              "CREATE TABLE IF NOT EXISTS \"fileinfo\" (\n"
              "    \"id\" INTEGER PRIMARY KEY,\n"
              "    \"file_id\" VARCHAR UNIQUE,\n"
              "    \"filename\" VARCHAR NOT NULL,\n"
              "    \"file_path\" VARCHAR NOT NULL,\n"
              "    \"description\" VARCHAR,\n"
              "    \"file_size\" INTEGER,\n"
              "    \"status\" INTEGER NOT NULL DEFAULT (0),\n"
              "    \"request_id\" VARCHAR,\n"
              "    \"create_time\" DATETIME NOT NULL DEFAULT (CURRENT_TIMESTAMP)\n"
              ")");
    ASSERT_EQ(t.create_index_sql().size(), 1u);
    EXPECT_EQ(t.create_index_sql()[0],
              "CREATE INDEX IF NOT EXISTS \"ix_fileinfo_request_id\" ON \"fileinfo\" "
              "(\"request_id\")");
    // The column list used by SELECTs names every column, in order.
    std::string names;
    for (const auto& c : t.columns()) {
        names += (names.empty() ? "" : ", ") + c.name;
    }
    EXPECT_EQ(names, asqlite::file_info_columns);
}

// The seed's table has a metadata of its own; the global registry is the
// application's, so init_db(engine) never creates fileinfo in a user's
// database.
TEST(Schema, FileInfoHasItsOwnMetadataAndIsNotInTheGlobalOne) {
    EXPECT_EQ(asqlite::metadata::global().find("fileinfo"), nullptr);
    ASSERT_EQ(asqlite::file_info_metadata().tables().size(), 1U);
    const auto* t = asqlite::file_info_metadata().find("fileinfo");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->create_sql(), asqlite::file_info_table().create_sql());
    EXPECT_TRUE(contains(t->create_sql(), "\"file_id\" VARCHAR UNIQUE"));
}

}  // namespace
