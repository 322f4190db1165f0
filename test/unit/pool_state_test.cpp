// The pool's bookkeeping driven sans-io (STYLE.md rule 5): the clock is a
// time_point advanced by hand, connections and waiters are plain ids.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pool_state.hpp"

template <class Range>
std::vector<typename Range::value_type> as_vector(const Range& r) {
    return {r.begin(), r.end()};
}

namespace {

using namespace std::chrono_literals;
using asqlite::detail::conn_id;
using asqlite::detail::pool_clock;
using asqlite::detail::pool_effects;
using asqlite::detail::pool_limits;
using asqlite::detail::pool_state;
using asqlite::detail::waiter_id;
using time_point = pool_clock::time_point;

// An arbitrary non-zero origin, so a zero time_point never passes by accident.
const time_point t0 = time_point{} + 1000h;

pool_limits limits(std::size_t size, std::size_t overflow = 0, pool_clock::duration timeout = 30s,
                   pool_clock::duration recycle = {}) {
    pool_limits l;
    l.size = size;
    l.max_overflow = overflow;
    l.timeout = timeout;
    l.recycle = recycle;
    return l;
}

std::vector<waiter_id> granted_waiters(const pool_effects& fx) {
    std::vector<waiter_id> out;
    for (const auto& g : fx.grants) {
        out.push_back(g.waiter);
    }
    return out;
}

// Drives one connection from "open requested" to "held by w": acquire, then
// the open succeeds with id `c` and is granted to `w`.
void hold_new(pool_state& st, waiter_id w, conn_id c, time_point now) {
    pool_effects fx;
    ASSERT_EQ(st.acquire(w, now, fx), std::nullopt);
    ASSERT_EQ(fx.opens, 1u);
    fx = {};
    st.open_succeeded(c, now, fx);
    ASSERT_EQ(fx.grants.size(), 1u);
    ASSERT_EQ(fx.grants[0].waiter, w);
    ASSERT_EQ(fx.grants[0].conn, c);
}

TEST(PoolState, StartsEmpty) {
    const pool_state st(limits(3));
    EXPECT_EQ(st.open_count(), 0u);
    EXPECT_EQ(st.opening(), 0u);
    EXPECT_EQ(st.idle_count(), 0u);
    EXPECT_EQ(st.in_use(), 0u);
    EXPECT_EQ(st.waiting(), 0u);
    EXPECT_EQ(st.next_deadline(), std::nullopt);
}

TEST(PoolState, OpensLazilyOnePerWaiterUpToSize) {
    pool_state st(limits(3));
    for (waiter_id w = 1; w <= 3; ++w) {
        pool_effects fx;
        EXPECT_EQ(st.acquire(w, t0, fx), std::nullopt);
        EXPECT_EQ(fx.opens, 1u) << "waiter " << w;
        EXPECT_EQ(st.opening(), w);
    }
    pool_effects fx;
    EXPECT_EQ(st.acquire(4, t0, fx), std::nullopt);
    EXPECT_EQ(fx.opens, 0u) << "no room beyond size";
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.opening(), 3u);
    EXPECT_EQ(st.waiting(), 4u);
    EXPECT_EQ(st.open_count(), 0u);
}

TEST(PoolState, OpensUpToSizePlusOverflow) {
    pool_state st(limits(2, 2));
    std::size_t opens = 0;
    for (waiter_id w = 1; w <= 6; ++w) {
        pool_effects fx;
        EXPECT_EQ(st.acquire(w, t0, fx), std::nullopt);
        opens += fx.opens;
    }
    EXPECT_EQ(opens, 4u);
    EXPECT_EQ(st.opening(), 4u);
    EXPECT_EQ(st.waiting(), 6u);
}

TEST(PoolState, NeverMoreOpensThanWaiters) {
    pool_state st(limits(5));
    pool_effects fx;
    st.acquire(1, t0, fx);
    st.acquire(2, t0, fx);
    EXPECT_EQ(fx.opens, 2u);
    // A cancelled waiter leaves its open in flight; the next waiter is
    // covered by it and must not start another.
    EXPECT_TRUE(st.remove_waiter(1));
    fx = {};
    st.acquire(3, t0, fx);
    EXPECT_EQ(fx.opens, 0u);
    EXPECT_EQ(st.opening(), 2u);
    EXPECT_EQ(st.waiting(), 2u);
    fx = {};
    st.acquire(4, t0, fx);
    EXPECT_EQ(fx.opens, 1u);
    EXPECT_EQ(st.opening(), 3u);
}

