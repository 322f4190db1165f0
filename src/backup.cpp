// async_engine::backup(): an online copy of the database, in steps on the
// blocking pool (the backend's backend_backup), into a partial file that is
// renamed to the destination once complete.

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "asqlite/async_engine.hpp"
#include "engine_core.hpp"

namespace asqlite {

namespace {

namespace fs = std::filesystem;

/// Runs fn() on the engine's blocking pool and completes with its result
/// (or error) on the awaiting coroutine's executor; awaited with
/// detail::frameless. With `always`, fn also runs (here) when the pool is
/// closed; otherwise that is errc::pool_closed.
template <class R, class Fn>
auto on_pool(detail::engine_core& core, asio::any_io_executor ex, Fn fn, bool always = false) {
    return asio::async_initiate<decltype(detail::frameless), void(std::exception_ptr, R)>(
        [&core, always](auto handler, asio::any_io_executor ex, Fn f) {
            auto work = asio::prefer(std::move(ex), asio::execution::outstanding_work.tracked);
            core.pool().post([h = std::move(handler), f = std::move(f), work = std::move(work),
                              always](bool live) mutable {
                std::exception_ptr ep;
                R out{};
                if (live || always) {
                    try {
                        out = f();
                    } catch (...) {
                        ep = std::current_exception();
                    }
                } else {
                    ep = detail::closed_error();
                }
                asio::post(std::move(work),
                           [h = std::move(h), ep = std::move(ep), out = std::move(out)]() mutable {
                               std::move(h)(std::move(ep), std::move(out));
                           });
            });
        },
        detail::frameless, std::move(ex), std::move(fn));
}

/// Removes the partial file of a backup and SQLite's files beside it.
void remove_partial(const std::string& partial) noexcept {
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
        std::error_code ignored;
        fs::remove(partial + suffix, ignored);
    }
}

/// errc::invalid_option when `destination` exists (or cannot be looked at).
void refuse_existing(const std::string& destination) {
    std::error_code ec;
    const bool exists = fs::exists(destination, ec);
    if (exists || ec) {
        throw_error(
            errc::invalid_option,
            fmt::format("backup destination '{}' {}; a backup never overwrites a file", destination,
                        ec ? "cannot be looked at: " + ec.message() : "exists"));
    }
}

struct step_result {
    bool done = false;
    std::size_t remaining = 0;
    std::size_t total = 0;
};

}  // namespace

asio::awaitable<void> async_engine::backup_op(std::shared_ptr<detail::engine_core> c,
                                              std::string destination, backup_options options) {
    if (c == nullptr || c->closed()) {
        throw_error(errc::pool_closed, "the async engine is closed");
    }
    if (destination.empty()) {
        throw_error(errc::invalid_option, "backup destination is empty");
    }
    if (options.pages_per_step < 1) {
        throw_error(errc::invalid_option,
                    fmt::format("backup pages_per_step is {}: at least 1", options.pages_per_step));
    }
    // Cancellation is looked at between steps (and a step's job is never
    // abandoned: the copy is closed and its file removed on the pool).
    co_await asio::this_coro::throw_if_cancelled(false);
    const asio::any_io_executor ex = co_await asio::this_coro::executor;
    static std::atomic<std::uint64_t> backups{0};
    const std::string partial = fmt::format("{}.asqlite-partial-{}-{}", destination, ::getpid(),
                                            backups.fetch_add(1, std::memory_order_relaxed));
    std::shared_ptr<detail::backend_backup> copy;
    std::exception_ptr failure;
    try {
        auto begin = [c, destination, partial]() -> std::shared_ptr<detail::backend_backup> {
            refuse_existing(destination);
            return c->database().begin_backup(partial);
        };
        copy = detail::value_of(
            co_await on_pool<std::shared_ptr<detail::backend_backup>>(*c, ex, std::move(begin)));
        for (;;) {
            auto run_step = [copy, pages = options.pages_per_step] {
                const bool done = copy->step(pages);
                return step_result{done, copy->remaining(), copy->total()};
            };
            const step_result r =
                detail::value_of(co_await on_pool<step_result>(*c, ex, std::move(run_step)));
            if (options.on_progress) {
                options.on_progress(backup_progress{r.remaining, r.total});
            }
            if (r.done) {
                break;
            }
            const auto state = co_await asio::this_coro::cancellation_state;
            if (state.cancelled() != asio::cancellation_type::none) {
                std::rethrow_exception(detail::aborted_error());
            }
        }
        // The copy is closed on the pool (its source connection too).
        auto finish = [copy = std::move(copy), partial, destination]() mutable {
            copy->finish();
            copy.reset();
            refuse_existing(destination);
            std::error_code ec;
            fs::rename(partial, destination, ec);
            if (ec) {
                throw_error(errc::ioerr, fmt::format("backup: renaming '{}' to '{}' failed: {}",
                                                     partial, destination, ec.message()));
            }
            return true;
        };
        detail::value_of(co_await on_pool<bool>(*c, ex, std::move(finish)));
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        // Closed on the pool (SQLite's calls block), the partial file gone,
        // then the error; also on a closed engine, where it runs here.
        co_await asio::this_coro::reset_cancellation_state();
        co_await asio::this_coro::throw_if_cancelled(false);
        auto clean_up = [copy = std::move(copy), partial]() mutable {
            copy.reset();
            remove_partial(partial);
            return true;
        };
        co_await on_pool<bool>(*c, ex, std::move(clean_up), true);
        std::rethrow_exception(failure);
    }
}

}  // namespace asqlite
