#include "asqlite/async_engine.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "blocking_lane.hpp"
#include "engine_core.hpp"
#include "pool_state.hpp"
#include "sqlite_backend.hpp"

namespace asqlite {
namespace detail {

std::exception_ptr aborted_error() {
    return std::make_exception_ptr(
        error(make_error_code(asio::error::operation_aborted), "operation cancelled"));
}

void rethrow_if_aborted(const boost::system::system_error& e) {
    if (e.code() == asio::error::operation_aborted) {
        std::rethrow_exception(aborted_error());
    }
}

std::exception_ptr closed_error() {
    return std::make_exception_ptr(
        error(make_error_code(errc::pool_closed), "the async engine is closed"));
}

std::exception_ptr interrupted_by_close_error() {
    return std::make_exception_ptr(
        error(make_error_code(errc::pool_closed),
              "the async engine was closed while this statement ran; it was interrupted"));
}

void held_prelude::run(backend_connection& c) const {
    if (rollback_first && c.in_transaction()) {
        c.exec(transaction_verb::rollback);
    } else if (rollback_to != 0 && c.in_transaction()) {
        c.rollback_to_savepoint(savepoint_name(rollback_to));
    }
    if (begin_first) {
        c.exec(transaction_verb::begin_write);
        pc->begin_pending = false;
    } else if (inside_transaction && !c.in_transaction()) {
        throw_transaction_ended();
    }
}

std::uint64_t new_op_id() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

void throw_transaction_ended() {
    throw_error(errc::transaction_state,
                "SQLite has already rolled this transaction back (a write was interrupted by a "
                "cancellation, or failed with an error that ends the transaction); nothing of "
                "it is kept. Roll it back or drop it, then begin again");
}

void throw_ended_by_job() {
    throw_error(errc::transaction_state,
                "write(fn): fn ended the transaction asqlite made around it (COMMIT, END or "
                "ROLLBACK); nothing of it is kept. Leave committing to write(fn), or use begin() "
                "to control the transaction");
}

namespace {

using clock = pool_clock;

std::size_t thread_count(const engine_options& o) {
    if (o.threads != 0) {
        return o.threads;
    }
    return std::max<std::size_t>(2, std::thread::hardware_concurrency());
}

}  // namespace

/// The lanes of an engine: readers plus one writer, or one lane that does
/// both (the backend decides: backend::separate_writer).
using lane = connection_role;

class async_core final : public engine_core, public std::enable_shared_from_this<async_core> {
  public:
    async_core(asio::any_io_executor io, const engine_options& options,
               std::shared_ptr<blocking_pool> threads, std::shared_ptr<detail::backend> db,
               lane role, std::shared_ptr<async_core> writer)
        : io_(std::move(io)),
          options_(options),
          backend_(std::move(db)),
          writer_(std::move(writer)),
          role_(role),
          state_(limits_for(options_, *backend_, role)),
          strand_(asio::make_strand(io_)),
          timer_(strand_) {
        busy_budget_ = options_.connection_settings(false).busy_timeout;
        if (role == lane::writer && options_.group_commit) {
            grouping_ = {options_.group_commit_max_jobs, options_.group_commit_max_time};
        }
        pool_ = std::move(threads);
    }

    engine_core* writer_lane() noexcept override { return writer_.get(); }
    std::shared_ptr<engine_core> writer_lane_ptr() noexcept override { return writer_; }
    void acquire_for(std::unique_ptr<lane_job> job, op_state& state) override;
    bool cancel_waiting(std::uint64_t w) noexcept override;
    std::unique_ptr<lane_job> take_groupable() noexcept override;
    bool pre_ping() const noexcept override { return options_.pre_ping; }
    const detail::backend& database() const noexcept override { return *backend_; }
    void run_held(pooled_connection& pc, step& s, op_state* gives_back) override {
        post_held(*this, pc, s, gives_back);
    }
    void run_on_idle(op_state& state, step& s) override { post_on_idle(*this, state, s); }
    void run_in_line(op_state& state, step& s) override { post_in_line(*this, state, s); }
    async_core* writer() noexcept { return writer_.get(); }

