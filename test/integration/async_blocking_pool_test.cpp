// The blocking pool on its own, with real threads and a real io_context:
// jobs run on the workers, completions come back on the io thread exactly
// once, batching never holds a completion for long (not behind a long
// statement either), and nothing leaks when the io_context goes away.

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

#include "asqlite/asqlite.hpp"
#include "blocking_pool.hpp"
#include "support/temp_dir.hpp"

namespace asqlite {
namespace {

namespace asio = boost::asio;
using detail::blocking_pool;
using detail::blocking_pool_options;
using detail::worker_hold;
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

/// Posts `long_job`, then (once it runs, and `gap` later) a short job, waits
/// until either finishes, and joins the pool (not earlier: closing wakes
/// every thread). Says whether the short job ran, and ran before the long
/// one had finished.
struct overlap {
    bool short_ran = false;
    bool short_ran_during_long = false;
};
template <class LongJob>
overlap queue_behind(blocking_pool& pool, LongJob long_job, std::chrono::milliseconds gap) {
    std::atomic<bool> long_started{false};
    std::atomic<bool> long_done{false};
    std::atomic<bool> short_ran_during_long{false};
    std::atomic<bool> short_done{false};
    pool.post([&](bool) {
        long_started = true;
        long_job();
        long_done = true;
    });
    while (!long_started.load()) {
        std::this_thread::yield();
    }
    std::this_thread::sleep_for(gap);
    pool.post([&](bool) {
        short_ran_during_long = !long_done.load();
        short_done = true;
    });
    while (!short_done.load() && !long_done.load()) {
        std::this_thread::sleep_for(1ms);
    }
    pool.join();
    return {short_done.load(), short_ran_during_long.load()};
}

TEST(BlockingPool, JobsPostedAheadRunFirstInTheirOwnOrder) {
    asio::io_context io;
    auto pool = make_pool(io, 1, 8, 200us, 1);
    std::atomic<bool> started{false};
    std::atomic<bool> go{false};
    std::mutex m;
    std::vector<std::string> order;
    // One urgent job that runs and is gone: the next ones must not be placed
    // behind it.
    std::atomic<bool> first_done{false};
    pool->post([&](bool) { first_done = true; }, true);
    while (!first_done.load()) {
        std::this_thread::yield();
    }
    pool->post([&](bool) {
        started = true;
        while (!go.load()) {
            std::this_thread::yield();
        }
    });
    while (!started.load()) {
        std::this_thread::yield();
    }
    const auto job = [&](std::string name) {
        return [&, name](bool) {
            std::lock_guard lock(m);
            order.push_back(name);
        };
    };
    pool->post(job("a"));
    pool->post(job("b"));
    pool->post(job("writer 1"), true);
    pool->post(job("writer 2"), true);
    pool->post(job("c"));
    go = true;
    pool->join();
    EXPECT_EQ(order, (std::vector<std::string>{"writer 1", "writer 2", "a", "b", "c"}));
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
    // One worker: J1 finishes while J2 (a long statement), J3 and J4 wait,
    // so J1's completion is held for batching (one completion, two jobs
    // still queued behind J2: no hand-over is due when J2 starts). SQLite's
    // progress handler inside J2 must hand it over once max_hold has passed,
    // long before J2 ends.
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
    pool->post([&, p = pool.get()](bool) { p->deliver([&] { delivered.fetch_add(1); }); });
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] {
            delivered.fetch_add(1);
            guard.reset();
        });
    });
    go = true;
    io.run_for(60s);
    pool->join();
    EXPECT_EQ(delivered.load(), 4);
    EXPECT_TRUE(seen_while_long_ran.load())
        << "the completion waited for the long statement to finish";
    EXPECT_GE(pool->progress_flushes(), 1u) << "not handed over from the progress handler";
}

