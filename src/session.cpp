#include "asqlite/session.hpp"

namespace asqlite {

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

session::~session() { release(); }

void session::release() noexcept {
    if (pc_ != nullptr) {
        core_->release(std::exchange(pc_, nullptr));
    }
    core_.reset();
}

void session::check_usable() const {
    if (pc_ == nullptr) {
        throw_error(errc::transaction_state, "the session holds no connection (moved from or empty)");
    }
}

transaction::transaction(transaction&& other) noexcept
    : core_(other.core_),
      pc_(std::exchange(other.pc_, nullptr)),
      lease_(other.lease_) {}

transaction& transaction::operator=(transaction&& other) noexcept {
    if (this != &other) {
        this->~transaction();
        core_ = other.core_;
        pc_ = std::exchange(other.pc_, nullptr);
        lease_ = other.lease_;
    }
    return *this;
}

transaction::~transaction() {
    if (pc_ != nullptr && pc_->lease == lease_) {
        // Dropped uncommitted: the session rolls back before its next
        // operation, or before the connection returns to the pool.
        pc_->pending_rollback = true;
    }
}

detail::pooled_connection* transaction::finish() {
    if (pc_ == nullptr) {
        throw_error(errc::transaction_state, "the transaction is already finished");
    }
    if (pc_->lease != lease_) {
        throw_error(errc::transaction_state, "the transaction's session has ended");
    }
    pc_->tx_open = false;
    return std::exchange(pc_, nullptr);
}

}  // namespace asqlite