    const asio::any_io_executor& io_executor() const noexcept override { return io_; }
    const engine_options& options() const noexcept { return options_; }

    void acquire(acquire_handler handler, asio::any_io_executor work);
    session try_acquire();
    void release(pooled_connection* pc) noexcept override;
    pooled_connection* pick() override;
    pooled_connection* shared_read() noexcept override;
    bool closed() const noexcept override { return closed_flag_.load(std::memory_order_relaxed); }
    pool_stats stats();
    /// Refuses new work: waiters fail with errc::pool_closed, later
    /// operations too; operations already queued or running go on.
    void close();
    /// Interrupts every operation running on this engine's connections, and
    /// refuses those that start later on them (see connection::
    /// refuse_operations); they fail with errc::pool_closed.
    void interrupt_running() noexcept;

  private:
    // A coroutine waiting for a session (handler, completed on `work`), or
    // an operation that starts its own job when granted (job).
    struct waiter_record {
        acquire_handler handler;
        asio::any_io_executor work;
        clock::time_point since;
        std::unique_ptr<lane_job> job;
        // The waiter's end without a connection: err, or for a job fail().
        void fail(const asio::any_io_executor& io, std::exception_ptr err) {
            if (job) {
                job.release()->fail(std::move(err));
            } else {
                complete_on(io, std::move(work), std::move(handler), std::move(err), session{});
            }
        }
    };
    struct actions {
        // Inline room for the common case (one grant, at most one close):
        // the acquire and release paths allocate nothing here.
        boost::container::small_vector<std::pair<waiter_record, pooled_connection*>, 1> grants;
        boost::container::small_vector<std::unique_ptr<pooled_connection>, 1> closes;
        std::size_t opens = 0;
        std::vector<waiter_record> timed_out;
        std::vector<waiter_record> failed;
        bool sync_timer = false;
    };

    static pool_limits limits_for(const engine_options& o, const detail::backend& db, lane role) {
        pool_limits l;
        switch (role) {
            case lane::reader:  // one of pool_size is the writer
                l.size = o.pool_size - 1;
                l.max_overflow = o.max_overflow;
                break;
            case lane::writer:
                l.size = 1;
                break;
            case lane::single:
                l.size = db.single_lane_size(o.pool_size);
                break;
        }
        l.timeout = o.pool_timeout;
        l.recycle = o.pool_recycle;
        return l;
    }

    // Under mutex_: turns the state machine's decisions into owned things to
    // act on once the lock is released.
    void take(pool_effects& fx, actions& act, clock::time_point now);
    // Under mutex_: whether take() has anything to do. Most checkouts and
    // returns (an idle connection, nobody waiting) have not, and skip it.
    bool has_effects(const pool_effects& fx) const noexcept {
        return !fx.empty() || (state_.waiting() > 0 && !closed_) != timer_wanted_;
    }
    void run(actions& act, const std::exception_ptr& failure);
    /// The way an event reaches pool_state: event(fx, now) under mutex_,
    /// then the effects it left carried out outside the lock (run, with
    /// `failure` for failed waiters). Returns what event returned.
    template <class Event>
    auto apply(Event event, const std::exception_ptr& failure = nullptr) {
        const auto now = clock::now();
        pool_effects fx;
        actions act;
        std::unique_lock lock(mutex_);
        auto settle = [&] {
            if (has_effects(fx)) {
                take(fx, act, now);
            }
            lock.unlock();
            run(act, failure);
        };
        if constexpr (std::is_void_v<
                          std::invoke_result_t<Event&, pool_effects&, clock::time_point>>) {
            event(fx, now);
            settle();
        } else {
            auto out = event(fx, now);
            settle();
            return out;
        }
    }
    void grant(waiter_record rec, pooled_connection* pc);
    void open_one();
    /// On a worker: a new connection of this lane, set up (on_connect run).
    std::unique_ptr<pooled_connection> make_connection();
    /// pick()'s open after pool_state::reserve_open: the new connection,
    /// checked out; the open's error is rethrown.
    pooled_connection* open_reserved();
    // Under mutex_: takes ownership of a newly opened connection.
    pooled_connection* adopt(std::unique_ptr<pooled_connection> pc);
    // Under mutex_: counts a checkout and starts the connection's new lease.
    void check_out(pooled_connection* pc) noexcept;
    void open_finished(std::unique_ptr<pooled_connection> pc, std::exception_ptr ep);
    void return_connection(pooled_connection* pc) noexcept;
    void sync_timer();
    void on_timer(const boost::system::error_code& ec);

