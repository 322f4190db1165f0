// fuzz_sql_reader: the SQL word reader (src/sql_text.cpp: sql_kind_of,
// sql_end_of) and asqlite::statement's one-statement rule, against SQLite.
//
// The input is SQL text. Properties:
// 1. asqlite::statement accepts the text iff SQLite compiles exactly one
//    statement from it (sqlite3_prepare_v2 from each tail on: one statement,
//    no error; SQLite reads nothing after a NUL byte). Sessions run only such
//    texts, so 2 and 3 are checked on them.
// 2. sql_end_of() says what SQLite compiles: `commit` iff its authorizer
//    sees SQLITE_TRANSACTION "COMMIT" (COMMIT, END), `rollback` iff it sees
//    SQLITE_TRANSACTION "ROLLBACK" (ROLLBACK; ROLLBACK TO is SQLITE_SAVEPOINT
//    and keeps the transaction), `none` otherwise (an EXPLAIN runs nothing).
//    And run inside an open transaction
//    (with savepoints sp, a, x, "TO"), a transaction-control statement that
//    succeeds leaves it committed, rolled back or open, as sql_end_of() says.
// 3. sql_kind_of() == query is true only for statements that change nothing:
//    sqlite3_stmt_readonly() holds, and running the statement changes
//    neither the database (sqlite3_total_changes) nor the connection's
//    transaction state (sqlite3_get_autocommit). It may say false for a
//    query (a missed chance to share a read transaction, not an error).
// A broken property aborts with the input and both answers.

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "asqlite/error.hpp"
#include "asqlite/statement.hpp"
#include "sql_text.hpp"

namespace {

using asqlite::detail::sql_end;

[[noreturn]] void fail(std::string_view sql, const char* what, const char* detail) {
    std::fprintf(stderr, "fuzz_sql_reader: %s (%s)\nSQL (%zu bytes): %.*s\n", what, detail,
                 sql.size(), static_cast<int>(sql.size()), sql.data());
    std::abort();
}

const char* name(sql_end e) {
    switch (e) {
        case sql_end::none:
            return "none";
        case sql_end::commit:
            return "commit";
        case sql_end::rollback:
            return "rollback";
    }
    return "?";
}

void exec(sqlite3* db, const char* sql) {
    char* message = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
        std::fprintf(stderr, "fuzz_sql_reader: setup failed: %s: %s\n", sql, message);
        std::abort();
    }
}

// Bounds what a statement may cost: a recursive CTE or a huge blob ends
// with an error instead of a timeout or an out-of-memory report.
int progress(void* steps) {
    return ++*static_cast<int*>(steps) > 2000 ? 1 : 0;  // x 100 VM instructions
}

sqlite3* open_db() {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
        std::abort();
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 100000);
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);  // no ATTACH: nothing outside memory
    exec(db,
         "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);"
         "CREATE TABLE u(x, y UNIQUE);"
         "CREATE INDEX t_b ON t(b);"
         "CREATE VIEW v AS SELECT a, b FROM t;"
         "INSERT INTO t(b) VALUES ('one'), ('two');"
         "INSERT INTO u VALUES (1, 2);");
    return db;
}

/// How many statements SQLite compiles from sql (stops at the first error).
int statements_in(sqlite3* db, std::string_view sql, bool& error) {
    const char* at = sql.data();
    const char* const end = sql.data() + sql.size();
    int count = 0;
    while (at < end) {
        sqlite3_stmt* stmt = nullptr;
        const char* tail = nullptr;
        if (sqlite3_prepare_v2(db, at, static_cast<int>(end - at), &stmt, &tail) != SQLITE_OK) {
            error = true;
            return count;
        }
        if (stmt == nullptr) {
            break;  // blanks and comments, or a NUL byte: SQLite reads no further
        }
        sqlite3_finalize(stmt);
        ++count;
        if (tail == nullptr || tail <= at) {
            break;
        }
        at = tail;
    }
    return count;
}

/// What compiling a statement told SQLite's authorizer about transactions.
struct program_facts {
    sql_end end = sql_end::none;
    bool savepoint = false;  // SAVEPOINT, RELEASE or ROLLBACK TO
};

int authorize(void* out, int action, const char* arg1, const char*, const char*, const char*) {
    auto& facts = *static_cast<program_facts*>(out);
    if (action == SQLITE_TRANSACTION && arg1 != nullptr) {
        const std::string_view what(arg1);  // BEGIN, COMMIT (also END) or ROLLBACK
        facts.end = what == "COMMIT"     ? sql_end::commit
                    : what == "ROLLBACK" ? sql_end::rollback
                                         : facts.end;
    } else if (action == SQLITE_SAVEPOINT) {
        facts.savepoint = true;
    }
    return SQLITE_OK;
}

