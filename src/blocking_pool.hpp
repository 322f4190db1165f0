#pragma once
// The blocking pool: the threads where every sqlite3 call runs, and the way
// their results travel back to the io executor.
//
// Completions are handed back in batches (why: docs/architecture.md, "Our
// own blocking pool"): a finished job's completion
// waits in the pool's inbox while more jobs are queued behind it (the worker
// goes on with them), and the inbox is handed to the io executor as one
// handler when the queue runs dry, when `batch` completions are waiting, or
// when the oldest has waited `max_hold` (checked between jobs and, inside a
// long statement, from SQLite's progress handler). An idle engine therefore
// delivers at once; a busy one wakes the io thread once per batch.
//
// The writer lane's jobs (posted `urgent`) are the exception to "the queue
// runs dry": the next writer's job is queued only when the one before gives
// the writer back, so a line of writers looks like a queue of one. When the
// last `urgent` job ran in under half of max_hold, completions wait through
// the next one too (up to batch or max_hold, and the queue running dry after
// it); a line of short writes then wakes the io thread once per several
// writes instead of once per write.
//
// The threads are asio::thread_pool threads, each running the queue loop as
// one long handler: Asio's per-thread recycling allocator then serves the
// job and completion nodes, so a steady stream of operations allocates
// nothing for them.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <utility>
#include <vector>

namespace asqlite::detail {

/// A node of the job queue or of the completion inbox. run(live) runs it and
/// frees it; discard() frees it without running (io_context gone).
class blocking_job {
  public:
    virtual void run(bool live) = 0;
    virtual void discard() noexcept = 0;

  protected:
    virtual ~blocking_job() = default;

  private:
    friend class blocking_pool;
    blocking_job* next_ = nullptr;
    std::uint64_t seq_ = 0;  // the how-manieth submit (jobs only)
    bool urgent_ = false;    // posted urgent (the writer lane's)
    bool tracked_ = false;   // a completion of a post_tracked() job (see there)
    bool shares_ = false;    // may use what its thread holds (worker_hold)
};

/// What a worker keeps open from one job to the next: a read transaction
/// that the reads queued before it began may share (the async engine's
/// readers lane). A read that joins sees a snapshot taken after it was
/// submitted, so it sees every commit that completed before that, as if it
/// had run alone. The pool ends the hold before a job that may not use it
/// (not `shares`, or submitted after the hold began), before the thread
/// sleeps, and before it exits.
struct worker_hold {
    void* owner = nullptr;  // null: nothing held
    void* what = nullptr;
    void (*end)(void* owner, void* what) noexcept = nullptr;
    std::uint64_t bound = 0;  // jobs submitted up to this one may use it
    // Set before each job runs, for a job that begins a hold: the bound it
    // would have, and whether the next queued job could share it.
    std::uint64_t next_bound = 0;
    bool next_shares = false;

    bool held() const noexcept { return owner != nullptr; }
    void begin(void* o, void* w, void (*e)(void*, void*) noexcept) noexcept {
        owner = o;
        what = w;
        end = e;
        bound = next_bound;
    }
    void release() noexcept {
        if (owner != nullptr) {
            end(std::exchange(owner, nullptr), std::exchange(what, nullptr));
        }
    }
};

struct blocking_pool_options {
    std::size_t threads = 2;
    /// Completions handed over at the latest when this many wait.
    std::size_t batch = 32;
    /// ... or when the oldest has waited this long.
    std::chrono::microseconds max_hold{200};
    /// A sleeping thread is woken for queued work only when no awake thread
    /// will take it soon: all are running jobs older than this (or the
    /// queue is long).
    std::chrono::microseconds stall{1000};
    /// How many threads work the queue at once while none is stalled;
    /// 0: the hardware threads less one for the io thread (at least 1).
    std::size_t active = 0;
    /// How long a thread that ran out of work stays awake looking for more
    /// before it sleeps, while work has recently come back within that
    /// time: a worker waits for the next job (at most one worker at a
    /// time), and the io thread for the completion of the job it just
    /// submitted. Zero: threads sleep at once (see "Spinning" in
    /// docs/architecture.md).
    std::chrono::microseconds spin{50};
};

class blocking_pool : public std::enable_shared_from_this<blocking_pool> {
  public:
    blocking_pool(boost::asio::any_io_executor io, const blocking_pool_options& options);
    ~blocking_pool();
    blocking_pool(const blocking_pool&) = delete;
    blocking_pool& operator=(const blocking_pool&) = delete;