TEST(PoolState, OpenSucceededGrantsTheOldestWaiter) {
    pool_state st(limits(2));
    pool_effects fx;
    st.acquire(7, t0, fx);
    st.acquire(8, t0 + 1s, fx);
    fx = {};
    st.open_succeeded(100, t0 + 2s, fx);
    ASSERT_EQ(fx.grants.size(), 1u);
    EXPECT_EQ(fx.grants[0].waiter, 7u);
    EXPECT_EQ(fx.grants[0].conn, 100u);
    EXPECT_TRUE(fx.closes.empty());
    EXPECT_EQ(fx.opens, 0u);
    EXPECT_EQ(st.open_count(), 1u);
    EXPECT_EQ(st.in_use(), 1u);
    EXPECT_EQ(st.opening(), 1u);
    EXPECT_EQ(st.waiting(), 1u);
}

TEST(PoolState, IdleConnectionGrantedAtOnceMostRecentFirst) {
    pool_state st(limits(3));
    hold_new(st, 1, 11, t0);
    hold_new(st, 2, 12, t0);
    hold_new(st, 3, 13, t0);
    pool_effects fx;
    // Returned in the order 12, 11, 13: the warmest (13) goes out first.
    st.release(12, t0, true, t0 + 1s, fx);
    st.release(11, t0, true, t0 + 2s, fx);
    st.release(13, t0, true, t0 + 3s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.idle_count(), 3u);
    EXPECT_EQ(st.in_use(), 0u);

    EXPECT_EQ(st.acquire(4, t0 + 4s, fx), std::optional<conn_id>(13));
    EXPECT_EQ(st.acquire(5, t0 + 4s, fx), std::optional<conn_id>(11));
    EXPECT_EQ(st.acquire(6, t0 + 4s, fx), std::optional<conn_id>(12));
    EXPECT_TRUE(fx.empty()) << "an immediate grant needs no effects";
    EXPECT_EQ(st.waiting(), 0u);
    EXPECT_EQ(st.in_use(), 3u);
    EXPECT_EQ(st.idle_count(), 0u);
}

TEST(PoolState, WaitersServedFifoByDirectHandOff) {
    pool_state st(limits(1));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    for (waiter_id w = 2; w <= 4; ++w) {
        EXPECT_EQ(st.acquire(w, t0 + 1s, fx), std::nullopt);
    }
    EXPECT_TRUE(fx.empty()) << "pool full: no opens";
    EXPECT_EQ(st.waiting(), 3u);

    for (waiter_id w = 2; w <= 4; ++w) {
        fx = {};
        st.release(10, t0, true, t0 + 2s, fx);
        ASSERT_EQ(fx.grants.size(), 1u);
        EXPECT_EQ(fx.grants[0].waiter, w);
        EXPECT_EQ(fx.grants[0].conn, 10u);
        EXPECT_TRUE(fx.closes.empty());
        EXPECT_EQ(st.idle_count(), 0u) << "handed off, never parked as idle";
        EXPECT_EQ(st.in_use(), 1u);
    }
    EXPECT_EQ(st.waiting(), 0u);
    fx = {};
    st.release(10, t0, true, t0 + 3s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.idle_count(), 1u);
}

TEST(PoolState, NewcomerDoesNotJumpTheQueue) {
    pool_state st(limits(2));
    hold_new(st, 1, 10, t0);
    hold_new(st, 2, 20, t0);
    pool_effects fx;
    EXPECT_EQ(st.acquire(3, t0, fx), std::nullopt);
    EXPECT_EQ(st.acquire(4, t0, fx), std::nullopt);

    // 20 comes back: it belongs to waiter 3, not to whoever asks next.
    fx = {};
    st.release(20, t0, true, t0 + 1s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{3});
    fx = {};
    EXPECT_EQ(st.acquire(5, t0 + 1s, fx), std::nullopt) << "waiter 4 is still ahead";
    fx = {};
    st.release(10, t0, true, t0 + 2s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{4});
    fx = {};
    st.release(20, t0, true, t0 + 2s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{5});
    EXPECT_EQ(st.idle_count(), 0u);
}

TEST(PoolState, OverflowClosedOnReleaseWhenNobodyWaits) {
    pool_state st(limits(1, 1));
    hold_new(st, 1, 10, t0);
    hold_new(st, 2, 20, t0);  // the overflow connection
    EXPECT_EQ(st.open_count(), 2u);

    pool_effects fx;
    st.release(20, t0, true, t0 + 1s, fx);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{20});
    EXPECT_TRUE(fx.grants.empty());
    EXPECT_EQ(fx.opens, 0u);
    EXPECT_EQ(st.open_count(), 1u);
    EXPECT_EQ(st.idle_count(), 0u);

    // Back at `size`: the last one is kept.
    fx = {};
    st.release(10, t0, true, t0 + 2s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.open_count(), 1u);
    EXPECT_EQ(st.idle_count(), 1u);
}

