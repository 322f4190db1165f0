#include "asqlite/detail/statement_router.hpp"

#include <algorithm>

namespace asqlite::detail {

std::optional<route_clock::duration> busy_backoff::after_busy(
    route_clock::time_point now) noexcept {
    if (!deadline_) {
        deadline_ = now + budget_;
    }
    if (now + delay_ > *deadline_) {
        return std::nullopt;
    }
    const route_clock::duration wait = delay_;
    delay_ = std::min<route_clock::duration>(delay_ * 2, std::chrono::milliseconds(100));
    return wait;
}

route statement_router::start() noexcept {
    if (facts_.open_transaction) {
        step_ = route::transaction;
    } else if (facts_.holds_connection) {
        step_ = route::held;
    } else if (facts_.writer_lane && facts_.kind == sql_kind::write) {
        step_ = route::writer;
    } else {
        step_ = route::idle_read;
    }
    return step_;
}

route statement_router::next(step_outcome outcome, route_clock::time_point now) noexcept {
    if (step_ == route::done || step_ == route::fail) {
        return step_;
    }
    if (step_ == route::wait) {
        step_ = outcome == step_outcome::ok ? after_wait_ : route::fail;
        return step_;
    }
    switch (outcome) {
        case step_outcome::ok:
            step_ = route::done;
            break;
        case step_outcome::no_idle_connection:
            step_ = step_ == route::idle_read ? route::checked_out : route::fail;
            break;
        case step_outcome::writes:
            step_ = checks_writes() && (step_ == route::idle_read || step_ == route::checked_out)
                        ? route::writer
                        : route::fail;
            break;
        case step_outcome::busy:
            if (step_ == route::transaction) {
                step_ = route::fail;  // the transaction's way retried already
            } else if (const auto wait = backoff_.after_busy(now)) {
                // A read connection checked out for the statement went back:
                // the next attempt looks for an idle one first again.
                after_wait_ = step_ == route::checked_out ? route::idle_read : step_;
                wait_ = *wait;
                step_ = route::wait;
            } else {
                step_ = route::fail;
            }
            break;
        case step_outcome::failed:
            step_ = route::fail;
            break;
    }
    return step_;
}

}  // namespace asqlite::detail
