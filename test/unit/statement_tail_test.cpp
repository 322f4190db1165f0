// asqlite::statement's one-statement rule agrees with SQLite's own reading of
// the text after the statement. Found by fuzzing (test/fuzz/fuzz_sql_reader.cpp;
// input in test/fuzz/regressions/fuzz_sql_reader/vertical-tab-after-semicolons):
// the tail was compiled from its first byte other than blanks and ';', and
// SQLite refuses there a vertical tab that it skips after "; \n;", so a text
// that sqlite3_exec() runs as one statement was refused as several.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <string_view>

#include "asqlite/error.hpp"
#include "asqlite/statement.hpp"

namespace {

struct close_db {
    void operator()(sqlite3* db) const { sqlite3_close(db); }
};

std::unique_ptr<sqlite3, close_db> memory_db() {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    return std::unique_ptr<sqlite3, close_db>(db);
}

/// Statements sqlite3_exec() runs for sql (-1: an error).
int exec_count(sqlite3* db, std::string_view sql) {
    int count = 0;
    const char* at = sql.data();
    const char* end = sql.data() + sql.size();
    while (at < end) {
        sqlite3_stmt* stmt = nullptr;
        const char* tail = nullptr;
        if (sqlite3_prepare_v2(db, at, static_cast<int>(end - at), &stmt, &tail) != SQLITE_OK) {
            return -1;
        }
        if (stmt == nullptr) {
            break;
        }
        sqlite3_finalize(stmt);
        ++count;
        at = tail;
    }
    return count;
}

TEST(StatementTail, WhatSqliteSkipsAfterTheStatementIsAccepted) {
    auto db = memory_db();
    constexpr std::string_view sql("SELECT 1; \n; \n\v");  // the fuzzer's input, minimised
    ASSERT_EQ(exec_count(db.get(), sql), 1);
    EXPECT_NO_THROW(asqlite::statement(db.get(), sql));
}

TEST(StatementTail, WhatSqliteRefusesAfterTheStatementIsRefused) {
    auto db = memory_db();
    for (std::string_view sql : {"SELECT 1;\v", "SELECT 1; SELECT 2", "SELECT 1; x"}) {
        EXPECT_NE(exec_count(db.get(), sql), 1) << sql;
        EXPECT_THROW(asqlite::statement(db.get(), sql), asqlite::error) << sql;
    }
    for (std::string_view sql : {"SELECT 1;", "SELECT 1; -- c", "SELECT 1 /* c */ ;;\n"}) {
        EXPECT_NO_THROW(asqlite::statement(db.get(), sql)) << sql;
    }
}

}  // namespace
