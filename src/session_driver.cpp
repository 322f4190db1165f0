// The driver of a session's operations: statement_router decides each step,
// this performs it, with a callback per step and no coroutine frame of its
// own. The operation (detail/operation.hpp) carries the caller's job, value
// and handler; the driver's state lives in room the operation keeps for it.
// Steps complete on the caller's executor (through the blocking pool's
// inbox), where the next one starts; the operation completes there too,
// once its connection is back or handed to the session.

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <new>
#include <optional>

#include "asqlite/session.hpp"
#include "engine_core.hpp"
#include "statement_router.hpp"

namespace asqlite::detail {

class driver final : public step {
  public:
    driver(session& s, operation& op) noexcept;
    driver(const driver&) = delete;
    driver& operator=(const driver&) = delete;

    /// The first step. Nothing of the driver is touched after the step
    /// has been handed on (its completion may run on another io thread).
    void start() noexcept;

    // step: what the lane runs, and where it completes (the caller's
    // executor; cancellation from the driver's own signal, see on_cancel).
    void work(backend_connection& c) override;
    bool groupable() const noexcept override {
        return step_ == route::writer && router_.groups_writes();
    }
    void work_in_group(backend_connection& c) override { c.run(op_); }
    void done(std::exception_ptr ep) override { step_ended(std::move(ep)); }
    asio::any_io_executor executor() const override { return ex_; }
    asio::cancellation_slot cancellation_slot() const override { return step_slot(); }

  private:
    /// The handler of a wait that is not a lane's step (a connection to
    /// hold, a BUSY timer): completes like a step.
    template <class Self>
    struct wait_handler {
        driver* d;
        using executor_type = asio::any_io_executor;
        executor_type get_executor() const noexcept { return d->ex_; }
        using cancellation_slot_type = asio::cancellation_slot;
        cancellation_slot_type get_cancellation_slot() const noexcept { return d->step_slot(); }
        template <class... Args>
        void operator()(Args&&... args) {
            static_cast<const Self&>(*this).done(*d, std::forward<Args>(args)...);
        }
    };
    struct acquired : wait_handler<acquired> {
        void done(driver& d, std::exception_ptr ep, session held) const {
            d.connection_acquired(std::move(ep), std::move(held));
        }
    };
    struct waited : wait_handler<waited> {
        void done(driver& d, boost::system::error_code ec) const { d.wait_ended(ec); }
    };

    void perform(route step);
    void advance(step_outcome outcome);
    /// A step that failed before it started: the router hears it from a
    /// post, so the operation never completes inside its initiation.
    void fail_soon(std::exception_ptr ep) noexcept;
    void finish(std::exception_ptr ep);

    void on_connection();  // held, checked_out
    void connection_acquired(std::exception_ptr ep, session held);
    void step_ended(std::exception_ptr ep);
    void wait_ended(boost::system::error_code ec);
    /// What the failure of a step means to the router: BUSY only when the
    /// attempt had no effect (`retryable`).
    step_outcome outcome_of(std::exception_ptr ep, bool retryable) noexcept;

    /// The step on `pc`, a connection of `lane` the session holds, after
    /// its prelude (held_prelude).
    void run_held(engine_core& lane, pooled_connection& pc, bool inside_transaction);

    asio::cancellation_slot step_slot() const noexcept {
        return caller_slot_.is_connected() ? signal_.slot() : asio::cancellation_slot();
    }
    void on_cancel(asio::cancellation_type type) noexcept;
    engine_core* lane() const noexcept { return s_.core_.get(); }

    // What a step leaves behind, on the io side:
    /// After a statement on the writer lane that left the writer `pc` with
    /// the session: inside a transaction (`BEGIN IMMEDIATE`), it becomes the
    /// session's transaction, begun by SQL; otherwise pc goes back to `lane`
    /// (rolled back on the way).
    void keep_sql_transaction(pooled_connection* pc, engine_core* lane) noexcept;
    /// After a statement of a transaction begun with SQL: gives the writer
    /// back when the transaction has ended. When SQLite ended it by itself
    /// after a failed or cancelled statement, the session keeps the writer
    /// and refuses every statement (errc::transaction_state) until the
    /// user's ROLLBACK, COMMIT or END: nothing runs in autocommit that the
    /// user meant to be inside.
    void after_sql_statement(bool failed) noexcept;
    /// After the first statement of a begin() transaction that waited for
    /// the writer: the writer it kept becomes the transaction's (or goes
    /// back, when the transaction is gone).
    void adopt_writer() noexcept;
    /// Gives the session's connection back when nothing keeps it there any
    /// more (no transaction open on it, none dropped and still to roll back).
    void unpin_if_idle() noexcept;
    /// errc::transaction_state: a write transaction cannot start inside a
    /// read transaction begun with SQL (`BEGIN`, `SAVEPOINT`).
    [[noreturn]] static void throw_in_sql_read_transaction();