TEST(PoolState, OverflowKeptWhenSomeoneWaits) {
    pool_state st(limits(1, 1));
    hold_new(st, 1, 10, t0);
    hold_new(st, 2, 20, t0);
    pool_effects fx;
    EXPECT_EQ(st.acquire(3, t0, fx), std::nullopt);
    EXPECT_EQ(fx.opens, 0u);

    fx = {};
    st.release(20, t0, true, t0 + 1s, fx);
    ASSERT_EQ(fx.grants.size(), 1u);
    EXPECT_EQ(fx.grants[0].waiter, 3u);
    EXPECT_EQ(fx.grants[0].conn, 20u);
    EXPECT_TRUE(fx.closes.empty());
    EXPECT_EQ(st.open_count(), 2u);
}

TEST(PoolState, OverflowOpenWhoseWaiterLeftIsClosed) {
    pool_state st(limits(1, 1));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    EXPECT_EQ(fx.opens, 1u);
    EXPECT_TRUE(st.remove_waiter(2));
    fx = {};
    st.open_succeeded(20, t0 + 1s, fx);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{20});
    EXPECT_TRUE(fx.grants.empty());
    EXPECT_EQ(st.open_count(), 1u);
    EXPECT_EQ(st.opening(), 0u);
}

TEST(PoolState, UnusableConnectionClosedAndItsPermitOpensForAWaiter) {
    pool_state st(limits(1));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    EXPECT_EQ(fx.opens, 0u);

    fx = {};
    st.release(10, t0, false, t0 + 1s, fx);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{10});
    EXPECT_TRUE(fx.grants.empty()) << "an unusable connection is never handed out";
    EXPECT_EQ(fx.opens, 1u);
    EXPECT_EQ(st.open_count(), 0u);
    EXPECT_EQ(st.opening(), 1u);

    fx = {};
    st.open_succeeded(11, t0 + 2s, fx);
    ASSERT_EQ(granted_waiters(fx), std::vector<waiter_id>{2});
    EXPECT_EQ(fx.grants[0].conn, 11u);
}

TEST(PoolState, UnusableConnectionClosedWhenNobodyWaits) {
    pool_state st(limits(2));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.release(10, t0, false, t0 + 1s, fx);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{10});
    EXPECT_EQ(fx.opens, 0u);
    EXPECT_EQ(st.open_count(), 0u);
    EXPECT_EQ(st.idle_count(), 0u);
}

TEST(PoolState, RecycleClosesAStaleIdleConnectionAtCheckout) {
    pool_state st(limits(2, 0, 30s, 60s));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.release(10, t0, true, t0 + 10s, fx);
    ASSERT_EQ(st.idle_count(), 1u);

    // Still young enough just before the limit.
    EXPECT_EQ(st.acquire(2, t0 + 59s, fx), std::optional<conn_id>(10));
    st.release(10, t0, true, t0 + 59s, fx);
    EXPECT_TRUE(fx.empty());

    EXPECT_EQ(st.acquire(3, t0 + 61s, fx), std::nullopt);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{10});
    EXPECT_EQ(fx.opens, 1u) << "the permit is reused for the waiter";
    EXPECT_EQ(st.open_count(), 0u);
    EXPECT_EQ(st.waiting(), 1u);

    fx = {};
    st.open_succeeded(11, t0 + 62s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{3});
}

TEST(PoolState, RecycleSkipsStaleIdleForAFreshOne) {
    pool_state st(limits(2, 0, 30s, 60s));
    hold_new(st, 1, 10, t0);
    hold_new(st, 2, 20, t0 + 30s);
    pool_effects fx;
    st.release(20, t0 + 30s, true, t0 + 40s, fx);
    st.release(10, t0, true, t0 + 50s, fx);  // most recent, but oldest
    ASSERT_TRUE(fx.empty());

    EXPECT_EQ(st.acquire(3, t0 + 70s, fx), std::optional<conn_id>(20));
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{10});
    EXPECT_EQ(fx.opens, 0u);
    EXPECT_EQ(st.open_count(), 1u);
    EXPECT_EQ(st.idle_count(), 0u);
}

TEST(PoolState, RecycleClosesAtReleaseAndOpensForTheWaiter) {
    pool_state st(limits(1, 0, 300s, 60s));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0 + 30s, fx);
    ASSERT_EQ(fx.opens, 0u);

    fx = {};
    st.release(10, t0, true, t0 + 61s, fx);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{10});
    EXPECT_TRUE(fx.grants.empty()) << "a stale connection is not handed off";
    EXPECT_EQ(fx.opens, 1u);
    EXPECT_EQ(st.open_count(), 0u);
    EXPECT_EQ(st.opening(), 1u);

    fx = {};
    st.open_succeeded(11, t0 + 62s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{2});
}

