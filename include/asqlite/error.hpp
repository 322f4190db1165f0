#pragma once
// Errors: one std::error_category for SQLite's result codes (extended codes
// kept, values identical to SQLite's) and asqlite's own conditions, plus the
// exception type thrown by every throwing overload.

#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

namespace asqlite {

/// Error codes. Values below `library_base` are SQLite's result codes, primary
/// or extended, with SQLite's numeric values (`errc{SQLITE_CONSTRAINT_UNIQUE}`
/// is valid even where no enumerator names it). Values from `library_base` on
/// are asqlite's own.
enum class errc : int {
    ok = 0,
    error = 1,
    internal = 2,
    perm = 3,
    abort = 4,
    busy = 5,
    locked = 6,
    nomem = 7,
    readonly = 8,
    interrupt = 9,
    ioerr = 10,
    corrupt = 11,
    notfound = 12,
    full = 13,
    cantopen = 14,
    protocol = 15,
    schema = 17,
    toobig = 18,
    constraint = 19,
    mismatch = 20,
    misuse = 21,
    range = 25,
    notadb = 26,
    constraint_check = 275,
    constraint_foreignkey = 787,
    constraint_notnull = 1299,
    constraint_primarykey = 1555,
    constraint_unique = 2067,
    readonly_dbmoved = 1032,  // the database file was deleted, moved or replaced

    library_base = 0x10000,
    pool_timeout,        // no connection became free within pool_timeout
    pool_closed,         // the engine was closed or destroyed
    null_value,          // a NULL column read into a non-optional type
    type_mismatch,       // a column's storage class does not fit the target type
    value_out_of_range,  // an integer does not fit the target (or bound) type
    column_not_found,    // a column name, or a described member, has no column
    extra_column,        // the result has a column the target struct lacks
    column_count_mismatch,
    unknown_parameter,  // bind by a name the statement does not have
    bind_out_of_range,  // bind index outside the statement's parameters
    parameter_count_mismatch,
    no_rows,            // one()/scalar() on an empty result
    too_many_rows,      // one()/one_or_none() on more than one row
    bad_timestamp,      // text that is not an ISO-8601 timestamp
    invalid_option,     // a malformed configuration value
    invalid_url,        // a database URL asqlite does not understand
    directory_missing,  // the database file's directory does not exist
    transaction_state,  // begin() inside a transaction, commit() without one, ...
    migration_refused,  // migrations that do not fit the database (see migrate.hpp)
    // Internal: a write met on a read connection, which the session routes
    // to the writer lane. Never reaches a caller.
    needs_writer,
};

const std::error_category& category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), category()};
}

/// `ec == errc::constraint` holds for every constraint kind (a primary
/// code matches each of its extended codes), while `ec ==
/// errc::constraint_unique` matches that extended code alone, and asqlite's
/// own values match exactly. (`ec == make_error_code(e)` compares exactly.)
/// The same holds for std::error_condition(e, category()).
bool operator==(const std::error_code& ec, errc e) noexcept;

/// The SQLite primary result code of `ec` (its low byte) when `ec` is a SQLite
/// code, so `primary_code(ec) == errc::constraint` for every constraint error.
errc primary_code(const std::error_code& ec) noexcept;

/// The exception thrown by every throwing asqlite operation. Carries the error
/// code, the human message (SQLite's own text where SQLite produced the
/// error) and the SQL text involved, if any.
class error : public std::system_error {
  public:
    error(std::error_code code, std::string message, std::string sql = {});

    const std::string& message() const noexcept { return message_; }
    const std::string& sql() const noexcept { return sql_; }

  private:
    std::string message_;
    std::string sql_;
};

[[noreturn]] void throw_error(std::error_code code, std::string message, std::string sql = {});
[[noreturn]] inline void throw_error(errc code, std::string message, std::string sql = {}) {
    throw_error(make_error_code(code), std::move(message), std::move(sql));
}

/// The code of an exception_ptr holding an asqlite::error or std::system_error
/// (for callback users of the async API); errc::internal for anything else and
/// an empty code for a null pointer.
std::error_code error_code_of(const std::exception_ptr& ep) noexcept;

}  // namespace asqlite

template <>
struct std::is_error_code_enum<asqlite::errc> : std::true_type {};
