#include "blocking_lane.hpp"

#include <boost/asio/dispatch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

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
/// In a group commit (`grouped`), the step's work_in_group() runs instead of
/// work(), guarded (run_guarded): it must not end the group's transaction.
std::exception_ptr run_operation(pooled_connection& pc, std::uint64_t op, step& s,
                                 bool grouped = false) noexcept {
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
            if (grouped) {
                run_guarded(c, [&] {
                    s.work_in_group(c);
                    c.check_deferred_constraints();
                });
            } else {
                s.work(c);
            }
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
std::exception_ptr run_attached(op_state& state, pooled_connection& pc, step& s,
                                bool grouped = false) noexcept {
    if (!state.attach(*pc.conn)) {
        return aborted_error();
    }
    std::exception_ptr ep = run_operation(pc, state.op, s, grouped);
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

class group_commit;

/// A step waiting in its lane's line: started on the granted connection,
/// it runs the job there and then, on the worker, gives the connection
/// back, so that the next waiter's job starts right after it; or, when the
/// job left it inside a transaction (or set state.hold), hands it to the
/// session (state.pinned) if state.may_pin.
class in_line final : public lane_job {
  public:
    in_line(engine_core& lane, op_state& state, asio::any_io_executor ex, step& s)
        : lane_(&lane), state_(&state), ex_(std::move(ex)), step_(&s) {}

    bool groupable() const noexcept override {
        return lane_->grouping().max_jobs > 1 && step_->groupable();
    }

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
    static void run(std::unique_ptr<in_line> self, pooled_connection* pc, bool live);

    friend class group_commit;

    engine_core* lane_;
    op_state* state_;
    asio::any_io_executor ex_;
    step* step_;
};

/// A group commit (engine_options::group_commit; docs/concurrency.md,
/// "Group commit"), on the worker holding the writer: the groupable jobs
/// first in line run in one write transaction, each between a savepoint and
/// its release, and one COMMIT ends it; each completes after that COMMIT,
/// with its own outcome.
/// - A job that fails (an error, fn's exception, a cancellation) is rolled
///   back to its savepoint; the others go on.
/// - A job whose failure ends the whole transaction (SQLite rolls it back
///   when a write is interrupted, on OR ROLLBACK or RAISE(ROLLBACK), on a
///   full disk; fn running ROLLBACK or COMMIT, see run_guarded) takes the
///   work of the jobs before it along: those run again, in a new
///   transaction, without it (their work was never visible, nor
///   acknowledged). Every pass drops a job, so this ends.
/// - A job whose error leaves the connection untrustworthy fails; the
///   others wait in line again, for a new connection.
/// - When BEGIN, a savepoint's statement or COMMIT fails, every job not
///   yet ended gets that error: nothing of the group is acknowledged that
///   is not in the database.
/// More jobs join from the line while the group runs, up to
/// group_limits::max_jobs, until it has run for max_time.
class group_commit {
  public:
    group_commit(engine_core& lane, pooled_connection& pc) noexcept
        : lane_(lane),
          pc_(pc),
          c_(*pc.conn),
          deadline_(std::chrono::steady_clock::now() + lane.grouping().max_time) {}

    /// Room for `n` members; false when out of memory.
    bool reserve(std::size_t n) noexcept {
        try {
            members_.reserve(n);
            return true;
        } catch (...) {
            return false;
        }
    }
    /// A member, in room reserved for it. Only in_line jobs say they are
    /// groupable.
    void add(std::unique_ptr<lane_job> job) noexcept {
        members_.emplace_back();
        members_.back().job.reset(static_cast<in_line*>(job.release()));
    }

    /// Runs the group, gives the connection back and completes every
    /// member.
    void run() noexcept {
        while (pass()) {
        }
        const std::size_t size = members_.size();
        // Back to the lane first, so that the next writer starts while the
        // completions travel.
        std::vector<std::unique_ptr<in_line>> again;
        for (member& m : members_) {
            if (!m.ended) {
                again.push_back(std::move(m.job));  // the connection went bad under them
            }
        }
        pc_.in_transaction = c_.in_transaction();
        lane_.release(&pc_);
        if (committed_) {
            lane_.count_group(size);
        }
        for (auto& job : again) {
            op_state& state = *job->state_;
            lane_.acquire_for(std::move(job), state);
        }
        for (member& m : members_) {
            if (m.ended) {
                finish_step(lane_, true, std::move(m.job->ex_), step_handler{m.job->step_},
                            std::move(m.outcome));
            }
        }
    }

  private:
    struct member {
        std::unique_ptr<in_line> job;
        std::exception_ptr outcome;
        bool ran = false;    // in the open transaction, waiting for COMMIT
        bool ended = false;  // outcome is final
    };

    /// One transaction: false once the group is over.
    bool pass() noexcept {
        try {
            c_.exec(transaction_verb::begin_write);
        } catch (...) {
            end_all(std::current_exception());
            return false;
        }
        for (std::size_t i = 0; i < members_.size(); ++i) {
            if (members_[i].ended) {
                continue;
            }
            if (i + 1 == members_.size() && members_.size() < lane_.grouping().max_jobs &&
                std::chrono::steady_clock::now() < deadline_ &&
                (members_.size() < members_.capacity() ||
                 reserve(std::min(lane_.grouping().max_jobs, 2 * members_.size())))) {
                if (std::unique_ptr<lane_job> next = lane_.take_groupable()) {
                    add(std::move(next));
                }
            }
            member& m = members_[i];
            std::exception_ptr ep;
            try {
                c_.exec(transaction_verb::savepoint);
                ep = run_attached(*m.job->state_, pc_, *m.job->step_, true);
                if (!pc_.healthy) {
                    end(m, std::move(ep));
                    return false;  // the others wait in line for a new connection
                }
                if (!c_.in_transaction()) {
                    // It took the transaction with it: the members before it
                    // run again in a new one.
                    end(m, std::move(ep));
                    for (member& before : members_) {
                        before.ran = false;
                    }
                    return true;
                }
                if (ep) {
                    c_.exec(transaction_verb::rollback_to);
                    c_.exec(transaction_verb::release);
                    end(m, std::move(ep));
                } else {
                    c_.exec(transaction_verb::release);
                    m.ran = true;
                }
            } catch (...) {
                fail_transaction(std::current_exception());
                return false;
            }
        }
        try {
            // COMMIT may wait for the disk (synchronous=full): the queued
            // reads need not wait with it.
            blocking_pool::before_blocking();
            c_.exec(transaction_verb::commit);
        } catch (...) {
            fail_transaction(std::current_exception());
            return false;
        }
        committed_ = true;
        for (member& m : members_) {
            if (m.ran) {
                end(m, nullptr);
            }
        }
        return false;
    }

    static void end(member& m, std::exception_ptr outcome) noexcept {
        m.outcome = std::move(outcome);
        m.ran = false;
        m.ended = true;
    }
    void end_all(const std::exception_ptr& ep) noexcept {
        for (member& m : members_) {
            if (!m.ended) {
                end(m, ep);
            }
        }
    }
    /// One of the group's own statements failed: nothing of the open
    /// transaction is kept, and every member not yet ended gets the error.
    void fail_transaction(const std::exception_ptr& ep) noexcept {
        try {
            std::rethrow_exception(ep);
        } catch (const error& e) {
            if (c_.poisoned_by(e.code())) {
                pc_.healthy = false;
            }
        } catch (...) {
        }
        if (pc_.healthy && c_.in_transaction()) {
            try {
                c_.exec(transaction_verb::rollback);
            } catch (...) {
                pc_.healthy = false;  // its state is unknown: closed on release
            }
        }
        end_all(ep);
    }

    engine_core& lane_;
    pooled_connection& pc_;
    backend_connection& c_;
    std::chrono::steady_clock::time_point deadline_;
    std::vector<member> members_;
    bool committed_ = false;
};

void in_line::run(std::unique_ptr<in_line> self, pooled_connection* pc, bool live) {
    engine_core& lane = *self->lane_;
    op_state& state = *self->state_;
    if (live && lane.pre_ping() && !state.cancelled() && !ping(*pc)) {
        lane.release(pc);  // closes it; wait in line for another
        lane.acquire_for(std::move(self), state);
        return;
    }
    if (live && self->groupable()) {
        if (std::unique_ptr<lane_job> next = lane.take_groupable()) {
            group_commit group(lane, *pc);
            if (group.reserve(8)) {
                group.add(std::move(self));
                group.add(std::move(next));
                group.run();
                return;
            }
            // Out of memory: the one taken goes back in line, this runs alone.
            op_state& waiting = *static_cast<in_line&>(*next).state_;
            lane.acquire_for(std::move(next), waiting);
        }
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