TEST(PoolState, RecycleAtReleaseWithNobodyWaiting) {
    pool_state st(limits(1, 0, 30s, 60s));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.release(10, t0, true, t0 + 61s, fx);
    EXPECT_EQ(as_vector(fx.closes), std::vector<conn_id>{10});
    EXPECT_EQ(fx.opens, 0u);
    EXPECT_EQ(st.open_count(), 0u);
    EXPECT_EQ(st.idle_count(), 0u);
}

TEST(PoolState, RecycleZeroNeverExpires) {
    pool_state st(limits(1, 0, 30s, pool_clock::duration::zero()));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.release(10, t0, true, t0 + 10000h, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.acquire(2, t0 + 20000h, fx), std::optional<conn_id>(10));
    EXPECT_TRUE(fx.empty());
}

TEST(PoolState, ExpireFailsExactlyTheWaitersPastTheirDeadlineInOrder) {
    pool_state st(limits(1, 0, 30s));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    st.acquire(3, t0 + 10s, fx);
    st.acquire(4, t0 + 20s, fx);
    EXPECT_EQ(st.next_deadline(), std::optional<time_point>(t0 + 30s));

    st.expire(t0 + 29s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.waiting(), 3u);

    // A timer armed for next_deadline() fires at exactly that instant and
    // must make progress, or it would re-arm for the same time forever.
    st.expire(t0 + 30s, fx);
    EXPECT_EQ(fx.timed_out, std::vector<waiter_id>{2});
    EXPECT_EQ(st.next_deadline(), std::optional<time_point>(t0 + 40s));

    fx = {};
    st.expire(t0 + 55s, fx);
    EXPECT_EQ(fx.timed_out, (std::vector<waiter_id>{3, 4}));
    EXPECT_TRUE(fx.grants.empty());
    EXPECT_TRUE(fx.failed.empty());
    EXPECT_EQ(st.waiting(), 0u);
    EXPECT_EQ(st.next_deadline(), std::nullopt);

    // The connection is still accounted for and goes idle.
    fx = {};
    st.release(10, t0, true, t0 + 56s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.idle_count(), 1u);
}

TEST(PoolState, NextDeadlineFollowsTheOldestRemainingWaiter) {
    pool_state st(limits(1, 0, 30s));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0 + 1s, fx);
    st.acquire(3, t0 + 2s, fx);
    st.acquire(4, t0 + 3s, fx);
    EXPECT_TRUE(st.remove_waiter(2));
    EXPECT_EQ(st.next_deadline(), std::optional<time_point>(t0 + 32s));
    st.release(10, t0, true, t0 + 4s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{3});
    EXPECT_EQ(st.next_deadline(), std::optional<time_point>(t0 + 33s));
}

TEST(PoolState, RemoveWaiterOnlyWhileItWaits) {
    pool_state st(limits(1, 0, 30s));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    st.acquire(3, t0, fx);
    st.acquire(4, t0 + 10s, fx);

    EXPECT_FALSE(st.remove_waiter(1)) << "holds a connection, not waiting";
    EXPECT_FALSE(st.remove_waiter(99)) << "never seen";
    EXPECT_TRUE(st.remove_waiter(3));
    EXPECT_FALSE(st.remove_waiter(3)) << "already removed";
    EXPECT_EQ(st.waiting(), 2u);

    st.release(10, t0, true, t0 + 1s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{2});
    EXPECT_FALSE(st.remove_waiter(2)) << "granted";

    fx = {};
    st.expire(t0 + 40s, fx);
    EXPECT_EQ(fx.timed_out, std::vector<waiter_id>{4});
    EXPECT_FALSE(st.remove_waiter(4)) << "timed out";
}

TEST(PoolState, ReleaseBeforeCancelGrantsAndTheCancelIsANoOp) {
    pool_state st(limits(1));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    st.release(10, t0, true, t0 + 1s, fx);
    ASSERT_EQ(granted_waiters(fx), std::vector<waiter_id>{2});
    EXPECT_FALSE(st.remove_waiter(2));
    EXPECT_EQ(st.open_count() + st.opening(), 1u);
    EXPECT_EQ(st.in_use(), 1u);

    // The late canceller gives the granted connection straight back.
    fx = {};
    st.release(10, t0, true, t0 + 1s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.acquire(3, t0 + 2s, fx), std::optional<conn_id>(10));
}