    asio::any_io_executor io_;
    engine_options options_;
    std::shared_ptr<detail::backend> backend_;  // shared by the lanes of an engine
    std::shared_ptr<async_core> writer_;
    lane role_;

    std::mutex mutex_;
    pool_state state_;
    std::unordered_map<conn_id, std::unique_ptr<pooled_connection>> conns_;
    std::unordered_map<waiter_id, waiter_record> waiters_;
    waiter_id next_waiter_ = 0;
    conn_id next_conn_ = 0;
    bool timer_wanted_ = false;  // under mutex_: last state asked of the strand
    bool closed_ = false;
    bool refusing_ = false;                 // under mutex_: interrupt_running() was called
    std::atomic<bool> closed_flag_{false};  // closed_, readable without the lock
    std::uint64_t acquires_ = 0;
    std::uint64_t timeouts_ = 0;
    std::uint64_t cancellations_ = 0;
    std::uint64_t opened_ = 0;
    std::uint64_t closed_count_ = 0;
    clock::duration total_wait_{};
    clock::duration max_wait_{};

    asio::strand<asio::any_io_executor> strand_;
    asio::steady_timer timer_;
    std::optional<clock::time_point> timer_deadline_;  // strand only: the wait in flight
};

void async_core::take(pool_effects& fx, actions& act, clock::time_point now) {
    for (const auto& g : fx.grants) {
        auto node = waiters_.extract(g.waiter);
        const auto waited = now - node.mapped().since;
        total_wait_ += waited;
        max_wait_ = std::max(max_wait_, waited);
        act.grants.emplace_back(std::move(node.mapped()), conns_.at(g.conn).get());
    }
    for (const auto c : fx.closes) {
        auto node = conns_.extract(c);
        act.closes.push_back(std::move(node.mapped()));
        ++closed_count_;
    }
    act.opens += fx.opens;
    for (const auto w : fx.timed_out) {
        act.timed_out.push_back(std::move(waiters_.extract(w).mapped()));
        ++timeouts_;
    }
    for (const auto w : fx.failed) {
        act.failed.push_back(std::move(waiters_.extract(w).mapped()));
    }
    // The timer must run exactly while someone waits: a pending wait keeps
    // the io_context busy. Ask the strand to bring it in line when that flips.
    const bool want_timer = state_.waiting() > 0 && !closed_;
    if (want_timer != timer_wanted_) {
        timer_wanted_ = want_timer;
        act.sync_timer = true;
    }
    fx = pool_effects{};
}

void async_core::run(actions& act, const std::exception_ptr& failure) {
    for (auto& [rec, pc] : act.grants) {
        grant(std::move(rec), pc);
    }
    for (auto& pc : act.closes) {
        // sqlite3_close may flush the WAL: on the blocking pool, or right
        // here once the engine is closed.
        post_blocking([pc = std::move(pc)](bool) mutable { pc.reset(); });
    }
    for (std::size_t i = 0; i < act.opens; ++i) {
        open_one();
    }
    for (auto& rec : act.timed_out) {
        rec.fail(io_, std::make_exception_ptr(
                          error(make_error_code(errc::pool_timeout),
                                fmt::format("no connection became free within pool_timeout ({} ms)",
                                            options_.pool_timeout.count()))));
    }
    for (auto& rec : act.failed) {
        rec.fail(io_, failure ? failure : closed_error());
    }
    if (act.sync_timer) {
        asio::post(strand_, [self = shared_from_this()] { self->sync_timer(); });
    }
}

void async_core::grant(waiter_record rec, pooled_connection* pc) {
    pc->lease.fetch_add(1, std::memory_order_relaxed);
    if (rec.job) {
        rec.job.release()->start(pc);  // (it pings first itself, with pre_ping)
        return;
    }
    if (!options_.pre_ping) {
        complete_on(io_, std::move(rec.work), std::move(rec.handler), std::exception_ptr{},
                    session(shared_from_this(), pc));
        return;
    }
    post_blocking([self = shared_from_this(), rec = std::move(rec), pc](bool run) mutable {
        if (run && ping(*pc)) {
            complete_on(self->io_, std::move(rec.work), std::move(rec.handler),
                        std::exception_ptr{}, session(self, pc));
            return;
        }
        self->return_connection(pc);  // closed when the ping failed; the waiter tries again
        if (run) {
            self->acquire(std::move(rec.handler), std::move(rec.work));
        } else {
            complete_on(self->io_, std::move(rec.work), std::move(rec.handler), closed_error(),
                        session{});
        }
    });
}

void async_core::acquire(acquire_handler handler, asio::any_io_executor work) {
    const auto now = clock::now();
    pool_effects fx;
    actions act;
    {
        std::unique_lock lock(mutex_);
        if (closed_) {
            lock.unlock();
            complete_on(io_, std::move(work), std::move(handler), closed_error(), session{});
            return;
        }
        ++acquires_;
        const waiter_id w = ++next_waiter_;
        if (const auto c = state_.acquire(w, now, fx)) {
            act.grants.emplace_back(
                waiter_record{std::move(handler), std::move(work), now, nullptr},
                conns_.at(*c).get());
        } else {
            auto slot = asio::get_associated_cancellation_slot(handler);
            if (slot.is_connected()) {
                slot.assign([weak = weak_from_this(), w](asio::cancellation_type) {
                    if (auto self = weak.lock()) {
                        self->cancel_waiting(w);
                    }
                });
            }
            waiters_.emplace(w, waiter_record{std::move(handler), std::move(work), now, nullptr});
        }
        take(fx, act, now);
    }
    run(act, nullptr);
}

session async_core::try_acquire() {
    if (options_.pre_ping) {
        return {};  // the ping needs a hop: take the asynchronous path
    }
    pooled_connection* pc = apply([&](pool_effects& fx, clock::time_point now) {
        pooled_connection* got = nullptr;
        if (!closed_) {
            if (const auto c = state_.try_acquire(now, fx)) {
                got = conns_.at(*c).get();
                check_out(got);
            }
        }
        return got;
    });
    return pc != nullptr ? session(shared_from_this(), pc) : session{};
}

void async_core::acquire_for(std::unique_ptr<lane_job> job, op_state& state) {
    const auto now = clock::now();
    pool_effects fx;
    actions act;
    std::unique_ptr<lane_job> cancelled;
    {
        std::unique_lock lock(mutex_);
        if (closed_) {
            lock.unlock();
            job.release()->fail(closed_error());
            return;
        }
        ++acquires_;
        const waiter_id w = ++next_waiter_;
        waiter_record rec{acquire_handler{}, asio::any_io_executor{}, now, std::move(job)};
        if (const auto c = state_.acquire(w, now, fx)) {
            act.grants.emplace_back(std::move(rec), conns_.at(*c).get());
        } else if (state.set_waiter(w)) {
            // In line. From here on only the lane touches the record, and a
            // cancellation finds it through state (under this lock).
            waiters_.emplace(w, std::move(rec));
        } else {
            // Cancelled before it got in line (another thread, or a job
            // waiting in line again after a failed ping).
            state_.remove_waiter(w);
            ++cancellations_;
            cancelled = std::move(rec.job);
        }
        take(fx, act, now);
    }
    run(act, nullptr);
    if (cancelled) {
        cancelled.release()->fail(aborted_error());
    }
}

bool async_core::cancel_waiting(std::uint64_t w) noexcept {
    // A node handle, not an assignment: Boost 1.81's any_completion_handler
    // move-assignment recurses forever (it copies from an lvalue).
    decltype(waiters_)::node_type node;
    {
        std::lock_guard lock(mutex_);
        if (!state_.remove_waiter(w)) {
            return false;  // already granted, timed out or failed: too late to cancel
        }
        node = waiters_.extract(w);
        ++cancellations_;
    }
    node.mapped().fail(io_, aborted_error());
    return true;
}

std::unique_ptr<lane_job> async_core::take_groupable() noexcept {
    return apply([&](pool_effects&, clock::time_point now) -> std::unique_ptr<lane_job> {
        const auto w = state_.first_waiter();
        if (closed_ || !w) {
            return nullptr;
        }
        auto it = waiters_.find(*w);
        if (it == waiters_.end() || !it->second.job || !it->second.job->groupable()) {
            return nullptr;
        }
        state_.remove_waiter(*w);
        const auto waited = now - it->second.since;
        total_wait_ += waited;
        max_wait_ = std::max(max_wait_, waited);
        std::unique_ptr<lane_job> job = std::move(it->second.job);
        waiters_.erase(it);
        return job;
    });
}

std::unique_ptr<pooled_connection> async_core::make_connection() {
    auto pc = std::make_unique<pooled_connection>(backend_->open(role_), 0, clock::now());
    pc->urgent = role_ == lane::writer;
    return pc;
}

void async_core::open_one() {
    post_blocking([self = shared_from_this()](bool run) {
        if (!run) {
            self->open_finished(nullptr, closed_error());
            return;
        }
        try {
            self->open_finished(self->make_connection(), nullptr);
        } catch (...) {
            self->open_finished(nullptr, std::current_exception());
        }
    });
}

pooled_connection* async_core::adopt(std::unique_ptr<pooled_connection> pc) {
    const conn_id id = ++next_conn_;
    pc->id = id;
    ++opened_;
    if (refusing_) {
        pc->conn->refuse_all();  // opened for an operation after close()
    }
    return conns_.emplace(id, std::move(pc)).first->second.get();
}

void async_core::check_out(pooled_connection* pc) noexcept {
    ++acquires_;
    pc->lease.fetch_add(1, std::memory_order_relaxed);
}

pooled_connection* async_core::pick() {
    for (;;) {
        bool closed = false;
        bool open_here = false;
        pooled_connection* pc = apply([&](pool_effects& fx, clock::time_point now) {
            pooled_connection* got = nullptr;
            if (closed_) {
                closed = true;
            } else if (const auto c = state_.try_acquire(now, fx)) {
                got = conns_.at(*c).get();
                check_out(got);
            } else {
                open_here = state_.reserve_open();
            }
            return got;
        });
        if (closed) {
            return nullptr;
        }
        if (open_here) {
            return open_reserved();
        }
        if (pc == nullptr || !options_.pre_ping) {
            return pc;
        }
        if (ping(*pc)) {
            return pc;
        }
        return_connection(pc);  // closed; look again
    }
}

pooled_connection* async_core::shared_read() noexcept {
    worker_hold* h = blocking_pool::hold();
    if (h == nullptr || role_ != lane::reader) {
        return nullptr;
    }
    if (h->held()) {
        // The pool ends a hold before any job that may not share it, and
        // each engine has its own pool: this lane's.
        return static_cast<pooled_connection*>(h->what);
    }
    if (!h->next_shares) {
        return nullptr;  // nothing queued to share it with
    }
    pooled_connection* pc = nullptr;
    try {
        pc = pick();
    } catch (...) {
        return nullptr;  // the open failed: the query's own pick() reports it
    }
    if (pc == nullptr) {
        return nullptr;
    }
    try {
        pc->conn->exec(transaction_verb::begin_read);
    } catch (...) {
        pc->in_transaction = pc->conn->in_transaction();
        release(pc);
        return nullptr;
    }
    h->begin(this, pc, [](void* owner, void* what) noexcept {
        auto* core = static_cast<async_core*>(owner);
        auto* held = static_cast<pooled_connection*>(what);
        // (A failed query may have ended the transaction already.)
        if (held->conn->in_transaction()) {
            try {
                held->conn->exec(transaction_verb::commit);
            } catch (...) {
                held->healthy = false;
            }
        }
        held->in_transaction = held->conn->in_transaction();
        core->release(held);
    });
    return pc;
}

pooled_connection* async_core::open_reserved() {
    // A worker holding an operation opens the connection itself: no trip to
    // the io thread and back, and no waiter to hand it to.
    std::unique_ptr<pooled_connection> fresh;
    std::exception_ptr failure;
    try {
        fresh = make_connection();
    } catch (...) {
        failure = std::current_exception();
    }
    // Opened for an operation already under way: it runs even if the
    // engine closed meanwhile (release() then closes it).
    pooled_connection* pc = apply([&](pool_effects& fx, clock::time_point) {
        pooled_connection* got = nullptr;
        if (fresh) {
            got = adopt(std::move(fresh));
            check_out(got);
            state_.open_reserved(fx);
        } else {
            state_.open_reserved_failed(fx);
        }
        return got;
    });
    if (failure) {
        std::rethrow_exception(failure);
    }
    return pc;
}

void async_core::open_finished(std::unique_ptr<pooled_connection> pc, std::exception_ptr ep) {
    std::unique_ptr<pooled_connection> unwanted;  // opened after close: closed here, on a worker
    apply(
        [&](pool_effects& fx, clock::time_point now) {
            if (pc && !closed_) {
                state_.open_succeeded(adopt(std::move(pc))->id, now, fx);
            } else {
                unwanted = std::move(pc);
                state_.open_failed(fx);
            }
        },
        ep);
}

void async_core::release(pooled_connection* pc) noexcept {
    const bool dirty = pc->pending_rollback || pc->in_transaction;
    pc->pending_rollback = false;
    pc->begin_pending = false;  // a transaction dropped before its first statement
    if (!dirty || !pc->healthy) {
        return_connection(pc);
        return;
    }
    // Roll back on the blocking pool before anyone else can have it. The
    // engine's executor counts it as work, so io_context::run() does not
    // return while a connection is still on its way back.
    auto work = asio::prefer(io_, asio::execution::outstanding_work.tracked);
    post_blocking(
        [self = shared_from_this(), pc, work = std::move(work)](bool run) {
            pc->orphans.clear();
            if (!run) {
                pc->healthy = false;  // engine closed: the connection is closed anyway
            } else {
                try {
                    if (pc->conn->in_transaction()) {
                        pc->conn->exec(transaction_verb::rollback);
                    }
                    pc->in_transaction = false;
                } catch (...) {
                    pc->healthy = false;
                }
            }
            self->return_connection(pc);
        },
        pc->urgent);
}

void async_core::return_connection(pooled_connection* pc) noexcept {
    apply([&](pool_effects& fx, clock::time_point now) {
        state_.release(pc->id, pc->created, pc->healthy && !closed_, now, fx);
    });
}

void async_core::sync_timer() {
    std::optional<clock::time_point> deadline;
    {
        std::lock_guard lock(mutex_);
        if (!closed_) {
            deadline = state_.next_deadline();
        }
    }
    if (!deadline) {
        if (timer_deadline_) {
            timer_deadline_.reset();
            timer_.cancel();
        }
        return;
    }
    if (timer_deadline_) {
        return;  // on_timer moves on to later deadlines by itself
    }
    timer_deadline_ = deadline;
    timer_.expires_at(*deadline);
    timer_.async_wait(asio::bind_executor(
        strand_,
        [self = shared_from_this()](const boost::system::error_code& ec) { self->on_timer(ec); }));
}

void async_core::on_timer(const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) {
        return;  // sync_timer cancelled it (and updated timer_deadline_)
    }
    timer_deadline_.reset();
    apply([&](pool_effects& fx, clock::time_point now) { state_.expire(now, fx); });
    sync_timer();  // wait for the next deadline, if anyone still waits
}

pool_stats async_core::stats() {
    std::lock_guard lock(mutex_);
    pool_stats s;
    s.size = state_.open_count();
    s.idle = state_.idle_count();
    s.in_use = state_.in_use();
    s.waiters = state_.waiting();
    s.opening = state_.opening();
    s.acquires = acquires_;
    s.timeouts = timeouts_;
    s.cancellations = cancellations_;
    s.opened = opened_;
    s.closed = closed_count_;
    s.total_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(total_wait_);
    s.max_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(max_wait_);
    s.busy_retries = busy_retries();
    s.group_commits = groups_.load(std::memory_order_relaxed);
    s.grouped_writes = grouped_.load(std::memory_order_relaxed);
    return s;
}

void async_core::close() {
    pool_->close();  // from here on post_blocking runs jobs inline as "closed"
    closed_flag_.store(true, std::memory_order_relaxed);
    pool_effects fx;
    actions act;
    {
        std::lock_guard lock(mutex_);
        if (closed_) {
            return;
        }
        closed_ = true;
        state_.close_all(fx);
        take(fx, act, clock::now());
    }
    run(act, closed_error());
    asio::post(strand_, [self = shared_from_this()] { self->sync_timer(); });
    if (writer_) {
        writer_->close();
    }
}

void async_core::interrupt_running() noexcept {
    {
        std::lock_guard lock(mutex_);
        refusing_ = true;
        // Checked-out connections stay in conns_ until they are closed.
        for (auto& entry : conns_) {
            entry.second->conn->refuse_all();
        }
    }
    if (writer_) {
        writer_->interrupt_running();
    }
}

session try_acquire(engine_core& core) {
    return static_cast<async_core&>(core).try_acquire();
}

void async_acquire(engine_core& core, acquire_handler handler, asio::any_io_executor work) {
    static_cast<async_core&>(core).acquire(std::move(handler), std::move(work));
}

struct engine_parts {
    std::shared_ptr<blocking_pool> threads;
    std::shared_ptr<async_core> core;
};

namespace {
std::shared_ptr<async_core> make_lanes(asio::any_io_executor io, const engine_options& options,
                                       const std::shared_ptr<blocking_pool>& threads) {
    std::shared_ptr<backend> db = make_sqlite_backend(options);
    if (!db->separate_writer()) {
        return std::make_shared<async_core>(io, options, threads, db, lane::single, nullptr);
    }
    auto writer = std::make_shared<async_core>(io, options, threads, db, lane::writer, nullptr);
    return std::make_shared<async_core>(io, options, threads, db, lane::reader, std::move(writer));
}
}  // namespace

}  // namespace detail

