#include "sqlite_backend.hpp"

#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <utility>

#include "asqlite/connection.hpp"
#include "operation_control.hpp"
#include "sqlite_error.hpp"

namespace asqlite::detail {

namespace {

bool is_memory(const std::string& path) {
    return path == ":memory:" || path.empty();
}

/// A named shared in-memory database: every pooled connection must see one
/// database.
std::string shared_memory_uri() {
    static std::atomic<std::uint64_t> counter{0};
    return fmt::format("file:asqlite-mem-{}-{}?mode=memory&cache=shared", ::getpid(),
                       counter.fetch_add(1));
}

std::exception_ptr moved_error(const std::string& path) {
    return std::make_exception_ptr(error(
        make_error_code(errc::readonly_dbmoved),
        fmt::format("database file '{}' was deleted, moved or replaced while open; refusing to "
                    "write into the old file (the connection is closed, the next one opens "
                    "the path afresh)",
                    path)));
}

const char* sql_of(transaction_verb verb) noexcept {
    switch (verb) {
        case transaction_verb::begin_write:
            return "BEGIN IMMEDIATE";
        case transaction_verb::begin_read:
            return "BEGIN";
        case transaction_verb::commit:
            return "COMMIT";
        case transaction_verb::rollback:
            return "ROLLBACK";
        case transaction_verb::savepoint:
            return "SAVEPOINT asqlite_group_member";
        case transaction_verb::release:
            return "RELEASE asqlite_group_member";
        case transaction_verb::rollback_to:
            return "ROLLBACK TO asqlite_group_member";
    }
    return "ROLLBACK";
}

/// Whether `verb` runs once per group member: a cached statement, where
/// the others (once per transaction at most) go through exec.
bool per_member(transaction_verb verb) noexcept {
    return verb == transaction_verb::savepoint || verb == transaction_verb::release ||
           verb == transaction_verb::rollback_to;
}

class sqlite_connection final : public backend_connection {
  public:
    sqlite_connection(connection c, bool guard_moved)
        : conn_(std::move(c)), guard_moved_(guard_moved) {
        sqlite3_commit_hook(conn_.native_handle(), &sqlite_connection::on_commit, this);
    }
    ~sqlite_connection() override { sqlite3_commit_hook(conn_.native_handle(), nullptr, nullptr); }
    sqlite_connection(const sqlite_connection&) = delete;
    sqlite_connection& operator=(const sqlite_connection&) = delete;

    void run(operation& op) override { op.run(conn_); }
    void exec(transaction_verb verb) override {
        if (per_member(verb)) {
            conn_.prepare_cached(sql_of(verb))->step();
        } else {
            conn_.exec(sql_of(verb));
        }
    }
    bool ping() noexcept override {
        try {
            conn_.exec("SELECT 1");
            return true;
        } catch (...) {
            return false;
        }
    }
    bool writes(std::string_view sql) override { return conn_.writes(sql); }
    bool in_transaction() const noexcept override { return conn_.in_transaction(); }
    void guard_transaction() noexcept override {
        guarded_ = true;
        refused_commit_ = false;
    }
    void check_deferred_constraints() override {
        int now = 0;
        int highest = 0;
        if (sqlite3_db_status(conn_.native_handle(), SQLITE_DBSTATUS_DEFERRED_FKS, &now, &highest,
                              0) == SQLITE_OK &&
            now > 0) {
            throw_error(errc::constraint_foreignkey,
                        "FOREIGN KEY constraint failed (a deferred constraint, checked where this "
                        "write's own COMMIT would have checked it)");
        }
    }
    void rollback_to_savepoint(std::string_view name) override {
        conn_.exec(fmt::format("ROLLBACK TO {0}; RELEASE {0}", name));
    }
    bool end_guard() noexcept override {
        guarded_ = false;
        return std::exchange(refused_commit_, false);
    }

    std::exception_ptr unusable() noexcept override {
        // A writer whose file is gone: SQLite would write into the unlinked
        // file and lose it all.
        if (guard_moved_ && conn_.file_moved()) {
            return moved_error(conn_.path());
        }
        return nullptr;
    }
    bool poisoned_by(const std::error_code& ec) const noexcept override {
        if (ec.category() != category()) {
            return false;
        }
        if (ec == make_error_code(errc::readonly_dbmoved)) {
            return true;
        }
        switch (primary_code(ec)) {
            case errc::ioerr:
            case errc::corrupt:
            case errc::nomem:
            case errc::notadb:
            case errc::cantopen:
            case errc::misuse:
            case errc::internal:
            case errc::protocol:
                return true;
            default:
                return false;
        }
    }
    void explain_refused_write(const error& e) override {
        // A read connection refuses a statement that writes before it runs
        // (needs_writer), and SQLite's query_only refuses the rest (exec,
        // pragmas) with plain SQLITE_READONLY.
        const bool refused = e.code() == make_error_code(errc::needs_writer) ||
                             (e.code() == make_error_code(errc::readonly) &&
                              conn_.scalar<int>("PRAGMA query_only") == 1);
        if (refused) {
            throw_error(errc::readonly,
                        "session::run() outside a transaction runs on a read connection, where "
                        "nothing can write; run work that writes with session::write(fn), or "
                        "inside begin() ... commit()",
                        e.sql());
        }
    }

