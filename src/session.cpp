#include "asqlite/session.hpp"

#include <boost/asio/async_result.hpp>

namespace asqlite {

namespace detail {

asio::awaitable<session> acquire_on(engine_core& lane) {
    if (session s = try_acquire(lane); s.valid()) {
        co_return s;
    }
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                            void(std::exception_ptr, session)>(
        [&lane](auto handler) {
            auto work = tracked_executor(handler, lane);
            async_acquire(lane, acquire_handler(std::move(handler)), std::move(work));
        },
        asio::use_awaitable);
}

session new_session(std::shared_ptr<engine_core> lane) {
    if (lane->closed()) {
        throw_error(errc::pool_closed, "the async engine is closed");
    }
    return session(std::move(lane), nullptr);
}

}  // namespace detail

session::session(session&& other) noexcept
    : core_(std::move(other.core_)), pc_(std::exchange(other.pc_, nullptr)) {}

session& session::operator=(session&& other) noexcept {
    if (this != &other) {
        release();
        core_ = std::move(other.core_);
        pc_ = std::exchange(other.pc_, nullptr);
    }
    return *this;
}

session::~session() {
    release();
}

void session::release() noexcept {
    if (pc_ != nullptr) {
        pc_->writer_pc = nullptr;
        pc_->writer_core = nullptr;
        core_->release(std::exchange(pc_, nullptr));
    }
    core_.reset();
}

void session::check_usable() const {
    if (core_ == nullptr) {
        throw_error(errc::transaction_state,
                    "the session belongs to no engine (moved from or default-constructed)");
    }
}

void session::unpin_if_idle() noexcept {
    if (pc_ != nullptr && !pc_->tx_open && !pc_->pending_rollback && !pc_->in_transaction) {
        pc_->writer_pc = nullptr;
        pc_->writer_core = nullptr;
        core_->release(std::exchange(pc_, nullptr));
    }
}

asio::awaitable<void> session::pin() {
    session held = co_await detail::acquire_on(*core_);
    pc_ = std::exchange(held.pc_, nullptr);
}

asio::awaitable<transaction> session::begin() {
    check_usable();
    if (pc_ == nullptr) {
        // The transaction's bookkeeping lives with a connection the session
        // holds until it ends (and, on a single-connection lane, runs there).
        co_await pin();
    }
    if (pc_->tx_open) {
        throw_error(errc::transaction_state, "a transaction is already open on this session");
    }
    // Claimed now so a second begin() fails at once; released if this fails.
    struct claim {
        detail::pooled_connection* pc;
        bool kept = false;
        ~claim() {
            if (!kept) {
                pc->tx_open = false;
            }
        }
    } guard{pc_};
    pc_->tx_open = true;
    auto begin_immediate = [](connection& c) { c.exec("BEGIN IMMEDIATE"); };
    detail::engine_core* lane = core_->writer_lane();
    if (lane == nullptr) {
        co_await detail::retry_busy(*core_,
                                    [&] { return op<void>(begin_immediate, asio::use_awaitable); });
        guard.kept = true;
        co_return transaction(core_.get(), pc_, session{});
    }
    session writer = co_await detail::acquire_on(*lane);
    co_await detail::retry_busy(
        *lane, [&] { return writer.op<void>(begin_immediate, asio::use_awaitable); });
    pc_->writer_pc = writer.pc_;
    pc_->writer_core = writer.core_.get();
    guard.kept = true;
    co_return transaction(core_.get(), pc_, std::move(writer));
}

transaction::transaction(transaction&& other) noexcept
    : owner_core_(other.owner_core_),
      owner_(std::exchange(other.owner_, nullptr)),
      lease_(other.lease_),
      writer_(std::move(other.writer_)) {}

transaction& transaction::operator=(transaction&& other) noexcept {
    if (this != &other) {
        this->~transaction();
        new (this) transaction(std::move(other));
    }
    return *this;
}

transaction::~transaction() {
    if (owner_ != nullptr && owner_->lease.load(std::memory_order_relaxed) == lease_) {
        if (!writer_.valid()) {
            // On the owner's own connection: the session rolls back before its
            // next operation, or before the connection returns to the pool.
            owner_->pending_rollback = true;
        }
        detach();
    }
    // writer_'s destructor returns the writer connection; the release path
    // rolls back first because the connection is inside a transaction.
}

void transaction::detach() noexcept {
    owner_->tx_open = false;
    owner_->writer_pc = nullptr;
    owner_->writer_core = nullptr;
}

std::pair<detail::engine_core*, detail::pooled_connection*> transaction::finish() {
    if (owner_ == nullptr) {
        throw_error(errc::transaction_state, "the transaction is already finished");
    }
    if (owner_->lease.load(std::memory_order_relaxed) != lease_) {
        throw_error(errc::transaction_state, "the transaction's session has ended");
    }
    detach();
    auto* owner = std::exchange(owner_, nullptr);
    if (writer_.valid()) {
        return {writer_.core_.get(), writer_.pc_};
    }
    return {owner_core_, owner};
}

asio::awaitable<void> transaction::commit() {
    const auto [core, pc] = finish();
    co_await detail::session_op<void>(
        core, pc,
        [](connection& c) {
            try {
                c.exec("COMMIT");
            } catch (...) {
                if (c.in_transaction()) {
                    c.exec("ROLLBACK");
                }
                throw;
            }
        },
        asio::use_awaitable);
    writer_ = session{};  // the writer lane is free for the next transaction
}

asio::awaitable<void> transaction::rollback() {
    const auto [core, pc] = finish();
    co_await detail::session_op<void>(
        core, pc,
        [](connection& c) {
            if (c.in_transaction()) {
                c.exec("ROLLBACK");
            }
        },
        asio::use_awaitable);
    writer_ = session{};
}

}  // namespace asqlite