TEST(BlockingPool, CompletionsGoBackBeforeTheQueueRunsDry) {
    // With one thread, once as many completions wait as jobs remain queued,
    // the completions go to the io thread, so that it can queue new work
    // while the thread does the rest. Here neither the batch size nor
    // max_hold is ever reached: J1's completion must reach the io thread
    // while J2 runs (J3 still queued), or J2 waits for it in vain.
    asio::io_context io;
    auto pool = make_pool(io, 1, 1000, 10s);
    auto guard = asio::make_work_guard(io);
    std::thread io_thread([&] { io.run(); });
    std::atomic<bool> go{false};
    std::atomic<bool> j1_delivered{false};
    std::atomic<bool> j2_saw_it{false};
    std::atomic<bool> j3_delivered{false};
    pool->post([&](bool) {
        while (!go.load()) {
            std::this_thread::yield();
        }
    });
    pool->post([&, p = pool.get()](bool) { p->deliver([&] { j1_delivered = true; }); });
    pool->post([&](bool) {
        const auto until = std::chrono::steady_clock::now() + 5s;
        while (!j1_delivered.load() && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(100us);
        }
        j2_saw_it = j1_delivered.load();
    });
    pool->post([&, p = pool.get()](bool) { p->deliver([&] { j3_delivered = true; }); });
    go = true;
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (!j3_delivered.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(1ms);
    }
    guard.reset();
    pool->join();
    io_thread.join();
    EXPECT_TRUE(j2_saw_it.load()) << "J1's completion was held while J2 ran";
    EXPECT_TRUE(j3_delivered.load());
}

/// One thread, an io thread running: job J1 completes, and before it returns
/// queues K `urgent`, as a writer giving the writer lane to the next in line
/// does. K looks for J1's completion on the io thread for up to `look`.
/// Says whether K saw it (then it was handed over before K ran), and
/// whether it arrived in the end. `before` runs first, as an urgent job.
struct writer_handoff {
    bool k_saw_j1 = false;
    bool j1_delivered = false;
};
writer_handoff hand_writer_on(std::chrono::microseconds hold, std::chrono::milliseconds look,
                              std::function<void()> before = {}) {
    asio::io_context io;
    auto pool = make_pool(io, 1, 1000, hold);
    auto guard = asio::make_work_guard(io);
    std::thread io_thread([&] { io.run(); });
    if (before) {
        std::atomic<bool> done{false};
        pool->post(
            [&](bool) {
                before();
                done = true;
            },
            true);
        while (!done.load()) {
            std::this_thread::sleep_for(1ms);
        }
    }
    std::atomic<bool> j1_delivered{false};
    std::atomic<bool> k_done{false};
    bool k_saw_j1 = false;
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] { j1_delivered = true; });
        p->post(
            [&](bool) {
                const auto until = std::chrono::steady_clock::now() + look;
                while (!j1_delivered.load() && std::chrono::steady_clock::now() < until) {
                    std::this_thread::sleep_for(100us);
                }
                k_saw_j1 = j1_delivered.load();
                k_done = true;
            },
            true);
    });
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (!(k_done.load() && j1_delivered.load()) && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(1ms);
    }
    guard.reset();
    pool->join();
    io_thread.join();
    return {k_saw_j1, j1_delivered.load()};
}

TEST(BlockingPool, ACompletionWaitsThroughTheNextShortWritersJob) {
    // The queue is empty when K starts, which would hand J1's completion
    // over at once; but K is a writer's job and the last one (none yet)
    // was short, so the completion waits for K, and goes when the queue
    // has run dry after it.
    const auto r = hand_writer_on(10s, 100ms);
    EXPECT_FALSE(r.k_saw_j1) << "handed over before the writer's job";
    EXPECT_TRUE(r.j1_delivered) << "never handed over after it";
}

TEST(BlockingPool, ACompletionDoesNotWaitForAWriterWhoseLastJobWasLong) {
    // The same, after a writer's job that took longer than half the hold
    // (160 ms of 200): K is expected to be long too, so J1's completion goes
    // before it. (K may look for long: with one thread nothing else hands
    // the inbox over while K runs, and K stops looking once it is seen.)
    const auto r = hand_writer_on(200ms, 5s, [] { std::this_thread::sleep_for(160ms); });
    EXPECT_TRUE(r.k_saw_j1) << "held through a writer's job expected to be long";
}

/// Waits until the pool's threads have gone to sleep `n` times in all.
void await_sleeps(blocking_pool& pool, std::uint64_t n) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (pool.stats().sleeps < n && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_GE(pool.stats().sleeps, n) << "the pool's threads did not go to sleep";
}

