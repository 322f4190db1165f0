#pragma once
// One SQLite database connection: RAII over sqlite3*, opened with
// SQLITE_OPEN_NOMUTEX, with the configured pragmas applied at open and a
// per-connection LRU cache of prepared statements used by execute(), query(),
// one(), one_or_none() and scalar().
//
// Thread safety: none. A connection is used by one thread at a time; the
// async engine guarantees that for pooled connections (and interrupts its
// statements from other threads, through src/).
// Errors: every throwing member throws asqlite::error carrying the SQLite
// (extended) code, SQLite's message and the SQL text. execute() and query()
// have non-throwing overloads taking std::error_code&; the message of the last
// such failure is in last_diagnostics().

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/detail/decode.hpp"
#include "asqlite/error.hpp"
#include "asqlite/logger.hpp"
#include "asqlite/result.hpp"
#include "asqlite/statement.hpp"

namespace asqlite {

namespace detail {
struct operation_control;
/// errc::no_rows for one() of a query that returned none.
[[noreturn]] void throw_no_rows(std::string_view sql);
}  // namespace detail

struct connection_options {
    std::string journal_mode = "wal";    // delete|truncate|persist|memory|wal|off
    std::string synchronous = "normal";  // off|normal|full|extra
    bool foreign_keys = true;
    std::chrono::milliseconds busy_timeout{5000};
    std::size_t statement_cache_size = 100;
    bool read_only = false;   // SQLITE_OPEN_READONLY
    bool query_only = false;  // PRAGMA query_only: refuses writes on a read-write file
    /// Statements that would write fail with errc::needs_writer before they
    /// run (the async engine's read connections; it then uses its writer),
    /// or with errc::transaction_state inside a transaction.
    bool reject_writes = false;
    bool echo = false;      // log each statement, its parameters and time
    logger* log = nullptr;  // nullptr: logger::global()

    /// Throws errc::invalid_option for a journal_mode or synchronous value
    /// SQLite does not know (they are spliced into PRAGMA text).
    void validate() const;
};

struct diagnostics {
    std::error_code code;
    std::string message;
    std::string sql;
};

enum class transaction_mode { deferred, immediate, exclusive };

class connection;

/// A transaction on a synchronous connection: rolls back on destruction
/// unless commit() was called.
class transaction_guard {
  public:
    explicit transaction_guard(connection& c, transaction_mode mode = transaction_mode::immediate);
    ~transaction_guard();
    transaction_guard(const transaction_guard&) = delete;
    transaction_guard& operator=(const transaction_guard&) = delete;

    void commit();
    void rollback();

  private:
    connection* conn_;
    bool open_ = true;
};

/// A statement borrowed from the connection's cache for one use; reset (and
/// its bindings cleared) when the lease ends. When the cached statement is
/// already leased (a nested use of the same SQL), the lease owns a fresh one.
class statement_lease {
  public:
    statement_lease(statement* cached, bool* busy) : stmt_(cached), busy_(busy) { *busy_ = true; }
    explicit statement_lease(statement owned) : owned_(std::move(owned)), stmt_(&owned_) {}
    ~statement_lease();
    statement_lease(const statement_lease&) = delete;
    statement_lease& operator=(const statement_lease&) = delete;

    statement& operator*() const noexcept { return *stmt_; }
    statement* operator->() const noexcept { return stmt_; }

