#include "blocking_pool.hpp"

#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>

#include <thread>

namespace asqlite::detail {

namespace {
thread_local blocking_pool* current_pool = nullptr;  // the pool this worker serves
thread_local worker_hold* current_hold = nullptr;    // and what it holds
thread_local std::int64_t next_stall_check = 0;      // wake_if_stalled's rate limit
thread_local std::size_t current_slot = 0;           // this worker's index (running_since_)

// One round of a spin-wait loop: tells the core this thread is waiting.
void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// The pool's lock is held for a few dozen instructions at a time. A thread
// that finds it taken tries again briefly before it sleeps on it: on a VM a
// futex sleep and wake-up cost more than the whole critical section.
void lock_spinning(std::unique_lock<std::mutex>& lock) noexcept {
    for (int i = 0; i < 100; ++i) {
        if (lock.try_lock()) {
            return;
        }
        cpu_relax();
    }
    lock.lock();
}

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

thread_local blocking_pool::list* blocking_pool::finished_ = nullptr;
thread_local blocking_pool::list* blocking_pool::draining_ = nullptr;
thread_local const void* blocking_pool::draining_context_ = nullptr;
thread_local std::size_t blocking_pool::deferred_ = 0;

std::size_t blocking_pool::default_active() noexcept {
    const std::size_t cores = std::thread::hardware_concurrency();
    return cores > 2 ? cores - 1 : 1;
}

void blocking_pool::list::push(blocking_job* j) noexcept {
    j->next_ = nullptr;
    if (tail != nullptr) {
        tail->next_ = j;
    } else {
        head = j;
    }
    tail = j;
    ++size;
    tracked += j->tracked_ ? 1 : 0;
}

void blocking_pool::list::insert_after(blocking_job* at, blocking_job* j) noexcept {
    if (at == nullptr) {
        j->next_ = head;
        head = j;
    } else {
        j->next_ = at->next_;
        at->next_ = j;
    }
    if (j->next_ == nullptr) {
        tail = j;
    }
    ++size;
    tracked += j->tracked_ ? 1 : 0;
}

void blocking_pool::list::splice(list&& other) noexcept {
    if (other.head == nullptr) {
        return;
    }
    if (tail != nullptr) {
        tail->next_ = other.head;
    } else {
        head = other.head;
    }
    tail = other.tail;
    size += other.size;
    tracked += other.tracked;
    other = list{};
}

blocking_job* blocking_pool::list::pop() noexcept {
    blocking_job* j = head;
    if (j != nullptr) {
        head = j->next_;
        if (head == nullptr) {
            tail = nullptr;
        }
        --size;
        tracked -= j->tracked_ ? 1 : 0;
    }
    return j;
}

/// The io-side handler that runs the inbox. Destroyed without running (the
/// io_context went away), it frees what it would have run.
class blocking_pool::drainer {
  public:
    explicit drainer(std::shared_ptr<blocking_pool> pool) : pool_(std::move(pool)) {}
    drainer(drainer&& other) noexcept = default;
    drainer& operator=(drainer&&) = delete;
    ~drainer() {
        if (pool_) {
            list dropped;
            std::optional<boost::asio::any_io_executor> released;
            {
                std::lock_guard lock(pool_->mutex_);
                dropped = std::exchange(pool_->inbox_, list{});
                pool_->drain_pending_ = false;
                pool_->held_since_.store(0, std::memory_order_relaxed);
                pool_->untrack(dropped.tracked, released);
            }
            while (blocking_job* j = dropped.pop()) {
                j->discard();
            }
        }
    }
    void operator()() { std::exchange(pool_, nullptr)->drain(); }

  private:
    std::shared_ptr<blocking_pool> pool_;
};

/// Keeps the io thread awake while the job it just submitted runs, so that
/// the completion finds it running instead of asleep (blocking_pool_options
/// ::spin). While it spins it is the io thread's waiter (io_wait_ is
/// `waiting`): a worker hands a batch of completions to it directly
/// (`handed`), and it runs the batch itself, with no post through the
/// io_context's queue. It spins in slices of 10 us and posts itself again
/// between them, not waiting in between, so the io_context's other
/// handlers run; it stops when the batch came (handed, or posted while it
/// was not waiting), or after `spin`. Each wait has a spinner of its own: one
/// still queued when the next wait begins finds its own wait over and
/// returns at once.
class blocking_pool::io_spinner {
  public:
    io_spinner(std::shared_ptr<blocking_pool> pool, std::uint64_t handovers, std::int64_t deadline)
        : pool_(std::move(pool)), handovers_(handovers), deadline_(deadline) {}