    session& s_;
    operation& op_;
    asio::any_io_executor ex_;
    // The caller's cancellation reaches each step through signal_; once
    // requested, no further step starts (cancelled_).
    asio::cancellation_slot caller_slot_;
    mutable asio::cancellation_signal signal_;  // (slot() is not const)
    bool cancelled_ = false;
    statement_router router_;
    route step_ = route::fail;
    std::optional<op_state> state_;  // the step's, for the steps that have one
    std::shared_ptr<tx_link> tx_;    // the open transaction the operation runs in
    sql_end end_ = sql_end::none;    // a statement of a transaction begun with SQL: does it end it?
    std::exception_ptr failure_;
    std::unique_ptr<asio::steady_timer> timer_;  // made at the first BUSY
    held_prelude prelude_;                       // a step on a held connection: what runs first
    // Set on the io side before a step is queued, read by its job:
    bool checks_writes_ = false;  // ask SQLite whether the statement writes first
    bool begins_ = false;         // first_on_writer: BEGIN IMMEDIATE before the job
    bool in_sql_tx_ = false;      // sql_transaction: BEGIN again only for the user's ROLLBACK
    // Set by the job on the worker, read after the step's completion:
    bool writes_ = false;  // the statement writes, and did not run
};

namespace {

route_facts facts_of(const operation& op, const tx_link* tx) noexcept {
    route_facts f;
    f.op = op.kind();
    if (tx != nullptr) {
        f.transaction = tx->by_sql          ? open_transaction::by_sql
                        : tx->pc == nullptr ? open_transaction::awaiting_writer
                                            : open_transaction::begun;
    }
    return f;
}

}  // namespace

driver::driver(session& s, operation& op) noexcept
    : s_(s), op_(op), ex_(op.executor()), caller_slot_(op.cancellation_slot()), router_({}, {}) {}

void driver::start() noexcept {
    if (s_.core_ == nullptr) {
        try {
            s_.check_usable();
        } catch (...) {
            fail_soon(std::current_exception());
        }
        return;
    }
    tx_link* tx = s_.open_tx();
    route_facts f = facts_of(op_, tx);
    if (tx != nullptr) {
        tx_ = s_.tx_;
    }
    f.holds_connection = s_.pc_ != nullptr;
    f.in_sql_read_transaction = s_.holds_sql_transaction();
    f.writer_lane = s_.core_->writer_lane() != nullptr;
    f.kind = s_.core_->database().classify(op_.sql());
    f.begins_transaction = f.kind == sql_kind::write && sql_begins(op_.sql());
    router_ = statement_router(f, s_.core_->busy_budget());
    if (caller_slot_.is_connected()) {
        caller_slot_.assign([this](asio::cancellation_type type) { on_cancel(type); });
    }
    perform(router_.start());
}

void driver::on_cancel(asio::cancellation_type type) noexcept {
    cancelled_ = true;
    signal_.emit(type);
}

void driver::advance(step_outcome outcome) {
    perform(router_.next(outcome, route_clock::now()));
}

void driver::fail_soon(std::exception_ptr ep) noexcept {
    failure_ = std::move(ep);
    asio::post(ex_, [this] { advance(step_outcome::failed); });
}

void driver::perform(route step) {
    step_ = step;
    if (step == route::done || step == route::fail) {
        finish(step == route::done ? nullptr : failure_);
        return;
    }
    if (cancelled_) {
        fail_soon(aborted_error());
        return;
    }
    try {
        checks_writes_ = false;
        begins_ = false;
        prelude_ = {};
        switch (step) {
            case route::transaction:
                if (!tx_->open) {
                    throw_error(errc::transaction_state, "the transaction has ended");
                }
                run_held(*tx_->core, *tx_->pc, true);
                return;
            case route::first_on_writer:
                if (tx_->connection_gone) {
                    throw_transaction_ended();
                }
                if (!tx_->open) {
                    throw_error(errc::transaction_state, "the transaction has ended");
                }
                begins_ = true;
                state_.emplace();
                tx_->core->run_in_line(*state_, *this);
                return;
            case route::sql_transaction:
                in_sql_tx_ = true;
                end_ = lane()->database().transaction_end(op_.sql());
                tx_->core->run_held(*tx_->pc, *this, nullptr);
                return;
            case route::refused:
                throw_in_sql_read_transaction();
            case route::held:
            case route::checked_out:
                checks_writes_ = router_.checks_writes();
                on_connection();
                return;
            case route::idle_read:
                checks_writes_ = router_.checks_writes();
                state_.emplace();
                state_->shares = router_.shares_reads();
                lane()->run_on_idle(*state_, *this);
                return;
            case route::writer:
                state_.emplace();
                state_->may_pin = !router_.wraps_in_transaction();
                lane()->writer_lane()->run_in_line(*state_, *this);
                return;
            case route::wait:
                lane()->count_busy_retry();
                if (!timer_) {
                    timer_ = std::make_unique<asio::steady_timer>(ex_);
                }
                timer_->expires_after(router_.wait());
                timer_->async_wait(waited{this});
                return;
            case route::done:
            case route::fail:
                return;
        }
    } catch (...) {
        fail_soon(std::current_exception());
    }
}

void driver::run_held(engine_core& lane, pooled_connection& pc, bool inside_transaction) {
    prelude_ = held_prelude::take(pc, inside_transaction);
    lane.run_held(pc, *this, nullptr);
}

void driver::on_connection() {
    if (s_.pc_ != nullptr) {
        run_held(*lane(), *s_.pc_, false);
        return;
    }
    // Waits in turn for a connection of the session's lane, to hold for
    // the operation (pool_timeout, cancellation).
    if (session held = try_acquire(*lane()); held.valid()) {
        connection_acquired(nullptr, std::move(held));
        return;
    }
    acquired handler{this};
    auto work = tracked_executor(handler, *lane());
    async_acquire(*lane(), acquire_handler(std::move(handler)), std::move(work));
}

void driver::connection_acquired(std::exception_ptr ep, session held) {
    if (ep) {
        failure_ = std::move(ep);
        advance(outcome_of(failure_, false));
        return;
    }
    s_.pc_ = std::exchange(held.pc_, nullptr);
    if (cancelled_) {
        unpin_if_idle();
        fail_soon(aborted_error());
        return;
    }
    try {
        run_held(*lane(), *s_.pc_, false);
    } catch (...) {
        fail_soon(std::current_exception());  // out of memory: the step never started
    }
}

void driver::work(backend_connection& c) {
    if (prelude_.pc != nullptr) {
        prelude_.run(c);
    }
    if (checks_writes_ && c.writes(op_.sql())) {
        writes_ = true;  // to the writer, unrun
        return;
    }
    if (begins_) {
        c.exec(transaction_verb::begin_write);
        state_->hold = true;  // the transaction is the session's now
    } else if (in_sql_tx_ && !c.in_transaction()) {
        // SQLite ended the transaction by itself: only the user's ROLLBACK
        // runs (on a transaction begun again for it), the rest is refused.
        if (end_ != sql_end::rollback) {
            throw_transaction_ended();
        }
        c.exec(transaction_verb::begin_read);
    }
    if (router_.wraps_in_transaction()) {
        if (c.in_transaction()) {
            throw_error(errc::transaction_state,
                        "a transaction is already open on this connection");
        }
        c.exec(transaction_verb::begin_write);
        try {
            run_guarded(c, [&] { c.run(op_); });
            c.exec(transaction_verb::commit);
        } catch (...) {
            if (c.in_transaction()) {
                try {
                    c.exec(transaction_verb::rollback);
                } catch (...) {
                    // The connection's release rolls back what is left.
                }
            }
            throw;
        }
    } else if (router_.explains_refused_writes()) {
        try {
            c.run(op_);
        } catch (const error& e) {
            c.explain_refused_write(e);
            throw;
        }
    } else {
        c.run(op_);
    }
}

void driver::step_ended(std::exception_ptr ep) {
    bool retryable = true;
    bool none_idle = false;
    switch (step_) {
        case route::transaction:
            retryable = tx_->pc->begin_pending;  // BEGIN IMMEDIATE failed: nothing ran
            break;
        case route::first_on_writer:
            retryable = !state_->hold;
            adopt_writer();
            break;
        case route::sql_transaction:
            // A COMMIT that met a reader's lock leaves the transaction open.
            retryable = end_ == sql_end::commit && tx_->pc->in_transaction;
            break;
        case route::held:
        case route::checked_out:
            unpin_if_idle();
            break;
        case route::idle_read:
            // A connection the job left inside a transaction (BEGIN) becomes
            // the session's.
            if (state_->pinned != nullptr) {
                s_.pc_ = std::exchange(state_->pinned, nullptr);
            }
            none_idle = state_->none_idle;
            break;
        case route::writer:
            // The writer left inside a transaction (BEGIN IMMEDIATE) becomes
            // the session's transaction, begun by SQL.
            if (state_->pinned != nullptr) {
                keep_sql_transaction(std::exchange(state_->pinned, nullptr), lane()->writer_lane());
            }
            break;
        default:
            break;
    }
    step_outcome outcome = step_outcome::ok;
    if (ep) {
        failure_ = std::move(ep);
        outcome = outcome_of(failure_, retryable);
    } else if (std::exchange(writes_, false)) {
        outcome = step_outcome::writes;
    } else if (none_idle) {
        outcome = step_outcome::no_idle_connection;
    }
    advance(outcome);
}

void driver::wait_ended(boost::system::error_code ec) {
    if (ec) {
        failure_ = ec == asio::error::operation_aborted
                       ? aborted_error()
                       : std::make_exception_ptr(boost::system::system_error(ec));
        advance(step_outcome::failed);
        return;
    }
    advance(step_outcome::ok);
}

step_outcome driver::outcome_of(std::exception_ptr ep, bool retryable) noexcept {
    try {
        std::rethrow_exception(std::move(ep));
    } catch (const error& e) {
        return retryable && primary_code(e.code()) == errc::busy ? step_outcome::busy
                                                                 : step_outcome::failed;
    } catch (...) {
        return step_outcome::failed;
    }
}

void driver::finish(std::exception_ptr ep) {
    if (in_sql_tx_) {
        after_sql_statement(ep != nullptr);
    }
    if (caller_slot_.is_connected()) {
        caller_slot_.clear();
    }
    operation& op = op_;
    this->~driver();
    op.complete(std::move(ep));
}

void driver::keep_sql_transaction(pooled_connection* pc, engine_core* lane) noexcept {
    if (pc->in_transaction && pc->healthy && s_.open_tx() == nullptr && s_.core_ != nullptr) {
        try {
            s_.tx_ = std::make_shared<tx_link>(lane, pc, true);
            return;
        } catch (...) {
            // Out of memory: rolled back below.
        }
    }
    lane->release(pc);  // rolls back whatever is left
}

void driver::adopt_writer() noexcept {
    tx_link& tx = *tx_;
    op_state& state = *state_;
    pooled_connection* pc = std::exchange(state.pinned, nullptr);
    if (pc == nullptr) {
        // BEGIN ran, but the connection is closed (an error that poisons
        // it): what the transaction did is gone with it.
        tx.connection_gone = tx.connection_gone || state.hold;
        return;
    }
    if (tx.open && tx.writer != nullptr && tx.writer->pc_ == nullptr) {
        tx.pc = pc;
        tx.writer->pc_ = pc;
    } else {
        tx.core->release(pc);  // rolls back
    }
}

void driver::after_sql_statement(bool failed) noexcept {
    const sql_end end = end_;
    tx_link* tx = s_.open_tx();
    if (tx == nullptr || !tx->by_sql) {
        return;
    }
    pooled_connection* pc = tx->pc;
    // Still open; or ended by SQLite itself after a failed statement, which
    // the user has not ended yet: the writer stays, statements are refused.
    if (pc->healthy && (pc->in_transaction || (failed && end == sql_end::none))) {
        return;
    }
    engine_core* lane = tx->core;
    tx->open = false;
    s_.tx_.reset();
    lane->release(pc);
}

void driver::throw_in_sql_read_transaction() {
    throw_error(errc::transaction_state,
                "the session is inside a read transaction begun with SQL (BEGIN or SAVEPOINT on a "
                "read connection), where nothing can write; end it first, and begin transactions "
                "that write with BEGIN IMMEDIATE or session::begin()");
}

void driver::unpin_if_idle() noexcept {
    pooled_connection* pc = s_.pc_;
    if (pc != nullptr && s_.open_tx() == nullptr && !pc->pending_rollback && !pc->begin_pending &&
        !pc->in_transaction) {
        s_.core_->release(std::exchange(s_.pc_, nullptr));
    }
}

void drive(session& s, operation& op) noexcept {
    static_assert(sizeof(driver) <= operation::driver_size, "operation::driver_size is too small");
    static_assert(alignof(driver) <= alignof(std::max_align_t));
    (new (op.driver_storage()) driver(s, op))->start();
}

}  // namespace asqlite::detail