TEST(BlockingPool, ABurstOfJobsWakesOneThreadTheMostRecentlyIdle) {
    // Three threads, one working at a time, stall far away: a burst of jobs
    // on an idle pool wakes exactly one thread (a woken thread counts as
    // awake at once, not when it gets the lock), and it is the thread that
    // fell asleep last, whose caches are warm.
    asio::io_context io;
    auto pool = make_pool(io, 3, 8, 200us, 1, 10s);
    await_sleeps(*pool, 3);
    std::thread::id last_worker;
    for (int round = 0; round < 5; ++round) {
        const auto before = pool->stats();
        std::atomic<bool> release{false};
        std::atomic<int> done{0};
        std::vector<std::thread::id> ran_on(4);
        for (int i = 0; i < 4; ++i) {
            pool->post([&, i](bool) {
                ran_on[static_cast<std::size_t>(i)] = std::this_thread::get_id();
                while (!release.load()) {
                    std::this_thread::yield();
                }
                done.fetch_add(1);
            });
        }
        release = true;
        while (done.load() != 4) {
            std::this_thread::sleep_for(100us);
        }
        await_sleeps(*pool, before.sleeps + 1);
        const auto after = pool->stats();
        EXPECT_EQ(after.wakes - before.wakes, 1u) << "round " << round;
        for (const auto& id : ran_on) {
            EXPECT_EQ(id, ran_on[0]) << "round " << round << ": the burst ran on two threads";
        }
        if (round > 0) {
            EXPECT_EQ(ran_on[0], last_worker) << "round " << round << ": woke a cold thread";
        }
        last_worker = ran_on[0];
    }
    pool->join();
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
    const overlap r = queue_behind(
        *pool,
        [&] {
            db.scalar<std::int64_t>(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 6000000) "
                "SELECT count(*) FROM c");
        },
        5ms);  // the other thread is back asleep
    EXPECT_TRUE(r.short_ran);
    EXPECT_TRUE(r.short_ran_during_long) << "the queue waited for the long statement";
    EXPECT_GE(pool->progress_wakes(), 1u) << "not woken from the progress handler";
}

TEST(BlockingPool, AJobBlockedOutsideSqliteDoesNotHoldUpTheQueue) {
    // A job that blocks without running SQLite's virtual machine (an fsync,
    // a checkpoint, a lock wait at open) never calls the progress handler:
    // a thread that went to sleep while it ran looks again after `stall`
    // and takes the job queued behind it.
    asio::io_context io;
    auto pool = make_pool(io, 2, 8, 200us, 1, 20ms);
    // Make the pool busy first, so that both threads go to sleep watching.
    std::atomic<int> warm{0};
    pool->post([&](bool) { warm.fetch_add(1); });
    pool->post([&](bool) { warm.fetch_add(1); });
    while (warm.load() < 2) {
        std::this_thread::yield();
    }
    std::this_thread::sleep_for(1ms);
    // The short job is queued well inside `stall`, so submit itself sees a
    // fresh job and wakes nobody; only the watching thread can take it.
    const overlap r = queue_behind(
        *pool, [] { std::this_thread::sleep_for(600ms); }, 0ms);
    EXPECT_TRUE(r.short_ran);
    EXPECT_TRUE(r.short_ran_during_long) << "the queue waited for the blocked job";
    EXPECT_GE(pool->watch_wakes(), 1u);
}

/// An engine on a file in `dir` with two read connections and a writer.
engine_options small_engine(const test::temp_dir& dir, std::size_t threads) {
    engine_options o;
    o.path = dir.file("engine.db");
    o.pool_size = 3;
    o.threads = threads;
    return o;
}

TEST(BlockingPool, AHandlerOnAnotherContextNeedsNotTheEnginesContext) {
    // The inbox runs on the engine's executor; a coroutine on another
    // io_context must get its results even when the engine's never runs.
    test::temp_dir dir;
    engine_options o = small_engine(dir, 2);
    init_db(create_engine(o), file_info_metadata());
    asio::io_context engine_io;  // never run
    asio::io_context user_io;
    auto db = create_async_engine(engine_io.get_executor(), o);
    std::optional<std::int64_t> got;
    std::exception_ptr failure;
    asio::co_spawn(
        user_io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            got = co_await s.scalar<std::int64_t>("SELECT 41 + 1");
            got = *got + co_await s.scalar<std::int64_t>("SELECT count(*) FROM fileinfo");
        },
        [&](std::exception_ptr ep) { failure = ep; });
    user_io.run_for(20s);
    ASSERT_FALSE(failure);
    EXPECT_EQ(got, 42);
}

