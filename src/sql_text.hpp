#pragma once
// What the library reads in SQL text itself, without SQLite: the first words
// of a statement, with the blanks and comments before and between them
// skipped. No Asio, no SQLite (the session's templates use it; test/fuzz/
// fuzz_sql_reader.cpp checks it against SQLite). Defined in src/sql_text.cpp.

#include <string_view>

namespace asqlite::detail {

/// How a statement ends a transaction, read from its first keywords:
/// COMMIT or END; ROLLBACK (not ROLLBACK TO, which keeps it); or neither.
enum class sql_end { none, commit, rollback };

sql_end sql_end_of(std::string_view sql) noexcept;

/// What a statement does, read from its first words, for routing it
/// outside a transaction:
/// - query: SELECT its first word (any case, after blanks and comments),
///   with more after it: it changes nothing, neither the database nor the
///   connection's state;
/// - write: one whose first words always take the write lock: INSERT,
///   UPDATE, DELETE, REPLACE, CREATE, DROP, ALTER, BEGIN IMMEDIATE or
///   BEGIN EXCLUSIVE;
/// - other: anything else (WITH, PRAGMA, BEGIN, SAVEPOINT, ...). Only
///   SQLite knows whether it writes, once it compiles it
///   (connection::writes).
enum class sql_kind { query, write, other };
sql_kind sql_kind_of(std::string_view sql) noexcept;
/// Whether the statement's first word is BEGIN.
bool sql_begins(std::string_view sql) noexcept;

}  // namespace asqlite::detail