  private:
    statement owned_;
    statement* stmt_;
    bool* busy_ = nullptr;
};

namespace detail {
std::string param_text(const value& v);
template <class T>
std::string param_text(const T& v) {
    if constexpr (std::same_as<T, std::nullptr_t> || std::same_as<T, std::nullopt_t>) {
        return "NULL";
    } else if constexpr (is_optional<T>::value) {
        return v ? param_text(*v) : std::string("NULL");
    } else if constexpr (std::same_as<T, bool>) {
        return v ? "1" : "0";
    } else if constexpr (std::is_enum_v<T>) {
        return std::to_string(static_cast<std::underlying_type_t<T>>(v));
    } else if constexpr (std::integral<T> || std::floating_point<T>) {
        return fmt::format("{}", v);
    } else if constexpr (std::same_as<T, timestamp>) {
        return param_text(value{format_timestamp(v)});
    } else if constexpr (std::same_as<T, value>) {
        static_assert(sizeof(T) == 0, "overload above");
    } else if constexpr (std::convertible_to<T, std::string_view>) {
        return param_text(value{std::string(std::string_view(v))});
    } else {
        return fmt::format("<blob {} bytes>", std::span<const std::byte>(v).size());
    }
}
}  // namespace detail

class connection {
  public:
    /// Opens `path` (a file path, ":memory:" or a "file:" URI). A missing
    /// parent directory is errc::directory_missing; it is never created.
    explicit connection(std::string_view path, const connection_options& options = {});
    ~connection();
    connection(connection&&) noexcept;
    connection& operator=(connection&&) noexcept;

    /// Runs a script of one or more statements without parameters.
    void exec(std::string_view script);

    /// Runs one statement and materialises its rows.
    template <bindable... P>
    result execute(std::string_view sql, const P&... params) {
        return echoed(
            sql,
            [&] {
                auto lease = prepare_cached(sql);
                lease->bind_all_borrowed(params...);
                return collect(*lease);
            },
            params...);
    }
    template <bindable... P>
    result execute(std::error_code& ec, std::string_view sql, const P&... params) {
        return non_throwing(ec, [&] { return execute(sql, params...); });
    }

    /// Every row mapped to T: a BOOST_DESCRIBE_STRUCT (columns by name), a
    /// std::tuple (by position) or one scalar column.
    template <class T, bindable... P>
    std::vector<T> query(std::string_view sql, const P&... params) {
        return echoed(
            sql,
            [&] {
                auto lease = prepare_cached(sql);
                lease->bind_all_borrowed(params...);
                // Columns are read after the first step, which re-prepares a cached
                // statement whose schema changed, and even when no row comes back,
                // so a target that cannot map always fails.
                bool has_row = lease->step();
                const detail::row_reader<T> reader(*lease);
                std::vector<T> out;
                for (; has_row; has_row = lease->step()) {
                    out.push_back(reader.read(*lease));
                }
                return out;
            },
            params...);
    }
    template <class T, bindable... P>
    std::vector<T> query(std::error_code& ec, std::string_view sql, const P&... params) {
        return non_throwing(ec, [&] { return query<T>(sql, params...); });
    }

    /// Exactly one row: errc::no_rows or errc::too_many_rows otherwise.
    template <class T, bindable... P>
    T one(std::string_view sql, const P&... params) {
        auto row = one_or_none<T>(sql, params...);
        if (!row) {
            detail::throw_no_rows(sql);
        }
        return std::move(*row);
    }

    /// Zero or one row: errc::too_many_rows for more.
    template <class T, bindable... P>
    std::optional<T> one_or_none(std::string_view sql, const P&... params) {
        return at_most_one_row(
            sql,
            [](const statement& st, bool has_row) -> std::optional<T> {
                const detail::row_reader<T> reader(st);
                if (!has_row) {
                    return std::nullopt;
                }
                return std::optional<T>(reader.read(st));
            },
            params...);
    }

    /// Runs a statement expected to return at most one row and returns
    /// read(const statement&, bool has_row), called with the statement
    /// stepped once (its columns are the row's while has_row); a second row
    /// is errc::too_many_rows. For reading a row without materialising it.
    template <class Read, class... P>
    auto read_one_row(std::string_view sql, Read&& read, const P&... params) {
        return at_most_one_row(
            sql, [&read](const statement& st, bool has_row) { return read(st, has_row); },
            params...);
    }

    /// First column of the first row. No row: std::nullopt when T is an
    /// optional, errc::no_rows otherwise.
    template <class T, bindable... P>
    T scalar(std::string_view sql, const P&... params) {
        return echoed(
            sql,
            [&]() -> T {
                auto lease = prepare_cached(sql);
                lease->bind_all_borrowed(params...);
                if (!lease->step()) {
                    if constexpr (detail::is_optional<T>::value) {
                        return std::nullopt;
                    } else {
                        throw_error(errc::no_rows, "scalar query returned no rows",
                                    std::string(sql));
                    }
                }
                return lease->template get<T>(0);
            },
            params...);
    }

