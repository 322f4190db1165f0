#pragma once
// How this engine's lanes run a step: the job on the blocking pool, its
// completion handed back through the pool's inbox to the step's executor
// (engine_core::run_held, run_on_idle, run_in_line). Only async_engine.cpp
// includes this; everything else reaches a lane through engine_core.

#include <memory>
#include <type_traits>
#include <utility>

#include "engine_core.hpp"

namespace asqlite::detail {

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

}  // namespace asqlite::detail
