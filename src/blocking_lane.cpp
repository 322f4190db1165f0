#include "blocking_lane.hpp"

#include <boost/asio/dispatch.hpp>

#include <memory>
#include <utility>

namespace asqlite::detail {

namespace {

/// Whether `ex` belongs to the execution context of the pool's io executor.
bool same_context(const asio::any_io_executor& ex, const blocking_pool& pool) {
    return context_of(ex) == pool.io_context_id();
}

/// On the io thread, inside the inbox's batch: completes the step on `ex`,
/// its executor (at once when that is the io executor), its cancellation
/// slot cleared.
void dispatch_step(asio::any_io_executor ex, step_handler h, std::exception_ptr ep) {
    asio::dispatch(std::move(ex), [h, ep = std::move(ep)]() mutable { call_handler(h, ep); });
}

/// From a worker: completes the step on `ex` (its executor, work-tracked)
/// through the pool's batched inbox (see blocking_pool.hpp); a step whose
/// executor belongs to another execution context is posted there directly,
/// so its completion never waits for the engine's io_context to run. When
/// the job did not run (the pool is closed), with closed_error().
void finish_step(engine_core& lane, bool ran, asio::any_io_executor ex, step_handler h,
                 std::exception_ptr ep) {
    if (!ran) {
        complete_on(lane.io_executor(), std::move(ex), h, closed_error());
    } else if (!same_context(ex, lane.pool())) {
        complete_on(lane.pool().io(), std::move(ex), h, std::move(ep));
    } else {
        lane.pool().deliver([ex = std::move(ex), h, ep = std::move(ep)]() mutable {
            dispatch_step(std::move(ex), h, std::move(ep));
        });
    }
}

/// On a worker: runs the step's job on pc's connection as operation `op`
/// and returns its error: operation_aborted when it was cancelled (before
/// or while it ran), errc::pool_closed when close() interrupted it, the
/// connection's reason when it may not run at all. An error that poisons
/// the connection marks it unhealthy; pc.in_transaction is updated.
std::exception_ptr run_operation(pooled_connection& pc, std::uint64_t op, step& s) noexcept {
    pc.orphans.clear();
    backend_connection& c = *pc.conn;
    c.begin_operation(op);
    auto cancelled = [&c] { return c.refusing() ? interrupted_by_close_error() : aborted_error(); };
    std::exception_ptr ep;
    if (c.cancelled()) {
        ep = cancelled();
    } else if ((ep = c.unusable())) {
        pc.healthy = false;
    } else {
        try {
            s.work(c);
        } catch (const error& e) {
            if (c.cancelled() && primary_code(e.code()) == errc::interrupt) {
                ep = cancelled();
            } else {
                ep = std::current_exception();
            }
            if (c.poisoned_by(e.code())) {
                pc.healthy = false;
            }
        } catch (...) {
            ep = std::current_exception();
        }
    }
    c.end_operation();
    pc.in_transaction = c.in_transaction();
    return ep;
}

/// run_operation() with `state` watching for the operation's cancellation;
/// operation_aborted when it was cancelled already.
std::exception_ptr run_attached(op_state& state, pooled_connection& pc, step& s) noexcept {
    if (!state.attach(*pc.conn)) {
        return aborted_error();
    }
    std::exception_ptr ep = run_operation(pc, state.op, s);
    state.detach();
    return ep;
}

/// A cancellation requested through the step's slot goes to `state` (set
/// before the job is queued).
void watch_cancellation(op_state& state, const step& s) {
    auto slot = s.cancellation_slot();
    if (slot.is_connected()) {
        state.cancellable = true;
        slot.assign([l = &state](asio::cancellation_type) { l->cancel(); });
    }
}

/// Queues a step's job: body() runs on a worker and returns the step's
/// error, and the step completes on its executor (with closed_error() if
/// the pool is closed). A step of the engine's io_context, the usual case,
/// travels alone: the pool keeps that context's work while the job is out
/// (blocking_pool::post_tracked), so neither the job nor its completion
/// carries an executor (docs/architecture.md, "Operations carry no
/// executor"). A step of another context has its work-tracked executor
/// kept on the side (`elsewhere`) and is completed there directly.
template <class Body>
void post_step(engine_core& lane, step& s, Body body, bool urgent, bool shares) {
    const step_handler h{&s};
    std::unique_ptr<asio::any_io_executor> elsewhere;
    if (!same_context(s.executor(), lane.pool())) {
        elsewhere = std::make_unique<asio::any_io_executor>(tracked_executor(h, lane));
    }
    const bool tracked = elsewhere == nullptr;
    auto job = [lane = &lane, elsewhere = std::move(elsewhere), h,
                b = std::move(body)](bool run) mutable {
        std::exception_ptr ep;
        if (run) {
            ep = b();
        }
        if (!run || elsewhere) {
            // Closed (nothing was counted), or another context's step.
            asio::any_io_executor ex =
                elsewhere ? std::move(*elsewhere) : tracked_executor(h, *lane);
            elsewhere.reset();
            finish_step(*lane, run, std::move(ex), h, std::move(ep));
            return;
        }
        // The completion runs in the pool's drain (the pool outlives it; the
        // lane need not).
        lane->pool().deliver_tracked([h, ep = std::move(ep)]() mutable {
            dispatch_step(h.get_executor(), h, std::move(ep));
        });
    };
    if (tracked) {
        lane.pool().post_tracked(std::move(job), urgent, shares);
    } else {
        lane.pool().post(std::move(job), urgent, shares);
    }
}

/// On a worker: the step on the connection lane.pick() gives, which goes
/// back afterwards or, left inside a transaction, to the session
/// (state.pinned); with none to pick, state.none_idle. A query may instead
/// join the read transaction its worker holds, which the worker ends.
std::exception_ptr run_on_idle(engine_core& lane, op_state& state, step& s) noexcept {
    if (state.cancelled()) {
        return aborted_error();  // cancelled in the queue: no connection needed
    }
    if (pooled_connection* shared = state.shares ? lane.shared_read() : nullptr) {
        std::exception_ptr ep = run_attached(state, *shared, s);
        if (ep) {
            engine_core::end_shared_read();  // whatever it was, start afresh
        }
        return ep;
    }
    pooled_connection* pc = nullptr;
    try {
        pc = lane.pick();
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
    std::exception_ptr ep = run_attached(state, *pc, s);
    if (pc->in_transaction && pc->healthy) {
        state.pinned = pc;
    } else {
        lane.release(pc);
    }
    return ep;
}

/// A step waiting in its lane's line: started on the granted connection,
/// it runs the job there and then, on the worker, gives the connection
/// back, so that the next waiter's job starts right after it; or, when the
/// job left it inside a transaction (or set state.hold), hands it to the
/// session (state.pinned) if state.may_pin.
class in_line final : public lane_job {
  public:
    in_line(engine_core& lane, op_state& state, asio::any_io_executor ex, step& s)
        : lane_(&lane), state_(&state), ex_(std::move(ex)), step_(&s) {}

    void start(pooled_connection* pc) noexcept override {
        std::unique_ptr<in_line> self(this);
        engine_core* lane = lane_;
        lane->post_blocking(
            [self = std::move(self), pc](bool live) mutable { run(std::move(self), pc, live); },
            pc->urgent);
    }

    void fail(std::exception_ptr ep) noexcept override {
        std::unique_ptr<in_line> self(this);
        complete_on(lane_->io_executor(), std::move(ex_), step_handler{step_}, std::move(ep));
    }

  private:
    static void run(std::unique_ptr<in_line> self, pooled_connection* pc, bool live) {
        engine_core& lane = *self->lane_;
        op_state& state = *self->state_;
        if (live && lane.pre_ping() && !state.cancelled() && !ping(*pc)) {
            lane.release(pc);  // closes it; wait in line for another
            lane.acquire_for(std::move(self), state);
            return;
        }
        std::exception_ptr ep;
        if (live) {
            ep = run_attached(state, *pc, *self->step_);
        }
        if (live && state.may_pin && pc->healthy && (pc->in_transaction || state.hold)) {
            state.pinned = pc;
        } else {
            lane.release(pc);
        }
        finish_step(lane, live, std::move(self->ex_), step_handler{self->step_}, std::move(ep));
    }

    engine_core* lane_;
    op_state* state_;
    asio::any_io_executor ex_;
    step* step_;
};

}  // namespace

void post_held(engine_core& lane, pooled_connection& pc, step& s, op_state* gives_back) {
    const std::uint64_t op = new_op_id();
    if (gives_back != nullptr) {
        // A cancellation reaches the connection through gives_back, which
        // the worker lets go of before it gives the connection back.
        gives_back->op = op;
        watch_cancellation(*gives_back, s);
    } else if (auto slot = s.cancellation_slot(); slot.is_connected()) {
        slot.assign([c = pc.conn.get(), op](asio::cancellation_type) { c->cancel(op); });
    }
    post_step(
        lane, s,
        [&lane, &pc, &s, op, gives_back]() -> std::exception_ptr {
            if (gives_back == nullptr) {
                return run_operation(pc, op, s);
            }
            std::exception_ptr ep = run_attached(*gives_back, pc, s);
            if (!pc.in_transaction) {
                gives_back->released = true;  // read after the completion is handed over
                lane.release(&pc);
            }
            return ep;
        },
        pc.urgent, false);
}

void post_on_idle(engine_core& lane, op_state& state, step& s) {
    state.op = new_op_id();
    watch_cancellation(state, s);
    post_step(
        lane, s, [&lane, &state, &s] { return run_on_idle(lane, state, s); }, false, state.shares);
}

void post_in_line(engine_core& lane, op_state& state, step& s) {
    auto ex = tracked_executor(step_handler{&s}, lane);
    state.op = new_op_id();
    state.lane = &lane;
    watch_cancellation(state, s);
    lane.acquire_for(std::make_unique<in_line>(lane, state, std::move(ex), s), state);
}

}  // namespace asqlite::detail
