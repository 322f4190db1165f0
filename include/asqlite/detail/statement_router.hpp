#pragma once
// A statement's way through the engine, as a sans-io state machine: no
// threads, no timers, no SQLite. The session's driver (session::routed)
// asks where the statement goes, performs that step, and tells the router
// how it ended; the router answers with the next step. Unit-tested with a
// fake clock (test/unit/statement_router_test.cpp). Defined in
// src/statement_router.cpp.
//
// The decisions:
// - inside the session's open transaction (begin(), or BEGIN IMMEDIATE
//   through execute), the transaction's own way, which retries its own
//   BUSY (session::in_open_transaction);
// - on the read connection the session holds (a read transaction begun
//   with SQL), every statement runs there;
// - with a writer lane, a statement whose first words say it writes waits
//   for the writer; any other goes to the read connection a worker finds
//   idle, or, with none idle, waits in turn for one. A statement whose
//   words do not tell asks SQLite there (connection::writes) and, when it
//   writes, goes on to the writer unrun;
// - SQLITE_BUSY (another process holds a lock) repeats the step after a
//   wait (busy_backoff) until the busy budget is spent; any other error,
//   and a cancellation, ends the statement.

#include <chrono>
#include <cstdint>
#include <optional>

#include "asqlite/detail/sql_text.hpp"

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

/// Where a statement goes next.
enum class route : std::uint8_t {
    transaction,  // the session's open transaction
    held,         // the connection the session holds
    idle_read,    // a read connection the worker finds idle (none: no_idle_connection)
    checked_out,  // a read connection waited for in turn, held for the statement
    writer,       // the writer lane, waited for in turn
    wait,         // a timer of wait() (BUSY), then the step again
    done,         // the statement ran: complete with its value
    fail,         // complete with the last step's error
};

/// How the step last returned ended.
enum class step_outcome : std::uint8_t {
    ok,                  // it ran (a wait: the timer expired)
    no_idle_connection,  // idle_read: no connection was idle
    writes,              // idle_read, checked_out: SQLite says the statement writes; it did not run
    busy,                // SQLITE_BUSY
    failed,              // any other error, or a cancellation
};

/// What the session knows when the statement starts.
struct route_facts {
    bool open_transaction = false;
    bool holds_connection = false;
    bool writer_lane = false;
    sql_kind kind = sql_kind::other;
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
        return facts_.writer_lane && !facts_.open_transaction && !facts_.holds_connection &&
               facts_.kind == sql_kind::other;
    }
    /// A query may run inside a read transaction its worker holds.
    bool shares_reads() const noexcept { return facts_.kind == sql_kind::query; }

  private:
    route_facts facts_;
    busy_backoff backoff_;
    route step_ = route::fail;
    route after_wait_ = route::fail;
    route_clock::duration wait_{};
};

}  // namespace asqlite::detail
