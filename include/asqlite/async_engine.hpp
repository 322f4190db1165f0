#pragma once
// The async engine: a blocking thread pool where every sqlite3 call runs, and
// a bounded pool of connections handed out as scoped sessions. The seed's
// `create_async_engine(...)`, `async_session_local` and `get_async_session`.
//
// Thread safety: all members may be called from any thread.
// Lifetimes: close(), and destroying the engine, refuse new work, fail every
// waiting acquire with errc::pool_closed, and interrupt the statements
// running or queued on the blocking pool (their callers get
// errc::pool_closed), so they return within moments even on an io thread
// (a function of yours inside run() or write() that blocks outside SQLite
// is the one thing they wait for). async_close() lets running statements
// finish up to a deadline first, and blocks no thread. Sessions still alive
// keep working until their next operation, which fails with
// errc::pool_closed; their connection is closed when they end.
// Cancellation: acquire honours per-operation cancellation (a cancelled
// waiter completes with operation_aborted and leaves no trace; if the
// connection was already handed over, the acquire succeeds instead).
// Timeouts: pool_timeout elapses on the engine's executor, which must run.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "asqlite/options.hpp"
#include "asqlite/session.hpp"

namespace asqlite {

struct pool_stats {
    std::size_t size = 0;  // connections open now
    std::size_t idle = 0;
    std::size_t in_use = 0;
    std::size_t waiters = 0;
    std::size_t opening = 0;  // opens in flight
    std::uint64_t acquires = 0;
    std::uint64_t timeouts = 0;
    std::uint64_t cancellations = 0;
    std::uint64_t opened = 0;
    std::uint64_t closed = 0;
    std::chrono::nanoseconds total_wait{0};
    std::chrono::nanoseconds max_wait{0};
    // The writer lane alone (also counted in the totals above).
    std::size_t writer_in_use = 0;
    std::size_t writer_waiters = 0;
    /// SQLITE_BUSY results retried on a timer (another process held a lock).
    std::uint64_t busy_retries = 0;
    /// The blocking pool: sqlite3 jobs run, batches of completions handed
    /// back to the io executor, and how often its threads slept and were
    /// woken for work. jobs / handovers is the mean batch size.
    std::uint64_t blocking_jobs = 0;
    std::uint64_t handovers = 0;
    std::uint64_t thread_sleeps = 0;
    std::uint64_t thread_wakes = 0;
    /// Waits spent awake instead of asleep (engine_options::spin_wait): by a
    /// worker for the next job and by the io thread for a completion, and
    /// how many of them the awaited work ended (the rest ran out of time
    /// and slept).
    std::uint64_t worker_spins = 0;
    std::uint64_t worker_spin_hits = 0;
    std::uint64_t io_spins = 0;
    std::uint64_t io_spin_hits = 0;
    /// Queries that ran inside a read transaction their worker had begun
    /// for an earlier query (shared snapshots: see docs/architecture.md).
    std::uint64_t shared_reads = 0;
    /// Group commits (engine_options::group_commit): transactions on the
    /// writer shared by two or more writes, and the writes in them.
    /// grouped_writes / group_commits is the mean group's size.
    std::uint64_t group_commits = 0;
    std::uint64_t grouped_writes = 0;
};

/// Where an online backup is (async_engine::backup): database pages still
/// to copy, of the total.
struct backup_progress {
    std::size_t remaining = 0;
    std::size_t total = 0;
};

struct backup_options {
    /// Pages copied per step on the blocking pool; between steps the
    /// engine's readers and writers go on, and a cancellation is seen.
    int pages_per_step = 256;
    /// Called on the awaiting coroutine's executor after every step.
    std::function<void(const backup_progress&)> on_progress;
};

namespace detail {
struct engine_parts;
}  // namespace detail

class async_engine {
  public:
    /// Validates the options (errc::invalid_option) and starts the blocking
    /// pool; connections are opened lazily. ":memory:" becomes one shared
    /// in-memory database seen by every pooled connection.
    async_engine(asio::any_io_executor executor, engine_options options);
    ~async_engine();
    async_engine(async_engine&&) noexcept;
    async_engine& operator=(async_engine&&) noexcept;

