#include "asqlite/statement.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <atomic>
#include <climits>
#include <utility>

#include "sqlite_error.hpp"

namespace asqlite {
namespace {

bool only_comments(sqlite3* db, const char* tail, const char* end) {
    for (const char* p = tail; p != end; ++p) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != ';') {
            // Something follows: acceptable only when it compiles to nothing
            // (comments), which SQLite reports as a null statement. Compiled
            // from the tail, as sqlite3_exec() would: what SQLite accepts
            // after a ';' depends on what came before it.
            sqlite3_stmt* extra = nullptr;
            const int rc =
                sqlite3_prepare_v2(db, tail, static_cast<int>(end - tail), &extra, nullptr);
            sqlite3_finalize(extra);
            return rc == SQLITE_OK && extra == nullptr;
        }
    }
    return true;
}

}  // namespace

statement::statement(sqlite3* db, std::string_view sql, bool persistent) {
    if (sql.size() > static_cast<std::size_t>(INT_MAX)) {
        throw_error(errc::toobig, "SQL text is too long", std::string(sql.substr(0, 200)));
    }
    const char* tail = nullptr;
    const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                      persistent ? SQLITE_PREPARE_PERSISTENT : 0, &stmt_, &tail);
    if (rc != SQLITE_OK) {
        detail::throw_sqlite(db, rc, sql);
    }
    if (stmt_ == nullptr) {
        throw_error(errc::misuse, "SQL text contains no statement", std::string(sql));
    }
    if (!only_comments(db, tail, sql.data() + sql.size())) {
        sqlite3_finalize(std::exchange(stmt_, nullptr));
        throw_error(errc::misuse,
                    "more than one statement in SQL text; use connection::exec() for scripts",
                    std::string(sql));
    }
    static std::atomic<std::uint64_t> last_serial{0};
    serial_ = last_serial.fetch_add(1, std::memory_order_relaxed) + 1;
}

statement::layout_key statement::layout() const noexcept {
    return {serial_, sqlite3_stmt_status(stmt_, SQLITE_STMTSTATUS_REPREPARE, 0)};
}

statement::~statement() {
    sqlite3_finalize(stmt_);
}

statement::statement(statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), serial_(std::exchange(other.serial_, 0)) {}

statement& statement::operator=(statement&& other) noexcept {
    if (this != &other) {
        sqlite3_finalize(stmt_);
        stmt_ = std::exchange(other.stmt_, nullptr);
        serial_ = std::exchange(other.serial_, 0);
    }
    return *this;
}

int statement::parameter_count() const noexcept {
    return sqlite3_bind_parameter_count(stmt_);
}

int statement::parameter_index(std::string_view name) const {
    std::string key(name);
    int index = 0;
    if (!key.empty() && (key[0] == ':' || key[0] == '@' || key[0] == '$' || key[0] == '?')) {
        index = sqlite3_bind_parameter_index(stmt_, key.c_str());
    } else {
        for (const char prefix : {':', '@', '$'}) {
            index = sqlite3_bind_parameter_index(stmt_, (prefix + key).c_str());
            if (index != 0) {
                break;
            }
        }
    }
    if (index == 0) {
        throw_error(errc::unknown_parameter,
                    fmt::format("statement has no parameter named '{}'", name), std::string(sql()));
    }
    return index - 1;
}

void statement::check_bind(int rc, int index) {
    if (rc == SQLITE_OK) {
        return;
    }
    if (rc == SQLITE_RANGE) {
        throw_error(errc::bind_out_of_range,
                    fmt::format("bind index {} is out of range: the statement has {} parameters",
                                index, parameter_count()),
                    std::string(sql()));
    }
    detail::throw_sqlite(sqlite3_db_handle(stmt_), rc, sql());
}

void statement::range_error(int index, const std::string& v) const {
    throw_error(
        errc::value_out_of_range,
        fmt::format("parameter {}: value {} does not fit SQLite's 64-bit integer", index, v),
        std::string(sql()));
}

void statement::bind_null(int index) {
    check_bind(sqlite3_bind_null(stmt_, index + 1), index);
}

void statement::bind_int64(int index, std::int64_t v) {
    check_bind(sqlite3_bind_int64(stmt_, index + 1, v), index);
}

void statement::bind_double(int index, double v) {
    check_bind(sqlite3_bind_double(stmt_, index + 1, v), index);
}

void statement::bind_text(int index, std::string_view v) {
    bind_text(index, v, false);
}