    void operator()() {
        blocking_pool& p = *pool_;
        if (p.handover_hint_.load(std::memory_order_acquire) != handovers_) {
            p.io_spin_hits_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        // Another io thread's spinner may be the waiter: then this one only
        // watches handover_hint_.
        int state = io_idle;
        const bool waiter =
            p.io_wait_.compare_exchange_strong(state, io_waiting, std::memory_order_acq_rel);
        const std::int64_t slice_end = std::min(deadline_, now_ns() + slice_ns);
        bool again = false;
        for (unsigned i = 1;; ++i) {
            if (waiter ? p.io_wait_.load(std::memory_order_acquire) == io_handed
                       : p.handover_hint_.load(std::memory_order_acquire) != handovers_) {
                break;
            }
            cpu_relax();
            if (i % 32 == 0) {
                const std::int64_t now = now_ns();
                if (now >= slice_end) {
                    again = now < deadline_;
                    break;
                }
            }
        }
        if (waiter) {
            state = io_waiting;
            if (!p.io_wait_.compare_exchange_strong(state, io_idle, std::memory_order_acq_rel)) {
                // Handed: the batch is this handler's to run.
                p.io_wait_.store(io_idle, std::memory_order_relaxed);
                p.io_spin_hits_.fetch_add(1, std::memory_order_relaxed);
                p.drain();
                return;
            }
        }
        if (p.handover_hint_.load(std::memory_order_acquire) != handovers_) {
            p.io_spin_hits_.fetch_add(1, std::memory_order_relaxed);
        } else if (again) {
            // Let the io_context run what else is ready, then go on.
            const auto io = p.io_;
            boost::asio::post(io, std::move(*this));
        }
    }

  private:
    static constexpr std::int64_t slice_ns = 10'000;
    std::shared_ptr<blocking_pool> pool_;
    std::uint64_t handovers_;  // handover_hint_ when the wait began
    std::int64_t deadline_;
};

void blocking_pool::average(std::int64_t& mean, std::int64_t sample) noexcept {
    mean += (sample - mean) / 4;
}

bool blocking_pool::io_spin_due() const noexcept {
    return spin_ns_ != 0 && tracked_jobs_ == 0 && round_trip_ns_ <= spin_ns_;
}

void blocking_pool::post_io_spinner(std::uint64_t handovers) noexcept {
    try {
        boost::asio::post(io_, io_spinner(shared_from_this(), handovers, now_ns() + spin_ns_));
    } catch (...) {
        // Out of memory: the io thread sleeps this once.
    }
}

blocking_pool::blocking_pool(boost::asio::any_io_executor io, const blocking_pool_options& options)
    : io_(std::move(io)),
      context_(&boost::asio::query(io_, boost::asio::execution::context)),
      batch_(options.batch == 0 ? 1 : options.batch),
      max_hold_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.max_hold).count()),
      stall_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.stall).count()),
      active_(options.active != 0 ? options.active : default_active()),
      spin_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.spin).count()),
      running_since_(options.threads, 0),
      threads_(options.threads) {
    sleepers_.reserve(options.threads);
    idle_.reserve(options.threads);
    for (std::size_t i = 0; i < options.threads; ++i) {
        sleepers_.push_back(std::make_unique<sleeper>());
    }
    for (std::size_t i = 0; i < options.threads; ++i) {
        boost::asio::post(threads_, [this, i] { work(i); });
    }
}

blocking_pool::~blocking_pool() {
    if (!joined_) {
        close();
        threads_.join();
    }
    while (blocking_job* j = inbox_.pop()) {
        j->discard();
    }
}

worker_hold* blocking_pool::hold() noexcept {
    return current_hold;
}

