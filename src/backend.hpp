#pragma once
// The backend seam: what the async engine needs of a database. The router
// (statement_router), the pool (pool_state, async_core) and the session's
// driver reach the database only through these two interfaces; SQLite
// (sqlite_backend.cpp) is the first implementation.
//
// A backend says how its connections are opened and laid out in lanes, how
// a statement is classified for routing, and what its transaction verbs
// are. A connection runs an operation's job, the engine's own statements
// (transaction verbs, a ping), says whether a statement writes, and lets
// another thread cancel the operation running on it.
//
// Where the work runs: every member of backend_connection marked (blocking)
// runs on a thread of the engine's blocking pool, as SQLite's calls must.
// A backend with native asynchronous I/O (a socket the io_context waits on)
// plugs in one level up, at the lane (engine_core::run_held, run_on_idle,
// run_in_line): its lane starts the I/O instead of posting to the blocking
// pool, and completes the step when the I/O is done; the router, the
// pool's state machine and the session's driver stay as they are.
// docs/architecture.md, "The backend seam", says what that takes.

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "asqlite/detail/operation.hpp"
#include "asqlite/error.hpp"
#include "sql_text.hpp"

namespace asqlite::detail {

/// The statements the engine itself issues.
enum class transaction_verb : std::uint8_t {
    begin_write,  // a write transaction, its lock taken at once (SQLite: BEGIN IMMEDIATE)
    begin_read,   // a read transaction (a snapshot shared by reads; a ROLLBACK's target)
    commit,
    rollback,
    // Group commit (see run_group in blocking_lane.cpp): one member's job
    // runs between `savepoint` and `release`, or `rollback_to` then
    // `release` when it failed, inside the group's write transaction.
    savepoint,
    release,
    rollback_to,
};

/// Where a connection serves in an engine (see backend::lanes()).
enum class connection_role : std::uint8_t {
    reader,  // reads only: writes are refused before they run
    writer,  // the single writer of a reader/writer layout
    single,  // the one lane of an engine without a separate writer
};

class backend_connection {
  public:
    virtual ~backend_connection() = default;

    /// (blocking) The operation's job on this connection.
    virtual void run(operation& op) = 0;
    /// (blocking) One of the engine's own statements.
    virtual void exec(transaction_verb verb) = 0;
    /// (blocking) A cheap round trip (pre_ping): false when it failed.
    virtual bool ping() noexcept = 0;
    /// (blocking) Whether `sql` would write, from the prepared statement.
    virtual bool writes(std::string_view sql) = 0;
    /// Inside a transaction after the last statement. (blocking, or after
    /// the step's completion has ordered it)
    virtual bool in_transaction() const noexcept = 0;
    /// (blocking) Around a job that runs inside a transaction the engine
    /// ends (write(fn)'s own, a group commit's): while guarded, a COMMIT
    /// (or END) the job runs fails, and the database rolls the transaction
    /// back, rather than end the engine's transaction early. end_guard()
    /// says whether the job tried.
    virtual void guard_transaction() noexcept = 0;
    virtual bool end_guard() noexcept = 0;
    /// (blocking) Inside a transaction: throws the error COMMIT would give
    /// now for constraints checked only at commit (SQLite: deferred foreign
    /// keys), so that a group commit fails the member that broke them, not
    /// the group.
    virtual void check_deferred_constraints() = 0;
    /// (blocking) ROLLBACK TO and RELEASE of savepoint `name`.
    virtual void rollback_to_savepoint(std::string_view name) = 0;

    /// (blocking) Why nothing may run here now (SQLite: the database file
    /// was deleted or replaced while open, and a write would go to the old
    /// one), or null. The connection is closed afterwards.
    virtual std::exception_ptr unusable() noexcept = 0;
    /// Whether an error leaves the connection in a state we cannot trust.
    virtual bool poisoned_by(const std::error_code& ec) const noexcept = 0;
    /// Inside run(fn) outside a transaction: when `e` is a write refused
    /// by a read connection, throws the documented error for it; returns
    /// otherwise. (blocking)
    virtual void explain_refused_write(const error& e) = 0;

    /// (blocking) Around operation `op`'s statements.
    virtual void begin_operation(std::uint64_t op) noexcept = 0;
    virtual void end_operation() noexcept = 0;
    /// The running operation was cancelled or refused (after its statement
    /// failed with errc::interrupt: that is why).
    virtual bool cancelled() const noexcept = 0;
    virtual bool refusing() const noexcept = 0;
    /// From any thread: operation `op`'s statements (and only its) fail
    /// with errc::interrupt.
    virtual void cancel(std::uint64_t op) noexcept = 0;
    /// From any thread, for close(): the running operation and every one
    /// begun later fail so.
    virtual void refuse_all() noexcept = 0;
};

/// An online copy of the database in steps (async_engine::backup), inside
/// one read transaction of a connection of its own: a consistent snapshot
/// however long it takes, while the engine's connections go on.
class backend_backup {
  public:
    virtual ~backend_backup() = default;
    /// (blocking) Copies up to `pages` more; true once all are copied.
    virtual bool step(int pages) = 0;
    /// Pages still to copy, and the total, after the last step.
    virtual std::size_t remaining() const noexcept = 0;
    virtual std::size_t total() const noexcept = 0;
    /// (blocking) After the last step: the copy complete on disk, closed.
    virtual void finish() = 0;
};

class backend {
  public:
    virtual ~backend() = default;
    /// (blocking) Starts a copy of the database into a new file at `target`.
    virtual std::unique_ptr<backend_backup> begin_backup(const std::string& target) const = 0;

    /// (blocking) A new connection for `role`, set up (the engine's
    /// on_connect run).
    virtual std::unique_ptr<backend_connection> open(connection_role role) = 0;
    /// Whether the engine has a separate writer lane (readers plus one
    /// writer), or one lane that does both.
    virtual bool separate_writer() const noexcept = 0;
    /// How many connections the one lane of an engine without a separate
    /// writer may have.
    virtual std::size_t single_lane_size(std::size_t pool_size) const noexcept = 0;
    /// A statement's kind by its words, for routing (the connection's
    /// writes() decides the rest).
    virtual sql_kind classify(std::string_view sql) const noexcept = 0;
    /// Whether a statement ends the transaction it runs in.
    virtual sql_end transaction_end(std::string_view sql) const noexcept = 0;
};

}  // namespace asqlite::detail
