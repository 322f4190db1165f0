// The blocking pool on its own, with real threads and a real io_context:
// jobs run on the workers, completions come back on the io thread exactly
// once, batching never holds a completion for long (not behind a long
// statement either), and nothing leaks when the io_context goes away.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/detail/blocking_pool.hpp"

namespace asqlite {
namespace {

namespace asio = boost::asio;
using detail::blocking_pool;
using detail::blocking_pool_options;
using namespace std::chrono_literals;

std::shared_ptr<blocking_pool> make_pool(asio::io_context& io, std::size_t threads,
                                         std::size_t batch, std::chrono::microseconds hold,
                                         std::size_t active = 0,
                                         std::chrono::microseconds stall = 1ms) {
    blocking_pool_options o;
    o.threads = threads;
    o.batch = batch;
    o.max_hold = hold;
    o.active = active;
    o.stall = stall;
    return std::make_shared<blocking_pool>(io.get_executor(), o);
}

TEST(BlockingPool, EveryJobRunsOnAWorkerAndCompletesOnceOnTheIoThread) {
    asio::io_context io;
    auto pool = make_pool(io, 2, 8, 200us);
    const auto io_thread = std::this_thread::get_id();
    constexpr std::size_t jobs = 2000;
    std::vector<std::atomic<int>> completed(jobs);
    std::atomic<int> on_io{0};
    std::atomic<int> ran_on_io_thread{0};
    std::size_t delivered = 0;  // io thread only
    auto guard = asio::make_work_guard(io);
    for (std::size_t i = 0; i < jobs; ++i) {
        pool->post([&, i, p = pool.get()](bool live) {
            EXPECT_TRUE(live);
            if (std::this_thread::get_id() == io_thread) {
                ran_on_io_thread.fetch_add(1);
            }
            p->deliver([&, i] {
                if (std::this_thread::get_id() == io_thread) {
                    on_io.fetch_add(1);
                }
                completed[i].fetch_add(1);
                if (++delivered == jobs) {
                    guard.reset();
                }
            });
        });
    }
    io.run_for(60s);
    pool->join();
    EXPECT_EQ(ran_on_io_thread.load(), 0);
    EXPECT_EQ(static_cast<std::size_t>(on_io.load()), jobs);
    for (std::size_t i = 0; i < jobs; ++i) {
        EXPECT_EQ(completed[i].load(), 1) << "completion " << i;
    }
}

TEST(BlockingPool, AnIdlePoolDeliversAtOnceWhateverTheHoldLimit) {
    asio::io_context io;
    auto pool = make_pool(io, 1, 1000, std::chrono::microseconds(60s));
    const auto start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration took{};
    auto guard = asio::make_work_guard(io);
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] {
            took = std::chrono::steady_clock::now() - start;
            guard.reset();
        });
    });
    io.run_for(3s);  // returns once the completion ran (no other work)
    pool->join();
    ASSERT_GT(took.count(), 0) << "the completion never arrived";
    EXPECT_LT(took, 1s);
}

TEST(BlockingPool, ACompletionIsNotHeldBehindALongStatement) {
    // One worker: J1 finishes while J2 (a long statement) and J3 wait, so
    // J1's completion is held for batching. SQLite's progress handler inside
    // J2 must hand it over once max_hold has passed, long before J2 ends.
    asio::io_context io;
    auto pool = make_pool(io, 1, 1000, 2ms);
    connection db(":memory:");
    std::atomic<bool> long_done{false};
    std::atomic<bool> seen_while_long_ran{false};
    std::atomic<int> delivered{0};
    auto guard = asio::make_work_guard(io);
    std::atomic<bool> go{false};
    pool->post([&](bool) {
        while (!go.load()) {
            std::this_thread::yield();  // keep the worker busy while we queue
        }
    });
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] {
            seen_while_long_ran = !long_done.load();
            delivered.fetch_add(1);
        });
    });
    pool->post([&, p = pool.get()](bool) {
        // About a second of VM work on this machine; stopped early by nothing.
        db.scalar<std::int64_t>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
            "SELECT count(*) FROM c");
        long_done = true;
        p->deliver([&] { delivered.fetch_add(1); });
    });
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] {
            delivered.fetch_add(1);
            guard.reset();
        });
    });
    go = true;
    io.run_for(60s);
    pool->join();
    EXPECT_EQ(delivered.load(), 3);
    EXPECT_TRUE(seen_while_long_ran.load())
        << "the completion waited for the long statement to finish";
}