void blocking_pool::submit(blocking_job* job, bool urgent, bool tracked, bool shares) noexcept {
    wake_up wake;
    bool spin_io = false;
    std::uint64_t handovers = 0;
    {
        std::unique_lock lock(mutex_, std::defer_lock);
        lock_spinning(lock);
        if (!closed_) {
            if (queue_dry_since_ != 0) {
                average(job_gap_ns_, now_ns() - std::exchange(queue_dry_since_, 0));
            }
            if (tracked) {
                spin_io = io_spin_due();
                counters_.io_spins += spin_io ? 1 : 0;
                handovers = handover_hint_.load(std::memory_order_relaxed);
                track(1);
            }
            job->urgent_ = urgent;
            job->shares_ = shares;
            job->seq_ = ++submitted_;
            if (urgent) {
                jobs_.insert_after(last_ahead_, job);
                last_ahead_ = job;
            } else {
                jobs_.push(job);
            }
            queued_hint_.store(jobs_.size, std::memory_order_relaxed);
            if (!idle_.empty() && !enough_awake(now_ns())) {
                wake = claim_sleeper();
            } else {
                wake.nudged = nudge_watcher();
            }
            job = nullptr;
        }
    }
    if (job != nullptr) {
        job->run(false);
    } else {
        wake.notify();
        if (spin_io) {
            post_io_spinner(handovers);
        }
    }
}

void blocking_pool::track(std::size_t n) noexcept {
    if (n != 0 && std::exchange(tracked_jobs_, tracked_jobs_ + n) == 0) {
        tracked_since_ = spin_ns_ != 0 ? now_ns() : 0;
        work_.emplace(boost::asio::prefer(io_, boost::asio::execution::outstanding_work.tracked));
    }
}

void blocking_pool::untrack(std::size_t n,
                            std::optional<boost::asio::any_io_executor>& released) noexcept {
    tracked_jobs_ -= n;
    if (n != 0 && tracked_jobs_ == 0) {
        if (tracked_since_ != 0) {
            average(round_trip_ns_, now_ns() - tracked_since_);
        }
        released = std::move(work_);
        work_.reset();
    }
}

blocking_pool::wake_up blocking_pool::claim_sleeper() noexcept {
    wake_up w;
    if (idle_.empty()) {
        return w;
    }
    sleeper& s = *sleepers_[idle_.back()];
    idle_.pop_back();
    sleeping_hint_.store(idle_.size(), std::memory_order_relaxed);
    s.woken = true;
    ++counters_.wakes;
    w.claimed = &s.cv;
    w.nudged = nudge_watcher();
    return w;
}

std::condition_variable* blocking_pool::nudge_watcher() noexcept {
    // The pool is busy now. A thread that fell asleep on an idle pool does
    // not watch; if it is the one to watch now, let it look (once: it
    // counts as watching from here on).
    if (idle_.empty() || sleepers_[idle_.front()]->watching) {
        return nullptr;
    }
    sleeper& s = *sleepers_[idle_.front()];
    s.watching = true;
    return &s.cv;
}

void blocking_pool::wake_up::notify() const noexcept {
    if (claimed != nullptr) {
        claimed->notify_one();
    }
    if (nudged != nullptr) {
        nudged->notify_one();
    }
}

bool blocking_pool::enough_awake(std::int64_t now) const noexcept {
    // An awake thread that is between jobs, or whose job started less than
    // stall_ ago, will come for the queue soon. Waking a sleeper for work
    // such a thread takes anyway only adds a context switch, and on a small
    // machine a thread competing with the io thread for a core.
    std::size_t soon = 0;
    for (const std::int64_t since : running_since_) {
        if (since == 0 || now - since < stall_ns_) {
            ++soon;
        }
    }
    soon -= std::min(soon, idle_.size());  // sleepers count as "between jobs"
    if (soon == 0) {
        return false;
    }
    // A longer queue wants more threads, up to `active` of them (by default
    // one core is left to the io thread).
    return soon >= active_ || jobs_.size <= backlog_per_thread * soon;
}

bool blocking_pool::flush_due(std::int64_t now, bool before_short_writer) noexcept {
    if (inbox_.size == 0 || drain_pending_) {
        return false;
    }
    const std::int64_t since = held_since_.load(std::memory_order_relaxed);
    const bool queue_short = jobs_.size == 0 || inbox_.size >= jobs_.size;
    if ((queue_short && !before_short_writer) || inbox_.size >= batch_ || closed_ ||
        (since != 0 && now - since >= max_hold_ns_)) {
        drain_pending_ = true;
        return true;
    }
    return false;
}