    /// Queues f(bool live) for a worker; after close() runs f(false) here.
    /// An `urgent` job goes before every other job (behind earlier `urgent`
    /// ones): for work that others wait behind, such as the single writer.
    /// A `shares` job may use what its thread holds (worker_hold).
    template <class F>
    void post(F&& f, bool urgent = false, bool shares = false) {
        submit(make_job(std::forward<F>(f)), urgent, false, shares);
    }
    /// From a worker: f() runs on the io executor (see the batching above).
    template <class F>
    void deliver(F&& f) {
        hand_over(make_job([g = std::forward<F>(f)](bool) mutable { g(); }));
    }
    /// post() for a job whose handler runs on the io executor's context:
    /// until the job's completion comes back through deliver_tracked(), the
    /// pool keeps the io executor's outstanding work (one count for all
    /// such jobs), so the job need not carry a work-tracked executor of its
    /// own (the count and the work change together, under the lock). Closed,
    /// f(false) runs here and nothing is counted.
    template <class F>
    void post_tracked(F&& f, bool urgent = false, bool shares = false) {
        submit(make_job(std::forward<F>(f)), urgent, true, shares);
    }
    /// On a pool thread (inside a job): what it holds between jobs; else null.
    static worker_hold* hold() noexcept;
    /// deliver() for the completion of a post_tracked() job (exactly one).
    template <class F>
    void deliver_tracked(F&& f) {
        blocking_job* j = make_job([g = std::forward<F>(f)](bool) mutable { g(); });
        j->tracked_ = true;
        hand_over(j);
    }
    /// Whether this thread is running a batch of completions (drain()) of a
    /// pool whose io executor belongs to execution context `context`, and
    /// that batch may take more deferred work. A batch takes at most
    /// `max_deferred` of it: past that, work goes through the io_context's
    /// queue again, so a coroutine that completes inline in a loop (say,
    /// on a closed engine) cannot keep the io_context from its other
    /// handlers.
    static bool draining(const void* context) noexcept {
        return draining_ != nullptr && context != nullptr && draining_context_ == context &&
               deferred_ < max_deferred;
    }
    static constexpr std::size_t max_deferred = 256;
    /// When draining(): queues f to run later in that same batch, after
    /// what is queued already. A completion that frees a connection hands
    /// it to the next waiter this way, without a trip through the
    /// io_context's queue (and the epoll_wait that comes with each round of
    /// it).
    template <class F>
    static void defer_to_drain(F&& f) {
        draining_->push(make_job([g = std::forward<F>(f)](bool) mutable { g(); }));
        ++deferred_;
    }

    /// The executor completions are handed to, and its execution context.
    const boost::asio::any_io_executor& io() const noexcept { return io_; }
    const void* io_context_id() const noexcept { return context_; }

    /// Refuses new work from now on (it runs inline as "not live"); queued
    /// jobs still run.
    void close() noexcept;
    /// close(), then waits for the queued jobs and the threads. Not from a
    /// worker.
    void join();
    /// close(); `stopped` runs once every thread has run the last queued job
    /// and handed over the last completion (on that thread, or here when
    /// they have already): it should only post. join() afterwards does not
    /// wait for any job.
    void close_then(std::function<void()> stopped);

    /// Called from SQLite's progress handler on any thread: hands over the
    /// inbox of the pool this thread works for if it has waited too long.
    static void on_progress() noexcept;
    /// Called on a pool thread about to wait outside SQLite's virtual
    /// machine for long (a group commit's COMMIT, which may fsync): the
    /// thread counts as stalled from now to the end of its job, so a
    /// sleeping thread takes the queued jobs meanwhile.
    static void before_blocking() noexcept;

    /// How often the inbox was handed over, or a sleeping thread woken,
    /// from inside a running statement (the progress handler), and how often
    /// a watching thread took over a queue stuck behind a job: for tests and
    /// diagnostics.
    std::uint64_t progress_flushes() const noexcept {
        return progress_flushes_.load(std::memory_order_relaxed);
    }
    std::uint64_t progress_wakes() const noexcept {
        return progress_wakes_.load(std::memory_order_relaxed);
    }
    std::uint64_t watch_wakes() const noexcept {
        return watch_wakes_.load(std::memory_order_relaxed);
    }

