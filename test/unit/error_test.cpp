#include <gtest/gtest.h>
#include <sqlite3.h>

#include <stdexcept>
#include <string>

#include "asqlite/error.hpp"
#include "support/check.hpp"

namespace {

using asqlite::errc;
using asqlite::make_error_code;
using asqlite::primary_code;
using asqlite::test::contains;

TEST(Error, CategoryName) {
    EXPECT_STREQ(asqlite::category().name(), "asqlite");
    EXPECT_EQ(make_error_code(errc::busy).category(), asqlite::category());
}

TEST(Error, SqliteCodesUseSqlitesOwnText) {
    EXPECT_EQ(make_error_code(errc::busy).message(), sqlite3_errstr(SQLITE_BUSY));
    EXPECT_EQ(make_error_code(errc::notadb).message(), "file is not a database");
    EXPECT_EQ(make_error_code(errc::readonly).message(), "attempt to write a readonly database");
}

// sqlite3_errstr() says "constraint failed" for every constraint kind; the
// category's message names the extended code.
TEST(Error, ExtendedCodesAreNamedInTheMessage) {
    EXPECT_EQ(make_error_code(errc::constraint_unique).message(), "UNIQUE constraint failed");
    EXPECT_EQ(make_error_code(errc::constraint_notnull).message(), "NOT NULL constraint failed");
    EXPECT_EQ(make_error_code(errc::constraint_primarykey).message(),
              "PRIMARY KEY constraint failed");
    EXPECT_EQ(make_error_code(errc::constraint_foreignkey).message(),
              "FOREIGN KEY constraint failed");
    EXPECT_EQ(make_error_code(errc::constraint_check).message(), "CHECK constraint failed");
    EXPECT_EQ(std::error_code(SQLITE_IOERR_FSYNC, asqlite::category()).message(),
              std::string(sqlite3_errstr(SQLITE_IOERR)) + " (SQLITE_IOERR_FSYNC)");
    EXPECT_EQ(make_error_code(errc::readonly_dbmoved).message(),
              std::string(sqlite3_errstr(SQLITE_READONLY)) + " (SQLITE_READONLY_DBMOVED)");
    EXPECT_EQ(make_error_code(errc::constraint).message(), sqlite3_errstr(SQLITE_CONSTRAINT));
}

TEST(Error, ExtendedCodesKeepSqliteValues) {
    EXPECT_EQ(static_cast<int>(errc::constraint_unique), SQLITE_CONSTRAINT_UNIQUE);
    EXPECT_EQ(static_cast<int>(errc::constraint_notnull), SQLITE_CONSTRAINT_NOTNULL);
    EXPECT_EQ(static_cast<int>(errc::constraint_primarykey), SQLITE_CONSTRAINT_PRIMARYKEY);
    EXPECT_EQ(static_cast<int>(errc::constraint_foreignkey), SQLITE_CONSTRAINT_FOREIGNKEY);
    EXPECT_EQ(static_cast<int>(errc::constraint_check), SQLITE_CONSTRAINT_CHECK);
    EXPECT_EQ(static_cast<int>(errc::notadb), SQLITE_NOTADB);
    EXPECT_EQ(static_cast<int>(errc::readonly), SQLITE_READONLY);
    EXPECT_EQ(static_cast<int>(errc::misuse), SQLITE_MISUSE);
}

TEST(Error, LibraryCodesHaveTheirOwnMessages) {
    EXPECT_TRUE(contains(make_error_code(errc::null_value).message(), "NULL"));
    EXPECT_TRUE(contains(make_error_code(errc::pool_timeout).message(), "timed out"));
    EXPECT_TRUE(contains(make_error_code(errc::unknown_parameter).message(), "parameter"));
    EXPECT_TRUE(contains(make_error_code(errc::bad_timestamp).message(), "timestamp"));
    EXPECT_TRUE(contains(make_error_code(errc::invalid_url).message(), "URL"));
    EXPECT_TRUE(contains(make_error_code(errc::directory_missing).message(), "directory"));
    // Every library code has a message of its own, never the fallback.
    for (int v = static_cast<int>(errc::library_base) + 1;
         v <= static_cast<int>(errc::transaction_state); ++v) {
        EXPECT_NE(asqlite::category().message(v), "unknown asqlite error") << v;
    }
}

TEST(Error, PrimaryCodeStripsTheExtendedPart) {
    EXPECT_EQ(primary_code(make_error_code(errc::constraint_unique)), errc::constraint);
    EXPECT_EQ(primary_code(make_error_code(errc::constraint_notnull)), errc::constraint);
    EXPECT_EQ(primary_code(std::error_code(SQLITE_READONLY_DBMOVED, asqlite::category())),
              errc::readonly);
    EXPECT_EQ(primary_code(std::error_code(SQLITE_IOERR_WRITE, asqlite::category())), errc::ioerr);
    EXPECT_EQ(primary_code(make_error_code(errc::busy)), errc::busy);
    // Library codes are not SQLite codes: they come back unchanged.
    EXPECT_EQ(primary_code(make_error_code(errc::null_value)), errc::null_value);
    EXPECT_EQ(primary_code(make_error_code(errc::pool_timeout)), errc::pool_timeout);
}

// A primary errc matches every extended code of it; an extended errc, and
// asqlite's own values, match exactly.
TEST(Error, ErrcComparesWithErrorCode) {
    const std::error_code ec = errc::constraint_unique;
    EXPECT_EQ(ec, errc::constraint_unique);
    EXPECT_EQ(ec, errc::constraint);
    EXPECT_TRUE(errc::constraint == ec);
    EXPECT_NE(ec, errc::constraint_notnull);
    EXPECT_NE(ec, errc::busy);
    EXPECT_NE(ec, make_error_code(errc::constraint)) << "error_code to error_code is exact";
    for (const errc kind :
         {errc::constraint_check, errc::constraint_foreignkey, errc::constraint_notnull,
          errc::constraint_primarykey, errc::constraint_unique}) {
        EXPECT_EQ(make_error_code(kind), errc::constraint) << static_cast<int>(kind);
        EXPECT_EQ(make_error_code(kind),
                  std::error_condition(static_cast<int>(errc::constraint), asqlite::category()));
    }
    // The primary code itself still matches only itself among extended ones.
    EXPECT_EQ(make_error_code(errc::constraint), errc::constraint);
    EXPECT_NE(make_error_code(errc::constraint), errc::constraint_unique);
    EXPECT_EQ(make_error_code(errc::readonly_dbmoved), errc::readonly);
    // asqlite's own values: exact, never by their low byte.
    EXPECT_EQ(make_error_code(errc::pool_timeout), errc::pool_timeout);
    EXPECT_NE(make_error_code(errc::pool_timeout), errc::pool_closed);
    EXPECT_NE(make_error_code(errc::pool_timeout),
              static_cast<errc>(static_cast<int>(errc::pool_timeout) & 0xff));
    // Another category never matches.
    EXPECT_NE(std::make_error_code(std::errc::io_error), errc::constraint);
    EXPECT_FALSE(std::error_code(errc::ok));
}

TEST(Error, ExceptionCarriesCodeMessageAndSql) {
    const asqlite::error e(make_error_code(errc::constraint_unique),
                           "UNIQUE constraint failed: t.x", "INSERT INTO t VALUES (1)");
    EXPECT_EQ(e.code(), errc::constraint_unique);
    EXPECT_EQ(e.message(), "UNIQUE constraint failed: t.x");
    EXPECT_EQ(e.sql(), "INSERT INTO t VALUES (1)");
    const std::string what = e.what();
    EXPECT_TRUE(contains(what, "UNIQUE constraint failed: t.x"));
    EXPECT_TRUE(contains(what, "[sqlite 2067]"));
    EXPECT_TRUE(contains(what, "(SQL: INSERT INTO t VALUES (1))"));
}

TEST(Error, EmptyMessageFallsBackToTheCodesText) {
    const asqlite::error e(make_error_code(errc::no_rows), "");
    EXPECT_EQ(e.message(), make_error_code(errc::no_rows).message());
    EXPECT_TRUE(e.sql().empty());
    EXPECT_FALSE(contains(e.what(), "[sqlite"));
    EXPECT_FALSE(contains(e.what(), "SQL:"));
}

TEST(Error, ThrowErrorThrowsTheExceptionType) {
    try {
        asqlite::throw_error(errc::invalid_option, "pool_size must be at least 1", "x");
        FAIL() << "throw_error returned";
    } catch (const asqlite::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_option);
        EXPECT_EQ(e.message(), "pool_size must be at least 1");
        EXPECT_EQ(e.sql(), "x");
    }
}

TEST(Error, ErrorCodeOfExceptionPtr) {
    EXPECT_FALSE(asqlite::error_code_of(nullptr));
    auto from = [](auto ex) { return asqlite::error_code_of(std::make_exception_ptr(ex)); };
    EXPECT_EQ(from(asqlite::error(make_error_code(errc::busy), "busy")), errc::busy);
    EXPECT_EQ(from(std::system_error(std::make_error_code(std::errc::timed_out))),
              std::make_error_code(std::errc::timed_out));
    EXPECT_EQ(from(std::runtime_error("x")), errc::internal);
    EXPECT_EQ(from(42), errc::internal);
}

}  // namespace
