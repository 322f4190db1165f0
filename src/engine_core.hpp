#pragma once
// The async engine's machinery, compiled only: the pooled connection record,
// the engine core's interface (its lanes, and the step a lane runs), and the
// completion helpers. The session's driver (session_driver.cpp), session.cpp,
// async_engine.cpp and the blocking lane (blocking_lane.cpp) use them.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "asqlite/detail/completion.hpp"
#include "asqlite/error.hpp"
#include "asqlite/session.hpp"
#include "backend.hpp"
#include "blocking_pool.hpp"
#include "statement_router.hpp"

namespace asqlite::detail {

namespace asio = boost::asio;

/// A connection owned by the pool. Fields marked (worker) are written by the
/// blocking-pool thread running an operation and read on the io side only
/// after that operation's completion was posted back (which orders them).
class engine_core;

struct pooled_connection {
    pooled_connection(std::unique_ptr<backend_connection> c, std::uint64_t conn_id,
                      std::chrono::steady_clock::time_point t)
        : conn(std::move(c)), id(conn_id), created(t) {}

    std::unique_ptr<backend_connection> conn;
    std::uint64_t id;
    std::chrono::steady_clock::time_point created;
    std::atomic<std::uint64_t> lease{0};  // bumped at every checkout (under the lane's lock)
    bool pending_rollback = false;        // io side: a transaction was dropped uncommitted
    // A transaction was begun here and its BEGIN IMMEDIATE waits for the
    // first statement, to run in the same job. Set on the io side; cleared
    // by the worker once BEGIN succeeded (read back after the completion).
    bool begin_pending = false;
    bool in_transaction = false;  // (worker) state after the last operation
    bool healthy = true;          // (worker) false: close instead of reusing
    bool urgent = false;          // the writer lane's: its jobs go first (see post_held)
    // What must be destroyed on this connection's thread before its next
    // use: the statements of streams dropped inside a transaction that
    // holds it (added on the io side while no job runs, destroyed by the
    // next job, the rollback of a dropped transaction, or with the
    // connection).
    std::vector<std::shared_ptr<void>> orphans;
    // A savepoint of the begin() transaction holding this connection was
    // dropped: its number, rolled back to before the next step (io side;
    // 0: none).
    std::uint64_t rollback_to_savepoint = 0;
};

struct op_state;

/// One step of an operation as a lane runs it: the job on a connection and
/// the completion. The session's driver is one; commit() and rollback() make
/// theirs. It lives until done() has been called.
class step {
  public:
    /// Where the lane runs jobs (a worker, for a blocking backend): the
    /// step's work on `c`. Exceptions are the step's error.
    virtual void work(backend_connection& c) = 0;
    /// Whether the step may share its write transaction with others' (group
    /// commit): it waits for the writer and makes no transaction of its own
    /// beyond the one work() wraps around it.
    virtual bool groupable() const noexcept { return false; }
    /// work() inside a group's transaction, without a transaction of its
    /// own (the group puts a savepoint around it).
    virtual void work_in_group(backend_connection& c) { work(c); }
    /// On executor(): the step ended (null: the job ran), and its connection
    /// is back with the lane or with the session.
    virtual void done(std::exception_ptr ep) = 0;
    virtual asio::any_io_executor executor() const = 0;
    virtual asio::cancellation_slot cancellation_slot() const = 0;