void blocking_pool::hand_over(blocking_job* job) noexcept {
    if (current_pool == this && finished_ != nullptr) {
        // From a job on one of our threads: the thread puts it in the inbox
        // when the job returns, under the lock it takes for the next job.
        finished_->push(job);
        return;
    }
    const std::int64_t now = now_ns();
    bool post = false;
    {
        std::unique_lock lock(mutex_, std::defer_lock);
        lock_spinning(lock);
        if (inbox_.size == 0) {
            held_since_.store(now, std::memory_order_relaxed);
        }
        inbox_.push(job);
        post = flush_due(now);
    }
    if (post) {
        post_drain();
    }
}

void blocking_pool::post_drain() noexcept {
    int waiting = io_waiting;
    if (io_wait_.compare_exchange_strong(waiting, io_handed, std::memory_order_acq_rel)) {
        // An io_spinner waits on the io thread: it runs the batch.
        handover_hint_.fetch_add(1, std::memory_order_release);
        return;
    }
    try {
        boost::asio::post(io_, drainer(shared_from_this()));
        // Queued: an io_spinner may let the io thread go on to it.
        handover_hint_.fetch_add(1, std::memory_order_release);
    } catch (...) {
        // Out of memory: nothing sensible is left to do with the results.
        std::terminate();
    }
}

void blocking_pool::drain() {
    list batch;
    // The batch's tracked completions are all run here, in this handler:
    // the io executor's work for them can go now.
    std::optional<boost::asio::any_io_executor> released;
    {
        // The worker that handed the batch over takes the lock right after:
        // wait for it awake (a futex sleep here would cost the io thread
        // more than the worker holds the lock).
        std::unique_lock lock(mutex_, std::defer_lock);
        lock_spinning(lock);
        batch = std::exchange(inbox_, list{});
        ++counters_.handovers;
        drain_pending_ = false;
        held_since_.store(0, std::memory_order_relaxed);
        untrack(batch.tracked, released);
    }
    released.reset();
    // While the batch runs, defer_to_drain() appends to it (restored on the
    // way out, for a drain that runs inside another's handler).
    struct draining_scope {
        list* outer_batch = std::exchange(draining_, nullptr);
        const void* outer_context = draining_context_;
        std::size_t outer_deferred = std::exchange(deferred_, 0);
        ~draining_scope() {
            draining_ = outer_batch;
            draining_context_ = outer_context;
            deferred_ = outer_deferred;
        }
    } scope;
    draining_ = &batch;
    draining_context_ = context_;
    while (blocking_job* j = batch.pop()) {
        try {
            j->run(true);
        } catch (...) {
            // A handler threw (out of io_context::run, as Asio does): the
            // rest of the batch runs from a fresh drain.
            if (batch.size != 0) {
                {
                    std::lock_guard lock(mutex_);
                    track(batch.tracked);  // not run after all
                    batch.splice(std::exchange(inbox_, list{}));
                    inbox_ = batch;
                    drain_pending_ = true;
                    held_since_.store(now_ns(), std::memory_order_relaxed);
                }
                post_drain();
            }
            throw;
        }
    }
}

void blocking_pool::flush_if_aged() noexcept {
    const std::int64_t since = held_since_.load(std::memory_order_relaxed);
    if (since == 0) {
        return;
    }
    const std::int64_t now = now_ns();
    if (now - since < max_hold_ns_) {
        return;
    }
    bool post = false;
    {
        std::lock_guard lock(mutex_);
        post = flush_due(now);
    }
    if (post) {
        progress_flushes_.fetch_add(1, std::memory_order_relaxed);
        post_drain();
    }
}

void blocking_pool::on_progress() noexcept {
    if (current_pool != nullptr) {
        current_pool->flush_if_aged();
        current_pool->wake_if_stalled();
    }
}

void blocking_pool::before_blocking() noexcept {
    if (current_pool != nullptr) {
        current_pool->wake_for_blocked();
    }
}

void blocking_pool::wake_for_blocked() noexcept {
    wake_sleeper_for_queue(now_ns(), true);
}

