#pragma once
// The async engine's machinery, compiled only: the pooled connection record,
// the engine core's interface (its lanes), and the hops that run a job on
// the blocking pool and complete on the caller's executor. The session's
// driver (session_driver.cpp), session.cpp and async_engine.cpp use them.

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
    bool urgent = false;          // the writer lane's: its jobs go first (see run_initiation)
};

struct op_state;

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
    /// The engine's pre_ping option: a granted connection is tried first.
    virtual bool pre_ping() const noexcept = 0;
    /// The database behind this lane's connections.
    virtual const backend& database() const noexcept = 0;

    /// How long SQLITE_BUSY is retried (on timers, never by sleeping on a
    /// worker) before it reaches the caller: the options' busy_timeout.
    std::chrono::milliseconds busy_budget() const noexcept { return busy_budget_; }
    void count_busy_retry() noexcept { busy_retries_.fetch_add(1, std::memory_order_relaxed); }
    std::uint64_t busy_retries() const noexcept {
        return busy_retries_.load(std::memory_order_relaxed);
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

/// From a worker: completes `handler` on its executor `ex` through the
/// pool's batched inbox (see blocking_pool.hpp), clearing its cancellation
/// slot first. The inbox runs on the engine's io executor; from there the
/// handler is dispatched, so it runs at once when `ex` is that executor.
/// A handler whose executor belongs to another execution context is posted
/// there directly (as before the inbox existed).
template <class Executor>
bool same_context(const Executor& ex, const blocking_pool& pool) noexcept {
    return context_of(ex) == pool.io_context_id();
}

/// On the io thread, inside the inbox's batch: runs the handler on `ex`
/// (at once when `ex` is the io executor), its cancellation slot cleared.
template <class Executor, class Handler, class... Args>
void dispatch_handler(Executor ex, Handler&& handler, Args&&... args) {
    asio::dispatch(std::move(ex), [h = std::forward<Handler>(handler),
                                   ... a = std::forward<Args>(args)]() mutable {
        call_handler(h, std::move(a)...);
    });
}

template <class Executor, class Handler, class... Args>
void deliver_on(blocking_pool& pool, Executor ex, Handler&& handler, Args&&... args) {
    if (!same_context(ex, pool)) {
        // The handler lives on another execution context: straight there, so
        // its completion never waits for the engine's io_context to run.
        complete_on(pool.io(), std::move(ex), std::forward<Handler>(handler),
                    std::forward<Args>(args)...);
        return;
    }
    pool.deliver([ex = std::move(ex), h = std::forward<Handler>(handler),
                  ... a = std::forward<Args>(args)]() mutable {
        dispatch_handler(std::move(ex), std::move(h), std::move(a)...);
    });
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

template <class R>
using op_value = std::conditional_t<std::is_void_v<R>, int, R>;

/// A borrowed callable `void(backend_connection&)`: the type-erased job
/// that run_operation runs.
class job_ref {
  public:
    template <class F>
    explicit job_ref(F& f) noexcept
        : obj_(&f), call_([](void* o, backend_connection& c) { (*static_cast<F*>(o))(c); }) {}
    void operator()(backend_connection& c) const { call_(obj_, c); }

  private:
    void* obj_;
    void (*call_)(void*, backend_connection&);
};

/// On a worker: runs job on pc's connection as operation `op` and returns
/// its error: operation_aborted when it was cancelled (before or while it
/// ran), errc::pool_closed when close() interrupted it, moved_error() for a
/// write guard whose file is gone. An error that poisons the connection
/// marks it unhealthy; pc.in_transaction is updated.
std::exception_ptr run_operation(pooled_connection& pc, std::uint64_t op, job_ref job) noexcept;

/// run_operation() of f, storing its value in `out`.
template <class R, class Fn>
std::exception_ptr run_on(pooled_connection& pc, std::uint64_t op, Fn& f, op_value<R>& out) {
    auto store = [&f, &out](backend_connection& c) {
        if constexpr (std::is_void_v<R>) {
            f(c);
        } else {
            out = f(c);
        }
    };
    return run_operation(pc, op, job_ref(store));
}

/// Hands the outcome of a job to its handler: through the pool's inbox
/// from a worker (run), or posted when the engine is closed.
template <class R, class Executor, class Handler>
void finish_job(engine_core* core, bool run, Executor&& ex, Handler&& h, std::exception_ptr ep,
                op_value<R>&& out) {
    // Everything the io side will touch is moved along: nothing of it may
    // be released on the worker once the completion is handed over.
    if (!run) {
        if constexpr (std::is_void_v<R>) {
            complete_on(core->io_executor(), std::move(ex), std::move(h), closed_error());
        } else {
            complete_on(core->io_executor(), std::move(ex), std::move(h), closed_error(),
                        std::move(out));
        }
    } else if constexpr (std::is_void_v<R>) {
        deliver_on(core->pool(), std::move(ex), std::move(h), std::move(ep));
    } else {
        deliver_on(core->pool(), std::move(ex), std::move(h), std::move(ep), std::move(out));
    }
}

/// Queues an operation's job: body(out) runs on a worker and returns the
/// operation's error (its value goes to `out`), and the handler completes
/// with the outcome on its executor (with closed_error() if the pool is
/// closed). A handler of the engine's io_context, the usual case, travels
/// alone: the pool keeps that context's work while the job is out
/// (blocking_pool::post_tracked), and the handler's executor is looked up
/// again where it completes, so neither the job nor its completion carries
/// an executor (docs/architecture.md, "Operations carry no executor"). A
/// handler of another context
/// has its work-tracked executor kept on the side (`elsewhere`) and is
/// completed there directly (complete_on), never through the engine's
/// io_context.
template <class R, class Handler, class Body>
void post_operation(engine_core* core, Handler&& handler, Body&& body, bool urgent = false,
                    bool shares = false) {
    using executor = decltype(tracked_executor(handler, *core));
    std::unique_ptr<executor> elsewhere;
    if (!same_context(asio::get_associated_executor(handler, core->io_executor()), core->pool())) {
        elsewhere = std::make_unique<executor>(tracked_executor(handler, *core));
    }
    const bool tracked = elsewhere == nullptr;
    auto job = [core, elsewhere = std::move(elsewhere), h = std::forward<Handler>(handler),
                b = std::forward<Body>(body)](bool run) mutable {
        op_value<R> out{};
        std::exception_ptr ep;
        if (run) {
            ep = b(out);
        }
        if (!run || elsewhere) {
            // Closed (nothing was counted), or another context's handler:
            // posted to its executor.
            executor ex = elsewhere ? std::move(*elsewhere) : tracked_executor(h, *core);
            elsewhere.reset();
            finish_job<R>(core, run, std::move(ex), std::move(h), std::move(ep), std::move(out));
            return;
        }
        // The completion runs in the pool's drain (the pool outlives it; the
        // core need not).
        const auto deliver = [&](auto&&... a) {
            blocking_pool& pool = core->pool();
            pool.deliver_tracked([pool = &pool, h = std::move(h), ... a = std::move(a)]() mutable {
                auto ex = asio::get_associated_executor(h, pool->io());
                dispatch_handler(std::move(ex), std::move(h), std::move(a)...);
            });
        };
        if constexpr (std::is_void_v<R>) {
            deliver(std::move(ep));
        } else {
            deliver(std::move(ep), std::move(out));
        }
    };
    if (tracked) {
        core->pool().post_tracked(std::move(job), urgent, shares);
    } else {
        core->pool().post(std::move(job), urgent, shares);
    }
}

/// An operation whose connection the worker picks when it runs it (see
/// engine_core::pick), living in the awaiting frame until it completes.
/// The worker gives the connection back afterwards unless it is left
/// inside a transaction: then `pinned` hands it to the session. With
/// nothing to pick, `none_idle` says the session must check one out.
struct op_state {
    std::uint64_t op = 0;
    pooled_connection* pinned = nullptr;  // (worker) read after the completion
    bool none_idle = false;               // (worker) likewise
    // An operation that waits for a connection of `lane` (async_run_on_lane):
    // whether the connection may stay with the session when the job leaves
    // it inside a transaction, and whether it must (set by the job, on the
    // worker: a transaction was begun there).
    engine_core* lane = nullptr;
    bool may_pin = true;
    bool hold = false;
    // An operation on a connection the session holds, whose job gives it
    // back (run_initiation's `back`): set by the worker once it has.
    bool released = false;
    // A query (SELECT) outside a transaction: it may run inside the read
    // transaction its worker holds (engine_core::shared_read).
    bool shares = false;
    // Its handler has a cancellation slot, so cancel() may come. Set by the
    // initiation before the job is queued. Without one (a coroutine spawned
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

/// A cancellation requested through the handler's slot goes to `state`
/// (set before the job is queued).
template <class Handler>
void watch_cancellation(op_state& state, const Handler& handler) {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) {
        state.cancellable = true;
        slot.assign([l = &state](asio::cancellation_type) { l->cancel(); });
    }
}

/// On a worker: runs f on pc as operation `op`, with `state` watching for
/// its cancellation; operation_aborted when it was cancelled already.
template <class R, class Fn>
std::exception_ptr run_attached(op_state& state, std::uint64_t op, pooled_connection& pc, Fn& f,
                                op_value<R>& out) {
    if (!state.attach(*pc.conn)) {
        return aborted_error();
    }
    std::exception_ptr ep = run_on<R>(pc, op, f, out);
    state.detach();
    return ep;
}

/// Runs fn(connection&) on the blocking pool and completes with its value
/// (or exception) on the handler's executor. Cancellation requested through
/// the handler's slot stops the running statement (progress handler) and the
/// operation completes with operation_aborted; the completion is delivered
/// only after the worker is done with the connection.
/// back (optional, in the awaiting frame): once fn has left the connection
/// outside any transaction (a COMMIT), the worker gives it back to `core`
/// and sets back->released; the io side must not touch pc after that. A
/// cancellation then reaches the connection through `back`, which the
/// worker lets go of first, never through pc.
template <class R>
struct run_initiation {
    engine_core* core;
    pooled_connection* pc;
    op_state* gives_back = nullptr;

    template <class Handler, class Fn>
    void operator()(Handler&& handler, Fn&& fn) const {
        const std::uint64_t op = new_op_id();
        if (gives_back != nullptr) {
            gives_back->op = op;
            watch_cancellation(*gives_back, handler);
        } else if (auto slot = asio::get_associated_cancellation_slot(handler);
                   slot.is_connected()) {
            slot.assign([c = pc->conn.get(), op](asio::cancellation_type) { c->cancel(op); });
        }
        auto body = [pc = pc, op, core = core, gives_back = gives_back,
                     f = std::forward<Fn>(fn)](op_value<R>& out) mutable -> std::exception_ptr {
            if (gives_back == nullptr) {
                return run_on<R>(*pc, op, f, out);
            }
            std::exception_ptr ep = run_attached<R>(*gives_back, op, *pc, f, out);
            if (!pc->in_transaction) {
                gives_back->released = true;  // read after the completion is handed over
                core->release(pc);
            }
            return ep;
        };
        // The writer lane's statements jump the queue of reads: everyone who
        // writes waits behind the one connection holding the lane.
        post_operation<R>(core, std::forward<Handler>(handler), std::move(body), pc->urgent);
    }
};

template <class R, class Token, class Fn>
auto async_run(engine_core* core, pooled_connection* pc, Fn&& fn, Token&& token,
               op_state* gives_back = nullptr) {
    return asio::async_initiate<Token, op_signature<R>>(run_initiation<R>{core, pc, gives_back},
                                                        token, std::forward<Fn>(fn));
}

/// On a worker: runs f as `state`'s operation on the connection core->pick()
/// gives, and gives it back or, left inside a transaction, hands it to the
/// session (`state.pinned`); with none to pick, sets `state.none_idle`.
/// A query may instead join the read transaction its worker holds
/// (engine_core::shared_read), which the worker ends.
template <class R, class Fn>
std::exception_ptr run_on_idle(engine_core* core, op_state& state, Fn& f, op_value<R>& out) {
    if (state.cancelled()) {
        return aborted_error();  // cancelled in the queue: no connection needed
    }
    if (pooled_connection* shared = state.shares ? core->shared_read() : nullptr) {
        std::exception_ptr ep = run_attached<R>(state, state.op, *shared, f, out);
        if (ep) {
            engine_core::end_shared_read();  // whatever it was, start afresh
        }
        return ep;
    }
    pooled_connection* pc = nullptr;
    try {
        pc = core->pick();
    } catch (...) {
        return std::current_exception();  // the open failed
    }
    if (pc == nullptr) {
        if (state.cancelled()) {
            return aborted_error();
        }
        state.none_idle = true;
        return nullptr;
    }
    std::exception_ptr ep = run_attached<R>(state, state.op, *pc, f, out);
    if (pc->in_transaction && pc->healthy) {
        state.pinned = pc;
    } else {
        core->release(pc);
    }
    return ep;
}

template <class R>
struct idle_initiation {
    engine_core* core;
    op_state* state;

    template <class Handler, class Fn>
    void operator()(Handler&& handler, Fn&& fn) const {
        state->op = new_op_id();
        watch_cancellation(*state, handler);
        post_operation<R>(
            core, std::forward<Handler>(handler),
            [state = state, core = core, f = std::forward<Fn>(fn)](op_value<R>& out) mutable {
                return run_on_idle<R>(core, *state, f, out);
            },
            false, state->shares);
    }
};

template <class R, class Token, class Fn>
auto async_run_on_idle(engine_core* core, op_state* state, Fn&& fn, Token&& token) {
    return asio::async_initiate<Token, op_signature<R>>(idle_initiation<R>{core, state}, token,
                                                        std::forward<Fn>(fn));
}

/// The job of an operation that waits for a connection of its lane
/// (async_run_on_lane). Started on the granted connection, it runs fn there
/// and then, on the worker, gives the connection back, so that the next
/// waiter's job starts right after it; or, when fn left the connection
/// inside a transaction (or set state.hold), hands it to the session
/// (state.pinned) if state.may_pin. With pre_ping, a connection that fails
/// the ping is closed and the job waits in line again.
template <class R, class Executor, class Handler, class Fn>
class lane_op final : public lane_job {
  public:
    lane_op(engine_core* lane, op_state* state, Executor ex, Handler h, Fn f)
        : lane_(lane), late_(state), ex_(std::move(ex)), h_(std::move(h)), f_(std::move(f)) {}

    void start(pooled_connection* pc) noexcept override {
        std::unique_ptr<lane_op> self(this);
        engine_core* lane = lane_;
        lane->post_blocking(
            [self = std::move(self), pc](bool live) mutable { run(std::move(self), pc, live); },
            pc->urgent);
    }

    void fail(std::exception_ptr ep) noexcept override {
        std::unique_ptr<lane_op> self(this);
        if constexpr (std::is_void_v<R>) {
            complete_on(lane_->io_executor(), std::move(ex_), std::move(h_), std::move(ep));
        } else {
            complete_on(lane_->io_executor(), std::move(ex_), std::move(h_), std::move(ep),
                        op_value<R>{});
        }
    }

  private:
    static void run(std::unique_ptr<lane_op> self, pooled_connection* pc, bool live) {
        engine_core* lane = self->lane_;
        op_state& state = *self->late_;
        if (live && lane->pre_ping() && !state.cancelled() && !ping(*pc)) {
            lane->release(pc);  // closes it; wait in line for another
            lane->acquire_for(std::move(self), state);
            return;
        }
        op_value<R> out{};
        std::exception_ptr ep;
        if (live) {
            ep = run_attached<R>(state, state.op, *pc, self->f_, out);
        }
        if (live && state.may_pin && pc->healthy && (pc->in_transaction || state.hold)) {
            state.pinned = pc;
        } else {
            lane->release(pc);
        }
        finish_job<R>(lane, live, std::move(self->ex_), std::move(self->h_), std::move(ep),
                      std::move(out));
    }

    engine_core* lane_;
    op_state* late_;
    Executor ex_;
    Handler h_;
    Fn f_;
};

template <class R>
struct lane_initiation {
    engine_core* lane;
    op_state* state;

    template <class Handler, class Fn>
    void operator()(Handler&& handler, Fn&& fn) const {
        auto ex = tracked_executor(handler, *lane);
        state->op = new_op_id();
        state->lane = lane;
        watch_cancellation(*state, handler);
        using job = lane_op<R, decltype(ex), std::decay_t<Handler>, std::decay_t<Fn>>;
        lane->acquire_for(
            std::make_unique<job>(lane, state, std::move(ex), std::forward<Handler>(handler),
                                  std::forward<Fn>(fn)),
            *state);
    }
};

/// Runs fn on a connection of `lane` that the operation waits for in turn
/// (FIFO, pool_timeout, cancellation), in one job: no hop to the io thread
/// between the grant and fn. The connection goes back to the lane on the
/// worker, unless it is left inside a transaction and state->may_pin: then
/// state->pinned has it, for the session. `state` lives in the awaiting frame,
/// fresh for each operation.
template <class R, class Token, class Fn>
auto async_run_on_lane(engine_core* lane, op_state* state, Fn&& fn, Token&& token) {
    return asio::async_initiate<Token, op_signature<R>>(lane_initiation<R>{lane, state}, token,
                                                        std::forward<Fn>(fn));
}

/// An operation of a session, in one job: first the rollback of a
/// transaction object dropped uncommitted since the last operation, then a
/// transaction's pending BEGIN IMMEDIATE (see pooled_connection), then fn.
/// When BEGIN fails, fn does not run and BEGIN stays pending.
/// inside_transaction: fn belongs to an open transaction object. If SQLite
/// has ended that transaction meanwhile (it rolls back the whole
/// transaction when a write is interrupted, and on some errors), fn does not
/// run in autocommit: it fails with errc::transaction_state.
/// back: see run_initiation.
template <class R, class Token, class Fn>
auto session_op(engine_core* core, pooled_connection* pc, Fn&& fn, Token&& token,
                bool inside_transaction = false, op_state* gives_back = nullptr) {
    const bool rollback_first = std::exchange(pc->pending_rollback, false);
    const bool begin_first = pc->begin_pending;
    return async_run<R>(
        core, pc,
        [f = std::forward<Fn>(fn), rollback_first, begin_first, inside_transaction,
         pc](backend_connection& c) mutable -> R {
            if (rollback_first && c.in_transaction()) {
                c.exec(transaction_verb::rollback);
            }
            if (begin_first) {
                c.exec(transaction_verb::begin_write);
                pc->begin_pending = false;
            } else if (inside_transaction && !c.in_transaction()) {
                throw_transaction_ended();
            }
            return f(c);
        },
        std::forward<Token>(token), gives_back);
}

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
};

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
