// The SQL word reader (src/sql_text.cpp). Two disagreements with SQLite
// found by fuzzing (test/fuzz/fuzz_sql_reader.cpp; inputs in
// test/fuzz/regressions/fuzz_sql_reader/):
// - the name of ROLLBACK TRANSACTION <name> TO <savepoint> was read as a word
//   of letters, digits and '_' only, so a quoted name or one with '$' or
//   non-ASCII letters hid the TO, and the savepoint rollback (which keeps the
//   transaction) was taken for a ROLLBACK of the whole transaction;
// - SQLite skips empty statements (';') before the statement it compiles,
//   the reader did not: ";COMMIT" was not a COMMIT to it;
// - SQLite reads the text up to its first NUL byte, the reader read on: in
//   "ROLLBACK --\0\n TO sp" it saw a ROLLBACK TO, SQLite runs a ROLLBACK.

#include <gtest/gtest.h>

#include <string_view>

#include "sql_text.hpp"

namespace {

using asqlite::detail::sql_end;
using asqlite::detail::sql_end_of;
using asqlite::detail::sql_kind;
using asqlite::detail::sql_kind_of;

TEST(SqlText, AStatementsKindComesFromItsFirstWords) {
    EXPECT_EQ(sql_kind_of("SELECT 1"), sql_kind::query);
    EXPECT_EQ(sql_kind_of(" /* c */ select x FROM t"), sql_kind::query);
    EXPECT_EQ(sql_kind_of("SELECT"), sql_kind::other);  // nothing to run: SQLite says
    for (const char* sql :
         {"INSERT INTO t VALUES (1)", "update t SET x = 1", "-- c\nDELETE FROM t",
          "REPLACE INTO t VALUES (1)", "CREATE TABLE t (x)", "DROP TABLE t", "ALTER TABLE t ADD y",
          "BEGIN IMMEDIATE", "begin exclusive transaction", ";INSERT"}) {
        EXPECT_EQ(sql_kind_of(sql), sql_kind::write) << sql;
    }
    for (const char* sql :
         {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "PRAGMA user_version = 3",
          "PRAGMA user_version", "BEGIN", "BEGIN DEFERRED", "SAVEPOINT s", "COMMIT", "VALUES (1)",
          "INSERTED", "SELECTION", "", "EXPLAIN INSERT INTO t VALUES (1)"}) {
        EXPECT_EQ(sql_kind_of(sql), sql_kind::other) << sql;
    }
}

TEST(SqlText, RollbackToAfterATransactionNameOfAnyForm) {
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION \xff TO sp"), sql_end::none);  // the fuzzer's input
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION \xc3\xa9t\xc3\xa9 TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION t$x TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION 'x' TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION 'it''s' TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION \"a\"\"b\" TO SAVEPOINT sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION `q` TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION [a b] TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION /* c */ \"TO\" -- c\n TO sp"), sql_end::none);
}

TEST(SqlText, RollbackOfAQuotedTransactionNameIsStillARollback) {
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION \"TO\""), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION 'x'"), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION [x];"), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION \xc3\xa9"), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION t TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of("ROLLBACK TRANSACTION t"), sql_end::rollback);
}

TEST(SqlText, EmptyStatementsBeforeTheFirstWordAreSkipped) {
    EXPECT_EQ(sql_end_of(";END"), sql_end::commit);  // the fuzzer's input
    EXPECT_EQ(sql_end_of(" ; ;-- c\n; COMMIT"), sql_end::commit);
    EXPECT_EQ(sql_end_of(";/* c */;ROLLBACK"), sql_end::rollback);
    EXPECT_EQ(sql_end_of(";ROLLBACK TO sp"), sql_end::none);
    EXPECT_EQ(sql_end_of(";"), sql_end::none);
    EXPECT_TRUE((asqlite::detail::sql_kind_of(";SELECT 1") == asqlite::detail::sql_kind::query));
    EXPECT_FALSE((asqlite::detail::sql_kind_of(";SELECT") == asqlite::detail::sql_kind::query));
    EXPECT_FALSE((asqlite::detail::sql_kind_of("; ;") == asqlite::detail::sql_kind::query));
}

TEST(SqlText, TheTextEndsAtTheFirstNul) {
    using namespace std::string_view_literals;
    // The fuzzer's input, minimised: the comment ends at the NUL for SQLite.
    EXPECT_EQ(sql_end_of("ROLLBACK --\0\n TO sp"sv), sql_end::rollback);
    EXPECT_EQ(sql_end_of("ROLLBACK\0 TO sp"sv), sql_end::rollback);
    EXPECT_EQ(sql_end_of("/* c \0 */ COMMIT"sv), sql_end::none);
    EXPECT_EQ(sql_end_of("COMMIT\0"sv), sql_end::commit);
    EXPECT_FALSE(
        (asqlite::detail::sql_kind_of("SELECT\0 1"sv) == asqlite::detail::sql_kind::query));
    EXPECT_TRUE((asqlite::detail::sql_kind_of("SELECT 1\0"sv) == asqlite::detail::sql_kind::query));
}

}  // namespace