async_engine::async_engine(asio::any_io_executor executor, engine_options options) {
    options.validate();
    detail::blocking_pool_options po;
    po.threads = detail::thread_count(options);
    po.max_hold = options.completion_hold;
    po.spin = options.spin_wait;
    auto threads = std::make_shared<detail::blocking_pool>(executor, po);
    auto core = detail::make_lanes(std::move(executor), options, threads);
    parts_ = std::make_unique<detail::engine_parts>(
        detail::engine_parts{std::move(threads), std::move(core)});
}

async_engine::~async_engine() {
    close();
}
async_engine::async_engine(async_engine&&) noexcept = default;
async_engine& async_engine::operator=(async_engine&& other) noexcept {
    if (this != &other) {
        close();
        parts_ = std::move(other.parts_);
    }
    return *this;
}

pool_stats async_engine::stats() const {
    auto s = parts_->core->stats();
    if (auto* w = parts_->core->writer()) {
        const auto ws = w->stats();
        s.size += ws.size;
        s.idle += ws.idle;
        s.in_use += ws.in_use;
        s.waiters += ws.waiters;
        s.opening += ws.opening;
        s.acquires += ws.acquires;
        s.timeouts += ws.timeouts;
        s.cancellations += ws.cancellations;
        s.opened += ws.opened;
        s.closed += ws.closed;
        s.total_wait += ws.total_wait;
        s.max_wait = std::max(s.max_wait, ws.max_wait);
        s.writer_waiters = ws.waiters;
        s.writer_in_use = ws.in_use;
        s.busy_retries += w->busy_retries();
        s.group_commits += ws.group_commits;
        s.grouped_writes += ws.grouped_writes;
    }
    const auto bs = parts_->core->pool().stats();
    s.blocking_jobs = bs.jobs;
    s.handovers = bs.handovers;
    s.thread_sleeps = bs.sleeps;
    s.thread_wakes = bs.wakes;
    s.worker_spins = bs.worker_spins;
    s.worker_spin_hits = bs.worker_spin_hits;
    s.io_spins = bs.io_spins;
    s.io_spin_hits = bs.io_spin_hits;
    s.shared_reads = bs.shared;
    return s;
}
const engine_options& async_engine::options() const noexcept {
    return parts_->core->options();
}
const asio::any_io_executor& async_engine::get_executor() const noexcept {
    return parts_->core->io_executor();
}
void async_engine::close() {
    if (parts_ && parts_->threads) {
        parts_->core->close();
        parts_->core->interrupt_running();
        parts_->threads->join();  // the interrupted operations let go first
        parts_->threads.reset();  // the lanes keep the (closed) pool alive
    }
}