TEST(BlockingPool, TheEngineHoldsCompletionsAsLongAsConfigured) {
    // engine_options::completion_hold reaches the pool. One blocking thread:
    // a job that waits for `go`, then A (short), B1 (about two seconds of
    // SQLite), then three short ones. A's completion waits in the inbox
    // (fewer completions than jobs queued) until the oldest has waited the
    // hold, which SQLite's progress handler checks while B1 runs: A
    // completes about 400 ms after `go`, long before B1 ends. With the
    // default hold (200 us) it would complete at once.
    test::temp_dir dir;
    engine_options o = small_engine(dir, 1);
    o.completion_hold = 400ms;
    asio::io_context io;
    auto db = create_async_engine(io.get_executor(), o);
    using clock = std::chrono::steady_clock;
    std::atomic<bool> go{false};
    std::atomic<clock::time_point::rep> go_at{0};
    clock::time_point a_done{};
    clock::time_point b1_done{};
    std::exception_ptr failure;
    auto spawn = [&](auto body) {
        asio::co_spawn(io, std::move(body), [&](std::exception_ptr ep) {
            if (ep) {
                failure = ep;
            }
        });
    };
    spawn([&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.run([&](connection&) {
            while (!go.load()) {
                std::this_thread::yield();
            }
            go_at = clock::now().time_since_epoch().count();
        });
    });
    spawn([&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.scalar<int>("SELECT 1");
        a_done = clock::now();
    });
    spawn([&]() -> asio::awaitable<void> {
        auto s = co_await db.session();
        co_await s.scalar<std::int64_t>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 6000000) "
            "SELECT count(*) FROM c");
        b1_done = clock::now();
    });
    for (int i = 0; i < 3; ++i) {
        spawn([&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await s.scalar<int>("SELECT 2");
        });
    }
    std::thread starter([&] {
        std::this_thread::sleep_for(200ms);  // every job is queued by now
        go = true;
    });
    io.run_for(60s);
    starter.join();
    ASSERT_FALSE(failure);
    const clock::time_point started{clock::duration{go_at.load()}};
    ASSERT_NE(a_done, clock::time_point{});
    ASSERT_NE(b1_done, clock::time_point{});
    EXPECT_GE(a_done - started, 350ms) << "the completion was not held for completion_hold";
    EXPECT_LT(a_done, b1_done) << "the completion waited for the long statement to end";
}

TEST(BlockingPool, ALineOfShortWritesIsHandedBackInBatches) {
    // End to end: 16 coroutines write 20 rows each, in autocommit, so every
    // statement waits in the writer's line and the writer passes from job
    // to job on the worker. Their completions wait through the next
    // writer's job instead of going back one by one, so there are far fewer
    // hand-overs to the io thread than jobs. (A hold of 50 ms keeps the
    // writes "short" under the sanitizers too; one blocking thread, so that
    // no sleeping one looks in every 2 ms and hands the inbox over.)
    test::temp_dir dir;
    engine_options o = small_engine(dir, 1);
    o.completion_hold = 50ms;
    o.echo = false;
    o.group_commit = false;  // one job per write, which group commit would merge
    init_db(create_engine(o), file_info_metadata());
    asio::io_context io;
    auto db = create_async_engine(io.get_executor(), o);
    constexpr int writers = 16;
    constexpr int rows_each = 20;
    int written = 0;
    std::exception_ptr failure;
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(
            io,
            [&, w]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                for (int i = 0; i < rows_each; ++i) {
                    co_await s.execute(
                        "INSERT INTO fileinfo (file_id, filename, file_path) VALUES (?, 'f', '/f')",
                        fmt::format("{:032x}", w * 1000 + i));
                    ++written;
                }
            },
            [&](std::exception_ptr ep) {
                if (ep) {
                    failure = ep;
                }
            });
    }
    io.run();
    ASSERT_FALSE(failure);
    ASSERT_EQ(written, writers * rows_each);
    const pool_stats st = db.stats();
    EXPECT_GE(st.blocking_jobs, static_cast<std::uint64_t>(writers * rows_each));
    EXPECT_GE(st.blocking_jobs, 3 * st.handovers)
        << st.blocking_jobs << " jobs, " << st.handovers << " hand-overs";
}

