#include "asqlite/error.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

namespace asqlite {
namespace {

const char* library_message(errc e) {
    switch (e) {
        case errc::pool_timeout:
            return "timed out waiting for a pooled connection";
        case errc::pool_closed:
            return "the engine is closed";
        case errc::null_value:
            return "NULL read into a non-optional type";
        case errc::type_mismatch:
            return "column type does not match the requested type";
        case errc::value_out_of_range:
            return "value out of range for the target type";
        case errc::column_not_found:
            return "no such column";
        case errc::extra_column:
            return "result has a column the target does not map";
        case errc::column_count_mismatch:
            return "result column count does not match the target";
        case errc::unknown_parameter:
            return "no such SQL parameter name";
        case errc::bind_out_of_range:
            return "bind index out of range";
        case errc::parameter_count_mismatch:
            return "wrong number of SQL parameters";
        case errc::no_rows:
            return "query returned no rows";
        case errc::too_many_rows:
            return "query returned more than one row";
        case errc::bad_timestamp:
            return "text is not an ISO-8601 timestamp";
        case errc::invalid_option:
            return "invalid configuration value";
        case errc::invalid_url:
            return "invalid database URL";
        case errc::directory_missing:
            return "database directory does not exist";
        case errc::transaction_state:
            return "invalid transaction state";
        case errc::migration_refused:
            return "migrations do not fit the database";
        case errc::needs_writer:
            return "statement writes; asqlite runs it on the writer connection";
        default:
            return "unknown asqlite error";
    }
}

#define ASQLITE_NAMED(code) \
    { code, #code }
struct named_code {
    int value;
    const char* name;
};
// SQLite's extended result codes by name (sqlite3_errstr() knows only the
// primary ones). The constraint kinds get a phrase of their own below.
constexpr named_code extended_codes[] = {
    ASQLITE_NAMED(SQLITE_ERROR_MISSING_COLLSEQ),
    ASQLITE_NAMED(SQLITE_ERROR_RETRY),
    ASQLITE_NAMED(SQLITE_ERROR_SNAPSHOT),
    ASQLITE_NAMED(SQLITE_IOERR_READ),
    ASQLITE_NAMED(SQLITE_IOERR_SHORT_READ),
    ASQLITE_NAMED(SQLITE_IOERR_WRITE),
    ASQLITE_NAMED(SQLITE_IOERR_FSYNC),
    ASQLITE_NAMED(SQLITE_IOERR_DIR_FSYNC),
    ASQLITE_NAMED(SQLITE_IOERR_TRUNCATE),
    ASQLITE_NAMED(SQLITE_IOERR_FSTAT),
    ASQLITE_NAMED(SQLITE_IOERR_UNLOCK),
    ASQLITE_NAMED(SQLITE_IOERR_RDLOCK),
    ASQLITE_NAMED(SQLITE_IOERR_DELETE),
    ASQLITE_NAMED(SQLITE_IOERR_BLOCKED),
    ASQLITE_NAMED(SQLITE_IOERR_NOMEM),
    ASQLITE_NAMED(SQLITE_IOERR_ACCESS),
    ASQLITE_NAMED(SQLITE_IOERR_CHECKRESERVEDLOCK),
    ASQLITE_NAMED(SQLITE_IOERR_LOCK),
    ASQLITE_NAMED(SQLITE_IOERR_CLOSE),
    ASQLITE_NAMED(SQLITE_IOERR_DIR_CLOSE),
    ASQLITE_NAMED(SQLITE_IOERR_SHMOPEN),
    ASQLITE_NAMED(SQLITE_IOERR_SHMSIZE),
    ASQLITE_NAMED(SQLITE_IOERR_SHMLOCK),
    ASQLITE_NAMED(SQLITE_IOERR_SHMMAP),
    ASQLITE_NAMED(SQLITE_IOERR_SEEK),
    ASQLITE_NAMED(SQLITE_IOERR_DELETE_NOENT),
    ASQLITE_NAMED(SQLITE_IOERR_MMAP),
    ASQLITE_NAMED(SQLITE_IOERR_GETTEMPPATH),
    ASQLITE_NAMED(SQLITE_IOERR_CONVPATH),
    ASQLITE_NAMED(SQLITE_IOERR_VNODE),
    ASQLITE_NAMED(SQLITE_IOERR_AUTH),
    ASQLITE_NAMED(SQLITE_IOERR_BEGIN_ATOMIC),
    ASQLITE_NAMED(SQLITE_IOERR_COMMIT_ATOMIC),
    ASQLITE_NAMED(SQLITE_IOERR_ROLLBACK_ATOMIC),
    ASQLITE_NAMED(SQLITE_IOERR_DATA),
    ASQLITE_NAMED(SQLITE_IOERR_CORRUPTFS),
    ASQLITE_NAMED(SQLITE_LOCKED_SHAREDCACHE),
    ASQLITE_NAMED(SQLITE_LOCKED_VTAB),
    ASQLITE_NAMED(SQLITE_BUSY_RECOVERY),
    ASQLITE_NAMED(SQLITE_BUSY_SNAPSHOT),
    ASQLITE_NAMED(SQLITE_BUSY_TIMEOUT),
    ASQLITE_NAMED(SQLITE_CANTOPEN_NOTEMPDIR),
    ASQLITE_NAMED(SQLITE_CANTOPEN_ISDIR),
    ASQLITE_NAMED(SQLITE_CANTOPEN_FULLPATH),
    ASQLITE_NAMED(SQLITE_CANTOPEN_CONVPATH),
    ASQLITE_NAMED(SQLITE_CANTOPEN_DIRTYWAL),
    ASQLITE_NAMED(SQLITE_CANTOPEN_SYMLINK),
    ASQLITE_NAMED(SQLITE_CORRUPT_VTAB),
    ASQLITE_NAMED(SQLITE_CORRUPT_SEQUENCE),
    ASQLITE_NAMED(SQLITE_CORRUPT_INDEX),
    ASQLITE_NAMED(SQLITE_READONLY_RECOVERY),
    ASQLITE_NAMED(SQLITE_READONLY_CANTLOCK),
    ASQLITE_NAMED(SQLITE_READONLY_ROLLBACK),
    ASQLITE_NAMED(SQLITE_READONLY_DBMOVED),
    ASQLITE_NAMED(SQLITE_READONLY_CANTINIT),
    ASQLITE_NAMED(SQLITE_READONLY_DIRECTORY),
    ASQLITE_NAMED(SQLITE_ABORT_ROLLBACK),
    ASQLITE_NAMED(SQLITE_AUTH_USER),
};
#undef ASQLITE_NAMED

constexpr named_code constraint_kinds[] = {
    {SQLITE_CONSTRAINT_CHECK, "CHECK"},
    {SQLITE_CONSTRAINT_COMMITHOOK, "commit hook"},
    {SQLITE_CONSTRAINT_FOREIGNKEY, "FOREIGN KEY"},
    {SQLITE_CONSTRAINT_FUNCTION, "function"},
    {SQLITE_CONSTRAINT_NOTNULL, "NOT NULL"},
    {SQLITE_CONSTRAINT_PRIMARYKEY, "PRIMARY KEY"},
    {SQLITE_CONSTRAINT_TRIGGER, "trigger"},
    {SQLITE_CONSTRAINT_UNIQUE, "UNIQUE"},
    {SQLITE_CONSTRAINT_VTAB, "virtual table"},
    {SQLITE_CONSTRAINT_ROWID, "ROWID"},
    {SQLITE_CONSTRAINT_PINNED, "pinned row"},
    {SQLITE_CONSTRAINT_DATATYPE, "datatype"},
};

template <std::size_t N>
const char* find_name(const named_code (&table)[N], int value) {
    for (const auto& c : table) {
        if (c.value == value) {
            return c.name;
        }
    }
    return nullptr;
}

/// SQLite's text for a result code, naming an extended code: "UNIQUE
/// constraint failed", "disk I/O error (SQLITE_IOERR_FSYNC)".
std::string sqlite_message(int value) {
    if (const char* kind = find_name(constraint_kinds, value)) {
        return fmt::format("{} constraint failed", kind);
    }
    if (const char* name = find_name(extended_codes, value)) {
        return fmt::format("{} ({})", sqlite3_errstr(value), name);
    }
    return sqlite3_errstr(value);
}

bool is_sqlite(int value) noexcept {
    return value >= 0 && value < static_cast<int>(errc::library_base);
}

/// A code of this category matches `condition`: exactly, or, when the
/// condition is one of SQLite's primary codes, by its primary code.
bool matches(int code, int condition) noexcept {
    if (code == condition) {
        return true;
    }
    return is_sqlite(code) && condition > 0 && condition <= 0xff && (code & 0xff) == condition;
}

class asqlite_category final : public std::error_category {
  public:
    const char* name() const noexcept override { return "asqlite"; }
    std::string message(int value) const override {
        if (is_sqlite(value)) {
            return sqlite_message(value);
        }
        return library_message(static_cast<errc>(value));
    }
    bool equivalent(const std::error_code& code, int condition) const noexcept override {
        return code.category() == *this && matches(code.value(), condition);
    }
};

}  // namespace

const std::error_category& category() noexcept {
    static const asqlite_category instance;
    return instance;
}

bool operator==(const std::error_code& ec, errc e) noexcept {
    return ec.category() == category() && matches(ec.value(), static_cast<int>(e));
}

errc primary_code(const std::error_code& ec) noexcept {
    if (ec.category() == category() && ec.value() < static_cast<int>(errc::library_base)) {
        return static_cast<errc>(ec.value() & 0xff);
    }
    return static_cast<errc>(ec.value());
}

namespace {
std::string what_text(const std::error_code& code, const std::string& message,
                      const std::string& sql) {
    std::string text = message.empty() ? code.message() : message;
    if (code.category() == category() && code.value() < static_cast<int>(errc::library_base)) {
        text += fmt::format(" [sqlite {}]", code.value());
    }
    if (!sql.empty()) {
        text += fmt::format(" (SQL: {})", sql);
    }
    return text;
}
}  // namespace

error::error(std::error_code code, std::string message, std::string sql)
    : std::system_error(code, what_text(code, message, sql)),
      message_(message.empty() ? code.message() : std::move(message)),
      sql_(std::move(sql)) {}

void throw_error(std::error_code code, std::string message, std::string sql) {
    throw error(code, std::move(message), std::move(sql));
}

std::error_code error_code_of(const std::exception_ptr& ep) noexcept {
    if (!ep) {
        return {};
    }
    try {
        std::rethrow_exception(ep);
    } catch (const std::system_error& e) {
        return e.code();
    } catch (...) {
        return make_error_code(errc::internal);
    }
}

}  // namespace asqlite
