#pragma once
// The connection pool's bookkeeping as a sans-io state machine: no threads,
// no clocks of its own, no SQLite. Events go in (acquire, release, open
// finished, waiter removed, time passed); decisions come out as `effects`
// for the caller to carry out outside its lock. Unit-tested with a fake clock.
//
// Rules: connections are opened lazily up to size + max_overflow; waiters
// are served FIFO, a released connection goes straight to the oldest waiter;
// a connection older than `recycle` is closed at checkout or release and its
// permit reused; overflow connections are closed when released with nobody
// waiting; an unusable connection is closed, never handed out again.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include <boost/container/small_vector.hpp>

namespace asqlite::detail {

using pool_clock = std::chrono::steady_clock;
using conn_id = std::uint64_t;
using waiter_id = std::uint64_t;

struct pool_limits {
    std::size_t size = 10;
    std::size_t max_overflow = 0;
    pool_clock::duration timeout = std::chrono::seconds(30);
    pool_clock::duration recycle{};  // zero: never
};

struct pool_effects {
    struct grant {
        waiter_id waiter;
        conn_id conn;
    };
    // Inline room for one: the common events allocate nothing.
    boost::container::small_vector<grant, 1> grants;    // hand `conn` to `waiter`
    boost::container::small_vector<conn_id, 1> closes;  // close these connections
    std::size_t opens = 0;                              // start this many connection opens
    std::vector<waiter_id> timed_out;                   // fail these waiters with pool_timeout
    std::vector<waiter_id> failed;                      // fail these waiters with the open error

    bool empty() const noexcept {
        return grants.empty() && closes.empty() && opens == 0 && timed_out.empty() &&
               failed.empty();
    }
};

class pool_state {
  public:
    explicit pool_state(pool_limits limits) : limits_(limits) {}

    /// An idle, fresh connection when nobody waits (expired idle ones are
    /// closed on the way); nothing is queued otherwise.
    std::optional<conn_id> try_acquire(pool_clock::time_point now, pool_effects& fx);

    /// A caller wants a connection. Returns one at once when an idle
    /// connection is fresh and nobody waits; otherwise queues `w` (deadline
    /// now + timeout) and may ask for opens.
    std::optional<conn_id> acquire(waiter_id w, pool_clock::time_point now, pool_effects& fx);

    /// A connection comes back. `created` is its open time; `reusable` false
    /// when its state is unknown (it is then closed).
    void release(conn_id c, pool_clock::time_point created, bool reusable,
                 pool_clock::time_point now, pool_effects& fx);

    /// For a caller that opens a connection itself to use at once (a worker
    /// holding an operation and finding nothing idle): true, counted as an
    /// open in flight, when nobody waits and the pool has room within
    /// `size` (overflow is for waiters).
    bool reserve_open() noexcept;
    /// A reserved open succeeded: `c` is in use by its opener. Waiters that
    /// queued meanwhile and counted on this open get opens of their own.
    void open_reserved(pool_effects& fx) noexcept;
    /// A reserved open failed: its permit is free again (its opener has the
    /// error; no waiter counted on it alone gets it).
    void open_reserved_failed(pool_effects& fx) noexcept;

    /// An open asked for by effects::opens finished.
    void open_succeeded(conn_id c, pool_clock::time_point now, pool_effects& fx);
    /// An open failed: the oldest waiter gets the error (effects::failed).
    void open_failed(pool_effects& fx);

    /// Cancellation: removes `w` if it still waits. False when it was
    /// already granted, timed out or failed (the cancel came too late).
    bool remove_waiter(waiter_id w);

    /// The oldest waiter, if anyone waits.
    std::optional<waiter_id> first_waiter() const noexcept {
        if (waiters_.empty()) {
            return std::nullopt;
        }
        return waiters_.front().id;
    }

    /// Fails every waiter whose deadline has passed.
    void expire(pool_clock::time_point now, pool_effects& fx);
    /// Earliest waiter deadline, if anyone waits.
    std::optional<pool_clock::time_point> next_deadline() const;

    /// Shutdown: every idle connection to close, every waiter to fail.
    void close_all(pool_effects& fx);

    std::size_t open_count() const noexcept { return open_; }
    std::size_t opening() const noexcept { return opening_; }
    std::size_t idle_count() const noexcept { return idle_.size(); }
    std::size_t in_use() const noexcept { return open_ - idle_.size(); }
    std::size_t waiting() const noexcept { return waiters_.size(); }

  private:
    struct idle_conn {
        conn_id id;
        pool_clock::time_point created;
    };
    struct waiter {
        waiter_id id;
        pool_clock::time_point deadline;
    };

    bool expired(pool_clock::time_point created, pool_clock::time_point now) const noexcept;
    void close(conn_id c, pool_effects& fx);
    /// Hands `c` to the oldest waiter, or makes it idle.
    void place(conn_id c, pool_clock::time_point created, pool_clock::time_point now,
               pool_effects& fx);
    /// Starts opens while waiters outnumber opens in flight and room remains.
    void pump(pool_effects& fx);

    pool_limits limits_;
    std::size_t open_ = 0;
    std::size_t opening_ = 0;
    std::vector<idle_conn> idle_;  // back: most recently returned (warm cache)
    std::deque<waiter> waiters_;   // front: oldest
};

}  // namespace asqlite::detail