TEST(PoolState, CancelBeforeReleaseLeavesTheConnectionIdle) {
    pool_state st(limits(1));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    EXPECT_TRUE(st.remove_waiter(2));
    st.release(10, t0, true, t0 + 1s, fx);
    EXPECT_TRUE(fx.empty()) << "nobody to hand it to";
    EXPECT_EQ(st.open_count() + st.opening(), 1u);
    EXPECT_EQ(st.idle_count(), 1u);
    EXPECT_EQ(st.acquire(3, t0 + 2s, fx), std::optional<conn_id>(10));
}

TEST(PoolState, CancelWhileItsOpenIsInFlightKeepsThePermit) {
    pool_state st(limits(1));
    pool_effects fx;
    st.acquire(1, t0, fx);
    ASSERT_EQ(fx.opens, 1u);
    EXPECT_TRUE(st.remove_waiter(1));
    EXPECT_EQ(st.open_count() + st.opening(), 1u);

    fx = {};
    st.open_succeeded(10, t0 + 1s, fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.idle_count(), 1u);
    EXPECT_EQ(st.acquire(2, t0 + 2s, fx), std::optional<conn_id>(10));
}

TEST(PoolState, OpenFailedFailsTheOldestWaiter) {
    pool_state st(limits(2));
    pool_effects fx;
    st.acquire(1, t0, fx);
    st.acquire(2, t0, fx);
    ASSERT_EQ(fx.opens, 2u);

    fx = {};
    st.open_failed(fx);
    EXPECT_EQ(fx.failed, std::vector<waiter_id>{1});
    EXPECT_EQ(fx.opens, 0u) << "waiter 2 still has an open in flight";
    EXPECT_EQ(st.opening(), 1u);
    EXPECT_EQ(st.waiting(), 1u);

    fx = {};
    st.open_succeeded(10, t0 + 1s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{2});
}

TEST(PoolState, OpenFailedWithItsWaiterCancelledFailsNobody) {
    pool_state st(limits(2));
    pool_effects fx;
    st.acquire(1, t0, fx);
    st.acquire(2, t0, fx);
    EXPECT_TRUE(st.remove_waiter(1));

    fx = {};
    st.open_failed(fx);
    EXPECT_TRUE(fx.empty()) << "waiter 2 is covered by the other open";
    EXPECT_EQ(st.waiting(), 1u);
    EXPECT_EQ(st.opening(), 1u);

    EXPECT_TRUE(st.remove_waiter(2));
    fx = {};
    st.open_failed(fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.open_count() + st.opening(), 0u);
}

TEST(PoolState, OpenFailedFreesItsPermitForAWaiterWithoutAnOpen) {
    // Waiter 3 queued when the pool was full (one held, one opening). The
    // failed open frees a permit: waiter 3 must get an open of its own rather
    // than sit until pool_timeout while the pool has room.
    pool_state st(limits(2));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    st.acquire(3, t0, fx);
    ASSERT_EQ(fx.opens, 1u);

    fx = {};
    st.open_failed(fx);
    EXPECT_EQ(fx.failed, std::vector<waiter_id>{2});
    EXPECT_EQ(fx.opens, 1u);
    EXPECT_EQ(st.open_count() + st.opening(), 2u);

    fx = {};
    st.open_succeeded(11, t0 + 1s, fx);
    EXPECT_EQ(granted_waiters(fx), std::vector<waiter_id>{3});
}

TEST(PoolState, ReserveOpenOnlyWithRoomAndNobodyWaiting) {
    pool_state st(limits(2));
    EXPECT_TRUE(st.reserve_open());
    EXPECT_EQ(st.opening(), 1u);
    pool_effects fx;
    st.open_reserved(fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.open_count(), 1u);
    EXPECT_EQ(st.in_use(), 1u) << "the opener uses it";
    EXPECT_EQ(st.idle_count(), 0u);
    EXPECT_TRUE(st.reserve_open());
    EXPECT_FALSE(st.reserve_open()) << "no room beyond size";
    st.open_failed(fx);
    EXPECT_TRUE(fx.empty());
    EXPECT_EQ(st.opening(), 0u);
    // A waiter comes first: the pool's own opens serve it.
    EXPECT_EQ(st.acquire(1, t0, fx), std::nullopt);
    EXPECT_FALSE(st.reserve_open());
    // The reserved connection comes back like any other.
    fx = {};
    st.release(7, t0, true, t0, fx);
    EXPECT_EQ(granted_waiters(fx), (std::vector<waiter_id>{1}));
}

TEST(PoolState, ReserveOpenNeverTakesAnOverflowPermit) {
    pool_state st(limits(1, 2));
    ASSERT_TRUE(st.reserve_open());
    pool_effects fx;
    st.open_reserved(fx);
    EXPECT_FALSE(st.reserve_open()) << "overflow is for waiters";
    // A waiter still gets an overflow open.
    EXPECT_EQ(st.acquire(1, t0, fx), std::nullopt);
    EXPECT_EQ(fx.opens, 1u);
}

