#include "asqlite/connection.hpp"
#include "blocking_pool.hpp"

#include <fmt/chrono.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <list>
#include <thread>
#include <unordered_map>

#include "operation_control.hpp"
#include "sqlite_error.hpp"

namespace asqlite {
namespace {

constexpr std::size_t max_logged_text = 64;

bool is_memory_path(std::string_view path) {
    return path.empty() || path == ":memory:";
}

void check_directory(std::string_view path) {
    if (is_memory_path(path) || path.starts_with("file:")) {
        return;
    }
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
        throw_error(errc::directory_missing,
                    fmt::format("directory '{}' of database '{}' does not exist; create it first",
                                parent.string(), path));
    }
}

bool one_of(std::string_view v, std::initializer_list<std::string_view> allowed) {
    for (auto a : allowed) {
        if (v == a) {
            return true;
        }
    }
    return false;
}

}  // namespace

void connection_options::validate() const {
    if (!one_of(journal_mode, {"delete", "truncate", "persist", "memory", "wal", "off"})) {
        throw_error(errc::invalid_option,
                    fmt::format("journal_mode '{}' is not one of delete, truncate, persist, "
                                "memory, wal, off",
                                journal_mode));
    }
    if (!one_of(synchronous, {"off", "normal", "full", "extra"})) {
        throw_error(
            errc::invalid_option,
            fmt::format("synchronous '{}' is not one of off, normal, full, extra", synchronous));
    }
}

namespace detail {
std::string param_text(const value& v) {
    switch (v.type()) {
        case value_type::null:
            return "NULL";
        case value_type::integer:
            return std::to_string(v.integer());
        case value_type::real:
            return fmt::format("{}", v.real());
        case value_type::text:
            if (v.text().size() > max_logged_text) {
                // Cut on a UTF-8 character boundary: never before a continuation byte.
                std::size_t cut = max_logged_text;
                while (cut > 0 && (static_cast<unsigned char>(v.text()[cut]) & 0xC0) == 0x80) {
                    --cut;
                }
                return fmt::format("'{}…' ({} bytes)", v.text().substr(0, cut), v.text().size());
            }
            return fmt::format("'{}'", v.text());
        case value_type::blob:
            return fmt::format("<blob {} bytes>", v.bytes().size());
    }
    return "?";
}
}  // namespace detail

struct connection::impl {
    struct cached {
        std::string sql;
        statement stmt;
        bool busy = false;
    };

    sqlite3* db = nullptr;
    std::string path;
    std::size_t cache_capacity = 100;
    std::list<cached> lru;  // front: most recently used
    std::unordered_map<std::string_view, std::list<cached>::iterator> index;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    bool echo = false;
    bool reject_writes = false;
    logger* log = nullptr;
    diagnostics last;
    std::atomic<std::uint64_t> cancel_op{0};
    std::atomic<std::uint64_t> active_op{0};
    std::atomic<bool> refusing{false};

    bool cancelled() const noexcept {
        const auto active = active_op.load(std::memory_order_relaxed);
        return active != 0 && (cancel_op.load(std::memory_order_relaxed) == active ||
                               refusing.load(std::memory_order_relaxed));
    }

    ~impl() {
        index.clear();
        lru.clear();  // finalize every statement before closing
        sqlite3_close_v2(db);
    }

    static int on_progress(void* self) {
        detail::blocking_pool::on_progress();
        return static_cast<impl*>(self)->cancelled() ? 1 : 0;
    }