void blocking_pool::wake_sleeper_for_queue(std::int64_t now, bool this_thread_blocks) noexcept {
    wake_up wake;
    {
        std::lock_guard lock(mutex_);
        std::int64_t& since = running_since_[current_slot];
        if (this_thread_blocks && since != 0) {
            since = std::min(since, now - stall_ns_);  // stalled from now on
        }
        if (jobs_.size != 0 && !idle_.empty() && !enough_awake(now)) {
            wake = claim_sleeper();
        }
    }
    if (wake.claimed != nullptr) {
        progress_wakes_.fetch_add(1, std::memory_order_relaxed);
        wake.notify();
    }
}

void blocking_pool::wake_if_stalled() noexcept {
    // Inside a long statement: let a sleeping thread take the queue. Looked
    // at under the lock at most once per `stall` per thread.
    if (queued_hint_.load(std::memory_order_relaxed) == 0 ||
        sleeping_hint_.load(std::memory_order_relaxed) == 0) {
        return;
    }
    const std::int64_t now = now_ns();
    if (now < next_stall_check) {
        return;
    }
    next_stall_check = now + stall_ns_;
    wake_sleeper_for_queue(now, false);
}

bool blocking_pool::any_running() const noexcept {
    for (const std::int64_t since : running_since_) {
        if (since != 0) {
            return true;
        }
    }
    return false;
}

void blocking_pool::work(std::size_t slot) {
    current_pool = this;
    current_slot = slot;
    list finished;  // completions of the job just run
    finished_ = &finished;
    worker_hold hold;
    current_hold = &hold;
    bool spun = false;  // since the last job
    std::unique_lock lock(mutex_);
    for (;;) {
        if (blocking_job* job = jobs_.pop()) {
            spun = false;
            const bool joins = hold.held() && job->shares_ && job->seq_ <= hold.bound;
            counters_.shared += joins ? 1 : 0;
            // A hold begun by this job covers what was submitted until now.
            hold.next_bound = submitted_;
            hold.next_shares = jobs_.head != nullptr && jobs_.head->shares_;
            if (job == last_ahead_) {
                last_ahead_ = nullptr;
            }
            queued_hint_.store(jobs_.size, std::memory_order_relaxed);
            const std::int64_t now = now_ns();
            running_since_[slot] = now;
            last_job_start_ = now;
            ++counters_.jobs;
            next_stall_check = now + stall_ns_;
            // Hand over what waits before a job that may take long; a short
            // writer's job is awaited (see the header).
            const bool urgent = job->urgent_;
            const bool post = flush_due(now, urgent && last_urgent_run_ns_ < max_hold_ns_ / 2);
            lock.unlock();
            if (post) {
                post_drain();
            }
            if (!joins) {
                hold.release();
            }
            job->run(true);
            lock_spinning(lock);
            running_since_[slot] = 0;
            if (urgent) {
                last_urgent_run_ns_ = now_ns() - now;
            }
            if (hold.held() && jobs_.head == nullptr) {
                // The queue ran dry: the hold ends before this job's
                // completion can be handed over (by this thread, a watcher
                // or the progress handler), so the connection is back when
                // the last completion of the burst runs.
                lock.unlock();
                hold.release();
                lock_spinning(lock);
            }
            if (finished.size != 0) {
                if (inbox_.size == 0) {
                    held_since_.store(now_ns(), std::memory_order_relaxed);
                }
                inbox_.splice(std::exchange(finished, list{}));
            }
            continue;
        }
        if (hold.held()) {
            // Nothing queued (a job taken by another thread): ended before
            // the thread sleeps or leaves.
            lock.unlock();
            hold.release();
            lock_spinning(lock);
            continue;
        }
        if (flush_due(now_ns())) {
            lock.unlock();
            post_drain();
            lock_spinning(lock);
            continue;
        }
        if (closed_) {
            break;  // closed and drained
        }
        if (!spun) {
            spun = true;
            spin_for_work(lock);
            continue;
        }
        spun = false;
        sleep(slot, lock);
    }
    std::vector<std::function<void()>> stopped;
    if (++stopped_threads_ == sleepers_.size()) {
        stopped = std::move(on_stopped_);
    }
    lock.unlock();
    for (auto& f : stopped) {
        f();
    }
    current_hold = nullptr;
    finished_ = nullptr;
    current_pool = nullptr;
}

