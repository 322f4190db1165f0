#include "asqlite/async_engine.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "pool_state.hpp"

namespace asqlite {
namespace detail {

std::exception_ptr aborted_error() {
    return std::make_exception_ptr(
        error(make_error_code(asio::error::operation_aborted), "operation cancelled"));
}

std::exception_ptr closed_error() {
    return std::make_exception_ptr(
        error(make_error_code(errc::pool_closed), "the async engine is closed"));
}

bool poisons_connection(const std::error_code& ec) noexcept {
    if (ec.category() != category()) {
        return false;
    }
    switch (primary_code(ec)) {
        case errc::ioerr:
        case errc::corrupt:
        case errc::nomem:
        case errc::notadb:
        case errc::cantopen:
        case errc::misuse:
        case errc::internal:
        case errc::protocol: return true;
        default: return false;
    }
}

namespace {

using clock = pool_clock;

std::size_t thread_count(const engine_options& o) {
    if (o.threads != 0) {
        return o.threads;
    }
    return std::max<std::size_t>(2, std::thread::hardware_concurrency());
}

bool is_memory(const std::string& path) { return path == ":memory:" || path.empty(); }

std::string shared_memory_uri() {
    static std::atomic<std::uint64_t> counter{0};
    return fmt::format("file:asqlite-mem-{}-{}?mode=memory&cache=shared", ::getpid(),
                       counter.fetch_add(1));
}

}  // namespace

class async_core final : public engine_core, public std::enable_shared_from_this<async_core> {
public:
    async_core(asio::any_io_executor io, engine_options options)
        : io_(std::move(io)),
          options_(std::move(options)),
          state_(limits_for(options_)),
          strand_(asio::make_strand(io_)),
          timer_(strand_) {
        options_.validate();
        connection_settings_ = options_.connection_settings(false);
        path_ = options_.path;
        if (is_memory(path_)) {
            // Every pooled connection must see one database: a named shared
            // in-memory database, kept alive by a connection that is never
            // handed out, and a pool pinned to a single connection (shared
            // cache uses table locks that busy_timeout does not cover).
            path_ = shared_memory_uri();
            keeper_ = std::make_unique<connection>(path_, connection_settings_);
        }
        threads_ = std::make_unique<asio::thread_pool>(thread_count(options_));
        pool_ = threads_.get();
    }

    const asio::any_io_executor& io_executor() const noexcept override { return io_; }
    const engine_options& options() const noexcept { return options_; }

    void acquire(acquire_handler handler);
    void release(pooled_connection* pc) noexcept override;
    pool_stats stats();
    void close();

private:
    struct waiter_record {
        acquire_handler handler;
        asio::any_completion_executor work;
        clock::time_point since;
    };
    struct actions {
        std::vector<std::pair<waiter_record, pooled_connection*>> grants;
        std::vector<std::unique_ptr<pooled_connection>> closes;
        std::size_t opens = 0;
        std::vector<waiter_record> timed_out;
        std::vector<waiter_record> failed;
        bool arm_timer = false;
    };

    static pool_limits limits_for(const engine_options& o) {
        pool_limits l;
        l.size = is_memory(o.path) ? 1 : o.pool_size;
        l.max_overflow = is_memory(o.path) ? 0 : o.max_overflow;
        l.timeout = o.pool_timeout;
        l.recycle = o.pool_recycle;
        return l;
    }

    asio::any_completion_executor tracked(const acquire_handler& h) const {
        return asio::prefer(asio::get_associated_executor(h, io_),
                            asio::execution::outstanding_work.tracked);
    }

    // Under mutex_: turns the state machine's decisions into owned things to
    // act on once the lock is released.
    void take(pool_effects& fx, actions& act, clock::time_point now);
    void run(actions& act, const std::exception_ptr& failure);
    void grant(waiter_record rec, pooled_connection* pc);
    void open_one();
    void open_finished(std::unique_ptr<pooled_connection> pc, std::exception_ptr ep);
    void return_connection(pooled_connection* pc) noexcept;
    void cancel_waiter(waiter_id w);
    void arm_timer();
    void on_timer(const boost::system::error_code& ec);

    asio::any_io_executor io_;
    engine_options options_;
    connection_options connection_settings_;
    std::string path_;
    std::unique_ptr<connection> keeper_;
    std::unique_ptr<asio::thread_pool> threads_;

    std::mutex mutex_;
    pool_state state_;
    std::unordered_map<conn_id, std::unique_ptr<pooled_connection>> conns_;
    std::unordered_map<waiter_id, waiter_record> waiters_;
    waiter_id next_waiter_ = 0;
    conn_id next_conn_ = 0;
    bool timer_armed_ = false;
    bool closed_ = false;
    std::uint64_t acquires_ = 0;
    std::uint64_t timeouts_ = 0;
    std::uint64_t cancellations_ = 0;
    std::uint64_t opened_ = 0;
    std::uint64_t closed_count_ = 0;
    clock::duration total_wait_{};
    clock::duration max_wait_{};