TEST(PoolState, AReservedOpenLeavesNoWaiterWithoutAnOpen) {
    // A waiter queued while a reserved open was in flight counted on it; when
    // the opener keeps that connection, the waiter gets an open of its own.
    pool_state st(limits(2));
    pool_effects fx;
    ASSERT_TRUE(st.reserve_open());
    EXPECT_EQ(st.acquire(1, t0, fx), std::nullopt);
    EXPECT_EQ(fx.opens, 0u) << "the waiter counts on the open in flight";
    fx = {};
    st.open_reserved(fx);
    EXPECT_EQ(fx.opens, 1u);
    EXPECT_EQ(st.opening(), 1u);
    fx = {};
    st.open_succeeded(20, t0, fx);
    EXPECT_EQ(granted_waiters(fx), (std::vector<waiter_id>{1}));
}

TEST(PoolState, AFailedReservedOpenFailsNoWaiterAndFreesItsPermit) {
    pool_state st(limits(1));
    pool_effects fx;
    ASSERT_TRUE(st.reserve_open());
    EXPECT_EQ(st.acquire(1, t0, fx), std::nullopt);
    EXPECT_EQ(fx.opens, 0u);
    fx = {};
    st.open_reserved_failed(fx);
    EXPECT_TRUE(fx.failed.empty()) << "the opener has the error, not the waiter";
    EXPECT_EQ(fx.opens, 1u) << "the waiter gets an open of its own";
    EXPECT_EQ(st.opening(), 1u);
    EXPECT_EQ(st.waiting(), 1u);
}

TEST(PoolState, CloseAllClosesIdleConnections) {
    pool_state st(limits(3));
    hold_new(st, 1, 10, t0);
    hold_new(st, 2, 20, t0);
    hold_new(st, 3, 30, t0);
    pool_effects fx;
    st.release(10, t0, true, t0, fx);
    st.release(30, t0, true, t0, fx);

    st.close_all(fx);
    std::vector<conn_id> closed = as_vector(fx.closes);
    std::sort(closed.begin(), closed.end());
    EXPECT_EQ(closed, (std::vector<conn_id>{10, 30}));
    EXPECT_TRUE(fx.failed.empty());
    EXPECT_EQ(st.idle_count(), 0u);
    EXPECT_EQ(st.open_count(), 1u) << "20 is still held";
    EXPECT_EQ(st.in_use(), 1u);
}

TEST(PoolState, CloseAllFailsEveryWaiter) {
    pool_state st(limits(1));
    hold_new(st, 1, 10, t0);
    pool_effects fx;
    st.acquire(2, t0, fx);
    st.acquire(3, t0, fx);
    st.acquire(4, t0, fx);
    EXPECT_TRUE(st.remove_waiter(3));

    st.close_all(fx);
    EXPECT_EQ(fx.failed, (std::vector<waiter_id>{2, 4}));
    EXPECT_TRUE(fx.closes.empty());
    EXPECT_EQ(st.waiting(), 0u);
    EXPECT_EQ(st.next_deadline(), std::nullopt);
    EXPECT_FALSE(st.remove_waiter(2));
}

// A model of what the pool has promised, checked against pool_state after
// every event of a long random run.
class pool_model {
  public:
    enum class outcome { waiting, granted, timed_out, failed, cancelled };

    pool_model(pool_limits l, std::uint32_t seed) : limits_(l), st_(l), rng_(seed) {}

    void step() {
        switch (pick(0, 9)) {
            case 0:
            case 1:
            case 2:
                return acquire();
            case 3:
            case 4:
                return release();
            case 5:
            case 6:
                return finish_open(pick(0, 4) != 0);
            case 7:
                return cancel();
            default:
                return advance(pick(0, 2) == 0 ? limits_.timeout : limits_.timeout / 8);
        }
    }

    // Ends the run: every held connection back, every open finished, every
    // waiter served or timed out, then shutdown.
    void drain() {
        for (int round = 0; round < 1000000 && (!held_.empty() || pending_opens_ > 0); ++round) {
            if (!held_.empty()) {
                release();
            } else {
                finish_open(true);
            }
            if (::testing::Test::HasFatalFailure()) {
                return;
            }
        }
        advance(limits_.timeout);
        pool_effects fx;
        st_.close_all(fx);
        apply(fx, true);
        check();
        EXPECT_TRUE(held_.empty());
        EXPECT_EQ(pending_opens_, 0u);
        EXPECT_TRUE(queue_.empty());
        for (const auto& [w, o] : outcomes_) {
            EXPECT_NE(o, outcome::waiting) << "waiter " << w << " never resolved";
        }
    }

