#pragma once
// Helpers for async tests: run a coroutine to completion on a real
// io_context, optionally with several io threads.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "asqlite/error.hpp"

namespace asqlite::test {

namespace asio = boost::asio;

/// Runs io with `threads` threads until it has no more work.
inline void run_io(asio::io_context& io, int threads = 1) {
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) {
        extra.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& t : extra) {
        t.join();
    }
}

/// Spawns `coro` on a strand of `io` (so it may use cancellation with
/// several io threads), runs io, and rethrows what the coroutine threw.
template <class Awaitable>
void run_coro(asio::io_context& io, Awaitable coro, int threads = 1) {
    std::exception_ptr failure;
    bool done = false;
    asio::co_spawn(asio::make_strand(io), std::move(coro), [&](std::exception_ptr ep) {
        failure = ep;
        done = true;
    });
    run_io(io, threads);
    if (failure) {
        std::rethrow_exception(failure);
    }
    if (!done) {
        throw std::runtime_error("coroutine did not finish");
    }
}

/// A co_spawn completion that rethrows what the coroutine threw (out of
/// io.run(), failing the test).
inline void rethrow_failure(std::exception_ptr ep) {
    if (ep) {
        std::rethrow_exception(ep);
    }
}

inline asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(asio::use_awaitable);
}

/// Awaits `op` and returns the asqlite::error it threw, or nothing (for
/// test::error_matches).
template <class T>
asio::awaitable<std::optional<error>> error_of(asio::awaitable<T> op) {
    try {
        co_await std::move(op);
    } catch (const error& e) {
        co_return e;
    }
    co_return std::nullopt;
}

}  // namespace asqlite::test

/// ASSERT_* cannot be used in coroutines (they `return`); this can.
#define ASQLITE_CO_ASSERT(cond)                         \
    if (!(cond)) {                                      \
        ADD_FAILURE() << "assertion failed: " << #cond; \
        co_return;                                      \
    }