  protected:
    ~step() = default;
};

/// The handler a lane's hop completes for a step.
struct step_handler {
    step* s;
    using executor_type = asio::any_io_executor;
    executor_type get_executor() const { return s->executor(); }
    using cancellation_slot_type = asio::cancellation_slot;
    cancellation_slot_type get_cancellation_slot() const { return s->cancellation_slot(); }
    void operator()(std::exception_ptr ep) { s->done(std::move(ep)); }
};

/// What a step on a connection the session holds does first, on the
/// worker: the rollback of a transaction object dropped uncommitted since
/// the last operation, then a begin() transaction's pending BEGIN IMMEDIATE
/// (see pooled_connection); and, inside an open transaction object, the
/// check that SQLite has not ended that transaction meanwhile (it rolls
/// back the whole transaction when a write is interrupted, and on some
/// errors): the step then fails with errc::transaction_state rather than
/// run in autocommit. When BEGIN fails, nothing runs and BEGIN stays
/// pending. Taken on the io side as the step starts.
struct held_prelude {
    pooled_connection* pc = nullptr;
    bool rollback_first = false;
    bool begin_first = false;
    bool inside_transaction = false;
    std::uint64_t rollback_to = 0;  // a dropped savepoint's number

    static held_prelude take(pooled_connection& pc, bool inside_transaction) noexcept {
        return {&pc, std::exchange(pc.pending_rollback, false), pc.begin_pending,
                inside_transaction, std::exchange(pc.rollback_to_savepoint, 0)};
    }
    void run(backend_connection& c) const;
};

/// A waiter for a connection that runs its own job once granted one: from
/// whichever thread grants it (the io thread, or a worker that has just
/// given the connection back), it queues the job on the blocking pool, with
/// no trip through the io thread to resume a coroutine first. Each waiter
/// gets exactly one of start() or fail().
class lane_job {
  public:
    virtual ~lane_job() = default;
    /// Granted pc (checked out for this job, which gives it back).
    virtual void start(pooled_connection* pc) noexcept = 0;
    /// Timed out (pool_timeout), cancelled, or the engine closed.
    virtual void fail(std::exception_ptr ep) noexcept = 0;
    /// Whether the job may join a group commit (engine_core::
    /// take_groupable), which then runs it and ends it itself.
    virtual bool groupable() const noexcept { return false; }
};

/// The bounds of a group commit: at most `max_jobs` writes share one
/// transaction, and none joins it once it has run for `max_time`.
/// max_jobs 1: off.
struct group_limits {
    std::size_t max_jobs = 1;
    std::chrono::microseconds max_time{0};
};

class engine_core {
  public:
    virtual ~engine_core() = default;

    /// Fallback executor for completions whose handler has none.
    virtual const asio::any_io_executor& io_executor() const noexcept = 0;
    /// A session gives its connection back (rolling back first if needed).
    virtual void release(pooled_connection* pc) noexcept = 0;
    /// On a worker, for an operation not bound to a connection: the most
    /// recently used idle connection of this lane (warm caches), or a new
    /// one opened right here while the pool has room; null when none is
    /// free, someone waits for one, or the engine is closed. Give it back
    /// with release().
    virtual pooled_connection* pick() = 0;
    /// On a worker, for a query (SELECT) not bound to a connection: the read
    /// transaction this worker holds on one of this lane's connections,
    /// begun here when more queries are queued behind this one (see
    /// worker_hold); null when there is none to share (then pick()). The
    /// worker ends it; a failed query ends it at once (end_shared_read).
    virtual pooled_connection* shared_read() noexcept = 0;
    static void end_shared_read() noexcept {
        if (worker_hold* h = blocking_pool::hold()) {
            h->release();
        }
    }
    /// Whether close() was called.
    virtual bool closed() const noexcept = 0;
    /// The single-writer lane that write statements and transactions use, or
    /// null when this lane's connections write themselves.
    virtual engine_core* writer_lane() noexcept = 0;
    virtual std::shared_ptr<engine_core> writer_lane_ptr() noexcept = 0;
    /// Queues `job` for a connection of this lane, in turn with every other
    /// waiter (FIFO, pool_timeout), and starts it at once when one is idle.
    /// The waiter's id goes to state.set_waiter() under the lane's lock, so
    /// a cancellation finds it (and one that came first fails the job).
    /// `state` is not touched once the lock is released.
    virtual void acquire_for(std::unique_ptr<lane_job> job, op_state& state) = 0;
    /// Takes waiter `w` out of the line and fails its job with
    /// operation_aborted; false when it was granted (or ended) already.
    virtual bool cancel_waiting(std::uint64_t w) noexcept = 0;
    /// For a group commit, on the worker holding this lane's connection:
    /// the job first in line when it is groupable (lane_job::groupable),
    /// out of the line; null otherwise (nobody waits, the first waiter is
    /// not a groupable job, or the engine is closed).
    virtual std::unique_ptr<lane_job> take_groupable() noexcept = 0;
    /// The engine's pre_ping option: a granted connection is tried first.
    virtual bool pre_ping() const noexcept = 0;
    /// The database behind this lane's connections.
    virtual const backend& database() const noexcept = 0;