int probe_rows(sqlite3* db) {
    sqlite3_stmt* count = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE b = 'probe'", -1, &count, nullptr);
    sqlite3_step(count);
    const int n = sqlite3_column_int(count, 0);
    sqlite3_finalize(count);
    return n;
}

/// Steps stmt for at most 100 rows and a bounded number of VM steps (see
/// progress), resets it, and returns the last step's result.
int step_bounded(sqlite3* db, sqlite3_stmt* stmt) {
    int steps = 0;
    sqlite3_progress_handler(db, 100, progress, &steps);
    int rc = SQLITE_ROW;
    for (int rows = 0; rc == SQLITE_ROW && rows < 100; ++rows) {
        rc = sqlite3_step(stmt);
    }
    sqlite3_progress_handler(db, 0, nullptr, nullptr);
    sqlite3_reset(stmt);
    return rc;
}

/// Property 2 at run time: stmt inside an open transaction holding a probe row.
void run_in_transaction(sqlite3* db, sqlite3_stmt* stmt, std::string_view sql, sql_end said) {
    exec(db,
         "BEGIN; INSERT INTO t(b) VALUES ('probe'); "
         "SAVEPOINT sp; SAVEPOINT a; SAVEPOINT x; SAVEPOINT \"TO\";");
    const int rc = step_bounded(db, stmt);
    if (rc == SQLITE_DONE) {
        const bool open = sqlite3_get_autocommit(db) == 0;
        const int probe = probe_rows(db);
        const sql_end did = open ? sql_end::none : probe == 1 ? sql_end::commit : sql_end::rollback;
        if (did != said) {
            fail(sql, "sql_end_of() disagrees with what the statement did", name(did));
        }
    }
    if (sqlite3_get_autocommit(db) == 0) {
        exec(db, "ROLLBACK");
    }
    exec(db, "DELETE FROM t WHERE b = 'probe'");
}

/// Property 3 at run time.
void run_query(sqlite3* db, sqlite3_stmt* stmt, std::string_view sql) {
    const int changes = sqlite3_total_changes(db);
    step_bounded(db, stmt);
    if (sqlite3_total_changes(db) != changes) {
        fail(sql, "sql_kind_of() == query is true, but the statement changed the database", "");
    }
    if (sqlite3_get_autocommit(db) == 0) {
        fail(sql, "sql_kind_of() == query is true, but the statement began a transaction", "");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static sqlite3* const db = open_db();
    const std::string_view sql(reinterpret_cast<const char*>(data), size);
    const sql_end said = asqlite::detail::sql_end_of(sql);
    const bool select = (asqlite::detail::sql_kind_of(sql) == asqlite::detail::sql_kind::query);

    // 1. The one-statement rule.
    bool error = false;
    const bool one = statements_in(db, sql, error) == 1 && !error;
    bool accepted = false;
    try {
        const asqlite::statement st(db, sql);
        accepted = st.native_handle() != nullptr;
    } catch (const asqlite::error&) {
        accepted = false;
    }
    if (accepted != one) {
        fail(sql, "asqlite::statement and SQLite disagree on one statement",
             accepted ? "accepted" : "refused");
    }
    if (!one) {
        return 0;
    }

    // 2. sql_end_of(), from what SQLite's authorizer sees it compile, then
    // by running it.
    program_facts facts;
    sqlite3_stmt* stmt = nullptr;
    sqlite3_set_authorizer(db, authorize, &facts);
    const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    sqlite3_set_authorizer(db, nullptr, nullptr);
    if (rc != SQLITE_OK) {
        fail(sql, "prepared once, not twice", sqlite3_errmsg(db));
    }
    if (sqlite3_stmt_isexplain(stmt) != 0) {
        facts = {};  // EXPLAIN COMMIT commits nothing
    }
    if (facts.end != said) {
        fail(sql, "sql_end_of() disagrees with SQLite's authorizer", name(facts.end));
    }
    if (facts.end != sql_end::none || facts.savepoint) {
        run_in_transaction(db, stmt, sql, said);
    }

    // 3. sql_kind_of() == query.
    if (select) {
        if (sqlite3_stmt_readonly(stmt) == 0) {
            fail(sql, "sql_kind_of() == query is true for a statement SQLite says may write", "");
        }
        run_query(db, stmt, sql);
    }
    sqlite3_finalize(stmt);
    return 0;
}