    /// A session: `co_await engine.session()`, or with any completion
    /// token (signature void(std::exception_ptr, session)). It completes at
    /// once and holds no connection yet: each statement runs on whichever
    /// read connection a worker finds idle when it runs it, and a session
    /// keeps a connection only while a transaction is open on it (see
    /// session.hpp). Waiting for a connection (pool_timeout, cancellation)
    /// happens there, when the pool is exhausted. Errors: errc::pool_closed.
    template <class Token = asio::use_awaitable_t<>>
    auto session(Token&& token = {}) {
        std::shared_ptr<detail::engine_core> c = core();
        return detail::start_operation<asqlite::session>(
            std::forward<Token>(token), io_executor_or_none(),
            [c = std::move(c)]() { return make_session(c); });
    }

    pool_stats stats() const;
    const engine_options& options() const noexcept;
    const asio::any_io_executor& get_executor() const noexcept;
    /// See the lifetime notes above; idempotent.
    void close();

    /// Closes the engine without blocking any thread: new work is refused
    /// at once (errc::pool_closed), operations already queued or running
    /// may finish until `grace` has passed, then the ones still running are
    /// interrupted (errc::pool_closed). Completes, with signature
    /// void(std::exception_ptr) and a null pointer, once the blocking pool
    /// has finished with all of them and handed back their completions.
    /// The engine stays valid (closed); destroying it afterwards does not
    /// wait. After close(), completes at once.
    template <class Token = asio::use_awaitable_t<>>
    auto async_close(std::chrono::steady_clock::duration grace, Token&& token = {}) {
        return asio::async_initiate<Token, void(std::exception_ptr)>(
            [this, grace](auto handler) { start_close(grace, std::move(handler)); }, token);
    }

    /// An online backup: a consistent copy of the database as it was when
    /// the backup began (every transaction committed before that, none
    /// after), written to `destination` while the engine serves readers
    /// and writers. It is copied in steps on the blocking pool (SQLite's
    /// backup API, inside one read transaction of a connection of its
    /// own) into `destination` + ".asqlite-partial", which is renamed to
    /// `destination` only once complete: a backup that fails or is
    /// cancelled (between steps; operation_aborted) leaves nothing behind.
    /// An existing `destination` is never overwritten (errc::invalid_option).
    /// Completes with void(std::exception_ptr); any completion token.
    template <class Token = asio::use_awaitable_t<>>
    auto backup(std::string destination, backup_options options = {}, Token&& token = {}) {
        std::shared_ptr<detail::engine_core> c = core();
        return detail::start_operation<void>(
            std::forward<Token>(token), io_executor_or_none(),
            [c = std::move(c), d = std::move(destination), o = std::move(options)]() mutable {
                return backup_op(std::move(c), std::move(d), std::move(o));
            });
    }

  private:
    static asio::awaitable<void> backup_op(std::shared_ptr<detail::engine_core> c,
                                           std::string destination, backup_options options);
    std::shared_ptr<detail::engine_core> core() const noexcept;
    /// The engine's io executor; an empty one when moved from.
    asio::any_io_executor io_executor_or_none() const noexcept;
    static asio::awaitable<asqlite::session> make_session(std::shared_ptr<detail::engine_core> c);
    void start_close(std::chrono::steady_clock::duration grace,
                     asio::any_completion_handler<void(std::exception_ptr)> handler);

    std::unique_ptr<detail::engine_parts> parts_;
};

async_engine create_async_engine(asio::any_io_executor executor, engine_options options);

/// The seed's `async_session_local`: a callable that checks out a session.
class session_factory {
  public:
    explicit session_factory(async_engine& engine) noexcept : engine_(&engine) {}
    template <class Token = asio::use_awaitable_t<>>
    auto operator()(Token&& token = {}) const {
        return engine_->session(std::forward<Token>(token));
    }

  private:
    async_engine* engine_;
};

/// The process-default engine, created on first use from
/// engine_options::from_env() with the caller's executor (the seed's
/// module-level async_engine), unless one was set.
async_engine& default_engine(const asio::any_io_executor& executor);
/// Installs `engine` as the process default (closing a previous one).
void set_default_engine(async_engine engine);
/// Closes and forgets the process default engine.
void reset_default_engine();

/// `co_await asqlite::get_async_session()`: a session from the default engine.
asio::awaitable<session> get_async_session();
/// The same with any completion token; `executor` creates the default
/// engine if there is none yet.
template <class Token>
auto get_async_session(const asio::any_io_executor& executor, Token&& token) {
    return default_engine(executor).session(std::forward<Token>(token));
}

}  // namespace asqlite