    // The ways a step reaches a connection of this lane. This engine's lanes
    // run the job on the blocking pool and complete the step through its
    // inbox; a lane of a backend with native asynchronous I/O starts its I/O
    // here instead. A cancellation through the step's slot stops the running
    // statement (or the wait in line); the step completes only after the job
    // has let go of the connection.
    /// On `pc`, which the session holds. With `gives_back`: once the job has
    /// left pc outside any transaction, the lane takes pc back before the
    /// step completes and sets gives_back->released (the io side must not
    /// touch pc after that; a cancellation reaches it through gives_back).
    virtual void run_held(pooled_connection& pc, step& s, op_state* gives_back) = 0;
    /// On the connection that is idle when the job runs (see pick,
    /// shared_read with state.shares); state.none_idle when there is none.
    /// A connection the job leaves inside a transaction goes to
    /// state.pinned, for the session; any other goes back.
    virtual void run_on_idle(op_state& state, step& s) = 0;
    /// On a connection waited for in turn (FIFO, pool_timeout), in one job:
    /// no hop to the io thread between the grant and the job. It goes back
    /// on the worker, so the next waiter's job follows at once, unless the
    /// job left it inside a transaction (or set state.hold) and
    /// state.may_pin: then state.pinned has it.
    virtual void run_in_line(op_state& state, step& s) = 0;

    /// How long SQLITE_BUSY is retried (on timers, never by sleeping on a
    /// worker) before it reaches the caller: the options' busy_timeout.
    std::chrono::milliseconds busy_budget() const noexcept { return busy_budget_; }
    void count_busy_retry() noexcept { busy_retries_.fetch_add(1, std::memory_order_relaxed); }
    std::uint64_t busy_retries() const noexcept {
        return busy_retries_.load(std::memory_order_relaxed);
    }
    const group_limits& grouping() const noexcept { return grouping_; }
    /// A group commit of `members` jobs (two or more) ran to its COMMIT.
    void count_group(std::size_t members) noexcept {
        groups_.fetch_add(1, std::memory_order_relaxed);
        grouped_.fetch_add(members, std::memory_order_relaxed);
    }

    /// Runs job(true) on the blocking pool, or job(false) right here when
    /// the engine is closed (the job then only reports that).
    template <class Job>
    void post_blocking(Job&& job, bool urgent = false) {
        pool_->post(std::forward<Job>(job), urgent);
    }
    blocking_pool& pool() noexcept { return *pool_; }