    /// pragma(), tried again while it meets SQLITE_BUSY, up to `timeout`:
    /// two connections turning a new database to WAL at once both hold a
    /// shared lock and want an exclusive one, and SQLite fails one of them
    /// at once instead of calling the busy handler (which would deadlock).
    void pragma_waiting(std::string_view sql, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            try {
                pragma(sql);
                return;
            } catch (const error& e) {
                if (primary_code(e.code()) != errc::busy ||
                    std::chrono::steady_clock::now() >= deadline) {
                    throw;
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    void pragma(std::string_view sql) {
        char* message = nullptr;
        const int rc = sqlite3_exec(db, std::string(sql).c_str(), nullptr, nullptr, &message);
        if (rc != SQLITE_OK) {
            std::string text = message != nullptr ? message : sqlite3_errstr(rc);
            sqlite3_free(message);
            const int code = sqlite3_extended_errcode(db);
            throw_error(std::error_code((code & 0xff) == (rc & 0xff) ? code : rc, category()),
                        fmt::format("{} (database '{}')", text, path), std::string(sql));
        }
    }
};

connection::connection(std::string_view path, const connection_options& options)
    : impl_(std::make_unique<impl>()) {
    check_directory(path);
    options.validate();
    auto& s = *impl_;
    s.path = is_memory_path(path) ? std::string(":memory:") : std::string(path);
    s.cache_capacity = options.statement_cache_size;
    s.echo = options.echo;
    s.reject_writes = options.reject_writes;
    s.log = options.log != nullptr ? options.log : &logger::global();

    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    flags |= options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (s.path.starts_with("file:")) {
        flags |= SQLITE_OPEN_URI;
    }
    const int rc = sqlite3_open_v2(s.path.c_str(), &s.db, flags, nullptr);
    if (rc != SQLITE_OK) {
        const std::string message = s.db != nullptr ? sqlite3_errmsg(s.db) : sqlite3_errstr(rc);
        const int code = s.db != nullptr ? sqlite3_extended_errcode(s.db) : rc;
        throw_error(std::error_code(code, category()),
                    fmt::format("cannot open database '{}': {}", s.path, message));
    }
    sqlite3_extended_result_codes(s.db, 1);
    sqlite3_busy_timeout(s.db, static_cast<int>(options.busy_timeout.count()));
    sqlite3_progress_handler(s.db, 1000, &impl::on_progress, &s);

    // A "file:...?mode=ro" URI, or a file the OS lets us only read, is open
    // read-only too: setting the journal mode would fail there.
    const bool read_only = options.read_only || sqlite3_db_readonly(s.db, "main") == 1;
    // The first statement reads the header: a file that is not a database
    // fails here, at open, with SQLITE_NOTADB.
    if (!read_only) {
        s.pragma_waiting(fmt::format("PRAGMA journal_mode={}", options.journal_mode),
                         options.busy_timeout);
    } else {
        s.pragma("PRAGMA schema_version");
    }
    s.pragma(fmt::format("PRAGMA synchronous={}", options.synchronous));
    s.pragma(fmt::format("PRAGMA foreign_keys={}", options.foreign_keys ? "ON" : "OFF"));
    if (options.query_only) {
        s.pragma("PRAGMA query_only=ON");
    }
}

connection::~connection() = default;
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;

namespace {
/// `text` without the whitespace before its first statement.
std::string_view trim_front(std::string_view text) {
    const auto first = text.find_first_not_of(" \t\r\n\f\v");
    return first == std::string_view::npos ? std::string_view{} : text.substr(first);
}

/// The first complete statement of `rest` (up to its ';'), for the message
/// of a statement that did not prepare: SQLite says where the statement it
/// prepared ends only when it succeeds. The whole of `rest` when no prefix
/// is a complete statement.
std::string_view first_statement(std::string_view rest) {
    for (auto semi = rest.find(';'); semi != std::string_view::npos;
         semi = rest.find(';', semi + 1)) {
        const std::string prefix(rest.substr(0, semi + 1));
        if (sqlite3_complete(prefix.c_str()) != 0) {
            return rest.substr(0, semi + 1);
        }
    }
    return rest;
}
}  // namespace

void connection::exec(std::string_view script) {
    const char* cursor = script.data();
    const char* end = script.data() + script.size();
    while (cursor < end) {
        sqlite3_stmt* raw = nullptr;
        const char* tail = nullptr;
        const int rc =
            sqlite3_prepare_v2(impl_->db, cursor, static_cast<int>(end - cursor), &raw, &tail);
        if (rc != SQLITE_OK) {
            detail::throw_sqlite(impl_->db, rc,
                                 first_statement(trim_front(std::string_view(cursor, end))));
        }
        if (raw == nullptr) {
            break;  // only whitespace or comments left
        }
        const std::string_view one =
            trim_front(std::string_view(cursor, static_cast<std::size_t>(tail - cursor)));
        cursor = tail;
        statement stmt;
        // Adopt the raw handle so it is finalized on every path.
        struct adopt {
            sqlite3_stmt* s;
            ~adopt() { sqlite3_finalize(s); }
        } guard{raw};
        echoed(one, [&] {
            int step_rc = 0;
            while ((step_rc = sqlite3_step(raw)) == SQLITE_ROW) {
            }
            if (step_rc != SQLITE_DONE) {
                detail::throw_sqlite(impl_->db, step_rc, one);
            }
            return 0;
        });
    }
}

statement connection::prepare(std::string_view sql) {
    return statement(impl_->db, sql);
}

statement_lease connection::prepare_cached(std::string_view sql) {
    return lease_cached(sql, impl_->reject_writes);
}

bool connection::writes(std::string_view sql) {
    return !lease_cached(sql, false)->readonly();
}

void connection::refuse_write(const statement& st, std::string_view sql) const {
    if (st.readonly()) {
        return;
    }
    // Inside a transaction the write cannot go to the writer: the
    // transaction is this connection's.
    if (in_transaction()) {
        throw_error(errc::transaction_state,
                    "statement writes inside a read transaction (BEGIN or SAVEPOINT on a "
                    "read connection); begin transactions that write with BEGIN "
                    "IMMEDIATE or session::begin()",
                    std::string(sql));
    }
    throw_error(errc::needs_writer, "statement writes; run it on the writer connection",
                std::string(sql));
}

statement_lease connection::lease_cached(std::string_view sql, bool refuse_writes) {
    auto& s = *impl_;
    // Read connections of the async engine refuse writes before they run.
    auto admit = [&](statement& st) -> statement& {
        if (refuse_writes) {
            refuse_write(st, sql);
        }
        return st;
    };
    if (s.cache_capacity == 0) {
        ++s.misses;
        statement fresh(s.db, sql);
        admit(fresh);
        return statement_lease(std::move(fresh));
    }
    if (auto found = s.index.find(sql); found != s.index.end()) {
        auto it = found->second;
        if (it->busy) {
            ++s.misses;
            statement fresh(s.db, sql);
            admit(fresh);
            return statement_lease(std::move(fresh));
        }
        ++s.hits;
        s.lru.splice(s.lru.begin(), s.lru, it);
        return statement_lease(&admit(it->stmt), &it->busy);
    }
    ++s.misses;
    statement fresh(s.db, sql, true);
    if (s.lru.size() >= s.cache_capacity) {
        // Evict the least recently used statement that nobody holds.
        for (auto it = s.lru.end(); it != s.lru.begin();) {
            --it;
            if (!it->busy) {
                s.index.erase(it->sql);
                s.lru.erase(it);
                break;
            }
        }
    }
    s.lru.push_front(impl::cached{std::string(sql), std::move(fresh), false});
    auto it = s.lru.begin();
    s.index.emplace(it->sql, it);
    return statement_lease(&admit(it->stmt), &it->busy);
}

statement_lease::~statement_lease() {
    stmt_->reset();
    stmt_->clear_bindings();
    if (busy_ != nullptr) {
        *busy_ = false;
    }
}

result connection::collect(statement& s) {
    // Step before reading the column names: the step re-prepares a cached
    // statement whose schema changed, and the names must be the new ones.
    bool has_row = s.step();
    const int n = s.column_count();
    auto names = std::make_shared<std::vector<std::string>>();
    names->reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        names->emplace_back(s.column_name(i));
    }
    std::vector<row> rows;
    for (; has_row; has_row = s.step()) {
        std::vector<value> values;
        values.reserve(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) {
            values.push_back(detail::decode_column<value>(s, i));
        }
        rows.emplace_back(names, std::move(values));
    }
    const std::int64_t affected = s.readonly() ? 0 : changes();
    return result(std::move(names), std::move(rows), affected, last_insert_rowid());
}

void connection::log_statement(std::string_view sql, const std::vector<std::string>& params,
                               std::chrono::steady_clock::duration elapsed, const char* failure) {
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(elapsed);
    if (failure != nullptr) {
        impl_->log->log(log_level::info, "{} [{}] failed after {}: {}", sql,
                        fmt::join(params, ", "), micros, failure);
    } else {
        impl_->log->log(log_level::info, "{} [{}] ({})", sql, fmt::join(params, ", "), micros);
    }
}

void connection::record_failure(const error& e) {
    impl_->last = diagnostics{e.code(), e.message(), e.sql()};
}

std::int64_t connection::last_insert_rowid() const noexcept {
    return sqlite3_last_insert_rowid(impl_->db);
}
std::int64_t connection::changes() const noexcept {
    return sqlite3_changes64(impl_->db);
}
bool connection::in_transaction() const noexcept {
    return sqlite3_get_autocommit(impl_->db) == 0;
}
bool connection::file_moved() const noexcept {
    int moved = 0;
    if (sqlite3_file_control(impl_->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK) {
        return false;
    }
    return moved != 0;
}

std::string connection::journal_mode() {
    return scalar<std::string>("PRAGMA journal_mode");
}
const std::string& connection::path() const noexcept {
    return impl_->path;
}
const diagnostics& connection::last_diagnostics() const noexcept {
    return impl_->last;
}
void connection::set_echo(bool on) noexcept {
    impl_->echo = on;
}
void connection::set_busy_timeout(std::chrono::milliseconds timeout) noexcept {
    sqlite3_busy_timeout(impl_->db, static_cast<int>(timeout.count()));
}
bool connection::echo() const noexcept {
    return impl_->echo;
}
std::size_t connection::cache_size() const noexcept {
    return impl_->lru.size();
}
std::uint64_t connection::cache_hits() const noexcept {
    return impl_->hits;
}
std::uint64_t connection::cache_misses() const noexcept {
    return impl_->misses;
}
void connection::clear_cache() noexcept {
    impl_->index.clear();
    impl_->lru.clear();
}

void detail::throw_no_rows(std::string_view sql) {
    throw_error(errc::no_rows, "query returned no rows, exactly one expected", std::string(sql));
}

void detail::operation_control::begin(connection& c, std::uint64_t op) noexcept {
    c.impl_->active_op.store(op, std::memory_order_relaxed);
}
void detail::operation_control::end(connection& c) noexcept {
    c.impl_->active_op.store(0, std::memory_order_relaxed);
}
void detail::operation_control::cancel(connection& c, std::uint64_t op) noexcept {
    c.impl_->cancel_op.store(op, std::memory_order_relaxed);
}
void detail::operation_control::refuse_all(connection& c) noexcept {
    c.impl_->refusing.store(true, std::memory_order_relaxed);
}
bool detail::operation_control::refusing(const connection& c) noexcept {
    return c.impl_->refusing.load(std::memory_order_relaxed);
}
bool detail::operation_control::cancelled(const connection& c) noexcept {
    return c.impl_->cancelled();
}
sqlite3* connection::native_handle() const noexcept {
    return impl_->db;
}

namespace {
std::string_view begin_sql(transaction_mode mode) {
    switch (mode) {
        case transaction_mode::deferred:
            return "BEGIN DEFERRED";
        case transaction_mode::immediate:
            return "BEGIN IMMEDIATE";
        case transaction_mode::exclusive:
            return "BEGIN EXCLUSIVE";
    }
    return "BEGIN";
}
}  // namespace

transaction_guard::transaction_guard(connection& c, transaction_mode mode) : conn_(&c) {
    if (c.in_transaction()) {
        throw_error(errc::transaction_state, "a transaction is already open on this connection");
    }
    c.exec(begin_sql(mode));
}

transaction_guard::~transaction_guard() {
    if (open_ && conn_->in_transaction()) {
        try {
            conn_->exec("ROLLBACK");
        } catch (...) {
            // Destructors never throw; a failed rollback leaves SQLite to roll
            // back when the connection closes.
        }
    }
}

void transaction_guard::commit() {
    if (!open_) {
        throw_error(errc::transaction_state, "transaction already finished");
    }
    conn_->exec("COMMIT");
    open_ = false;
}

void transaction_guard::rollback() {
    if (!open_) {
        throw_error(errc::transaction_state, "transaction already finished");
    }
    open_ = false;
    if (conn_->in_transaction()) {
        conn_->exec("ROLLBACK");
    }
}

}  // namespace asqlite