    struct counters {
        std::uint64_t jobs = 0;          // jobs run on the pool's threads
        std::uint64_t handovers = 0;     // inbox batches handed to the io executor
        std::uint64_t sleeps = 0;        // times a thread went to sleep
        std::uint64_t wakes = 0;         // sleeping threads woken for work
        std::uint64_t tracked = 0;       // post_tracked() jobs whose completion has not run
        std::uint64_t shared = 0;        // jobs run while their thread held a read (worker_hold)
        std::uint64_t worker_spins = 0;  // waits for a job spent awake
        std::uint64_t worker_spin_hits = 0;  // of them, ended by a job
        std::uint64_t io_spins = 0;          // io-thread waits for a completion spent awake
        std::uint64_t io_spin_hits = 0;      // of them, ended by the completion
    };
    counters stats();

  private:
    template <class F>
    class fn_job final : public blocking_job {
      public:
        explicit fn_job(F&& f) : f_(std::move(f)) {}
        void run(bool live) override {
            F f(std::move(f_));
            // Freed before the call, on the running thread: a node the call
            // makes can reuse the block from that thread's cache.
            free_self();
            f(live);
        }
        void discard() noexcept override { free_self(); }
        static boost::asio::recycling_allocator<unsigned char> alloc() { return {}; }

      private:
        void free_self() noexcept {
            this->~fn_job();
            alloc().deallocate(reinterpret_cast<unsigned char*>(this), sizeof(fn_job));
        }
        F f_;
    };
    template <class F>
    static blocking_job* make_job(F&& f) {
        using job = fn_job<std::decay_t<F>>;
        void* p = job::alloc().allocate(sizeof(job));
        try {
            return new (p) job(std::decay_t<F>(std::forward<F>(f)));
        } catch (...) {
            job::alloc().deallocate(static_cast<unsigned char*>(p), sizeof(job));
            throw;
        }
    }

    struct list {
        blocking_job* head = nullptr;
        blocking_job* tail = nullptr;
        std::size_t size = 0;
        std::size_t tracked = 0;  // nodes with tracked_ set
        void push(blocking_job* j) noexcept;
        void insert_after(blocking_job* at, blocking_job* j) noexcept;  // at null: the front
        blocking_job* pop() noexcept;
        void splice(list&& other) noexcept;  // appends other's jobs, emptying it
    };
    // On a pool thread, while it runs a job: where that job's completions
    // wait until the job returns.
    static thread_local list* finished_;
    // On the io thread inside drain(): the batch being run, and its context.
    static thread_local list* draining_;
    static thread_local const void* draining_context_;
    static thread_local std::size_t deferred_;  // by the running batch
    class drainer;

    void submit(blocking_job* job, bool urgent, bool tracked, bool shares) noexcept;
    // Under mutex_: `n` post_tracked() jobs are out more, or fewer; the
    // io executor's work is taken when the count leaves 0, and handed back
    // (through `released`, destroyed once the lock is let go) when it
    // reaches 0.
    void track(std::size_t n) noexcept;
    void untrack(std::size_t n, std::optional<boost::asio::any_io_executor>& released) noexcept;
    void hand_over(blocking_job* job) noexcept;
    // Under mutex_: whether the inbox is to be handed over now.
    // before_short_writer: a worker is about to run an `urgent` job expected
    // to be short (see above), so an empty or short queue is no reason.
    bool flush_due(std::int64_t now_ns, bool before_short_writer = false) noexcept;
    void post_drain() noexcept;
    void drain();
    void flush_if_aged() noexcept;
    void work(std::size_t slot);
    // Under lock: sleeps until claimed or, as the watcher, until the queue
    // is stuck behind running jobs.
    void sleep(std::size_t slot, std::unique_lock<std::mutex>& lock);
    // Under lock: stays awake (lock released) while the next job may come
    // soon; returns with the lock held.
    void spin_for_work(std::unique_lock<std::mutex>& lock);
    class io_spinner;
    // Under mutex_, for a tracked job about to go out: whether the io thread
    // is to wait awake for it (nothing else is out, and round trips have
    // been shorter than the spin).
    bool io_spin_due() const noexcept;
    void post_io_spinner(std::uint64_t handovers) noexcept;
    // Updates an average of recent waits (ns).
    static void average(std::int64_t& mean, std::int64_t sample) noexcept;
    bool enough_awake(std::int64_t now) const noexcept;
    void wake_if_stalled() noexcept;
    void wake_for_blocked() noexcept;
    // From a worker inside a job: wakes a sleeping thread for the queued
    // jobs unless an awake one will take them soon; with
    // `this_thread_blocks`, this thread counts as stalled first.
    void wake_sleeper_for_queue(std::int64_t now, bool this_thread_blocks) noexcept;
    // Under mutex_: takes the most recently idle thread off the idle list
    // and marks it woken (and, if the thread to watch now is not watching,
    // names it too); notify() after unlocking.
    struct wake_up {
        std::condition_variable* claimed = nullptr;
        std::condition_variable* nudged = nullptr;
        void notify() const noexcept;
    };
    wake_up claim_sleeper() noexcept;
    // Under mutex_: the front sleeper's wake-up when it does not watch yet.
    std::condition_variable* nudge_watcher() noexcept;
    bool any_running() const noexcept;
    static std::size_t default_active() noexcept;
    static constexpr std::size_t backlog_per_thread = 2;