    std::size_t waiters_seen() const { return outcomes_.size(); }
    std::size_t count(outcome o) const {
        return static_cast<std::size_t>(std::count_if(
            outcomes_.begin(), outcomes_.end(), [o](const auto& kv) { return kv.second == o; }));
    }

  private:
    struct queued {
        waiter_id id;
        time_point deadline;
    };

    std::size_t pick(std::size_t lo, std::size_t hi) {
        return std::uniform_int_distribution<std::size_t>(lo, hi)(rng_);
    }

    std::size_t capacity() const { return limits_.size + limits_.max_overflow; }

    bool stale(conn_id c) const {
        return limits_.recycle > pool_clock::duration::zero() &&
               now_ - live_.at(c) >= limits_.recycle;
    }

    void resolve(waiter_id w, outcome o) {
        auto& slot = outcomes_.at(w);
        ASSERT_EQ(slot, outcome::waiting) << "waiter " << w << " resolved twice";
        slot = o;
    }

    void take_connection(conn_id c) {
        ASSERT_TRUE(live_.count(c)) << "conn " << c << " is not open";
        ASSERT_FALSE(held_.count(c)) << "conn " << c << " granted to two holders";
        EXPECT_FALSE(stale(c)) << "conn " << c << " handed out past recycle";
        held_.insert(c);
    }

    // Every waiter leaves from the front of the queue, except a cancelled one.
    void pop_front(waiter_id w, outcome o) {
        ASSERT_FALSE(queue_.empty()) << "waiter " << w << " was not waiting";
        ASSERT_EQ(queue_.front().id, w) << "waiter " << w << " served out of order";
        queue_.pop_front();
        resolve(w, o);
    }

    void apply(const pool_effects& fx, bool closing = false) {
        for (const auto& g : fx.grants) {
            pop_front(g.waiter, outcome::granted);
            take_connection(g.conn);
        }
        for (const auto c : fx.closes) {
            ASSERT_TRUE(live_.count(c)) << "closing conn " << c << " which is not open";
            ASSERT_FALSE(held_.count(c)) << "closing held conn " << c;
            live_.erase(c);
        }
        pending_opens_ += fx.opens;
        for (const auto w : fx.timed_out) {
            ASSERT_LE(deadline_.at(w), now_) << "waiter " << w << " timed out early";
            pop_front(w, outcome::timed_out);
        }
        if (closing) {
            ASSERT_EQ(fx.failed.size(), queue_.size());
        }
        for (const auto w : fx.failed) {
            pop_front(w, outcome::failed);
        }
    }

    void check() {
        ASSERT_EQ(st_.open_count(), live_.size());
        ASSERT_EQ(st_.opening(), pending_opens_);
        ASSERT_EQ(st_.in_use(), held_.size());
        ASSERT_EQ(st_.idle_count(), live_.size() - held_.size());
        ASSERT_EQ(st_.waiting(), queue_.size());
        ASSERT_LE(st_.open_count() + st_.opening(), capacity());
        if (st_.idle_count() > 0) {
            ASSERT_EQ(st_.waiting(), 0u) << "idle connection while someone waits";
            ASSERT_LE(st_.open_count(), limits_.size) << "idle overflow connection kept";
        }
        // No waiter is stranded: either an open is in flight for it, or the
        // pool is at capacity and it waits for a release.
        if (st_.waiting() > st_.opening()) {
            ASSERT_EQ(st_.open_count() + st_.opening(), capacity())
                << "a waiter has no open in flight although the pool has room";
        }
        if (queue_.empty()) {
            ASSERT_EQ(st_.next_deadline(), std::nullopt);
        } else {
            ASSERT_EQ(st_.next_deadline(), std::optional<time_point>(queue_.front().deadline));
        }
    }

    void acquire() {
        const waiter_id w = next_waiter_++;
        outcomes_[w] = outcome::waiting;
        deadline_[w] = now_ + limits_.timeout;
        const bool queue_was_empty = queue_.empty();
        pool_effects fx;
        const auto c = st_.acquire(w, now_, fx);
        ASSERT_TRUE(fx.grants.empty());
        if (c) {
            ASSERT_TRUE(queue_was_empty) << "acquire jumped the queue";
            resolve(w, outcome::granted);
            // Closes of stale idle connections come first; c itself stays.
            for (const auto closed : fx.closes) {
                ASSERT_NE(closed, *c);
            }
            apply(fx);
            take_connection(*c);
            ASSERT_EQ(fx.opens, 0u);
        } else {
            queue_.push_back({w, deadline_[w]});
            apply(fx);
        }
        check();
    }