  protected:
    std::chrono::milliseconds busy_budget_{0};
    std::atomic<std::uint64_t> busy_retries_{0};
    group_limits grouping_;
    std::atomic<std::uint64_t> groups_{0};
    std::atomic<std::uint64_t> grouped_{0};
    std::shared_ptr<blocking_pool> pool_;  // shared by the lanes of an engine
};

/// pre_ping's check of a granted connection, on a worker: false, with the
/// connection marked to be closed when it goes back, when it fails.
inline bool ping(pooled_connection& pc) noexcept {
    if (pc.conn->ping()) {
        return true;
    }
    pc.healthy = false;
    return false;
}

/// The error a cancelled operation completes with.
std::exception_ptr aborted_error();
/// Throws aborted_error() when `e` is Asio's operation_aborted (an awaitable
/// refuses to start an operation after a cancellation with it).
void rethrow_if_aborted(const boost::system::system_error& e);
/// The error an operation on a closed engine completes with.
std::exception_ptr closed_error();
/// The same for a statement that close() interrupted while it ran.
std::exception_ptr interrupted_by_close_error();

/// The completion token for co_await of an internal operation in an
/// asio::awaitable: the operation's void(std::exception_ptr, R) arrives
/// as one std::tuple (unpack it with value_of), and co_await takes it with
/// no coroutine frame of its own, where use_awaitable makes one per
/// operation. (Boost 1.81 cannot co_await a deferred operation whose
/// signature has two arguments starting with std::exception_ptr: its
/// handler for that signature does not compile.)
inline constexpr auto frameless = asio::as_tuple(asio::deferred);

/// The value of an operation awaited with `frameless`, or its error thrown.
template <class R>
R value_of(std::tuple<std::exception_ptr, R>&& outcome) {
    if (std::get<0>(outcome)) {
        std::rethrow_exception(std::move(std::get<0>(outcome)));
    }
    return std::move(std::get<1>(outcome));
}
inline void value_of(std::tuple<std::exception_ptr>&& outcome) {
    if (std::get<0>(outcome)) {
        std::rethrow_exception(std::move(std::get<0>(outcome)));
    }
}

/// Calls the handler of a completed operation, its cancellation slot
/// cleared first so that no stale cancellation handler survives it.
template <class Handler, class... Args>
void call_handler(Handler& h, Args&&... args) {
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) {
        slot.clear();
    }
    std::move(h)(std::forward<Args>(args)...);
}

/// Completes `handler` on its executor `ex` (work-tracked), never inline,
/// clearing its cancellation slot first so no stale cancellation handler
/// survives. Executors that cannot be posted to directly (the type-erased
/// any_completion_executor) are reached through a post to `io` and a
/// dispatch from there, the way Asio's own I/O objects complete.
///
/// The executor is taken by value and moved along, never copied: copies of a
/// type-erased executor share a reference count whose fences ThreadSanitizer
/// cannot see.
template <class Executor, class Handler, class... Args>
void complete_on(const asio::any_io_executor& io, Executor ex, Handler&& handler, Args&&... args) {
    auto invoke = [h = std::forward<Handler>(handler), ... a = std::forward<Args>(args)]() mutable {
        call_handler(h, std::move(a)...);
    };
    if (blocking_pool::draining(context_of(ex))) {
        // Called from a completion the blocking pool's inbox is running on
        // this thread, for a handler of that context: it runs later in the
        // same batch (still not inline), dispatched to its executor.
        blocking_pool::defer_to_drain([ex = std::move(ex), f = std::move(invoke)]() mutable {
            asio::dispatch(std::move(ex), std::move(f));
        });
        return;
    }
    if constexpr (requires { asio::post(ex, std::move(invoke)); }) {
        asio::post(ex, std::move(invoke));
    } else {
        asio::post(io, [ex = std::move(ex), f = std::move(invoke)]() mutable {
            asio::dispatch(ex, std::move(f));
        });
    }
}

/// The handler's executor (the engine's io executor if it has none),
/// tracked as outstanding work so the io_context waits for the completion.
/// Taken before the handler's type is erased.
template <class Handler>
auto tracked_executor(const Handler& handler, const engine_core& core) {
    return asio::prefer(asio::get_associated_executor(handler, core.io_executor()),
                        asio::execution::outstanding_work.tracked);
}

/// A process-wide operation number, for cancellation: a request that
/// arrives late never matches a later operation on the same connection.
std::uint64_t new_op_id() noexcept;
/// errc::transaction_state: SQLite ended an open transaction by itself (a
/// write interrupted by a cancellation, or an error that rolls back).
[[noreturn]] void throw_transaction_ended();
/// errc::transaction_state: write(fn)'s fn ended the transaction the
/// engine made around it.
[[noreturn]] void throw_ended_by_job();