    /// A statement compiled for this call only (not cached).
    statement prepare(std::string_view sql);
    /// A statement from the LRU cache, reset when the lease ends.
    statement_lease prepare_cached(std::string_view sql);
    /// Whether `sql` (one statement) would change the database, as SQLite
    /// says when it compiles it (sqlite3_stmt_readonly). The statement is
    /// compiled into the cache, as prepare_cached does; a compile error
    /// throws. Transaction control counts as writing when it takes the
    /// write lock at once (BEGIN IMMEDIATE or EXCLUSIVE).
    bool writes(std::string_view sql);

    transaction_guard begin(transaction_mode mode = transaction_mode::immediate) {
        return transaction_guard(*this, mode);
    }

    std::int64_t last_insert_rowid() const noexcept;
    std::int64_t changes() const noexcept;
    bool in_transaction() const noexcept;
    /// True when the database file was deleted, renamed or replaced since
    /// this connection opened it (writes would go to an unlinked file).
    bool file_moved() const noexcept;
    /// The journal mode in effect, as SQLite reports it ("wal", "memory", ...).
    std::string journal_mode();
    const std::string& path() const noexcept;
    const diagnostics& last_diagnostics() const noexcept;

    /// How long SQLite itself waits for a lock (sqlite3_busy_timeout).
    void set_busy_timeout(std::chrono::milliseconds timeout) noexcept;
    void set_echo(bool on) noexcept;
    bool echo() const noexcept;

    std::size_t cache_size() const noexcept;
    std::uint64_t cache_hits() const noexcept;
    std::uint64_t cache_misses() const noexcept;
    void clear_cache() noexcept;

    sqlite3* native_handle() const noexcept;

  private:
    struct impl;
    // The async engine's cancellation of running statements (src/).
    friend struct detail::operation_control;

    /// A statement from the cache; with refuse_writes, one that writes
    /// throws (refuse_write) instead.
    statement_lease lease_cached(std::string_view sql, bool refuse_writes);
    void refuse_write(const statement& st, std::string_view sql) const;

    // A statement expected to return at most one row: read(statement,
    // has_row) makes the result; a second row is errc::too_many_rows.
    template <class Read, class... P>
    auto at_most_one_row(std::string_view sql, Read&& read, const P&... params) {
        return echoed(
            sql,
            [&] {
                auto lease = prepare_cached(sql);
                lease->bind_all_borrowed(params...);
                const bool has_row = lease->step();
                auto out = read(*lease, has_row);
                if (has_row && lease->step()) {
                    throw_error(errc::too_many_rows, "query returned more than one row",
                                std::string(sql));
                }
                return out;
            },
            params...);
    }

    result collect(statement& s);
    void log_statement(std::string_view sql, const std::vector<std::string>& params,
                       std::chrono::steady_clock::duration elapsed, const char* failure);
    void record_failure(const error& e);

    template <class F, class... P>
    auto echoed(std::string_view sql, F&& body, const P&... params) {
        if (!echo()) {
            return body();
        }
        const auto start = std::chrono::steady_clock::now();
        try {
            auto out = body();
            log_statement(sql, {detail::param_text(params)...},
                          std::chrono::steady_clock::now() - start, nullptr);
            return out;
        } catch (const std::exception& e) {
            log_statement(sql, {detail::param_text(params)...},
                          std::chrono::steady_clock::now() - start, e.what());
            throw;
        }
    }

    template <class F>
    auto non_throwing(std::error_code& ec, F&& body) -> decltype(body()) {
        ec.clear();
        try {
            return body();
        } catch (const error& e) {
            ec = e.code();
            record_failure(e);
            return {};
        }
    }

    std::unique_ptr<impl> impl_;
};

}  // namespace asqlite
