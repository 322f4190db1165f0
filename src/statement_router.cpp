#include "statement_router.hpp"

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
    const bool writes = facts_.op == operation_kind::write ||
                        (facts_.op == operation_kind::statement && facts_.kind == sql_kind::write);
    switch (facts_.transaction) {
        case open_transaction::begun:
            step_ = route::transaction;
            return step_;
        case open_transaction::awaiting_writer:
            step_ = route::first_on_writer;
            return step_;
        case open_transaction::by_sql:
            step_ = route::sql_transaction;
            return step_;
        case open_transaction::none:
            break;
    }
    if (facts_.op == operation_kind::write && facts_.in_sql_read_transaction &&
        facts_.writer_lane) {
        step_ = route::refused;
    } else if (facts_.holds_connection) {
        step_ = route::held;
    } else if (facts_.writer_lane && writes) {
        step_ = route::writer;
    } else {
        step_ = route::idle_read;
    }
    return step_;
}

route statement_router::next(step_outcome outcome, route_clock::time_point now) noexcept {
    if (step_ == route::done || step_ == route::fail || step_ == route::refused) {
        step_ = step_ == route::done ? route::done : route::fail;
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
            if (!retries_busy()) {
                step_ = route::fail;
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