namespace {
/// async_close() in flight: the grace timer and the handler, on a strand of
/// the engine's executor (the timer's expiry and the pool's "stopped" meet
/// there). It keeps the io_context's work until it completes: between the
/// last completion of the pool and `stopped`, nothing else does.
struct close_op {
    close_op(std::shared_ptr<detail::async_core> c,
             asio::any_completion_handler<void(std::exception_ptr)> h)
        : core(std::move(c)),
          strand(asio::make_strand(core->io_executor())),
          timer(strand),
          handler(std::move(h)),
          work(asio::prefer(core->io_executor(), asio::execution::outstanding_work.tracked)) {}
    std::shared_ptr<detail::async_core> core;
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer timer;
    asio::any_completion_handler<void(std::exception_ptr)> handler;
    asio::any_io_executor work;
};
}  // namespace

void async_engine::start_close(std::chrono::steady_clock::duration grace,
                               asio::any_completion_handler<void(std::exception_ptr)> handler) {
    if (!parts_) {
        throw_error(errc::pool_closed, "async_close() on a moved-from async_engine");
    }
    if (!parts_->threads) {  // closed already
        auto work = detail::tracked_executor(handler, *parts_->core);
        detail::complete_on(parts_->core->io_executor(), std::move(work), std::move(handler),
                            std::exception_ptr{});
        return;
    }
    parts_->core->close();
    auto op = std::make_shared<close_op>(parts_->core, std::move(handler));
    op->timer.expires_after(grace);
    op->timer.async_wait([op](const boost::system::error_code& ec) {
        if (!ec) {
            op->core->interrupt_running();
        }
    });
    // The engine keeps its threads: its destructor (before the io_context's,
    // as documented) joins them, so `stopped` never posts to a context
    // that is gone.
    parts_->threads->close_then([op] {
        asio::post(op->strand, [op] {
            op->timer.cancel();
            auto work = detail::tracked_executor(op->handler, *op->core);
            detail::complete_on(op->core->io_executor(), std::move(work), std::move(op->handler),
                                std::exception_ptr{});
            op->work = asio::any_io_executor{};
        });
    });
}

std::shared_ptr<detail::engine_core> async_engine::core() const noexcept {
    return parts_ != nullptr ? parts_->core : nullptr;
}

asio::any_io_executor async_engine::io_executor_or_none() const noexcept {
    return parts_ != nullptr ? parts_->core->io_executor() : asio::any_io_executor{};
}

asio::awaitable<session> async_engine::make_session(std::shared_ptr<detail::engine_core> c) {
    if (c == nullptr) {
        throw_error(errc::pool_closed, "the async engine was moved from");
    }
    co_return detail::new_session(std::move(c));
}

async_engine create_async_engine(asio::any_io_executor executor, engine_options options) {
    return async_engine(std::move(executor), std::move(options));
}

}  // namespace asqlite
