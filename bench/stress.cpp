// asqlite-bench --stress SECONDS: 64 writers and 64 readers on one database
// for a while. Passes only when no SQLITE_BUSY / SQLITE_LOCKED (or any other
// error) reached a caller and every acknowledged write is in the database
// afterwards, with the row count matching.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "asqlite/asqlite.hpp"
#include "stress.hpp"

namespace asqlite::bench {
namespace {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

struct tally {
    std::atomic<std::uint64_t> reads{0};
    std::atomic<std::uint64_t> writes{0};
    std::atomic<std::uint64_t> busy_or_locked{0};
    std::atomic<std::uint64_t> other_errors{0};
    std::mutex mutex;
    std::vector<std::string> acknowledged;  // file_ids whose write completed
    std::string first_error;

    void fail(const std::exception& e) {
        const auto* ae = dynamic_cast<const error*>(&e);
        const auto code = ae != nullptr ? primary_code(ae->code()) : errc::internal;
        (code == errc::busy || code == errc::locked ? busy_or_locked : other_errors).fetch_add(1);
        std::lock_guard lock(mutex);
        if (first_error.empty()) {
            first_error = e.what();
        }
    }
};

asio::awaitable<void> writer(async_engine& db, tally& t, int w, clock::time_point end) {
    for (int i = 0; clock::now() < end; ++i) {
        const std::string id = fmt::format("stress-{}-{}", w, i);
        try {
            auto s = co_await db.session();  // one short session per write, as the service does
            switch (i % 3) {
                case 0: {  // an explicit transaction
                    auto tx = co_await s.begin();
                    co_await s.execute(
                        "INSERT INTO fileinfo (file_id, filename, file_path) VALUES (?, ?, ?)", id,
                        "s.bin", "/stress/s.bin");
                    co_await tx.commit();
                    break;
                }
                case 1:  // a bare write outside a transaction
                    co_await s.execute(
                        "INSERT INTO fileinfo (file_id, filename, file_path) VALUES (?, ?, ?)", id,
                        "s.bin", "/stress/s.bin");
                    break;
                default:  // an upsert in one hop
                    co_await s.write([&](connection& c) {
                        c.execute(
                            "INSERT INTO fileinfo (file_id, filename, file_path) VALUES (?, ?, ?) "
                            "ON CONFLICT(file_id) DO UPDATE SET status = 1",
                            id, "s.bin", "/stress/s.bin");
                    });
            }
            t.writes.fetch_add(1);
            std::lock_guard lock(t.mutex);
            t.acknowledged.push_back(id);
        } catch (const std::exception& e) {
            t.fail(e);
        }
    }
}

asio::awaitable<void> reader(async_engine& db, tally& t, int r, clock::time_point end) {
    std::mt19937 rng(static_cast<unsigned>(r));
    while (clock::now() < end) {
        try {
            auto s = co_await db.session();  // one session per read, as the service does
            const auto row = co_await s.one_or_none<file_info>(
                "SELECT id, file_id, filename, file_path, description, file_size, status, "
                "request_id, create_time FROM fileinfo WHERE id = ?",
                static_cast<std::int64_t>(rng() % 1000 + 1));
            (void)row;
            co_await s.scalar<std::int64_t>("SELECT count(*) FROM fileinfo");
            t.reads.fetch_add(1);
        } catch (const std::exception& e) {
            t.fail(e);
        }
    }
}

}  // namespace

int run_stress(const std::string& path, double seconds, int writers, int readers) {
    {
        engine_options so;
        so.path = path;
        so.echo = false;
        logger::global().set_level(log_level::warn);
        init_db(create_engine(so), file_info_metadata());
    }
    asio::io_context io;
    // The ASQLITE_* variables apply (ASQLITE_GROUP_COMMIT=0: writes alone).
    engine_options o = engine_options::from_env();
    o.path = path;
    auto db = create_async_engine(io.get_executor(), o);
    tally t;
    const auto start = clock::now();
    const auto end =
        start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
    for (int w = 0; w < writers; ++w) {
        asio::co_spawn(io, writer(db, t, w, end), asio::detached);
    }
    for (int r = 0; r < readers; ++r) {
        asio::co_spawn(io, reader(db, t, r, end), asio::detached);
    }
    io.run();
    const double took = std::chrono::duration<double>(clock::now() - start).count();

    // Every acknowledged write must be there; nothing else was written.
    connection check(path);
    std::uint64_t missing = 0;
    for (const auto& id : t.acknowledged) {
        if (check.scalar<std::int64_t>("SELECT count(*) FROM fileinfo WHERE file_id = ?", id) !=
            1) {
            ++missing;
        }
    }
    const auto stored = static_cast<std::uint64_t>(
        check.scalar<std::int64_t>("SELECT count(*) FROM fileinfo WHERE file_id LIKE 'stress-%'"));
    const auto st = db.stats();
    fmt::print(
        "stress: {} writers + {} readers for {:.1f} s: {} writes acknowledged ({:.0f}/s), {} reads "
        "({:.0f}/s)\n"
        "stress: BUSY/LOCKED surfaced: {}, other errors: {}, acknowledged rows missing: {}, rows "
        "stored: {}, busy retries on timers: {}, pool timeouts: {}\n",
        writers, readers, took, t.writes.load(), static_cast<double>(t.writes.load()) / took,
        t.reads.load(), static_cast<double>(t.reads.load()) / took, t.busy_or_locked.load(),
        t.other_errors.load(), missing, stored, st.busy_retries, st.timeouts);
    if (!t.first_error.empty()) {
        fmt::print("stress: first error: {}\n", t.first_error);
    }
    const bool ok = t.busy_or_locked == 0 && t.other_errors == 0 && missing == 0 &&
                    stored == t.acknowledged.size() && t.writes > 0 && t.reads > 0;
    fmt::print("stress: {}\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}

}  // namespace asqlite::bench