    const boost::asio::any_io_executor io_;
    const void* context_;  // io_'s execution context
    const std::size_t batch_;
    const std::int64_t max_hold_ns_;
    const std::int64_t stall_ns_;
    const std::size_t active_;
    const std::int64_t spin_ns_;
    std::mutex mutex_;
    // One wake-up per thread, so that a wake reaches the thread it was
    // meant for: the most recently idle one (its caches are warm), and
    // never two threads for one burst of submits.
    struct sleeper {
        std::condition_variable cv;
        bool woken = false;     // under mutex_: claimed by a waker or close()
        bool watching = false;  // under mutex_: in a timed wait (see sleep())
    };
    std::vector<std::unique_ptr<sleeper>> sleepers_;  // per thread
    list jobs_;                                       // under mutex_
    blocking_job* last_ahead_ = nullptr;              // under mutex_: in jobs_, or null
    list inbox_;                                      // under mutex_
    // Under mutex_: the threads asleep, in the order they fell asleep. The
    // front one watches while the pool is busy (see work()); wakers take
    // the back one.
    std::vector<std::size_t> idle_;
    std::vector<std::int64_t> running_since_;  // per thread: job start (ns), 0: none
    std::int64_t last_job_start_ = 0;          // ns; sleepers watch while it is recent
    static constexpr std::int64_t watch_window_ns = 100'000'000;
    bool drain_pending_ = false;
    std::int64_t last_urgent_run_ns_ = 0;  // under mutex_: how long the last `urgent` job ran
    counters counters_;                    // under mutex_
    std::size_t tracked_jobs_ = 0;         // under mutex_: post_tracked() jobs out
    std::uint64_t submitted_ = 0;          // under mutex_: jobs submitted so far
    std::optional<boost::asio::any_io_executor> work_;  // under mutex_: held while any are
    bool closed_ = false;
    std::size_t stopped_threads_ = 0;                // under mutex_: threads that left work()
    std::vector<std::function<void()>> on_stopped_;  // under mutex_: see close_then()
    std::atomic<std::int64_t> held_since_{0};        // oldest inbox entry (ns), 0: none
    // jobs_.size, for the progress hook and a spinning worker: on a cache
    // line of its own, like handover_hint_, so that spinning on it does not
    // slow down the lock and the fields around it.
    alignas(64) std::atomic<std::size_t> queued_hint_{0};
    alignas(64) std::atomic<std::size_t> sleeping_hint_{0};  // idle_.size(), likewise
    // Spinning (see blocking_pool_options::spin), all under mutex_ but the
    // atomics: the mean gap between the queue running dry and the next job,
    // and the mean time from a tracked job going out (none were) until its
    // completion was handed over.
    bool worker_spinning_ = false;
    std::int64_t queue_dry_since_ = 0;
    std::int64_t job_gap_ns_ = 0;
    std::int64_t tracked_since_ = 0;
    std::int64_t round_trip_ns_ = 0;
    alignas(64) std::atomic<std::uint64_t> handover_hint_{0};  // drains posted so far
    // Whether an io_spinner is running and waiting for the next batch, and
    // whether a worker has handed it one (see io_spinner).
    static constexpr int io_idle = 0;
    static constexpr int io_waiting = 1;
    static constexpr int io_handed = 2;
    std::atomic<int> io_wait_{io_idle};
    alignas(64) std::atomic<std::uint64_t> io_spin_hits_{0};  // counters::io_spin_hits
    std::atomic<std::uint64_t> progress_flushes_{0};
    std::atomic<std::uint64_t> progress_wakes_{0};
    std::atomic<std::uint64_t> watch_wakes_{0};
    boost::asio::thread_pool threads_;
    bool joined_ = false;
};

}  // namespace asqlite::detail
