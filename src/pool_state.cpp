#include "pool_state.hpp"

#include <algorithm>

namespace asqlite::detail {

bool pool_state::expired(pool_clock::time_point created,
                         pool_clock::time_point now) const noexcept {
    return limits_.recycle > pool_clock::duration::zero() && now - created >= limits_.recycle;
}

void pool_state::close(conn_id c, pool_effects& fx) {
    --open_;
    fx.closes.push_back(c);
}

std::optional<conn_id> pool_state::try_acquire(pool_clock::time_point now, pool_effects& fx) {
    if (waiters_.empty()) {
        while (!idle_.empty()) {
            const idle_conn c = idle_.back();
            idle_.pop_back();
            if (!expired(c.created, now)) {
                return c.id;
            }
            close(c.id, fx);
        }
    }
    return std::nullopt;
}

std::optional<conn_id> pool_state::acquire(waiter_id w, pool_clock::time_point now,
                                           pool_effects& fx) {
    if (auto c = try_acquire(now, fx)) {
        return c;
    }
    waiters_.push_back({w, now + limits_.timeout});
    pump(fx);
    return std::nullopt;
}

void pool_state::place(conn_id c, pool_clock::time_point created, pool_clock::time_point now,
                       pool_effects& fx) {
    if (expired(created, now)) {
        close(c, fx);
        pump(fx);
        return;
    }
    if (!waiters_.empty()) {
        fx.grants.push_back({waiters_.front().id, c});
        waiters_.pop_front();
        return;
    }
    if (open_ > limits_.size) {
        close(c, fx);  // an overflow connection nobody needs now
        return;
    }
    idle_.push_back({c, created});
}

void pool_state::release(conn_id c, pool_clock::time_point created, bool reusable,
                         pool_clock::time_point now, pool_effects& fx) {
    if (!reusable) {
        close(c, fx);
        pump(fx);
        return;
    }
    place(c, created, now, fx);
}

void pool_state::open_succeeded(conn_id c, pool_clock::time_point now, pool_effects& fx) {
    --opening_;
    ++open_;
    place(c, now, now, fx);
}

bool pool_state::reserve_open() noexcept {
    // Never an overflow connection: one would be closed again as soon as
    // its statement ended (nobody waits), an open and a close per statement.
    // Overflow stays for waiters, as before.
    if (!waiters_.empty() || open_ + opening_ >= limits_.size) {
        return false;
    }
    ++opening_;
    return true;
}

void pool_state::open_reserved(pool_effects& fx) noexcept {
    --opening_;
    ++open_;
    pump(fx);
}

void pool_state::open_reserved_failed(pool_effects& fx) noexcept {
    --opening_;
    pump(fx);
}

void pool_state::open_failed(pool_effects& fx) {
    --opening_;
    // Only waiters beyond the opens still in flight lack a connection to
    // come; the oldest of them carries the error.
    if (waiters_.size() > opening_) {
        fx.failed.push_back(waiters_.front().id);
        waiters_.pop_front();
    }
    // The failed open's permit is free again: a waiter that queued while the
    // pool was full must get an open now, not sit until pool_timeout.
    pump(fx);
}

bool pool_state::remove_waiter(waiter_id w) {
    const auto it =
        std::find_if(waiters_.begin(), waiters_.end(), [w](const waiter& x) { return x.id == w; });
    if (it == waiters_.end()) {
        return false;
    }
    waiters_.erase(it);
    return true;
}

void pool_state::expire(pool_clock::time_point now, pool_effects& fx) {
    // Every waiter has the same timeout, so deadlines grow along the queue.
    while (!waiters_.empty() && waiters_.front().deadline <= now) {
        fx.timed_out.push_back(waiters_.front().id);
        waiters_.pop_front();
    }
}

std::optional<pool_clock::time_point> pool_state::next_deadline() const {
    if (waiters_.empty()) {
        return std::nullopt;
    }
    return waiters_.front().deadline;
}

void pool_state::pump(pool_effects& fx) {
    const std::size_t capacity = limits_.size + limits_.max_overflow;
    while (waiters_.size() > opening_ && open_ + opening_ < capacity) {
        ++opening_;
        ++fx.opens;
    }
}

void pool_state::close_all(pool_effects& fx) {
    for (const auto& c : idle_) {
        fx.closes.push_back(c.id);
    }
    open_ -= idle_.size();
    idle_.clear();
    for (const auto& w : waiters_) {
        fx.failed.push_back(w.id);
    }
    waiters_.clear();
}

}  // namespace asqlite::detail