void blocking_pool::spin_for_work(std::unique_lock<std::mutex>& lock) {
    const std::int64_t start = now_ns();
    if (queue_dry_since_ == 0) {
        queue_dry_since_ = start;
    }
    // One thread at a time, and only while jobs have been coming back
    // within the spin (else the wait would be the sleep's anyway).
    if (spin_ns_ == 0 || worker_spinning_ || job_gap_ns_ > spin_ns_) {
        return;
    }
    worker_spinning_ = true;
    ++counters_.worker_spins;
    lock.unlock();
    const std::int64_t deadline = start + spin_ns_;
    for (unsigned i = 1; queued_hint_.load(std::memory_order_relaxed) == 0; ++i) {
        cpu_relax();
        if (i % 32 == 0 && now_ns() >= deadline) {
            break;
        }
    }
    lock_spinning(lock);
    worker_spinning_ = false;
    counters_.worker_spin_hits += jobs_.size != 0 ? 1 : 0;
}

void blocking_pool::sleep(std::size_t slot, std::unique_lock<std::mutex>& lock) {
    sleeper& me = *sleepers_[slot];
    me.woken = false;
    ++counters_.sleeps;
    idle_.push_back(slot);
    sleeping_hint_.store(idle_.size(), std::memory_order_relaxed);
    std::condition_variable* nudge = nullptr;
    while (!me.woken) {
        // The thread asleep longest watches while the pool is busy: a job
        // that blocks outside SQLite's virtual machine (an fsync, a
        // checkpoint at close, a lock wait at open) never runs the progress
        // handler, so it looks every 2 `stall`s whether the queue or the inbox
        // is stuck behind such a job. On an idle pool it sleeps without a
        // timeout; claim_sleeper() nudges it when work arrives.
        const bool watch = idle_.front() == slot && (any_running() || jobs_.size != 0 ||
                                                     now_ns() - last_job_start_ < watch_window_ns);
        me.watching = watch;
        if (!watch) {
            me.cv.wait(lock);
            continue;
        }
        // Every two `stall`s: a statement in SQLite's virtual machine is
        // caught by the progress handler after one, without this wake-up.
        if (me.cv.wait_for(lock, std::chrono::nanoseconds(2 * stall_ns_)) ==
                std::cv_status::no_timeout ||
            me.woken || idle_.front() != slot) {
            continue;
        }
        if (jobs_.size != 0 && !enough_awake(now_ns())) {
            // Stuck: take the queue, and let the next sleeper watch.
            idle_.erase(idle_.begin());
            sleeping_hint_.store(idle_.size(), std::memory_order_relaxed);
            watch_wakes_.fetch_add(1, std::memory_order_relaxed);
            nudge = nudge_watcher();
            break;
        }
        if (flush_due(now_ns())) {
            lock.unlock();
            post_drain();
            lock.lock();
        }
    }
    if (nudge != nullptr) {
        nudge->notify_one();
    }
}

blocking_pool::counters blocking_pool::stats() {
    std::lock_guard lock(mutex_);
    counters c = counters_;
    c.tracked = tracked_jobs_;
    c.io_spin_hits = io_spin_hits_.load(std::memory_order_relaxed);
    return c;
}

void blocking_pool::close() noexcept {
    std::lock_guard lock(mutex_);
    closed_ = true;
    for (const std::size_t slot : idle_) {
        sleepers_[slot]->woken = true;
        sleepers_[slot]->cv.notify_one();
    }
    idle_.clear();
    sleeping_hint_.store(0, std::memory_order_relaxed);
}

void blocking_pool::close_then(std::function<void()> stopped) {
    close();
    {
        std::lock_guard lock(mutex_);
        if (stopped_threads_ != sleepers_.size()) {
            on_stopped_.push_back(std::move(stopped));
            return;
        }
    }
    stopped();
}

void blocking_pool::join() {
    if (joined_) {
        return;
    }
    close();
    threads_.join();
    joined_ = true;
    // Completions still in the inbox are handed over.
    bool post = false;
    {
        std::lock_guard lock(mutex_);
        if (inbox_.size != 0 && !drain_pending_) {
            drain_pending_ = true;
            post = true;
        }
    }
    if (post) {
        post_drain();
    }
}

}  // namespace asqlite::detail