    void begin_operation(std::uint64_t op) noexcept override {
        operation_control::begin(conn_, op);
    }
    void end_operation() noexcept override { operation_control::end(conn_); }
    bool cancelled() const noexcept override { return operation_control::cancelled(conn_); }
    bool refusing() const noexcept override { return operation_control::refusing(conn_); }
    void cancel(std::uint64_t op) noexcept override { operation_control::cancel(conn_, op); }
    void refuse_all() noexcept override { operation_control::refuse_all(conn_); }

  private:
    /// SQLite's commit hook: a non-zero return turns the COMMIT into a
    /// ROLLBACK (SQLITE_CONSTRAINT_COMMITHOOK). Called on the connection's
    /// own thread, inside sqlite3_step.
    static int on_commit(void* self) noexcept {
        auto* me = static_cast<sqlite_connection*>(self);
        if (!me->guarded_) {
            return 0;
        }
        me->refused_commit_ = true;
        return 1;
    }

    connection conn_;
    bool guard_moved_;             // a writer of a file: refuse to run once the file has moved
    bool guarded_ = false;         // (blocking) guard_transaction() .. end_guard()
    bool refused_commit_ = false;  // (blocking) a COMMIT was refused meanwhile
};

class sqlite_backup final : public backend_backup {
  public:
    sqlite_backup(connection source, const std::string& target) : source_(std::move(source)) {
        // The snapshot: a read transaction held to the end, so that the
        // copy is of one moment, and SQLite never restarts it when the
        // engine's writer commits.
        source_.exec("BEGIN");
        source_.scalar<std::int64_t>("SELECT count(*) FROM sqlite_schema");
        sqlite3* db = nullptr;
        const int rc = sqlite3_open_v2(target.c_str(), &db,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                           SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                                       nullptr);
        target_.reset(db);
        if (rc != SQLITE_OK) {
            throw_sqlite(db, rc);
        }
        backup_.reset(sqlite3_backup_init(db, "main", source_.native_handle(), "main"));
        if (backup_ == nullptr) {
            throw_sqlite(db, sqlite3_errcode(db));
        }
    }

    bool step(int pages) override {
        const int rc = sqlite3_backup_step(backup_.get(), pages);
        if (rc == SQLITE_DONE) {
            return true;
        }
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            throw_sqlite(target_.get(), rc);
        }
        return false;
    }
    std::size_t remaining() const noexcept override {
        return static_cast<std::size_t>(sqlite3_backup_remaining(backup_.get()));
    }
    std::size_t total() const noexcept override {
        return static_cast<std::size_t>(sqlite3_backup_pagecount(backup_.get()));
    }
    void finish() override {
        const int rc = sqlite3_backup_finish(backup_.release());
        if (rc != SQLITE_OK) {
            throw_sqlite(target_.get(), rc);
        }
        // The target's own journal and synchronous=FULL: on disk once closed.
        const int closed = sqlite3_close(target_.get());
        if (closed != SQLITE_OK) {
            throw_sqlite(target_.get(), closed);
        }
        target_.release();
        source_.exec("COMMIT");
    }

  private:
    struct closer {
        void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
    };
    struct finisher {
        void operator()(sqlite3_backup* b) const noexcept { sqlite3_backup_finish(b); }
    };

    // Destroyed in reverse: the backup, then its target, then the source.
    connection source_;
    std::unique_ptr<sqlite3, closer> target_;
    std::unique_ptr<sqlite3_backup, finisher> backup_;
};

class sqlite_backend final : public backend {
  public:
    explicit sqlite_backend(const engine_options& options)
        : options_(options), memory_(is_memory(options.path)) {
        if (memory_) {
            // Kept alive by a connection that is never handed out (shared
            // cache uses table locks that busy_timeout does not cover: one
            // connection serves).
            path_ = shared_memory_uri();
            keeper_ = std::make_unique<connection>(path_, options_.connection_settings(false));
        } else {
            path_ = options.path;
        }
    }

    std::unique_ptr<backend_backup> begin_backup(const std::string& target) const override {
        connection_options settings = options_.connection_settings(false);
        settings.query_only = true;
        return std::make_unique<sqlite_backup>(connection(path_, settings), target);
    }

    std::unique_ptr<backend_connection> open(connection_role role) override {
        connection_options settings = options_.connection_settings(false);
        if (role == connection_role::reader) {
            settings.query_only = true;
            settings.reject_writes = true;
        }
        connection c(path_, settings);
        // Opening (journal_mode=WAL) may wait for a lock inside SQLite; from
        // here on SQLite's busy handler would sleep on a worker thread, so
        // the sessions retry BUSY on timers instead (statement_router).
        c.set_busy_timeout(std::chrono::milliseconds(0));
        if (options_.on_connect) {
            options_.on_connect(c);
        }
        const bool in_memory = path_.find("mode=memory") != std::string::npos;
        return std::make_unique<sqlite_connection>(std::move(c),
                                                   role != connection_role::reader && !in_memory);
    }
    bool separate_writer() const noexcept override { return !memory_ && options_.pool_size != 1; }
    std::size_t single_lane_size(std::size_t pool_size) const noexcept override {
        return memory_ ? 1 : pool_size;
    }
    sql_kind classify(std::string_view sql) const noexcept override { return sql_kind_of(sql); }
    sql_end transaction_end(std::string_view sql) const noexcept override {
        return sql_end_of(sql);
    }

  private:
    engine_options options_;
    bool memory_;
    std::string path_;
    std::unique_ptr<connection> keeper_;
};

}  // namespace

std::shared_ptr<backend> make_sqlite_backend(const engine_options& options) {
    return std::make_shared<sqlite_backend>(options);
}

}  // namespace asqlite::detail