TEST(BlockingPool, WorkDeferredFromACompletionRunsLaterInTheSameBatch) {
    // A completion run by the inbox may queue follow-up work for the same
    // io_context (a released connection for the next waiter): it runs after
    // the completion has returned, in the same handler, with no second trip
    // through the io_context's queue. Work for another context is refused.
    asio::io_context io;
    asio::io_context other;
    auto pool = make_pool(io, 1, 1000, 10s);
    std::vector<std::string> order;
    bool draining_inside = false;
    bool draining_other = true;
    std::atomic<int> done{0};
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] {
            draining_inside = blocking_pool::draining(&io);
            draining_other = blocking_pool::draining(&other);
            blocking_pool::defer_to_drain([&] { order.emplace_back("deferred"); });
            order.emplace_back("first completion returns");
        });
        done.fetch_add(1);
    });
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] { order.emplace_back("second completion"); });
        done.fetch_add(1);
    });
    while (done.load() != 2) {
        std::this_thread::sleep_for(1ms);
    }
    pool->join();  // the inbox is handed over: one handler on io
    EXPECT_FALSE(blocking_pool::draining(&io)) << "outside a batch";
    EXPECT_EQ(io.run_one(), 1u);
    EXPECT_TRUE(draining_inside);
    EXPECT_FALSE(draining_other);
    EXPECT_EQ(order, (std::vector<std::string>{"first completion returns", "second completion",
                                               "deferred"}));
    EXPECT_EQ(io.poll(), 0u) << "the deferred work went through the io_context's queue";
}

TEST(BlockingPool, ABatchTakesOnlySoMuchDeferredWork) {
    // Work that keeps deferring more work (a coroutine failing inline in a
    // loop on a closed engine, say) must not keep the io_context's other
    // handlers waiting: past max_deferred a batch refuses, and the caller
    // posts instead.
    asio::io_context io;
    auto pool = make_pool(io, 1, 1000, 10s);
    std::size_t runs = 0;
    bool refused = false;
    std::function<void()> step = [&] {
        ++runs;
        if (blocking_pool::draining(&io)) {
            blocking_pool::defer_to_drain(step);
        } else {
            refused = true;
        }
    };
    std::atomic<bool> delivered{false};
    pool->post([&, p = pool.get()](bool) {
        p->deliver([&] {
            ASSERT_TRUE(blocking_pool::draining(&io));
            blocking_pool::defer_to_drain(step);
        });
        delivered = true;
    });
    while (!delivered.load()) {
        std::this_thread::sleep_for(1ms);
    }
    pool->join();
    EXPECT_EQ(io.run_one(), 1u);
    EXPECT_TRUE(refused);
    EXPECT_EQ(runs, blocking_pool::max_deferred);
}

TEST(BlockingPool, AReleaseInsideABatchReachesTheWaiter) {
    // End to end: a session that gives its connection back inside a
    // completion (the inbox's batch) hands it to the statement waiting for
    // it, which then runs; the grant itself runs later in that batch
    // (BlockingPool.WorkDeferredFromACompletionRunsLaterInTheSameBatch).
    test::temp_dir dir;
    engine_options o;
    o.path = (dir.path() / "w.db").string();
    o.pool_size = 2;  // one read connection, one writer
    o.threads = 1;
    o.echo = false;
    asio::io_context io;
    auto db = create_async_engine(io.get_executor(), o);
    bool released = false;
    bool waiter_saw_it = false;
    int served = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            co_await s.execute("BEGIN");  // holds the only read connection
            // Let the second coroutine queue for it.
            co_await asio::post(io, asio::use_awaitable);
            EXPECT_EQ(co_await s.one<int>("SELECT 1"), 1);
            co_await s.execute("COMMIT");  // gives it back inside the batch
            released = true;
            ++served;
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            EXPECT_EQ(co_await s.one<int>("SELECT 2"), 2);
            waiter_saw_it = released;
            ++served;
        },
        asio::detached);
    io.run();
    EXPECT_EQ(served, 2);
    EXPECT_TRUE(waiter_saw_it) << "the waiter ran while the connection was held";
    EXPECT_EQ(db.stats().in_use, 0u);
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