/// On a worker: job() on `c` inside a transaction the engine ends
/// (write(fn)'s own, or a group commit's), which job must not end: a
/// COMMIT it runs fails (and rolls the transaction back), and then, as
/// after its ROLLBACK, this throws throw_ended_by_job().
template <class Job>
void run_guarded(backend_connection& c, Job&& job) {
    c.guard_transaction();
    try {
        std::forward<Job>(job)();
    } catch (...) {
        if (c.end_guard()) {
            throw_ended_by_job();
        }
        throw;
    }
    if (c.end_guard() || !c.in_transaction()) {
        throw_ended_by_job();
    }
}

/// A step's state where a lane and other threads meet (the driver's, or
/// commit's), living until the step completes. For a step whose connection
/// the worker picks when it runs it (engine_core::pick):
/// The worker gives the connection back afterwards unless it is left
/// inside a transaction: then `pinned` hands it to the session. With
/// nothing to pick, `none_idle` says the session must check one out.
struct op_state {
    std::uint64_t op = 0;
    pooled_connection* pinned = nullptr;  // (worker) read after the completion
    bool none_idle = false;               // (worker) likewise
    // A step that waits for a connection of `lane` (engine_core::run_in_line):
    // whether the connection may stay with the session when the job leaves
    // it inside a transaction, and whether it must (set by the job, on the
    // worker: a transaction was begun there).
    engine_core* lane = nullptr;
    bool may_pin = true;
    bool hold = false;
    // An operation on a connection the session holds, whose job gives it
    // back (run_held's `gives_back`): set by the worker once it has.
    bool released = false;
    // A query (SELECT) outside a transaction: it may run inside the read
    // transaction its worker holds (engine_core::shared_read).
    bool shares = false;
    // Its step has a cancellation slot, so cancel() may come. Set by the
    // lane before the job is queued. Without one (a coroutine spawned
    // with `detached`, say), attach() and detach() need no lock.
    bool cancellable = false;

    // A cancellation meets the worker here: before the job runs it is
    // refused, while it runs the statement is stopped, afterwards the
    // connection is no longer reachable (it may be closed by then). While
    // the operation waits in its lane's line, it leaves the line.
    void cancel() noexcept {
        std::uint64_t w = 0;
        {
            std::lock_guard lock(mutex_);
            cancelled_.store(true, std::memory_order_relaxed);
            if (running_ != nullptr) {
                running_->cancel(op);
            }
            w = std::exchange(waiter_, 0);
        }
        if (w != 0) {
            lane->cancel_waiting(w);
        }
    }
    /// Where the operation waits in its lane's line (called by the lane,
    /// under its lock, before anyone can grant the waiter); false (and
    /// nothing kept) when it was cancelled already.
    bool set_waiter(std::uint64_t w) noexcept {
        std::lock_guard lock(mutex_);
        waiter_ = cancelled() ? 0 : w;
        return !cancelled();
    }
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }
    /// The worker starts on `c`; false when cancelled already.
    bool attach(backend_connection& c) noexcept {
        if (!cancellable) {
            return true;
        }
        std::lock_guard lock(mutex_);
        running_ = cancelled() ? nullptr : &c;
        return running_ != nullptr;
    }
    void detach() noexcept {
        if (!cancellable) {
            return;
        }
        std::lock_guard lock(mutex_);
        running_ = nullptr;
    }

  private:
    std::mutex mutex_;
    backend_connection* running_ = nullptr;  // under mutex_
    std::uint64_t waiter_ = 0;               // under mutex_: in the lane's line
    std::atomic<bool> cancelled_{false};     // set under mutex_; a first look without it
};

/// Waits on a timer of the awaiting coroutine's executor.
inline asio::awaitable<void> wait_for(std::chrono::steady_clock::duration d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(asio::use_awaitable);
}