    void release() {
        if (held_.empty()) {
            return;
        }
        auto it = held_.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(pick(0, held_.size() - 1)));
        const conn_id c = *it;
        held_.erase(it);
        const bool reusable = pick(0, 9) != 0;
        const bool must_close = !reusable || stale(c);
        pool_effects fx;
        st_.release(c, live_.at(c), reusable, now_, fx);
        const bool closed = std::find(fx.closes.begin(), fx.closes.end(), c) != fx.closes.end();
        ASSERT_TRUE(!must_close || closed) << "unusable or stale conn " << c << " kept";
        apply(fx);
        check();
    }

    void finish_open(bool ok) {
        if (pending_opens_ == 0) {
            return;
        }
        --pending_opens_;
        pool_effects fx;
        if (ok) {
            const conn_id c = next_conn_++;
            live_[c] = now_;
            st_.open_succeeded(c, now_, fx);
        } else {
            const std::size_t uncovered = queue_.size() > pending_opens_ ? 1 : 0;
            st_.open_failed(fx);
            ASSERT_EQ(fx.failed.size(), uncovered);
        }
        apply(fx);
        check();
    }

    void cancel() {
        // Mostly a waiting waiter; sometimes one already resolved (the cancel
        // that lost its race), which must be a no-op.
        if (next_waiter_ == 1) {
            return;
        }
        waiter_id w;
        if (!queue_.empty() && pick(0, 3) != 0) {
            w = queue_[pick(0, queue_.size() - 1)].id;
        } else {
            w = 1 + pick(0, static_cast<std::size_t>(next_waiter_ - 2));
        }
        const auto pos =
            std::find_if(queue_.begin(), queue_.end(), [w](const queued& q) { return q.id == w; });
        const bool waiting = pos != queue_.end();
        ASSERT_EQ(st_.remove_waiter(w), waiting) << "waiter " << w;
        if (waiting) {
            queue_.erase(pos);
            resolve(w, outcome::cancelled);
        }
        check();
    }

    void advance(pool_clock::duration max_step) {
        now_ += std::chrono::milliseconds(
            pick(0, static_cast<std::size_t>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(max_step).count())));
        expire_now();
    }

    void expire_now() {
        pool_effects fx;
        st_.expire(now_, fx);
        apply(fx);
        for (const auto& q : queue_) {
            ASSERT_GT(q.deadline, now_) << "waiter " << q.id << " outlived its deadline";
        }
        check();
    }

    pool_limits limits_;
    pool_state st_;
    std::mt19937 rng_;
    time_point now_ = t0;
    waiter_id next_waiter_ = 1;
    conn_id next_conn_ = 1;
    std::size_t pending_opens_ = 0;
    std::map<conn_id, time_point> live_;  // open connections and their creation time
    std::set<conn_id> held_;
    std::deque<queued> queue_;
    std::map<waiter_id, outcome> outcomes_;
    std::map<waiter_id, time_point> deadline_;
};

TEST(PoolState, RandomizedSequencesKeepEveryInvariant) {
    struct config {
        std::size_t size;
        std::size_t overflow;
        pool_clock::duration recycle;
    };
    const config configs[] = {
        {1, 0, {}}, {3, 0, 40s}, {2, 2, {}}, {4, 1, 25s}, {10, 0, 90s},
    };
    std::size_t granted = 0;
    std::size_t timed_out = 0;
    std::size_t failed = 0;
    std::size_t cancelled = 0;
    for (std::uint32_t seed = 1; seed <= 20; ++seed) {
        const config& cfg = configs[seed % std::size(configs)];
        SCOPED_TRACE("seed " + std::to_string(seed) + " size " + std::to_string(cfg.size) +
                     " overflow " + std::to_string(cfg.overflow));
        pool_model model(limits(cfg.size, cfg.overflow, 30s, cfg.recycle), seed);
        for (int i = 0; i < 5000; ++i) {
            model.step();
            if (HasFatalFailure()) {
                FAIL() << "at step " << i;
            }
        }
        model.drain();
        if (HasFailure()) {
            return;
        }
        granted += model.count(pool_model::outcome::granted);
        timed_out += model.count(pool_model::outcome::timed_out);
        failed += model.count(pool_model::outcome::failed);
        cancelled += model.count(pool_model::outcome::cancelled);
        EXPECT_EQ(model.count(pool_model::outcome::granted) +
                      model.count(pool_model::outcome::timed_out) +
                      model.count(pool_model::outcome::failed) +
                      model.count(pool_model::outcome::cancelled),
                  model.waiters_seen());
    }
    // The run must really exercise every way out of the queue.
    EXPECT_GT(granted, 1000u);
    EXPECT_GT(timed_out, 100u);
    EXPECT_GT(failed, 100u);
    EXPECT_GT(cancelled, 100u);
}

}  // namespace