// A handler that throws leaves the rest of its batch to a fresh drain. For
// post_tracked() jobs the rest is counted again, neither twice nor not at
// all: run() returns once all have run, and the count is back at 0.
void throwing_handler_leaves_the_rest(bool tracked) {
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
        auto job = [&, i, tracked, p = pool.get()](bool) {
            auto completion = [&, i] {
                ran.fetch_add(1);
                if (i == 1) {
                    throw std::runtime_error("handler failed");
                }
            };
            if (tracked) {
                p->deliver_tracked(completion);
            } else {
                p->deliver(completion);
            }
        };
        if (tracked) {
            pool->post_tracked(job);
        } else {
            pool->post(job);
        }
    }
    go = true;
    pool->join();  // all five completions are in one batch now
    EXPECT_THROW(io.run_for(20s), std::runtime_error);
    EXPECT_EQ(ran.load(), 2);
    io.restart();
    io.run_for(20s);
    EXPECT_EQ(ran.load(), 5);
    EXPECT_TRUE(io.stopped()) << "run() did not return: the count went wrong";
    EXPECT_EQ(pool->stats().tracked, 0u);
}

TEST(BlockingPool, AThrowingHandlerLeavesTheRestOfItsBatchToRun) {
    throwing_handler_leaves_the_rest(false);
}

TEST(BlockingPool, ATrackedCompletionThatThrowsLeavesTheRestTracked) {
    throwing_handler_leaves_the_rest(true);
}

TEST(BlockingPool, TrackedJobsHoldTheIoContextUntilTheirCompletionsRan) {
    // post_tracked() jobs carry no work-tracked executor: the pool holds the
    // io_context's work for them. run() must neither return before their
    // completions ran (work not taken) nor stay after (work not given back).
    asio::io_context io;
    auto pool = make_pool(io, 1, 8, 200us);
    std::atomic<int> ran{0};
    for (int i = 0; i < 3; ++i) {
        pool->post_tracked([&, p = pool.get()](bool live) {
            EXPECT_TRUE(live);
            std::this_thread::sleep_for(20ms);  // io.run() below is waiting by now
            p->deliver_tracked([&] { ran.fetch_add(1); });
        });
    }
    const auto start = std::chrono::steady_clock::now();
    io.run_for(20s);
    EXPECT_EQ(ran.load(), 3);
    EXPECT_TRUE(io.stopped()) << "run() did not return by itself: the work was kept";
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
    // Again, after the count went back to 0.
    io.restart();
    pool->post_tracked(
        [&, p = pool.get()](bool) { p->deliver_tracked([&] { ran.fetch_add(1); }); });
    io.run_for(20s);
    EXPECT_EQ(ran.load(), 4);
    EXPECT_TRUE(io.stopped());
    EXPECT_EQ(pool->stats().tracked, 0u);
    pool->join();
}

/// What the workers saw of their hold (blocking_pool::hold()), in order.
struct hold_log {
    std::mutex m;
    std::vector<std::string> lines;
    std::atomic<int> ends{0};  // the hold's end() calls
    int thing = 0;             // what is "held"
    void add(std::string line) {
        std::lock_guard lock(m);
        lines.push_back(std::move(line));
    }
    std::vector<std::string> taken() {
        std::lock_guard lock(m);
        return lines;
    }
    void clear() {
        std::lock_guard lock(m);
        lines.clear();
    }
    void begin_hold() {
        blocking_pool::hold()->begin(this, &thing, [](void* owner, void*) noexcept {
            static_cast<hold_log*>(owner)->ends.fetch_add(1);
        });
    }
};