/// Runs attempt() (an operation started with `frameless`) again while it
/// fails with SQLITE_BUSY, waiting on timers as busy_backoff says (1 ms
/// doubling up to 100 ms, within `core`'s busy budget). Only for attempts
/// that have no effect when they fail with BUSY.
/// first_failure: the caller made the first attempt itself and it failed
/// with this BUSY error, so this starts with the wait (or rethrows it when
/// the budget allows no retry). retryable(): whether a failed attempt had
/// no effect after all (checked after each BUSY failure).
template <class Attempt, class Retryable>
asio::awaitable<void> retry_busy(engine_core& core, Attempt attempt,
                                 std::exception_ptr first_failure, Retryable retryable) {
    busy_backoff backoff(core.busy_budget());
    std::exception_ptr failure = std::move(first_failure);
    for (;;) {
        if (!failure) {
            try {
                detail::value_of(co_await attempt());
                co_return;
            } catch (const error& e) {
                if (primary_code(e.code()) != errc::busy || !retryable()) {
                    throw;
                }
                failure = std::current_exception();
            }
        }
        const auto wait = backoff.after_busy(route_clock::now());
        if (!wait) {
            std::rethrow_exception(failure);
        }
        failure = nullptr;
        core.count_busy_retry();
        co_await wait_for(*wait);
    }
}

/// An open transaction, shared by its session and its transaction object
/// (both movable, io side): where the session's operations go until the
/// transaction ends, and whether the session is still there. One begun by
/// SQL (`BEGIN IMMEDIATE` through execute) has no transaction object: the
/// session holds the writer connection itself until SQLite's transaction
/// ends.
struct tx_link {
    tx_link(engine_core* lane, pooled_connection* conn, bool sql = false) noexcept
        : core(lane), pc(conn), by_sql(sql) {}
    engine_core* core;      // the lane it runs on (the writer lane, or the session's own)
    pooled_connection* pc;  // its connection; null while a begin() waits for the writer
    bool by_sql;            // begun by a statement; the session gives pc back to core
    bool open = true;       // false once committed, rolled back or dropped
    bool session_gone = false;
    // A begin() that found the writer busy takes it with its first
    // statement: the transaction object's writer session, which gets pc
    // then (null once the object is gone or finished).
    session* writer = nullptr;
    bool connection_gone = false;  // BEGIN ran, but the connection was closed since
    std::uint64_t savepoints = 0;  // savepoints made (begin_nested): the last one's number
    std::vector<std::uint64_t> live_savepoints;  // open ones, innermost last
    /// Savepoint `n` ends, and with it every one inside it; false when it
    /// had ended already.
    bool end_savepoint(std::uint64_t n) noexcept {
        const auto it = std::find(live_savepoints.begin(), live_savepoints.end(), n);
        if (it == live_savepoints.end()) {
            return false;
        }
        live_savepoints.erase(it, live_savepoints.end());
        return true;
    }
    bool savepoint_live(std::uint64_t n) const noexcept {
        return std::find(live_savepoints.begin(), live_savepoints.end(), n) !=
               live_savepoints.end();
    }
};

/// The SQL name of savepoint number `n` of a transaction.
std::string savepoint_name(std::uint64_t n);

using acquire_handler = asio::any_completion_handler<void(std::exception_ptr, session)>;
/// Checks out a connection of `lane` (the pool, or its writer lane); the
/// completion goes to `work`, the handler's own executor, work-tracked.
void async_acquire(engine_core& lane, acquire_handler handler, asio::any_io_executor work);
/// A session at once when an idle connection is free and nobody waits (no
/// trip through the io_context); an empty session otherwise.
session try_acquire(engine_core& lane);
/// A session of `lane` holding no connection yet; errc::pool_closed once
/// the engine is closed.
session new_session(std::shared_ptr<engine_core> lane);

}  // namespace asqlite::detail
