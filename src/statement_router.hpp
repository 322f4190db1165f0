#pragma once
// A session operation's way through the engine, as a sans-io state machine:
// no threads, no timers, no SQLite. The driver (src/session_driver.cpp) asks
// where the operation goes, performs that step, and tells the router how it
// ended; the router answers with the next step. Unit-tested with a fake
// clock (test/unit/statement_router_test.cpp).
//
// The decisions:
// - inside the session's open transaction, the transaction's connection:
//   a begin() transaction's (whose first statement may still have to wait
//   for the writer, and run BEGIN IMMEDIATE there), or the writer the
//   session holds for a transaction begun with SQL;
// - write(fn) inside a read transaction begun with SQL (on a read
//   connection, with a writer lane): refused;
// - on the connection the session holds (a read transaction begun with
//   SQL, or the single connection of its lane), everything runs there;
// - with a writer lane, write(fn) and a statement whose first words say it
//   writes wait for the writer; anything else goes to the read connection a
//   worker finds idle or, with none idle, waits in turn for one. A statement
//   whose words do not tell asks SQLite there (connection::writes) and, when
//   it writes, goes on to the writer unrun;
// - SQLITE_BUSY (another process holds a lock) repeats the step after a
//   wait (busy_backoff) until the busy budget is spent, except for run(fn)
//   outside a transaction and write(fn) joining one begun with SQL (their
//   fn may have done something); the driver reports BUSY only when the
//   failed attempt had no effect. Any other error, and a cancellation,
//   ends the operation.

#include <chrono>
#include <cstdint>
#include <optional>

#include "asqlite/detail/operation.hpp"
#include "sql_text.hpp"

namespace asqlite::detail {

using route_clock = std::chrono::steady_clock;

/// The waits between attempts that failed with SQLITE_BUSY: 1 ms, doubling
/// up to 100 ms, for as long as the next attempt starts within `budget` of
/// the first failure (the engine's busy_timeout).
class busy_backoff {
  public:
    explicit busy_backoff(route_clock::duration budget) noexcept : budget_(budget) {}
    /// After a BUSY failure at `now`: the wait before the next attempt, or
    /// nothing when the budget is spent (the failure is final).
    std::optional<route_clock::duration> after_busy(route_clock::time_point now) noexcept;

  private:
    route_clock::duration budget_;
    route_clock::duration delay_ = std::chrono::milliseconds(1);
    std::optional<route_clock::time_point> deadline_;
};

/// Where an operation goes next.
enum class route : std::uint8_t {
    transaction,      // the session's begin() transaction, on its connection
    first_on_writer,  // a begin() transaction's first statement, waiting for the writer
    sql_transaction,  // the writer the session holds for a transaction begun with SQL
    refused,          // write(fn) inside a read transaction begun with SQL: fail
    held,             // the connection the session holds
    idle_read,        // a read connection the worker finds idle (none: no_idle_connection)
    checked_out,      // a read connection waited for in turn, held for the operation
    writer,           // the writer lane, waited for in turn
    wait,             // a timer of wait() (BUSY), then the step again
    done,             // it ran: complete with its value
    fail,             // complete with the last step's error
};

/// How the step last returned ended.
enum class step_outcome : std::uint8_t {
    ok,                  // it ran (a wait: the timer expired)
    no_idle_connection,  // idle_read: no connection was idle
    writes,              // idle_read, checked_out: SQLite says the statement writes; it did not run
    busy,                // SQLITE_BUSY, and the attempt had no effect
    failed,              // any other error, or a cancellation
};

/// The session's transaction when the operation starts.
enum class open_transaction : std::uint8_t {
    none,
    begun,            // begin()'s, with its connection (BEGIN IMMEDIATE perhaps still to run)
    awaiting_writer,  // begin()'s, whose writer was busy: its first statement waits for it
    by_sql,           // BEGIN IMMEDIATE through execute(): the session holds the writer
};

/// What the session knows when the operation starts.
struct route_facts {
    operation_kind op = operation_kind::statement;
    open_transaction transaction = open_transaction::none;
    bool holds_connection = false;
    bool in_sql_read_transaction =
        false;  // the held connection is inside a transaction begun with SQL
    bool writer_lane = false;
    sql_kind kind = sql_kind::other;  // a statement's first words
    bool begins_transaction = false;  // ... and they are BEGIN
};

class statement_router {
  public:
    statement_router(route_facts facts, route_clock::duration busy_budget) noexcept
        : facts_(facts), backoff_(busy_budget) {}

    /// The first step.
    route start() noexcept;
    /// The step after the last one ended with `outcome` at `now`.
    route next(step_outcome outcome, route_clock::time_point now) noexcept;
    /// For route::wait: how long.
    route_clock::duration wait() const noexcept { return wait_; }

    /// The statement's job asks SQLite whether it writes before running
    /// (on a read connection, for a statement whose words do not tell).
    bool checks_writes() const noexcept {
        return facts_.op == operation_kind::statement && facts_.writer_lane &&
               facts_.transaction == open_transaction::none && !facts_.holds_connection &&
               facts_.kind == sql_kind::other;
    }
    /// A query may run inside a read transaction its worker holds.
    bool shares_reads() const noexcept {
        return facts_.op == operation_kind::statement &&
               facts_.transaction == open_transaction::none && facts_.kind == sql_kind::query;
    }
    /// write(fn) makes its own transaction around fn (BEGIN IMMEDIATE ...
    /// COMMIT); inside an open one, fn just joins it.
    bool wraps_in_transaction() const noexcept {
        return facts_.op == operation_kind::write && facts_.transaction == open_transaction::none &&
               !facts_.in_sql_read_transaction;
    }
    /// On the writer lane, the operation may share a write transaction
    /// with others' (group commit): write(fn) making its own transaction,
    /// or a statement whose words say it writes, outside a transaction,
    /// that is not BEGIN.
    bool groups_writes() const noexcept {
        return facts_.writer_lane && !facts_.holds_connection &&
               (wraps_in_transaction() ||
                (facts_.op == operation_kind::statement &&
                 facts_.transaction == open_transaction::none && facts_.kind == sql_kind::write &&
                 !facts_.begins_transaction));
    }
    /// run(fn) outside a transaction runs where nothing can write: a write
    /// it attempts fails with an error that says what to use instead.
    bool explains_refused_writes() const noexcept {
        return facts_.op == operation_kind::run && facts_.transaction == open_transaction::none;
    }

  private:
    /// Outside an open transaction, run(fn) is never repeated (fn may do
    /// more than touch the database), nor write(fn) joining a transaction
    /// begun with SQL on a single-connection lane (what fn did stays in
    /// that transaction). Inside one, the driver reports BUSY only when
    /// the attempt had no effect.
    bool retries_busy() const noexcept {
        if (facts_.transaction != open_transaction::none) {
            return true;
        }
        switch (facts_.op) {
            case operation_kind::statement:
                return true;
            case operation_kind::run:
                return false;
            case operation_kind::write:
                return wraps_in_transaction();
        }
        return false;
    }

    route_facts facts_;
    busy_backoff backoff_;
    route step_ = route::fail;
    route after_wait_ = route::fail;
    route_clock::duration wait_{};
};

}  // namespace asqlite::detail