TEST(BlockingPool, AStalledThreadLetsASleepingOneTakeTheQueue) {
    // One thread works the queue at a time (active = 1); when its job is a
    // long statement, the queue must not wait for it: the progress handler
    // wakes the second thread once the job has run longer than `stall`.
    asio::io_context io;
    // stall is long enough that J2 is queued well before J1 counts as
    // stalled: only the progress handler inside J1 can wake the second thread.
    auto pool = make_pool(io, 2, 8, 200us, 1, 100ms);
    std::this_thread::sleep_for(50ms);  // both threads asleep
    connection db(":memory:");
    std::atomic<bool> long_started{false};
    std::atomic<bool> long_done{false};
    std::atomic<bool> short_ran_during_long{false};
    std::atomic<bool> short_done{false};
    pool->post([&](bool) {
        long_started = true;
        db.scalar<std::int64_t>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 6000000) "
            "SELECT count(*) FROM c");
        long_done = true;
    });
    while (!long_started.load()) {
        std::this_thread::yield();
    }
    std::this_thread::sleep_for(5ms);  // the other thread is back asleep
    pool->post([&](bool) {
        short_ran_during_long = !long_done.load();
        short_done = true;
    });
    // Not join() yet: closing the pool wakes every thread.
    while (!short_done.load() && !long_done.load()) {
        std::this_thread::sleep_for(1ms);
    }
    pool->join();
    EXPECT_TRUE(short_done.load());
    EXPECT_TRUE(short_ran_during_long.load()) << "the queue waited for the long statement";
}

TEST(BlockingPool, CompletionsOfADestroyedIoContextAreFreedNotRun) {
    auto sentinel = std::make_shared<int>(7);
    std::weak_ptr<int> watch = sentinel;
    std::atomic<bool> ran{false};
    {
        auto io = std::make_unique<asio::io_context>();
        auto pool = make_pool(*io, 1, 8, 200us);
        pool->post([&, p = pool.get(), s = std::move(sentinel)](bool) mutable {
            p->deliver([&, s = std::move(s)] { ran = true; });
        });
        pool->join();  // the completion waits in the io_context's queue
        io.reset();    // never run: the queued drain is destroyed
    }
    EXPECT_FALSE(ran.load());
    EXPECT_TRUE(watch.expired()) << "the completion's state leaked";
}

TEST(BlockingPool, AfterCloseWorkRunsInlineAsNotLive) {
    asio::io_context io;
    auto pool = make_pool(io, 1, 8, 200us);
    pool->close();
    bool called = false;
    bool live = true;
    pool->post([&](bool l) {
        called = true;
        live = l;
    });
    EXPECT_TRUE(called);
    EXPECT_FALSE(live);
    pool->join();
}

TEST(BlockingPool, AThrowingHandlerLeavesTheRestOfItsBatchToRun) {
    asio::io_context io;
    auto pool = make_pool(io, 1, 1000, std::chrono::microseconds(60s));
    std::atomic<int> ran{0};
    std::atomic<bool> go{false};
    pool->post([&](bool) {
        while (!go.load()) {
            std::this_thread::yield();
        }
    });
    for (int i = 0; i < 5; ++i) {
        pool->post([&, i, p = pool.get()](bool) {
            p->deliver([&, i] {
                ran.fetch_add(1);
                if (i == 1) {
                    throw std::runtime_error("handler failed");
                }
            });
        });
    }
    go = true;
    pool->join();  // all five completions are in one batch now
    EXPECT_THROW(io.run(), std::runtime_error);
    io.restart();
    io.run();
    EXPECT_EQ(ran.load(), 5);
}

}  // namespace
}  // namespace asqlite