TEST(BlockingPool, AHoldIsSharedOnlyByJobsQueuedBeforeItBeganThatMayShareIt) {
    // A read transaction kept open from one job to the next may serve only
    // jobs that were submitted before it began (their snapshot is then
    // taken after they were issued) and that asked to share it.
    asio::io_context io;
    auto pool = make_pool(io, 1, 8, 200us);
    hold_log log;
    std::atomic<bool> gate{false};
    pool->post([&](bool) {  // keeps the worker busy until A, B and D are queued
        while (!gate.load()) {
            std::this_thread::yield();
        }
    });
    pool->post(
        [&, p = pool.get()](bool) {
            worker_hold* h = blocking_pool::hold();
            log.add(fmt::format("A held={} worth={}", h->held(), h->next_shares));
            log.begin_hold();
            // C is submitted after the hold began: it must not join.
            p->post(
                [&](bool) {
                    log.add(fmt::format("C held={} ends={}", blocking_pool::hold()->held(),
                                        log.ends.load()));
                },
                false, true);
        },
        false, true);
    pool->post([&](bool) { log.add(fmt::format("B held={}", blocking_pool::hold()->held())); },
               false, true);
    gate.store(true);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (log.taken().size() < 3 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    // Nothing queued any more: the worker ends the hold before it sleeps.
    while (log.ends.load() == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(log.taken(), (std::vector<std::string>{"A held=false worth=true", "B held=true",
                                                     "C held=false ends=1"}));
    EXPECT_EQ(log.ends.load(), 1);
    EXPECT_EQ(pool->stats().shared, 1u);  // B

    // A job that does not ask to share ends the hold before it runs.
    gate.store(false);
    log.clear();
    pool->post([&](bool) {
        while (!gate.load()) {
            std::this_thread::yield();
        }
    });
    pool->post(
        [&](bool) {
            log.add(fmt::format("A2 worth={}", blocking_pool::hold()->next_shares));
            log.begin_hold();
        },
        false, true);
    pool->post([&](bool) { log.add(fmt::format("B2 held={}", blocking_pool::hold()->held())); },
               false, true);
    pool->post([&](bool) { log.add(fmt::format("D held={}", blocking_pool::hold()->held())); });
    gate.store(true);
    pool->join();  // the worker ends what it holds before it leaves
    EXPECT_EQ(log.taken(),
              (std::vector<std::string>{"A2 worth=true", "B2 held=true", "D held=false"}));
    EXPECT_EQ(log.ends.load(), 2);
    EXPECT_EQ(pool->stats().shared, 2u);
}

TEST(BlockingPool, AJobAloneInTheQueueIsNotWorthAHold) {
    asio::io_context io;
    auto pool = make_pool(io, 1, 8, 200us);
    std::promise<std::pair<bool, bool>> seen;
    pool->post(
        [&](bool) {
            worker_hold* h = blocking_pool::hold();
            seen.set_value({h->held(), h->next_shares});
        },
        false, true);
    auto f = seen.get_future();
    ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
    EXPECT_EQ(f.get(), std::make_pair(false, false));
    EXPECT_EQ(blocking_pool::hold(), nullptr);  // not on a worker
    pool->join();
}

// ---------------------------------------------------------------------------
// Spinning (blocking_pool_options::spin): a thread that ran out of work
// waits awake while work comes back quickly, and sleeps otherwise.
// ---------------------------------------------------------------------------

std::shared_ptr<blocking_pool> make_spinning_pool(asio::io_context& io,
                                                  std::chrono::microseconds spin) {
    blocking_pool_options o;
    o.threads = 2;
    o.spin = spin;
    return std::make_shared<blocking_pool>(io.get_executor(), o);
}

/// Runs `rounds` tracked jobs one after the other, each submitted by the
/// completion of the one before on the io thread (a coroutine's queries in
/// sequence); `job` runs on the worker. Returns how many completed.
int run_in_sequence(asio::io_context& io, blocking_pool& pool, int rounds,
                    const std::function<void()>& job) {
    int done = 0;
    std::function<void()> next = [&] {
        if (done == rounds) {
            return;
        }
        pool.post_tracked([&](bool live) {
            if (live) {
                job();
            }
            pool.deliver_tracked([&] {
                ++done;
                next();
            });
        });
    };
    asio::post(io, next);
    io.restart();
    io.run_for(60s);
    return done;
}

double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

TEST(BlockingPool, ThreadsWaitAwakeWhileWorkComesBackQuickly) {
    // A spin far longer than any round trip here (sanitizers included):
    // every wait of the io thread for a completion, and every wait of the
    // worker for the next job but the last, ends with the work awaited.
    asio::io_context io;
    auto pool = make_spinning_pool(io, 1s);
    constexpr int rounds = 100;
    std::atomic<int> ran{0};
    EXPECT_EQ(run_in_sequence(io, *pool, rounds, [&] { ran.fetch_add(1); }), rounds);
    EXPECT_EQ(ran.load(), rounds);
    const auto c = pool->stats();
    EXPECT_EQ(c.io_spins, static_cast<std::uint64_t>(rounds));
    EXPECT_EQ(c.io_spin_hits, c.io_spins);
    EXPECT_GE(c.worker_spins, static_cast<std::uint64_t>(rounds) - 1);
    EXPECT_GE(c.worker_spin_hits, c.worker_spins - 1);  // the last runs out of time
    EXPECT_LE(c.sleeps, 4u) << "threads slept although work came back within the spin";
    pool->join();
}

TEST(BlockingPool, NoThreadSpinsWhenSpinningIsOff) {
    asio::io_context io;
    auto pool = make_spinning_pool(io, 0us);
    EXPECT_EQ(run_in_sequence(io, *pool, 50, [] {}), 50);
    const auto c = pool->stats();
    EXPECT_EQ(c.io_spins + c.worker_spins, 0u);
    pool->join();
}

TEST(BlockingPool, TheIoThreadStopsSpinningForSlowJobs) {
    // Jobs of 20 ms against a spin of 1 ms: after the first round trip the
    // io thread sleeps through the rest instead of spinning out each wait.
    asio::io_context io;
    auto pool = make_spinning_pool(io, 1ms);
    EXPECT_EQ(run_in_sequence(io, *pool, 10, [] { std::this_thread::sleep_for(20ms); }), 10);
    const auto c = pool->stats();
    EXPECT_LE(c.io_spins, 2u);
    EXPECT_EQ(c.io_spin_hits, 0u);
    pool->join();
}

TEST(BlockingPool, AWorkerStopsSpinningWhenJobsComeSeldom) {
    // A job every 20 ms against a spin of 1 ms: the worker sleeps between
    // them after the first gaps.
    asio::io_context io;
    auto pool = make_spinning_pool(io, 1ms);
    std::atomic<int> ran{0};
    for (int i = 0; i < 10; ++i) {
        pool->post([&](bool) { ran.fetch_add(1); });
        std::this_thread::sleep_for(20ms);
    }
    pool->join();
    EXPECT_EQ(ran.load(), 10);
    EXPECT_LE(pool->stats().worker_spins, 3u);
}

TEST(BlockingPool, AnIdlePoolStopsSpinningAndUsesNoCpu) {
    // After a burst of work the threads spin for at most `spin` (50 ms
    // here), then sleep: over the next half second the process uses next
    // to no CPU (spinning threads would use about a second of it).
    asio::io_context io;
    auto pool = make_spinning_pool(io, 50ms);
    EXPECT_EQ(run_in_sequence(io, *pool, 200, [] {}), 200);
    EXPECT_TRUE(io.stopped()) << "the io_context's run() did not return after the work";
    std::this_thread::sleep_for(200ms);
    const double start = process_cpu_seconds();
    std::this_thread::sleep_for(500ms);
    const double used = process_cpu_seconds() - start;
    EXPECT_LT(used, 0.1) << "an idle pool used " << used << " s of CPU in 0.5 s";
    pool->join();
}

TEST(BlockingPool, TheEngineSpinsAsConfigured) {
    // engine_options::spin_wait reaches the pool: queries one after the
    // other wait awake with a long spin, and never with none.
    for (const auto spin : {std::chrono::microseconds(1s), std::chrono::microseconds(0)}) {
        test::temp_dir dir;
        engine_options o = small_engine(dir, 2);
        o.spin_wait = spin;
        asio::io_context io;
        auto db = create_async_engine(io.get_executor(), o);
        int sum = 0;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                for (int i = 1; i <= 30; ++i) {
                    sum += co_await s.scalar<int>("SELECT ?", i);
                }
            },
            asio::detached);
        io.run_for(60s);
        EXPECT_EQ(sum, 30 * 31 / 2);
        const auto st = db.stats();
        if (spin.count() != 0) {
            EXPECT_GE(st.io_spins, 20u);
            EXPECT_GE(st.io_spin_hits, 20u);
            EXPECT_GE(st.worker_spin_hits, 20u);
        } else {
            EXPECT_EQ(st.io_spins + st.worker_spins, 0u);
        }
        db.close();
    }
}

}  // namespace
}  // namespace asqlite
