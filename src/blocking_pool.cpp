#include "asqlite/detail/blocking_pool.hpp"

#include <boost/asio/post.hpp>

namespace asqlite::detail {

namespace {
thread_local blocking_pool* current_pool = nullptr;  // the pool this worker serves

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

void blocking_pool::list::push(blocking_job* j) noexcept {
    j->next_ = nullptr;
    if (tail != nullptr) {
        tail->next_ = j;
    } else {
        head = j;
    }
    tail = j;
    ++size;
}

blocking_job* blocking_pool::list::pop() noexcept {
    blocking_job* j = head;
    if (j != nullptr) {
        head = j->next_;
        if (head == nullptr) {
            tail = nullptr;
        }
        --size;
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
            {
                std::lock_guard lock(pool_->mutex_);
                dropped = std::exchange(pool_->inbox_, list{});
                pool_->drain_pending_ = false;
                pool_->held_since_.store(0, std::memory_order_relaxed);
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

blocking_pool::blocking_pool(boost::asio::any_io_executor io, const blocking_pool_options& options)
    : io_(std::move(io)),
      batch_(options.batch == 0 ? 1 : options.batch),
      max_hold_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(options.max_hold).count()),
      threads_(options.threads) {
    for (std::size_t i = 0; i < options.threads; ++i) {
        boost::asio::post(threads_, [this] { work(); });
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

void blocking_pool::submit(blocking_job* job) noexcept {
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        if (!closed_) {
            jobs_.push(job);
            wake = sleeping_ > 0;
            job = nullptr;
        }
    }
    if (job != nullptr) {
        job->run(false);
    } else if (wake) {
        wake_.notify_one();
    }
}

bool blocking_pool::flush_due(std::int64_t now) noexcept {
    if (inbox_.size == 0 || drain_pending_) {
        return false;
    }
    const std::int64_t since = held_since_.load(std::memory_order_relaxed);
    if (jobs_.size == 0 || inbox_.size >= batch_ || closed_ ||
        (since != 0 && now - since >= max_hold_ns_)) {
        drain_pending_ = true;
        return true;
    }
    return false;
}

void blocking_pool::hand_over(blocking_job* job) noexcept {
    const std::int64_t now = now_ns();
    bool post = false;
    {
        std::lock_guard lock(mutex_);
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
    try {
        boost::asio::post(io_, drainer(shared_from_this()));
    } catch (...) {
        // Out of memory: nothing sensible is left to do with the results.
        std::terminate();
    }
}

void blocking_pool::drain() {
    list batch;
    {
        std::lock_guard lock(mutex_);
        batch = std::exchange(inbox_, list{});
        drain_pending_ = false;
        held_since_.store(0, std::memory_order_relaxed);
    }
    while (blocking_job* j = batch.pop()) {
        try {
            j->run(true);
        } catch (...) {
            // A handler threw (out of io_context::run, as Asio does): the
            // rest of the batch runs from a fresh drain.
            if (batch.size != 0) {
                {
                    std::lock_guard lock(mutex_);
                    if (inbox_.size != 0) {
                        batch.tail->next_ = inbox_.head;
                        batch.tail = inbox_.tail;
                        batch.size += inbox_.size;
                    }
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
        post_drain();
    }
}

void blocking_pool::on_progress() noexcept {
    if (current_pool != nullptr) {
        current_pool->flush_if_aged();
    }
}

void blocking_pool::work() {
    current_pool = this;
    std::unique_lock lock(mutex_);
    for (;;) {
        if (blocking_job* job = jobs_.pop()) {
            // Hand over what waits before a job that may take long.
            const bool post = flush_due(now_ns());
            lock.unlock();
            if (post) {
                post_drain();
            }
            job->run(true);
            lock.lock();
            continue;
        }
        if (flush_due(now_ns())) {
            lock.unlock();
            post_drain();
            lock.lock();
            continue;
        }
        if (closed_) {
            break;  // closed and drained
        }
        ++sleeping_;
        wake_.wait(lock);
        --sleeping_;
    }
    current_pool = nullptr;
}

void blocking_pool::close() noexcept {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    wake_.notify_all();
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