void statement::bind_blob(int index, std::span<const std::byte> v) {
    bind_blob(index, v, false);
}

void statement::bind_value(int index, const value& v) {
    bind_value(index, v, false);
}

namespace {
sqlite3_destructor_type lifetime(bool borrow) {
    return borrow ? SQLITE_STATIC : SQLITE_TRANSIENT;
}
}  // namespace

void statement::bind_text(int index, std::string_view v, bool borrow) {
    // An empty view may have a null data() (std::string_view{}); SQLite
    // would bind NULL then, not ''.
    check_bind(sqlite3_bind_text64(stmt_, index + 1, v.data() != nullptr ? v.data() : "", v.size(),
                                   lifetime(borrow), SQLITE_UTF8),
               index);
}

void statement::bind_blob(int index, std::span<const std::byte> v, bool borrow) {
    // A zero-length span may have a null data(); SQLite would bind NULL then.
    static const std::byte empty{};
    check_bind(sqlite3_bind_blob64(stmt_, index + 1, v.empty() ? &empty : v.data(), v.size(),
                                   lifetime(borrow)),
               index);
}

void statement::bind_value(int index, const value& v, bool borrow) {
    switch (v.type()) {
        case value_type::null:
            bind_null(index);
            break;
        case value_type::integer:
            bind_int64(index, v.integer());
            break;
        case value_type::real:
            bind_double(index, v.real());
            break;
        case value_type::text:
            bind_text(index, v.text(), borrow);
            break;
        case value_type::blob:
            bind_blob(index, v.bytes(), borrow);
            break;
    }
}

void statement::check_parameter_count(int given) const {
    const int expected = parameter_count();
    if (given != expected) {
        throw_error(errc::parameter_count_mismatch,
                    fmt::format("statement takes {} parameters, {} given", expected, given),
                    std::string(sql()));
    }
}

bool statement::step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    detail::throw_sqlite(sqlite3_db_handle(stmt_), rc, sql());
}

void statement::reset() noexcept {
    sqlite3_reset(stmt_);
}

void statement::clear_bindings() noexcept {
    sqlite3_clear_bindings(stmt_);
}

int statement::column_count() const noexcept {
    return sqlite3_column_count(stmt_);
}

void statement::check_column(int i) const {
    if (i < 0 || i >= column_count()) {
        throw_error(errc::column_not_found,
                    fmt::format("column index {} is out of range: the result has {} columns", i,
                                column_count()),
                    std::string(sql()));
    }
}

std::string_view statement::column_name(int i) const {
    const char* name = sqlite3_column_name(stmt_, i);
    return name != nullptr ? std::string_view(name) : std::string_view();
}

int statement::column_index(std::string_view name) const {
    for (int i = 0; i < column_count(); ++i) {
        if (column_name(i) == name) {
            return i;
        }
    }
    throw_error(errc::column_not_found, fmt::format("result has no column named '{}'", name),
                std::string(sql()));
}

value_type statement::column_type(int i) const {
    switch (sqlite3_column_type(stmt_, i)) {
        case SQLITE_INTEGER:
            return value_type::integer;
        case SQLITE_FLOAT:
            return value_type::real;
        case SQLITE_TEXT:
            return value_type::text;
        case SQLITE_BLOB:
            return value_type::blob;
        default:
            return value_type::null;
    }
}

std::int64_t statement::column_int64(int i) const {
    return sqlite3_column_int64(stmt_, i);
}

double statement::column_double(int i) const {
    return sqlite3_column_double(stmt_, i);
}

std::string_view statement::column_text(int i) const {
    const auto* text = sqlite3_column_text(stmt_, i);
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i));
    return text != nullptr ? std::string_view(reinterpret_cast<const char*>(text), size)
                           : std::string_view();
}

std::span<const std::byte> statement::column_blob(int i) const {
    const void* data = sqlite3_column_blob(stmt_, i);
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i));
    return data != nullptr ? std::span<const std::byte>(static_cast<const std::byte*>(data), size)
                           : std::span<const std::byte>();
}

std::string_view statement::sql() const noexcept {
    const char* text = stmt_ != nullptr ? sqlite3_sql(stmt_) : nullptr;
    return text != nullptr ? std::string_view(text) : std::string_view();
}

bool statement::readonly() const noexcept {
    return sqlite3_stmt_readonly(stmt_) != 0;
}

}  // namespace asqlite
