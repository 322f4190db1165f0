#include "asqlite/session.hpp"

#include <boost/asio/async_result.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <string>

#include "engine_core.hpp"
#include "sql_text.hpp"

namespace asqlite {

namespace detail {

namespace {

/// A step of commit() or rollback() on the transaction's connection `pc`
/// (held_prelude, then fn), awaited with `frameless`; see
/// engine_core::run_held for `gives_back`.
template <class Fn>
auto held_step(engine_core& lane, pooled_connection& pc, Fn fn, op_state* gives_back) {
    return asio::async_initiate<decltype(frameless), void(std::exception_ptr)>(
        [&lane, &pc, gives_back](auto handler, Fn f) {
            using handler_type = decltype(handler);
            class one final : public step {
              public:
                one(handler_type h, Fn f, held_prelude p)
                    : h_(std::move(h)), f_(std::move(f)), prelude_(p) {}
                void work(backend_connection& c) override {
                    prelude_.run(c);
                    f_(c);
                }
                void done(std::exception_ptr ep) override {
                    handler_type h = std::move(h_);
                    delete this;
                    std::move(h)(std::move(ep));
                }
                asio::any_io_executor executor() const override {
                    return asio::get_associated_executor(h_);
                }
                asio::cancellation_slot cancellation_slot() const override {
                    return asio::get_associated_cancellation_slot(h_);
                }

              private:
                handler_type h_;
                Fn f_;
                held_prelude prelude_;
            };
            auto s = std::make_unique<one>(std::move(handler), std::move(f),
                                           held_prelude::take(pc, false));
            lane.run_held(pc, *s, gives_back);
            s.release();  // the lane has it; done() deletes it
        },
        frameless, std::move(fn));
}

}  // namespace

std::string savepoint_name(std::uint64_t n) {
    return fmt::format("asqlite_savepoint_{}", n);
}

session new_session(std::shared_ptr<engine_core> lane) {
    if (lane->closed()) {
        throw_error(errc::pool_closed, "the async engine is closed");
    }
    return session(std::move(lane), nullptr);
}

}  // namespace detail

session::session(std::shared_ptr<detail::engine_core> core, detail::pooled_connection* pc) noexcept
    : core_(std::move(core)), pc_(pc) {}

session::session(session&& other) noexcept
    : core_(std::move(other.core_)),
      pc_(std::exchange(other.pc_, nullptr)),
      tx_(std::move(other.tx_)) {}

session& session::operator=(session&& other) noexcept {
    if (this != &other) {
        release();
        core_ = std::move(other.core_);
        pc_ = std::exchange(other.pc_, nullptr);
        tx_ = std::move(other.tx_);
    }
    return *this;
}

session::~session() {
    release();
}

void session::release() noexcept {
    if (tx_ != nullptr) {
        // A transaction object still open keeps its writer until it is
        // dropped (and rolls back then); on the session's own connection,
        // the release below rolls back. One begun by SQL is the session's
        // own: its writer goes back now, rolling back on the way.
        if (tx_->by_sql && tx_->open) {
            tx_->open = false;
            tx_->core->release(tx_->pc);
        }
        tx_->session_gone = true;
        tx_.reset();
    }
    if (pc_ != nullptr) {
        core_->release(std::exchange(pc_, nullptr));
    }
    core_.reset();
}

void session::hand_over_orphan(std::shared_ptr<void> what) noexcept {
    // The connection of the open transaction: no job runs on it now (the
    // session runs one operation at a time), and its next job, or the
    // rollback when the transaction is dropped, destroys `what` there.
    detail::pooled_connection* pc = nullptr;
    if (auto* tx = open_tx()) {
        pc = tx->pc;
    } else {
        pc = pc_;
    }
    if (pc != nullptr) {
        try {
            pc->orphans.push_back(std::move(what));
        } catch (...) {
            // Out of memory: destroyed here, while the connection is idle.
        }
    }
}

bool session::in_transaction() const noexcept {
    return open_tx() != nullptr || holds_sql_transaction();
}

detail::tx_link* session::open_tx() const noexcept {
    return tx_ && tx_->open ? tx_.get() : nullptr;
}

bool session::holds_sql_transaction() const noexcept {
    return pc_ != nullptr && pc_->in_transaction && !pc_->pending_rollback;
}

asio::any_io_executor session::io_executor() const {
    return core_ ? core_->io_executor() : asio::any_io_executor{};
}

void session::check_usable() const {
    if (core_ == nullptr) {
        throw_error(errc::transaction_state,
                    "the session belongs to no engine (moved from or default-constructed)");
    }
}

asio::awaitable<transaction> session::begin_op() {
    try {
        check_usable();
        if (open_tx() != nullptr) {
            throw_error(errc::transaction_state, "a transaction is already open on this session");
        }
        if (holds_sql_transaction()) {
            throw_error(errc::transaction_state,
                        "the session is inside a transaction begun with SQL (through execute); end "
                        "it first");
        }
        // The transaction holds the connection it writes on in its own
        // session (writer), which gives it back the moment the transaction
        // ends: the writer lane's, or on a single-connection lane (:memory:,
        // pool_size 1) that lane's one connection. Only a session that holds
        // a connection already (a transaction begun with SQL and ended,
        // still to be given back) runs it there.
        session writer;
        std::shared_ptr<detail::engine_core> lane = core_->writer_lane_ptr();
        if (lane == nullptr && pc_ == nullptr) {
            lane = core_;
        }
        if (lane != nullptr) {
            // An idle connection is taken now. A busy one is waited for by
            // the first statement, in its job (first_on_writer): the
            // holder's worker hands it over with no hop to the io thread
            // between.
            writer = detail::try_acquire(*lane);
            if (!writer.valid()) {
                writer = detail::new_session(lane);
            }
        }
        if (open_tx() != nullptr) {  // another begin() of this session got there first
            throw_error(errc::transaction_state, "a transaction is already open on this session");
        }
        // (A transaction dropped here uncommitted is rolled back by the first
        // statement's job, before its BEGIN.)
        detail::pooled_connection* pc = writer.valid() ? writer.pc_ : pc_;
        if (pc != nullptr) {
            pc->begin_pending = true;  // BEGIN IMMEDIATE runs with the first statement
        }
        tx_ = std::make_shared<detail::tx_link>(lane != nullptr ? lane.get() : core_.get(), pc);
        co_return transaction(tx_, std::move(writer));
    } catch (const boost::system::system_error& e) {
        detail::rethrow_if_aborted(e);
        throw;
    }
}

asio::awaitable<savepoint> session::begin_nested_op() {
    try {
        check_usable();
        detail::tx_link* tx = open_tx();
        if (tx == nullptr || tx->by_sql) {
            throw_error(errc::transaction_state,
                        "begin_nested() needs a transaction of this session begun with begin()");
        }
        const std::uint64_t n = ++tx->savepoints;
        const std::string sql = "SAVEPOINT " + detail::savepoint_name(n);
        co_await execute(sql);
        if (open_tx() != tx) {
            throw_error(errc::transaction_state, "the transaction ended meanwhile");
        }
        tx->live_savepoints.push_back(n);
        co_return savepoint(this, tx_, n);
    } catch (const boost::system::system_error& e) {
        detail::rethrow_if_aborted(e);
        throw;
    }
}

savepoint::savepoint(session* s, std::shared_ptr<detail::tx_link> link, std::uint64_t id) noexcept
    : session_(s), link_(std::move(link)), id_(id) {}

savepoint::savepoint(savepoint&& other) noexcept
    : session_(other.session_), link_(std::move(other.link_)), id_(other.id_) {}

savepoint& savepoint::operator=(savepoint&& other) noexcept {
    if (this != &other) {
        abandon();
        session_ = other.session_;
        link_ = std::move(other.link_);
        id_ = other.id_;
    }
    return *this;
}

savepoint::~savepoint() {
    abandon();
}

void savepoint::abandon() noexcept {
    if (link_ == nullptr) {
        return;
    }
    if (link_->open && link_->pc != nullptr && link_->end_savepoint(id_)) {
        std::uint64_t& pending = link_->pc->rollback_to_savepoint;
        // The outermost of those dropped: rolling back to it ends the rest.
        pending = pending == 0 ? id_ : std::min(pending, id_);
    }
    link_.reset();
}

void savepoint::check_active() const {
    if (link_ == nullptr) {
        throw_error(errc::transaction_state, "the savepoint is already released or rolled back");
    }
    if (!link_->open || session_->tx_ != link_) {
        throw_error(errc::transaction_state, "the savepoint's transaction has ended");
    }
    if (!link_->savepoint_live(id_)) {
        throw_error(errc::transaction_state,
                    "the savepoint has ended with a savepoint around it (released or rolled back)");
    }
}

asio::any_io_executor savepoint::io_executor() const {
    return link_ != nullptr ? link_->core->io_executor() : asio::any_io_executor{};
}

asio::awaitable<void> savepoint::end_op(bool undo) {
    try {
        check_active();
        const std::string name = detail::savepoint_name(id_);
        try {
            if (undo) {
                const std::string to = "ROLLBACK TO " + name;
                co_await session_->execute(to);
            }
            const std::string release = "RELEASE " + name;
            co_await session_->execute(release);
        } catch (...) {
            abandon();  // rolled back before the transaction's next step
            throw;
        }
        link_->end_savepoint(id_);
        link_.reset();
    } catch (const boost::system::system_error& e) {
        detail::rethrow_if_aborted(e);
        throw;
    }
}

transaction::transaction(std::shared_ptr<detail::tx_link> link, session writer) noexcept
    : link_(std::move(link)), writer_(std::move(writer)) {
    if (writer_.valid()) {
        link_->writer = &writer_;
    }
}

transaction::transaction(transaction&& other) noexcept
    : link_(std::move(other.link_)), writer_(std::move(other.writer_)) {
    if (link_ != nullptr && link_->writer != nullptr) {
        link_->writer = &writer_;
    }
}

transaction& transaction::operator=(transaction&& other) noexcept {
    if (this != &other) {
        this->~transaction();
        new (this) transaction(std::move(other));
    }
    return *this;
}

transaction::~transaction() {
    if (link_ != nullptr) {
        link_->writer = nullptr;
    }
    if (link_ != nullptr && link_->open && !link_->session_gone) {
        link_->open = false;
        detail::pooled_connection* pc = link_->pc;
        if (!writer_.valid()) {
            // On the session's own connection: it rolls back before its next
            // operation, or before the connection returns to the pool.
            if (!std::exchange(pc->begin_pending, false)) {
                pc->pending_rollback = true;
            }
        }
    }
    // writer_'s destructor returns the writer connection; the release path
    // rolls back first when the connection is inside a transaction, and
    // drops a BEGIN still pending.
}

void transaction::check_active() const {
    if (link_ == nullptr) {
        throw_error(errc::transaction_state, "the transaction is already finished");
    }
}

asio::any_io_executor transaction::io_executor() const {
    return link_ != nullptr ? link_->core->io_executor() : asio::any_io_executor{};
}

detail::tx_link transaction::finish() {
    if (link_ == nullptr) {
        throw_error(errc::transaction_state, "the transaction is already finished");
    }
    if (link_->session_gone) {
        throw_error(errc::transaction_state, "the transaction's session has ended");
    }
    link_->open = false;
    link_->writer = nullptr;
    return *std::exchange(link_, nullptr);
}

asio::awaitable<void> transaction::commit_op() {
    try {
        const detail::tx_link tx = finish();
        if (tx.pc == nullptr || std::exchange(tx.pc->begin_pending, false)) {
            writer_ = session{};
            if (tx.connection_gone) {
                detail::throw_transaction_ended();
            }
            co_return;  // no statement ran: nothing to commit
        }
        detail::pooled_connection* pc = tx.pc;
        // On the writer lane, the worker gives the writer back as soon as the
        // transaction has ended (committed, or rolled back after a failure):
        // the next writer's job can follow it at once. From then on the
        // writer is not this transaction's, also if this frame is destroyed
        // without being resumed (the io_context gone).
        std::optional<detail::op_state> gives_back;  // the last attempt's
        struct forget_given_back {
            transaction* self;
            std::optional<detail::op_state>* gives_back;
            // Whether the worker gave the writer back (then it is forgotten).
            bool operator()() const noexcept {
                const bool released = *gives_back && (*gives_back)->released;
                if (released) {
                    self->writer_.pc_ = nullptr;  // not ours to touch any more
                }
                return released;
            }
            ~forget_given_back() { (*this)(); }
        } forget{this, &gives_back};
        auto attempt = [&] {
            detail::op_state* b = nullptr;
            if (writer_.valid()) {
                b = &gives_back.emplace();
            }
            return detail::held_step(
                *tx.core, *pc,
                [](detail::backend_connection& c) {
                    if (!c.in_transaction()) {
                        detail::throw_transaction_ended();  // COMMIT would report no more
                    }
                    try {
                        c.exec(detail::transaction_verb::commit);
                    } catch (const error& e) {
                        // SQLITE_BUSY (a reader's lock, in the rollback journal
                        // modes) leaves the transaction open: waited out below.
                        if (primary_code(e.code()) != errc::busy && c.in_transaction()) {
                            c.exec(detail::transaction_verb::rollback);
                        }
                        throw;
                    }
                },
                b);
        };
        // The first attempt straight away (no retry frame on the common
        // path); BUSY with the transaction still open goes to the retry loop.
        std::exception_ptr failure;
        bool busy = false;
        try {
            detail::value_of(co_await attempt());
        } catch (const error& e) {
            failure = std::current_exception();
            busy = primary_code(e.code()) == errc::busy;
        } catch (...) {
            failure = std::current_exception();
        }
        if (busy && pc->in_transaction) {
            try {
                co_await detail::retry_busy(*tx.core, attempt, failure,
                                            [pc] { return pc->in_transaction; });
                failure = nullptr;
            } catch (...) {
                failure = std::current_exception();
            }
        }
        if (!forget() && failure && !writer_.valid() && pc->in_transaction) {
            pc->pending_rollback = true;  // on the session's connection, before its next use
        }
        writer_ = session{};  // the writer lane is free; its release rolls back what is left
        if (failure) {
            std::rethrow_exception(failure);
        }
    } catch (const boost::system::system_error& e) {
        detail::rethrow_if_aborted(e);
        throw;
    }
}

asio::awaitable<void> transaction::rollback_op() {
    try {
        const detail::tx_link tx = finish();
        if (tx.pc == nullptr || std::exchange(tx.pc->begin_pending, false)) {
            writer_ = session{};  // nothing ran (or it is gone with its connection)
            co_return;
        }
        detail::value_of(co_await detail::held_step(
            *tx.core, *tx.pc,
            [](detail::backend_connection& c) {
                if (c.in_transaction()) {
                    c.exec(detail::transaction_verb::rollback);
                }
            },
            nullptr));
        writer_ = session{};
    } catch (const boost::system::system_error& e) {
        detail::rethrow_if_aborted(e);
        throw;
    }
}

}  // namespace asqlite