    asio::strand<asio::any_io_executor> strand_;
    asio::steady_timer timer_;
};

void async_core::take(pool_effects& fx, actions& act, clock::time_point now) {
    for (const auto& g : fx.grants) {
        auto node = waiters_.extract(g.waiter);
        const auto waited = now - node.mapped().since;
        total_wait_ += waited;
        max_wait_ = std::max(max_wait_, waited);
        act.grants.emplace_back(std::move(node.mapped()), conns_.at(g.conn).get());
    }
    for (const auto c : fx.closes) {
        auto node = conns_.extract(c);
        act.closes.push_back(std::move(node.mapped()));
        ++closed_count_;
    }
    act.opens += fx.opens;
    for (const auto w : fx.timed_out) {
        act.timed_out.push_back(std::move(waiters_.extract(w).mapped()));
        ++timeouts_;
    }
    for (const auto w : fx.failed) {
        act.failed.push_back(std::move(waiters_.extract(w).mapped()));
    }
    if (!timer_armed_ && state_.waiting() > 0 && !closed_) {
        timer_armed_ = true;
        act.arm_timer = true;
    }
    fx = pool_effects{};
}

void async_core::run(actions& act, const std::exception_ptr& failure) {
    for (auto& [rec, pc] : act.grants) {
        grant(std::move(rec), pc);
    }
    for (auto& pc : act.closes) {
        // sqlite3_close may flush the WAL: on the blocking pool, or right
        // here once the engine is closed.
        post_blocking([pc = std::move(pc)](bool) mutable { pc.reset(); });
    }
    for (std::size_t i = 0; i < act.opens; ++i) {
        open_one();
    }
    for (auto& rec : act.timed_out) {
        complete_on(io_, rec.work, std::move(rec.handler),
                    std::make_exception_ptr(error(
                        make_error_code(errc::pool_timeout),
                        fmt::format("no connection became free within pool_timeout ({} ms)",
                                    options_.pool_timeout.count()))),
                    session{});
    }
    for (auto& rec : act.failed) {
        complete_on(io_, rec.work, std::move(rec.handler), failure ? failure : closed_error(), session{});
    }
    if (act.arm_timer) {
        asio::post(strand_, [self = shared_from_this()] { self->arm_timer(); });
    }
}

void async_core::grant(waiter_record rec, pooled_connection* pc) {
    ++pc->lease;
    if (!options_.pre_ping) {
        complete_on(io_, rec.work, std::move(rec.handler), std::exception_ptr{},
                    session(shared_from_this(), pc));
        return;
    }
    post_blocking([self = shared_from_this(), rec = std::move(rec), pc](bool run) mutable {
        if (run) {
            try {
                pc->conn.exec("SELECT 1");
                complete_on(self->io_, rec.work, std::move(rec.handler), std::exception_ptr{},
                            session(self, pc));
                return;
            } catch (const std::exception&) {
                pc->healthy = false;  // closed below; the waiter tries again
            }
        }
        self->return_connection(pc);
        if (run) {
            self->acquire(std::move(rec.handler));
        } else {
            complete_on(self->io_, rec.work, std::move(rec.handler), closed_error(), session{});
        }
    });
}

void async_core::acquire(acquire_handler handler) {
    const auto now = clock::now();
    pool_effects fx;
    actions act;
    {
        std::unique_lock lock(mutex_);
        if (closed_) {
            lock.unlock();
            complete_on(io_, tracked(handler), std::move(handler), closed_error(), session{});
            return;
        }
        ++acquires_;
        const waiter_id w = ++next_waiter_;
        if (const auto c = state_.acquire(w, now, fx)) {
            act.grants.emplace_back(waiter_record{std::move(handler), {}, now},
                                    conns_.at(*c).get());
            act.grants.back().first.work = tracked(act.grants.back().first.handler);
        } else {
            auto slot = asio::get_associated_cancellation_slot(handler);
            if (slot.is_connected()) {
                slot.assign([weak = weak_from_this(), w](asio::cancellation_type) {
                    if (auto self = weak.lock()) {
                        self->cancel_waiter(w);
                    }
                });
            }
            auto work = tracked(handler);
            waiters_.emplace(w, waiter_record{std::move(handler), std::move(work), now});
        }
        take(fx, act, now);
    }
    run(act, nullptr);
}

void async_core::cancel_waiter(waiter_id w) {
    waiter_record rec;
    {
        std::lock_guard lock(mutex_);
        if (!state_.remove_waiter(w)) {
            return;  // already granted, timed out or failed: too late to cancel
        }
        rec = std::move(waiters_.extract(w).mapped());
        ++cancellations_;
    }
    complete_on(io_, rec.work, std::move(rec.handler), aborted_error(), session{});
}

void async_core::open_one() {
    post_blocking([self = shared_from_this()](bool run) {
        if (!run) {
            self->open_finished(nullptr, closed_error());
            return;
        }
        try {
            connection c(self->path_, self->connection_settings_);
            if (self->options_.on_connect) {
                self->options_.on_connect(c);
            }
            self->open_finished(std::make_unique<pooled_connection>(std::move(c), 0, clock::now()),
                                nullptr);
        } catch (...) {
            self->open_finished(nullptr, std::current_exception());
        }
    });
}

void async_core::open_finished(std::unique_ptr<pooled_connection> pc, std::exception_ptr ep) {
    const auto now = clock::now();
    pool_effects fx;
    actions act;
    {
        std::lock_guard lock(mutex_);
        if (pc && !closed_) {
            const conn_id id = ++next_conn_;
            pc->id = id;
            conns_.emplace(id, std::move(pc));
            ++opened_;
            state_.open_succeeded(id, now, fx);
        } else {
            state_.open_failed(fx);
        }
        take(fx, act, now);
    }
    pc.reset();  // opened after close: not wanted (we are on a worker)
    run(act, ep);
}

void async_core::release(pooled_connection* pc) noexcept {
    const bool dirty = pc->tx_open || pc->pending_rollback || pc->in_transaction;
    pc->tx_open = false;
    pc->pending_rollback = false;
    if (!dirty || !pc->healthy) {
        return_connection(pc);
        return;
    }
    // Roll back on the blocking pool before anyone else can have it.
    post_blocking([self = shared_from_this(), pc](bool run) {
        if (!run) {
            pc->healthy = false;  // engine closed: the connection is closed anyway
        } else {
            try {
                if (pc->conn.in_transaction()) {
                    pc->conn.exec("ROLLBACK");
                }
                pc->in_transaction = false;
            } catch (...) {
                pc->healthy = false;
            }
        }
        self->return_connection(pc);
    });
}

void async_core::return_connection(pooled_connection* pc) noexcept {
    const auto now = clock::now();
    pool_effects fx;
    actions act;
    {
        std::lock_guard lock(mutex_);
        state_.release(pc->id, pc->created, pc->healthy && !closed_, now, fx);
        take(fx, act, now);
    }
    run(act, nullptr);
}

void async_core::arm_timer() {
    std::optional<clock::time_point> deadline;
    {
        std::lock_guard lock(mutex_);
        deadline = state_.next_deadline();
        if (!deadline || closed_) {
            timer_armed_ = false;
            return;
        }
    }
    timer_.expires_at(*deadline);
    timer_.async_wait(asio::bind_executor(
        strand_, [self = shared_from_this()](const boost::system::error_code& ec) {
            self->on_timer(ec);
        }));
}

void async_core::on_timer(const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) {
        return;
    }
    const auto now = clock::now();
    pool_effects fx;
    actions act;
    {
        std::lock_guard lock(mutex_);
        state_.expire(now, fx);
        timer_armed_ = false;  // take() re-arms while anyone still waits
        take(fx, act, now);
    }
    run(act, nullptr);
}

pool_stats async_core::stats() {
    std::lock_guard lock(mutex_);
    pool_stats s;
    s.size = state_.open_count();
    s.idle = state_.idle_count();
    s.in_use = state_.in_use();
    s.waiters = state_.waiting();
    s.opening = state_.opening();
    s.acquires = acquires_;
    s.timeouts = timeouts_;
    s.cancellations = cancellations_;
    s.opened = opened_;
    s.closed = closed_count_;
    s.total_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(total_wait_);
    s.max_wait = std::chrono::duration_cast<std::chrono::nanoseconds>(max_wait_);
    return s;
}

void async_core::close() {
    {
        std::unique_lock post_lock(post_mutex_);
        if (pool_ == nullptr) {
            return;
        }
        pool_ = nullptr;  // from here on post_blocking runs jobs inline as "closed"
    }
    pool_effects fx;
    actions act;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        state_.close_all(fx);
        take(fx, act, clock::now());
    }
    run(act, closed_error());
    asio::post(strand_, [self = shared_from_this()] { self->timer_.cancel(); });
    threads_->join();  // operations already on the pool finish first
    keeper_.reset();
}

void async_acquire(const std::shared_ptr<async_core>& core, acquire_handler handler) {
    core->acquire(std::move(handler));
}

}  // namespace detail

async_engine::async_engine(asio::any_io_executor executor, engine_options options)
    : core_(std::make_shared<detail::async_core>(std::move(executor), std::move(options))) {}

async_engine::~async_engine() { close(); }
async_engine::async_engine(async_engine&&) noexcept = default;
async_engine& async_engine::operator=(async_engine&& other) noexcept {
    if (this != &other) {
        close();
        core_ = std::move(other.core_);
    }
    return *this;
}

pool_stats async_engine::stats() const { return core_->stats(); }
const engine_options& async_engine::options() const noexcept { return core_->options(); }
const asio::any_io_executor& async_engine::get_executor() const noexcept {
    return core_->io_executor();
}
void async_engine::close() {
    if (core_) {
        core_->close();
    }
}

async_engine create_async_engine(asio::any_io_executor executor, engine_options options) {
    return async_engine(std::move(executor), std::move(options));
}

}  // namespace asqlite
