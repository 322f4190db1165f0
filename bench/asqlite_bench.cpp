// asqlite-bench: throughput of the async engine on the seed service's
// workload (docs/benchmarks.md), with the same operations through raw sqlite3
// on the same file measured in the same run as the baseline.
//
// Both sides do the same work per operation: the same SQL, the same pragmas,
// every row read into a file_info with its strings copied and its timestamp
// parsed. The raw side is the best case for a blocking program: one thread,
// one connection, statements prepared once and reused. Every operation is
// checked (a read finds its row, a write adds exactly one); a run with a
// failed operation exits 1, a bad option exits 2.

#include <sqlite3.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "asqlite/async_engine.hpp"
#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/sqlite_config.hpp"
#include "stress.hpp"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

enum class workload { read, write, upsert, mixed, seq5, write_tx };
constexpr std::string_view workload_names[] = {"read",  "write", "upsert",
                                               "mixed", "seq5",  "write-tx"};
// The reads one seq5 operation makes, one after the other in one session.
constexpr std::uint64_t seq_reads = 5;

std::string_view name_of(workload w) {
    return workload_names[static_cast<int>(w)];
}

struct bench_options {
    std::vector<workload> workloads{workload::read,  workload::write, workload::upsert,
                                    workload::mixed, workload::seq5,  workload::write_tx};
    std::vector<std::size_t> concurrency{64};  // each workload runs at each
    std::size_t pool_size = 10;
    std::size_t threads = 0;  // 0: the engine's default
    std::size_t io_threads = 1;
    std::uint64_t ops = 20'000;
    double seconds = 0;  // > 0: run each phase for this long instead of --ops
    std::uint64_t rows = 10'000;
    std::size_t repeat = 1;
    std::string db;  // empty: a fresh temporary file
    std::string journal = "wal";
    std::string synchronous = "normal";
    std::uint64_t mmap_size = 0;               // > 0: PRAGMA mmap_size on every connection
    bool memory_statistics = false;            // SQLite's, for the whole process (both sides)
    std::optional<std::int64_t> spin_wait_us;  // the engine's default when unset
    bool group_commit = true;
    double idle_seconds = 0;  // > 0: the idle-CPU check (see usage)
    bool json = false;
};

std::string mmap_pragma(const bench_options& o) {
    return fmt::format("PRAGMA mmap_size = {}", o.mmap_size);
}

constexpr std::string_view usage_text = R"(usage: asqlite-bench [options]

Seeds the fileinfo table, then runs each workload through asqlite (async
engine, sessions, coroutines) and through raw sqlite3 (one thread, prepared
statements) on the same database, and prints both side by side.

  --workload W      read | write | upsert | mixed | seq5 | write-tx | all
                    (default all); a comma-separated list is accepted.
                    write: the seed's add flow, its insert committed
                    through write(fn); write-tx: the same flow with the
                    insert inside begin() ... commit(), an interactive
                    transaction (never in a group commit); seq5: one
                    operation is five reads one after the other in one
                    session, as a request handler makes them
  --concurrency N   coroutines issuing operations (default 64); a
                    comma-separated list runs each workload at each
                    (e.g. 1,64: a quiet server and a busy one)
  --pool-size N     connections of the async engine (default 10)
  --threads N       blocking-pool threads (default: the engine's, nproc >= 2)
  --io-threads N    threads running the io_context (default 1)
  --ops N           operations per workload and side (default 20000)
  --seconds S       run each workload for S seconds instead of --ops
  --rows N          rows seeded into fileinfo (default 10000)
  --repeat K        measure each workload K times, report medians (default 1)
  --db PATH         database file (default: a fresh temporary file, removed
                    at exit); an existing seeded file is reused
  --journal MODE    delete | truncate | persist | memory | wal | off (wal)
  --synchronous S   off | normal | full | extra (normal)
  --mmap BYTES      PRAGMA mmap_size on every connection of both sides
                    (default 0: off, SQLite's default)
  --memory-statistics on|off
                    SQLite's memory statistics, process-wide, so for both
                    sides (default off, as asqlite::configure_sqlite() sets
                    them; on is SQLite's default)
  --spin-wait US    engine_options::spin_wait in microseconds (default the
                    engine's, 50; 0: threads sleep as soon as they run out
                    of work)
  --group-commit on|off
                    engine_options::group_commit (default on, the engine's)
  --idle S          after the workloads, leave the engine idle for a second,
                    then report the process's CPU time over S more seconds
                    (spinning must stop: it should be about 0)
  --json            machine-readable results on stdout instead of the table
  --stress S [--db PATH]
                    instead of the comparison: 64 writers + 64 readers for S
                    seconds; fails if any error (BUSY/LOCKED included)
                    reaches a caller or an acknowledged write is missing
  --help            this text
)";

[[noreturn]] void bad_option(std::string_view message) {
    fmt::print(stderr, "asqlite-bench: {}\n(asqlite-bench --help lists the options)\n", message);
    std::exit(2);
}

template <class T>
T parse_number(std::string_view name, std::string_view text, T min, T max) {
    T v{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty() || v < min ||
        v > max) {
        bad_option(fmt::format("{} wants a number from {} to {}, got '{}'", name, min, max, text));
    }
    return v;
}

std::vector<workload> parse_workloads(std::string_view text) {
    std::vector<workload> out;
    while (true) {
        const auto comma = text.find(',');
        const auto item = text.substr(0, comma);
        if (item == "all") {
            out = {workload::read,  workload::write, workload::upsert,
                   workload::mixed, workload::seq5,  workload::write_tx};
        } else {
            const auto it = std::find(std::begin(workload_names), std::end(workload_names), item);
            if (it == std::end(workload_names)) {
                bad_option(fmt::format(
                    "--workload wants read, write, upsert, mixed, seq5, write-tx or all, got '{}'",
                    item));
            }
            const auto w = static_cast<workload>(it - std::begin(workload_names));
            if (std::find(out.begin(), out.end(), w) == out.end()) {
                out.push_back(w);
            }
        }
        if (comma == std::string_view::npos) {
            return out;
        }
        text.remove_prefix(comma + 1);
    }
}

std::string one_of(std::string_view name, std::string_view text,
                   std::initializer_list<std::string_view> allowed) {
    for (const auto a : allowed) {
        if (text == a) {
            return std::string(text);
        }
    }
    bad_option(fmt::format("{} wants one of {}, got '{}'", name, fmt::join(allowed, ", "), text));
}

bench_options parse_options(int argc, char** argv) {
    bench_options o;
    bool ops_given = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            fmt::print("{}", usage_text);
            std::exit(0);
        }
        if (arg == "--json") {
            o.json = true;
            continue;
        }
        std::string_view value;
        if (const auto eq = arg.find('='); eq != std::string_view::npos && arg.starts_with("--")) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            bad_option(arg.starts_with("--") ? fmt::format("{} needs a value", arg)
                                             : fmt::format("unexpected argument '{}'", arg));
        }
        constexpr std::size_t big = 1'000'000;
        if (arg == "--workload") {
            o.workloads = parse_workloads(value);
        } else if (arg == "--concurrency") {
            o.concurrency.clear();
            for (const auto part : std::views::split(value, ',')) {
                const std::string_view item(part.begin(), part.end());
                const auto n = parse_number<std::size_t>(arg, item, 1, 100'000);
                if (std::find(o.concurrency.begin(), o.concurrency.end(), n) ==
                    o.concurrency.end()) {
                    o.concurrency.push_back(n);
                }
            }
        } else if (arg == "--spin-wait") {
            o.spin_wait_us = parse_number<std::int64_t>(arg, value, 0, 1'000'000);
        } else if (arg == "--idle") {
            o.idle_seconds = parse_number<double>(arg, value, 0.1, 3'600.0);
        } else if (arg == "--pool-size") {
            o.pool_size = parse_number<std::size_t>(arg, value, 1, 1'000);
        } else if (arg == "--threads") {
            o.threads = parse_number<std::size_t>(arg, value, 1, 1'000);
        } else if (arg == "--io-threads") {
            o.io_threads = parse_number<std::size_t>(arg, value, 1, 1'000);
        } else if (arg == "--ops") {
            o.ops = parse_number<std::uint64_t>(arg, value, 1, big * big);
            ops_given = true;
        } else if (arg == "--seconds") {
            o.seconds = parse_number<double>(arg, value, 0.01, 86'400.0);
        } else if (arg == "--rows") {
            o.rows = parse_number<std::uint64_t>(arg, value, 1, 100 * big);
        } else if (arg == "--repeat") {
            o.repeat = parse_number<std::size_t>(arg, value, 1, 1'000);
        } else if (arg == "--db") {
            o.db = std::string(value);
        } else if (arg == "--journal") {
            o.journal =
                one_of(arg, value, {"delete", "truncate", "persist", "memory", "wal", "off"});
        } else if (arg == "--group-commit") {
            o.group_commit = one_of(arg, value, {"on", "off"}) == "on";
        } else if (arg == "--synchronous") {
            o.synchronous = one_of(arg, value, {"off", "normal", "full", "extra"});
        } else if (arg == "--mmap") {
            o.mmap_size = parse_number<std::uint64_t>(arg, value, 0, std::uint64_t{1} << 40);
        } else if (arg == "--memory-statistics") {
            o.memory_statistics = one_of(arg, value, {"on", "off"}) == "on";
        } else {
            bad_option(fmt::format("unknown option '{}'", arg));
        }
    }
    if (ops_given && o.seconds > 0) {
        bad_option("--ops and --seconds exclude each other");
    }
    if (!o.db.empty()) {
        // The raw baseline opens the same file: no :memory:, URIs or URLs.
        if (o.db == ":memory:" || o.db.starts_with("file:") || o.db.find("://") != o.db.npos) {
            bad_option(fmt::format("--db wants a plain file path, got '{}'", o.db));
        }
        const auto parent = fs::absolute(o.db).parent_path();
        std::error_code ec;
        if (!fs::is_directory(parent, ec)) {
            bad_option(fmt::format("--db: directory '{}' does not exist", parent.string()));
        }
        if (fs::is_directory(o.db, ec)) {
            bad_option(fmt::format("--db: '{}' is a directory", o.db));
        }
    }
    return o;
}

// ---------------------------------------------------------------------------
// Data: md5-shaped file ids, unique by construction
// ---------------------------------------------------------------------------

std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finaliser: a bijection
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// 32 lowercase hex digits; the first 16 are a bijection of key, so distinct
// keys give distinct ids. Seeded rows use keys 0..rows-1, writes use keys
// from a random base with the top bit set.
std::string file_id_of(std::uint64_t key) {
    return fmt::format("{:016x}{:016x}", mix64(key), mix64(~key));
}

struct new_file {
    std::string file_id;
    std::string filename;
    std::string file_path;
    std::string request_id;
    std::int64_t size = 0;
};

new_file make_new_file(std::uint64_t key) {
    new_file f;
    f.file_id = file_id_of(key);
    f.request_id = fmt::format("req-{:x}", key >> 3);
    f.filename = fmt::format("upload-{}.bin", key & 0xffff);
    f.file_path = fmt::format("/files/{}/{}", f.request_id, f.filename);
    f.size = static_cast<std::int64_t>(key % 1'000'000) + 1;
    return f;
}

constexpr std::string_view description = "uploaded by asqlite-bench";
constexpr const char* insert_sql =
    "INSERT INTO fileinfo (file_id, filename, file_path, description, file_size, status, "
    "request_id) VALUES (?, ?, ?, ?, ?, 1, ?)";
constexpr const char* update_sql = "UPDATE fileinfo SET status = 1, file_size = ? WHERE id = ?";
constexpr const char* upsert_sql =
    "INSERT INTO fileinfo (file_id, filename, file_path, description, file_size, status, "
    "request_id) VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT(file_id) DO UPDATE SET status = 1, "
    "file_size = excluded.file_size RETURNING id";
const std::string select_sql =
    fmt::format("SELECT {} FROM fileinfo WHERE file_id = ?", asqlite::file_info_columns);

/// What one measured phase does: operation k of the phase reads seeded row
/// read_index(k) or writes new file write_base + k.
struct phase_spec {
    workload kind = workload::read;
    std::size_t concurrency = 1;  // coroutines (the asqlite side)
    std::uint64_t ops = 0;        // 0: until the deadline
    double seconds = 0;
    std::uint64_t rows = 0;
    std::uint64_t read_seed = 0;
    std::uint64_t write_base = 0;

    bool is_write(std::uint64_t k) const {
        switch (kind) {
            case workload::read:
            case workload::seq5:
                return false;
            case workload::mixed:
                return k % 11 == 10;  // ten reads to one write
            default:
                return true;
        }
    }
    std::uint64_t read_index(std::uint64_t k) const { return mix64(read_seed + k) % rows; }
};

struct phase_result {
    std::uint64_t ops = 0;
    std::uint64_t writes = 0;
    std::uint64_t failures = 0;
    std::string first_failure;
    double wall_s = 0;
    double cpu_s = 0;
    double sys_s = 0;
    double main_cpu_s = 0;  // the calling thread: the io thread on the asqlite side
    double sleeps = 0;      // voluntary context switches, all threads
    // asqlite side: blocking-pool jobs, completion batches handed to the io
    // thread, and blocking threads woken for work (engine stats).
    double jobs = 0;
    double handovers = 0;
    double wakes = 0;
    double shared = 0;  // queries run in a read transaction begun for another
    double spins = 0;   // waits spent awake (workers and io thread)
    double groups = 0;  // group commits, and the writes in them
    double grouped = 0;
    double spin_hits = 0;  // of them, ended by the work awaited
    std::vector<std::int64_t> latency_ns;
};

/// A clock_gettime() clock (process or thread CPU time) in seconds.
double clock_seconds(clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// What a phase costs, read when it starts and when it ends: wall time, the
/// process's CPU and kernel time, the calling thread's CPU time (the io
/// thread on the asqlite side) and the voluntary context switches of all
/// threads (hand-offs that ended in a sleep).
class phase_meter {
  public:
    phase_meter() : start_(now()) {}
    void fill(phase_result& r) const {
        const reading end = now();
        r.wall_s = std::chrono::duration<double>(end.wall - start_.wall).count();
        r.cpu_s = end.cpu - start_.cpu;
        r.sys_s = end.sys - start_.sys;
        r.main_cpu_s = end.thread_cpu - start_.thread_cpu;
        r.sleeps = end.sleeps - start_.sleeps;
    }

  private:
    struct reading {
        steady::time_point wall;
        double cpu, sys, thread_cpu, sleeps;
    };
    static reading now() {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        return {steady::now(), clock_seconds(CLOCK_PROCESS_CPUTIME_ID),
                static_cast<double>(ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_stime.tv_usec) * 1e-6,
                clock_seconds(CLOCK_THREAD_CPUTIME_ID), static_cast<double>(ru.ru_nvcsw)};
    }
    reading start_;
};

std::int64_t spin_wait_of(const bench_options& o) {
    return o.spin_wait_us ? *o.spin_wait_us : asqlite::engine_options{}.spin_wait.count();
}

/// Shared bookkeeping of a phase: the operation counter, failures, the end.
class phase_state {
  public:
    explicit phase_state(const phase_spec& spec)
        : spec_(spec),
          deadline_(steady::now() + std::chrono::duration_cast<steady::duration>(
                                        std::chrono::duration<double>(spec.seconds))) {}

    /// The next operation to run, or nothing when the phase is over.
    std::optional<std::uint64_t> next() {
        const auto k = next_.fetch_add(1, std::memory_order_relaxed);
        if (spec_.ops != 0 ? k >= spec_.ops : steady::now() >= deadline_) {
            return std::nullopt;
        }
        return k;
    }
    void done(bool write) {
        done_.fetch_add(1, std::memory_order_relaxed);
        if (write) {
            writes_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    void fail(std::string_view what) {
        std::lock_guard lock(mutex_);
        if (failures_++ == 0) {
            first_failure_ = std::string(what);
        }
    }
    const std::atomic<std::uint64_t>& progress() const { return done_; }
    void fill(phase_result& r) {
        r.ops = done_.load();
        r.writes = writes_.load();
        std::lock_guard lock(mutex_);
        r.failures = failures_;
        r.first_failure = first_failure_;
    }

  private:
    const phase_spec& spec_;
    steady::time_point deadline_;
    std::atomic<std::uint64_t> next_{0};
    std::atomic<std::uint64_t> done_{0};
    std::atomic<std::uint64_t> writes_{0};
    std::mutex mutex_;
    std::uint64_t failures_ = 0;
    std::string first_failure_;
};

// ---------------------------------------------------------------------------
// Progress on a terminal, once the run has lasted a couple of seconds
// ---------------------------------------------------------------------------

class progress_line {
  public:
    progress_line() : enabled_(isatty(STDERR_FILENO) == 1), run_start_(steady::now()) {}

    template <class Fn>
    void run_with(std::string label, const phase_spec& spec, const std::atomic<std::uint64_t>& done,
                  Fn&& body) {
        if (!enabled_) {
            body();
            return;
        }
        std::mutex m;
        std::condition_variable cv;
        bool finished = false;
        const auto start = steady::now();
        std::thread printer([&] {
            std::unique_lock lock(m);
            bool printed = false;
            while (!cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return finished; })) {
                if (steady::now() - run_start_ < std::chrono::seconds(2)) {
                    continue;
                }
                const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
                if (spec.ops != 0) {
                    fmt::print(stderr, "\r\033[K{}: {}/{} ops", label, done.load(), spec.ops);
                } else {
                    fmt::print(stderr, "\r\033[K{}: {:.0f}/{:.0f} s, {} ops", label, elapsed,
                               spec.seconds, done.load());
                }
                printed = true;
            }
            if (printed) {
                fmt::print(stderr, "\r\033[K");
            }
        });
        try {
            body();
        } catch (...) {
            stop(m, cv, finished, printer);
            throw;
        }
        stop(m, cv, finished, printer);
    }

  private:
    static void stop(std::mutex& m, std::condition_variable& cv, bool& finished,
                     std::thread& printer) {
        {
            std::lock_guard lock(m);
            finished = true;
        }
        cv.notify_one();
        printer.join();
    }

    bool enabled_;
    steady::time_point run_start_;
};

// ---------------------------------------------------------------------------
// The asqlite side: one async engine, `concurrency` coroutines
// ---------------------------------------------------------------------------

class async_side {
  public:
    async_side(const bench_options& o, const std::string& path)
        : io_(static_cast<int>(o.io_threads)),
          io_threads_(o.io_threads),
          engine_(asqlite::create_async_engine(io_.get_executor(), engine_options(o, path))) {}

    phase_result run(const phase_spec& spec, progress_line& progress, const std::string& label) {
        phase_state state(spec);
        std::vector<std::vector<std::int64_t>> latencies(spec.concurrency);
        phase_result r;
        progress.run_with(label, spec, state.progress(), [&] {
            io_.restart();
            for (auto& l : latencies) {
                l.reserve(spec.ops != 0 ? spec.ops / spec.concurrency + 2 : 1024);
                asio::co_spawn(io_, worker(spec, state, l), asio::detached);
            }
            const phase_meter meter;
            const asqlite::pool_stats before = engine_.stats();
            std::vector<std::thread> extra;
            for (std::size_t i = 1; i < io_threads_; ++i) {
                extra.emplace_back([this] { io_.run(); });
            }
            io_.run();
            for (auto& t : extra) {
                t.join();
            }
            meter.fill(r);
            const asqlite::pool_stats after = engine_.stats();
            r.jobs = static_cast<double>(after.blocking_jobs - before.blocking_jobs);
            r.handovers = static_cast<double>(after.handovers - before.handovers);
            r.wakes = static_cast<double>(after.thread_wakes - before.thread_wakes);
            r.shared = static_cast<double>(after.shared_reads - before.shared_reads);
            r.spins = static_cast<double>(after.worker_spins + after.io_spins -
                                          before.worker_spins - before.io_spins);
            r.spin_hits = static_cast<double>(after.worker_spin_hits + after.io_spin_hits -
                                              before.worker_spin_hits - before.io_spin_hits);
            r.groups = static_cast<double>(after.group_commits - before.group_commits);
            r.grouped = static_cast<double>(after.grouped_writes - before.grouped_writes);
        });
        state.fill(r);
        for (auto& l : latencies) {
            r.latency_ns.insert(r.latency_ns.end(), l.begin(), l.end());
        }
        return r;
    }

    asqlite::pool_stats stats() const { return engine_.stats(); }

    /// The process's CPU time (s) over `seconds` with the engine idle, its
    /// io_context running (waiting on a timer, as a server's waits on its
    /// sockets), measured from one second after the last operation.
    double idle_cpu(double seconds) {
        double cpu = 0;
        io_.restart();
        asio::co_spawn(
            io_,
            [&]() -> asio::awaitable<void> {
                asio::steady_timer t(io_, std::chrono::seconds(1));
                co_await t.async_wait(asio::use_awaitable);
                const double start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
                t.expires_after(std::chrono::duration_cast<steady::duration>(
                    std::chrono::duration<double>(seconds)));
                co_await t.async_wait(asio::use_awaitable);
                cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - start;
            },
            asio::detached);
        io_.run();
        return cpu;
    }

  private:
    static asqlite::engine_options engine_options(const bench_options& o, const std::string& path) {
        asqlite::engine_options e;
        e.path = path;
        e.pool_size = o.pool_size;
        e.threads = o.threads;
        e.journal_mode = o.journal;
        e.synchronous = o.synchronous;
        e.echo = false;
        e.group_commit = o.group_commit;
        if (o.spin_wait_us) {
            e.spin_wait = std::chrono::microseconds(*o.spin_wait_us);
        }
        if (o.mmap_size > 0) {
            e.on_connect = [sql = mmap_pragma(o)](asqlite::connection& c) { c.execute(sql); };
        }
        return e;
    }

    asio::awaitable<void> worker(const phase_spec& spec, phase_state& state,
                                 std::vector<std::int64_t>& latencies) {
        while (const auto k = state.next()) {
            const bool write = spec.is_write(*k);
            const auto t0 = steady::now();
            try {
                if (spec.kind == workload::seq5) {
                    co_await read_sequence(spec, *k, state);
                } else if (!write) {
                    co_await read(spec, *k, state);
                } else if (spec.kind == workload::upsert) {
                    co_await upsert(spec, *k, state);
                } else {
                    co_await add_flow(spec, *k, state, spec.kind == workload::write_tx);
                }
            } catch (const std::exception& e) {
                state.fail(
                    fmt::format("{} operation {}: {}", write ? "write" : "read", *k, e.what()));
            }
            latencies.push_back(std::chrono::nanoseconds(steady::now() - t0).count());
            state.done(write);
        }
    }

    // get_by_file_id, one session per operation as the seed service does.
    asio::awaitable<std::optional<asqlite::file_info>> get_by_file_id(std::string_view id) {
        auto s = co_await engine_.session();
        co_return co_await s.one_or_none<asqlite::file_info>(select_sql, id);
    }

    asio::awaitable<void> read(const phase_spec& spec, std::uint64_t k, phase_state& state) {
        const std::uint64_t key = spec.read_index(k);
        const std::string id = file_id_of(key);
        const auto f = co_await get_by_file_id(id);
        if (!f || f->file_id != id) {
            state.fail(fmt::format("read {}: seeded row {} not found", k, id));
        }
    }

    // A handler's reads, one after the other in one session.
    asio::awaitable<void> read_sequence(const phase_spec& spec, std::uint64_t k,
                                        phase_state& state) {
        auto s = co_await engine_.session();
        for (std::uint64_t i = 0; i < seq_reads; ++i) {
            const std::string id = file_id_of(spec.read_index(k * seq_reads + i));
            const auto f = co_await s.one_or_none<asqlite::file_info>(select_sql, id);
            if (!f || f->file_id != id) {
                state.fail(fmt::format("read {}.{}: seeded row {} not found", k, i, id));
            }
        }
    }

    // The seed's add(): select; insert or update, committed; select again.
    // The write is one write(fn), or with `interactive` statements inside
    // begin() ... commit().
    asio::awaitable<void> add_flow(const phase_spec& spec, std::uint64_t k, phase_state& state,
                                   bool interactive) {
        const new_file nf = make_new_file(spec.write_base + k);
        const auto before = co_await get_by_file_id(nf.file_id);
        auto s = co_await engine_.session();
        if (!interactive) {
            auto store = [&](asqlite::connection& c) {
                if (before) {
                    c.execute(update_sql, nf.size, *before->id);
                } else {
                    c.execute(insert_sql, std::string_view(nf.file_id),
                              std::string_view(nf.filename), std::string_view(nf.file_path),
                              description, nf.size, std::string_view(nf.request_id));
                }
            };
            co_await s.write(store);
        } else {
            auto tx = co_await s.begin();
            if (before) {
                co_await s.execute(update_sql, nf.size, *before->id);
            } else {
                co_await s.execute(insert_sql, std::string_view(nf.file_id),
                                   std::string_view(nf.filename), std::string_view(nf.file_path),
                                   description, nf.size, std::string_view(nf.request_id));
            }
            co_await tx.commit();
        }
        const auto after = co_await get_by_file_id(nf.file_id);
        if (before) {
            state.fail(fmt::format("write {}: new file {} already present", k, nf.file_id));
        } else if (!after || after->status != 1 || after->file_size != nf.size) {
            state.fail(fmt::format("write {}: file {} not stored", k, nf.file_id));
        }
    }

    asio::awaitable<void> upsert(const phase_spec& spec, std::uint64_t k, phase_state& state) {
        const new_file nf = make_new_file(spec.write_base + k);
        auto s = co_await engine_.session();
        const std::int64_t id = co_await s.write([&](asqlite::connection& c) {
            return c.one<std::int64_t>(upsert_sql, nf.file_id, nf.filename, nf.file_path,
                                       description, nf.size, nf.request_id);
        });
        if (id <= 0) {
            state.fail(fmt::format("upsert {}: no id returned", k));
        }
    }

    asio::io_context io_;
    std::size_t io_threads_;
    asqlite::async_engine engine_;
};

// ---------------------------------------------------------------------------
// The raw side: sqlite3 C API, one thread, prepared statements reused
// ---------------------------------------------------------------------------

// split: reads on a connection of their own, as asqlite's read connections
// are apart from its writer. SQLite drops a connection's page cache when it
// starts a read transaction after another connection has committed, so this
// side measures that cost of the architecture with nothing of asqlite in it.
class raw_side {
  public:
    raw_side(const bench_options& o, const std::string& path, bool split = false) {
        db_ = open(o, path);
        reader_ = split ? open(o, path) : db_;
        select_ = prepare(select_sql, reader_);
        insert_ = prepare(insert_sql);
        update_ = prepare(update_sql);
        upsert_ = prepare(upsert_sql);
        begin_ = prepare("BEGIN IMMEDIATE");
        commit_ = prepare("COMMIT");
    }
    ~raw_side() {
        for (auto* s : {select_, insert_, update_, upsert_, begin_, commit_}) {
            sqlite3_finalize(s);
        }
        if (reader_ != db_) {
            sqlite3_close_v2(reader_);
        }
        sqlite3_close_v2(db_);
    }
    raw_side(const raw_side&) = delete;
    raw_side& operator=(const raw_side&) = delete;

    phase_result run(const phase_spec& spec, progress_line& progress, const std::string& label) {
        phase_state state(spec);
        phase_result r;
        if (spec.ops != 0) {
            r.latency_ns.reserve(spec.ops);
        }
        progress.run_with(label, spec, state.progress(), [&] {
            const phase_meter meter;
            while (const auto k = state.next()) {
                const bool write = spec.is_write(*k);
                const auto op0 = steady::now();
                try {
                    if (spec.kind == workload::seq5) {
                        for (std::uint64_t i = 0; i < seq_reads; ++i) {
                            read(spec, *k * seq_reads + i, state);
                        }
                    } else if (!write) {
                        read(spec, *k, state);
                    } else if (spec.kind == workload::upsert) {
                        upsert(spec, *k, state);
                    } else {
                        add_flow(spec, *k, state);
                    }
                } catch (const std::exception& e) {
                    if (sqlite3_get_autocommit(db_) == 0) {
                        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
                    }
                    state.fail(fmt::format("raw {} operation {}: {}", write ? "write" : "read", *k,
                                           e.what()));
                }
                r.latency_ns.push_back(std::chrono::nanoseconds(steady::now() - op0).count());
                state.done(write);
            }
            meter.fill(r);
        });
        state.fill(r);
        return r;
    }

    std::int64_t count_rows() {
        sqlite3_stmt* s = prepare("SELECT count(*) FROM fileinfo");
        const int rc = sqlite3_step(s);
        const std::int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
        sqlite3_finalize(s);
        check(rc == SQLITE_ROW ? SQLITE_OK : rc, "count");
        return n;
    }

  private:
    static void check(int rc, std::string_view what, sqlite3* db) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
            throw std::runtime_error(
                fmt::format("sqlite3 {}: {}", what, db ? sqlite3_errmsg(db) : "no connection"));
        }
    }
    void check(int rc, std::string_view what) const { check(rc, what, db_); }
    static void exec(const std::string& sql, sqlite3* db) {
        check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), sql, db);
    }
    /// A connection with the pragmas asqlite applies to its own.
    static sqlite3* open(const bench_options& o, const std::string& path) {
        sqlite3* db = nullptr;
        const int rc = sqlite3_open_v2(path.c_str(), &db,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
        try {
            check(rc, "open", db);
            exec(fmt::format("PRAGMA journal_mode = {}", o.journal), db);
            exec(fmt::format("PRAGMA synchronous = {}", o.synchronous), db);
            exec("PRAGMA foreign_keys = ON", db);
            exec("PRAGMA busy_timeout = 5000", db);
            if (o.mmap_size > 0) {
                exec(mmap_pragma(o), db);
            }
        } catch (...) {
            sqlite3_close_v2(db);
            throw;
        }
        return db;
    }
    sqlite3_stmt* prepare(std::string_view sql, sqlite3* db = nullptr) {
        db = db != nullptr ? db : db_;
        sqlite3_stmt* s = nullptr;
        check(sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                 SQLITE_PREPARE_PERSISTENT, &s, nullptr),
              sql, db);
        return s;
    }
    void bind_text(sqlite3_stmt* s, int i, std::string_view v) {
        check(sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC), "bind",
              sqlite3_db_handle(s));
    }
    void run_done(sqlite3_stmt* s, std::string_view what) {
        const int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            check(rc == SQLITE_ROW ? SQLITE_MISUSE : rc, what);
        }
    }

    static std::string text(sqlite3_stmt* s, int i) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
        return std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
    }
    static std::optional<std::string> opt_text(sqlite3_stmt* s, int i) {
        if (sqlite3_column_type(s, i) == SQLITE_NULL) {
            return std::nullopt;
        }
        return text(s, i);
    }
    static std::optional<std::int64_t> opt_int(sqlite3_stmt* s, int i) {
        if (sqlite3_column_type(s, i) == SQLITE_NULL) {
            return std::nullopt;
        }
        return sqlite3_column_int64(s, i);
    }

    // The same materialisation as asqlite's: all nine columns, strings
    // copied, create_time parsed.
    std::optional<asqlite::file_info> get_by_file_id(std::string_view id) {
        bind_text(select_, 1, id);
        int rc = sqlite3_step(select_);
        std::optional<asqlite::file_info> out;
        if (rc == SQLITE_ROW) {
            auto& f = out.emplace();
            f.id = opt_int(select_, 0);
            f.file_id = opt_text(select_, 1);
            f.filename = text(select_, 2);
            f.file_path = text(select_, 3);
            f.description = opt_text(select_, 4);
            f.file_size = opt_int(select_, 5);
            f.status = sqlite3_column_int64(select_, 6);
            f.request_id = opt_text(select_, 7);
            const auto* ts = reinterpret_cast<const char*>(sqlite3_column_text(select_, 8));
            f.create_time = asqlite::parse_timestamp(
                std::string_view(ts, static_cast<std::size_t>(sqlite3_column_bytes(select_, 8))));
            rc = sqlite3_step(select_);
        }
        sqlite3_reset(select_);
        if (rc != SQLITE_DONE) {
            check(rc == SQLITE_ROW ? SQLITE_MISUSE : rc, "select", reader_);
        }
        return out;
    }

    void read(const phase_spec& spec, std::uint64_t k, phase_state& state) {
        const std::string id = file_id_of(spec.read_index(k));
        const auto f = get_by_file_id(id);
        if (!f || f->file_id != id) {
            state.fail(fmt::format("raw read {}: seeded row {} not found", k, id));
        }
    }

    void bind_new_file(sqlite3_stmt* s, const new_file& nf) {
        bind_text(s, 1, nf.file_id);
        bind_text(s, 2, nf.filename);
        bind_text(s, 3, nf.file_path);
        bind_text(s, 4, description);
        check(sqlite3_bind_int64(s, 5, nf.size), "bind");
        bind_text(s, 6, nf.request_id);
    }

    void add_flow(const phase_spec& spec, std::uint64_t k, phase_state& state) {
        const new_file nf = make_new_file(spec.write_base + k);
        const auto before = get_by_file_id(nf.file_id);
        run_done(begin_, "BEGIN IMMEDIATE");
        if (before) {
            check(sqlite3_bind_int64(update_, 1, nf.size), "bind");
            check(sqlite3_bind_int64(update_, 2, *before->id), "bind");
            run_done(update_, "update");
        } else {
            bind_new_file(insert_, nf);
            run_done(insert_, "insert");
        }
        run_done(commit_, "COMMIT");
        const auto after = get_by_file_id(nf.file_id);
        if (before) {
            state.fail(fmt::format("raw write {}: new file {} already present", k, nf.file_id));
        } else if (!after || after->status != 1 || after->file_size != nf.size) {
            state.fail(fmt::format("raw write {}: file {} not stored", k, nf.file_id));
        }
    }

    void upsert(const phase_spec& spec, std::uint64_t k, phase_state& state) {
        const new_file nf = make_new_file(spec.write_base + k);
        run_done(begin_, "BEGIN IMMEDIATE");
        bind_new_file(upsert_, nf);
        int rc = sqlite3_step(upsert_);
        std::int64_t id = 0;
        if (rc == SQLITE_ROW) {
            id = sqlite3_column_int64(upsert_, 0);
            rc = sqlite3_step(upsert_);
        }
        sqlite3_reset(upsert_);
        check(rc == SQLITE_DONE ? SQLITE_OK : (rc == SQLITE_ROW ? SQLITE_MISUSE : rc), "upsert");
        run_done(commit_, "COMMIT");
        if (id <= 0) {
            state.fail(fmt::format("raw upsert {}: no id returned", k));
        }
    }

    sqlite3* db_ = nullptr;
    sqlite3* reader_ = nullptr;  // db_, or the reads' own connection (split)
    sqlite3_stmt* select_ = nullptr;
    sqlite3_stmt* insert_ = nullptr;
    sqlite3_stmt* update_ = nullptr;
    sqlite3_stmt* upsert_ = nullptr;
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
};

// ---------------------------------------------------------------------------
// Seeding, through the synchronous engine (init_db), echo off
// ---------------------------------------------------------------------------

void seed(const bench_options& o, const std::string& path) {
    asqlite::engine_options eo;
    eo.path = path;
    eo.echo = false;
    eo.journal_mode = o.journal;
    eo.synchronous = o.synchronous;
    const auto engine = asqlite::create_engine(eo);
    asqlite::logger::global().set_level(asqlite::log_level::warn);  // no init_db line
    asqlite::init_db(engine, asqlite::file_info_metadata());
    auto c = engine.connect();
    const auto last = c.one_or_none<std::int64_t>("SELECT id FROM fileinfo WHERE file_id = ?",
                                                  file_id_of(o.rows - 1));
    if (last) {
        return;  // seeded by an earlier run (rows are inserted in key order)
    }
    auto tx = c.begin();
    for (std::uint64_t i = 0; i < o.rows; ++i) {
        const std::string request_id = fmt::format("seed-{}", i / 10);
        const std::string filename = fmt::format("file-{}.bin", i);
        c.execute(
            "INSERT OR IGNORE INTO fileinfo (file_id, filename, file_path, description, "
            "file_size, status, request_id) VALUES (?, ?, ?, ?, ?, 0, ?)",
            file_id_of(i), filename, fmt::format("/files/{}/{}", request_id, filename),
            std::string_view("seeded by asqlite-bench"), static_cast<std::int64_t>(i * 37 + 100),
            request_id);
    }
    tx.commit();
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

struct side_summary {
    double ops_per_s = 0;
    double p50_us = 0;
    double p99_us = 0;
    double max_us = 0;
    double cpu_us_per_op = 0;
    double sys_us_per_op = 0;
    double main_us_per_op = 0;
    double sleeps_per_op = 0;
    double batch = 0;          // blocking jobs per completion hand-over (asqlite)
    double wakes_per_op = 0;   // blocking threads woken for work (asqlite)
    double shared_per_op = 0;  // queries that shared a read transaction (asqlite)
    double spins_per_op = 0;   // waits spent awake (asqlite)
    double spin_hit = 0;       // the share of them that the awaited work ended
    double group = 0;          // writes per commit on the writer (asqlite; 1: none shared)
    std::uint64_t ops = 0;
};

side_summary summarise(phase_result& r) {
    side_summary s;
    s.ops = r.ops;
    s.ops_per_s = r.wall_s > 0 ? static_cast<double>(r.ops) / r.wall_s : 0;
    s.cpu_us_per_op = r.ops > 0 ? r.cpu_s * 1e6 / static_cast<double>(r.ops) : 0;
    s.sys_us_per_op = r.ops > 0 ? r.sys_s * 1e6 / static_cast<double>(r.ops) : 0;
    s.main_us_per_op = r.ops > 0 ? r.main_cpu_s * 1e6 / static_cast<double>(r.ops) : 0;
    s.sleeps_per_op = r.ops > 0 ? r.sleeps / static_cast<double>(r.ops) : 0;
    s.batch = r.handovers > 0 ? r.jobs / r.handovers : 0;
    s.wakes_per_op = r.ops > 0 ? r.wakes / static_cast<double>(r.ops) : 0;
    s.shared_per_op = r.ops > 0 ? r.shared / static_cast<double>(r.ops) : 0;
    s.spins_per_op = r.ops > 0 ? r.spins / static_cast<double>(r.ops) : 0;
    s.spin_hit = r.spins > 0 ? r.spin_hits / r.spins : 0;
    // Writes alone count one commit each; a group, one for all of its own.
    if (r.writes > 0) {
        const double commits = static_cast<double>(r.writes) - r.grouped + r.groups;
        s.group = commits > 0 ? static_cast<double>(r.writes) / commits : 0;
    }
    auto& v = r.latency_ns;
    if (!v.empty()) {
        std::sort(v.begin(), v.end());
        const auto at = [&](double q) {
            const auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
            return static_cast<double>(v[std::min(i, v.size() - 1)]) / 1e3;
        };
        s.p50_us = at(0.50);
        s.p99_us = at(0.99);
        s.max_us = static_cast<double>(v.back()) / 1e3;
    }
    return s;
}

struct repetition {
    side_summary async;
    side_summary raw;
    std::optional<side_summary> split;  // raw with a read connection apart (has_split)
    double ratio() const { return raw.ops_per_s > 0 ? async.ops_per_s / raw.ops_per_s : 0; }
    double p50_ratio() const { return raw.p50_us > 0 ? async.p50_us / raw.p50_us : 0; }
    double overhead_us() const { return async.cpu_us_per_op - raw.cpu_us_per_op; }
    double overhead_over_split_us() const {
        return split ? async.cpu_us_per_op - split->cpu_us_per_op : 0;
    }
};

/// Workloads whose reads follow other connections' commits: there the
/// split raw side runs too (see raw_side).
bool has_split(workload w) {
    return w == workload::mixed || w == workload::write;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n == 0 ? 0 : (n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

template <class F>
double median_of(const std::vector<repetition>& reps, F&& field) {
    std::vector<double> v;
    for (const auto& r : reps) {
        v.push_back(field(r));
    }
    return median(std::move(v));
}

template <class Side>
side_summary median_side(const std::vector<repetition>& reps, Side repetition::*field) {
    const auto side = [field](const repetition& r) -> const side_summary& {
        if constexpr (std::is_same_v<Side, side_summary>) {
            return r.*field;
        } else {
            return *(r.*field);
        }
    };
    side_summary s;
    s.ops_per_s = median_of(reps, [&](const repetition& r) { return side(r).ops_per_s; });
    s.p50_us = median_of(reps, [&](const repetition& r) { return side(r).p50_us; });
    s.p99_us = median_of(reps, [&](const repetition& r) { return side(r).p99_us; });
    s.cpu_us_per_op = median_of(reps, [&](const repetition& r) { return side(r).cpu_us_per_op; });
    s.sys_us_per_op = median_of(reps, [&](const repetition& r) { return side(r).sys_us_per_op; });
    s.main_us_per_op = median_of(reps, [&](const repetition& r) { return side(r).main_us_per_op; });
    s.sleeps_per_op = median_of(reps, [&](const repetition& r) { return side(r).sleeps_per_op; });
    s.batch = median_of(reps, [&](const repetition& r) { return side(r).batch; });
    s.wakes_per_op = median_of(reps, [&](const repetition& r) { return side(r).wakes_per_op; });
    s.shared_per_op = median_of(reps, [&](const repetition& r) { return side(r).shared_per_op; });
    s.spins_per_op = median_of(reps, [&](const repetition& r) { return side(r).spins_per_op; });
    s.spin_hit = median_of(reps, [&](const repetition& r) { return side(r).spin_hit; });
    s.group = median_of(reps, [&](const repetition& r) { return side(r).group; });
    for (const auto& r : reps) {
        s.max_us = std::max(s.max_us, side(r).max_us);
        s.ops += side(r).ops;
    }
    return s;
}

struct workload_result {
    workload kind;
    std::size_t concurrency;
    std::vector<repetition> reps;
    side_summary async;
    side_summary raw;
    std::optional<side_summary> split;
    double ratio = 0;        // median over repetitions
    double p50_ratio = 0;    // asqlite's p50 over raw's, median over repetitions
    double overhead_us = 0;  // median over repetitions
    double overhead_over_split_us = 0;
};

// The performance issues' targets, by concurrency: a quiet server (one
// coroutine) and a busy one (64 or more); none in between. write and upsert
// (group commit, issue 23) are targeted for a busy server by synchronous
// setting; write-tx and seq5 are reported, not targeted.
bool quiet(std::size_t concurrency) {
    return concurrency == 1;
}
bool busy(std::size_t concurrency) {
    return concurrency >= 64;
}
std::optional<double> ratio_target(workload w, std::size_t concurrency, const bench_options& o) {
    if (!quiet(concurrency) && !busy(concurrency)) {
        return std::nullopt;
    }
    const bool syncs = o.synchronous == "full" || o.synchronous == "extra";
    switch (w) {
        case workload::read:
            return quiet(concurrency) ? 0.5 : 2.0;
        case workload::mixed:
            return quiet(concurrency) ? 0.4 : 1.0;
        case workload::write:
        case workload::upsert:
            if (busy(concurrency) && o.synchronous != "off") {
                return syncs ? 3.0 : 1.5;
            }
            return std::nullopt;
        default:
            return std::nullopt;
    }
}
// A quiet server's read: its p50 at most this many times raw's.
constexpr double quiet_p50_target = 2.0;
bool p50_targeted(workload w, std::size_t concurrency) {
    return w == workload::read && quiet(concurrency);
}
// CPU per operation over raw's, for a busy server (with few coroutines the
// threads that wait awake spend CPU on it: reported, not targeted).
constexpr double overhead_target_us = 5.0;
bool overhead_targeted(workload w, std::size_t concurrency) {
    return (w == workload::read || w == workload::mixed) && busy(concurrency);
}

void print_table(const bench_options& o, const std::string& path, std::size_t threads,
                 const std::vector<workload_result>& results, std::optional<double> idle_cpu) {
    fmt::print(
        "asqlite-bench: {} rows in {} (journal {}, synchronous {}{}{})\n"
        "asqlite: conc coroutines, pool {}, {} blocking threads, {} io thread(s), spin_wait {} "
        "us; raw: 1 thread, 1 connection; raw-split: the same, reads on a 2nd connection\n",
        o.rows, path, o.journal, o.synchronous,
        o.mmap_size > 0 ? fmt::format(", mmap_size {}", o.mmap_size) : std::string(),
        o.memory_statistics ? ", SQLite memory statistics on" : "", o.pool_size, threads,
        o.io_threads, spin_wait_of(o));
    fmt::print("{}; {} repetition(s), figures are medians\n\n",
               o.seconds > 0 ? fmt::format("{} s per workload and side", o.seconds)
                             : fmt::format("{} ops per workload and side", o.ops),
               o.repeat);
    fmt::print(
        "{:<8} {:>4} {:<9} {:>10} {:>9} {:>9} {:>10} {:>11} {:>9} {:>11} {:>9} {:>6} {:>7} "
        "{:>9} {:>5}\n",
        "workload", "conc", "side", "ops/s", "p50 us", "p99 us", "max us", "CPU us/op", "of it sys",
        "io thread", "sleeps/op", "batch", "shared", "spins/op", "group");
    for (const auto& w : results) {
        std::vector<std::pair<const char*, side_summary>> sides{{"asqlite", w.async},
                                                                {"raw", w.raw}};
        if (w.split) {
            sides.emplace_back("raw-split", *w.split);
        }
        for (const auto& [label, s] : sides) {
            const bool async_side = s.batch > 0;
            fmt::print(
                "{:<8} {:>4} {:<9} {:>10.0f} {:>9.1f} {:>9.1f} {:>10.1f} {:>11.2f} {:>9.2f} "
                "{:>11.2f} {:>9.2f} {:>6} {:>7} {:>9} {:>5}\n",
                name_of(w.kind), w.concurrency, label, s.ops_per_s, s.p50_us, s.p99_us, s.max_us,
                s.cpu_us_per_op, s.sys_us_per_op, s.main_us_per_op, s.sleeps_per_op,
                async_side ? fmt::format("{:.1f}", s.batch) : std::string("-"),
                async_side ? fmt::format("{:.2f}", s.shared_per_op) : std::string("-"),
                async_side ? fmt::format("{:.2f}/{:.0f}%", s.spins_per_op, 100 * s.spin_hit)
                           : std::string("-"),
                async_side && s.group > 0 ? fmt::format("{:.1f}", s.group) : std::string("-"));
        }
        const auto met = [](bool yes) { return yes ? "met" : "MISSED"; };
        std::string verdict;
        if (const auto t = ratio_target(w.kind, w.concurrency, o)) {
            verdict = fmt::format(" (target >= {}: {})", *t, met(w.ratio >= *t));
        }
        std::string p50_verdict;
        if (p50_targeted(w.kind, w.concurrency)) {
            p50_verdict = fmt::format("; p50 {:.2f} x raw's (target <= {}: {})", w.p50_ratio,
                                      quiet_p50_target, met(w.p50_ratio <= quiet_p50_target));
        }
        std::string overhead_verdict;
        if (overhead_targeted(w.kind, w.concurrency)) {
            overhead_verdict = fmt::format(" (target <= {} us: {})", overhead_target_us,
                                           met(w.overhead_us <= overhead_target_us));
        }
        fmt::print("{:<8} ratio asqlite/raw {:.2f}{}{}; CPU overhead {:+.2f} us/op{}\n", "",
                   w.ratio, verdict, p50_verdict, w.overhead_us, overhead_verdict);
        if (w.split) {
            fmt::print(
                "{:<8} of it SQLite's, for reads apart from the writer (raw-split - raw): "
                "{:+.2f} us/op; asqlite over raw-split: {:+.2f} us/op\n",
                "", w.split->cpu_us_per_op - w.raw.cpu_us_per_op, w.overhead_over_split_us);
        }
        fmt::print("\n");
    }
    if (idle_cpu) {
        fmt::print("idle: process CPU {:.2f} ms over {} s with the engine idle\n", *idle_cpu * 1e3,
                   o.idle_seconds);
    }
}

std::string json_side(const side_summary& s) {
    return fmt::format(
        R"({{"ops": {}, "ops_per_s": {:.1f}, "p50_us": {:.2f}, "p99_us": {:.2f}, "max_us": {:.2f}, "cpu_us_per_op": {:.3f}, "sys_us_per_op": {:.3f}, "io_thread_cpu_us_per_op": {:.3f}, "sleeps_per_op": {:.3f}, "jobs_per_handover": {:.2f}, "wakes_per_op": {:.3f}, "shared_reads_per_op": {:.3f}, "spins_per_op": {:.3f}, "spin_hit_share": {:.3f}, "writes_per_commit": {:.2f}}})",
        s.ops, s.ops_per_s, s.p50_us, s.p99_us, s.max_us, s.cpu_us_per_op, s.sys_us_per_op,
        s.main_us_per_op, s.sleeps_per_op, s.batch, s.wakes_per_op, s.shared_per_op, s.spins_per_op,
        s.spin_hit, s.group);
}

std::string json_escape(std::string_view text) {
    std::string out;
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
            out += c;
        }
    }
    return out;
}

void print_json(const bench_options& o, const std::string& path, std::size_t threads,
                const std::vector<workload_result>& results, std::optional<double> idle_cpu) {
    fmt::print(
        "{{\"config\": {{\"rows\": {}, \"db\": \"{}\", \"journal\": \"{}\", \"synchronous\": "
        "\"{}\", \"mmap_size\": {}, \"memory_statistics\": {}, \"concurrency\": [{}], "
        "\"pool_size\": {}, \"threads\": {}, \"io_threads\": {}, \"spin_wait_us\": {}, "
        "\"ops\": {}, \"seconds\": {}, \"repeat\": {}, \"hardware_threads\": {}}},\n"
        " \"idle_cpu_s\": {}, \"idle_seconds\": {},\n"
        " \"workloads\": [",
        o.rows, json_escape(path), o.journal, o.synchronous, o.mmap_size, o.memory_statistics,
        fmt::join(o.concurrency, ", "), o.pool_size, threads, o.io_threads, spin_wait_of(o),
        o.seconds > 0 ? 0 : o.ops, o.seconds, o.repeat, std::thread::hardware_concurrency(),
        idle_cpu ? fmt::format("{:.6f}", *idle_cpu) : "null", o.idle_seconds);
    bool first = true;
    for (const auto& w : results) {
        std::vector<std::string> reps;
        for (const auto& r : w.reps) {
            reps.push_back(fmt::format(
                R"({{"asqlite": {}, "raw": {}, "raw_split": {}, "ratio": {:.4f}, "cpu_overhead_us": {:.3f}}})",
                json_side(r.async), json_side(r.raw), r.split ? json_side(*r.split) : "null",
                r.ratio(), r.overhead_us()));
        }
        const auto target = ratio_target(w.kind, w.concurrency, o);
        fmt::print(
            "{}\n  {{\"workload\": \"{}\", \"concurrency\": {}, \"asqlite\": {}, \"raw\": {}, "
            "\"raw_split\": {}, \"ratio\": {:.4f}, \"ratio_target\": {}, \"p50_ratio\": {:.4f}, "
            "\"p50_ratio_target\": {}, \"cpu_overhead_us\": {:.3f}, "
            "\"cpu_overhead_over_split_us\": {}, \"cpu_overhead_target_us\": {}, "
            "\"repetitions\": [{}]}}",
            first ? "" : ",", name_of(w.kind), w.concurrency, json_side(w.async), json_side(w.raw),
            w.split ? json_side(*w.split) : "null", w.ratio,
            target ? fmt::format("{}", *target) : "null", w.p50_ratio,
            p50_targeted(w.kind, w.concurrency) ? fmt::format("{}", quiet_p50_target) : "null",
            w.overhead_us, w.split ? fmt::format("{:.3f}", w.overhead_over_split_us) : "null",
            overhead_targeted(w.kind, w.concurrency) ? fmt::format("{}", overhead_target_us)
                                                     : "null",
            fmt::join(reps, ", "));
        first = false;
    }
    fmt::print("\n ]}}\n");
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// A fresh temporary directory for the default database, removed at exit.
class temp_db {
  public:
    temp_db() {
        std::string pattern = (fs::temp_directory_path() / "asqlite-bench-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("cannot create a temporary directory");
        }
        dir_ = pattern;
    }
    ~temp_db() {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    temp_db(const temp_db&) = delete;
    temp_db& operator=(const temp_db&) = delete;
    std::string path() const { return (dir_ / "bench.db").string(); }

  private:
    fs::path dir_;
};

int run(const bench_options& o) {
    std::optional<temp_db> temp;
    std::string path = o.db;
    if (path.empty()) {
        temp.emplace();
        path = temp->path();
    }
    seed(o, path);

    const std::size_t threads =
        o.threads != 0 ? o.threads : std::max<std::size_t>(2, std::thread::hardware_concurrency());
    async_side async(o, path);
    raw_side raw(o, path);
    raw_side split(o, path, true);
    progress_line progress;

    // New files get keys from a random base with the top bit set (never a
    // seeded key); each phase takes its own block, so both sides insert.
    std::random_device rd;
    const std::uint64_t nonce = ((std::uint64_t{rd()} << 32) | rd()) | (std::uint64_t{1} << 63);
    std::uint64_t block = 0;
    const auto next_base = [&] {
        return (nonce & ~((std::uint64_t{1} << 40) - 1)) + (++block << 32);
    };

    bool failed = false;
    const auto run_phase = [&](auto& side, const phase_spec& spec, const std::string& label,
                               bool measured) {
        const std::int64_t before = raw.count_rows();
        phase_result r = side.run(spec, progress, label);
        const std::int64_t added = raw.count_rows() - before;
        if (r.failures != 0) {
            fmt::print(stderr, "asqlite-bench: {}: {} failed operation(s); first: {}\n", label,
                       r.failures, r.first_failure);
            failed = true;
        }
        if (added != static_cast<std::int64_t>(r.writes)) {
            fmt::print(stderr, "asqlite-bench: {}: {} writes but {} rows added\n", label, r.writes,
                       added);
            failed = true;
        }
        if (measured && r.ops == 0) {
            fmt::print(stderr, "asqlite-bench: {}: no operation completed\n", label);
            failed = true;
        }
        return summarise(r);
    };

    std::vector<workload_result> results;
    for (const workload w : o.workloads) {
        for (const std::size_t conc : o.concurrency) {
            phase_spec spec;
            spec.kind = w;
            spec.concurrency = conc;
            // The phase's name: the workload, and the concurrency when several run.
            const std::string name = o.concurrency.size() > 1
                                         ? fmt::format("{}@{}", name_of(w), conc)
                                         : std::string(name_of(w));
            spec.rows = o.rows;
            spec.ops = o.seconds > 0 ? 0 : o.ops;
            spec.seconds = o.seconds;

            // Warm-up, not measured: opens the connections the workers use, fills the
            // statement caches and the page cache on both sides.
            phase_spec warm = spec;
            warm.ops =
                std::min<std::uint64_t>(std::max<std::uint64_t>(spec.ops / 10, 2 * conc), 2'000);
            warm.seconds = 0;
            warm.read_seed = rd();
            warm.write_base = next_base();
            run_phase(async, warm, fmt::format("{} warm-up asqlite", name), false);
            warm.write_base = next_base();
            run_phase(raw, warm, fmt::format("{} warm-up raw", name), false);
            if (has_split(w)) {
                warm.write_base = next_base();
                run_phase(split, warm, fmt::format("{} warm-up raw-split", name), false);
            }

            workload_result wr{w, conc, {}, {}, {}, std::nullopt, 0, 0, 0, 0};
            for (std::size_t rep = 0; rep < o.repeat; ++rep) {
                spec.read_seed = rd();  // both sides read the same rows
                const auto label = [&](std::string_view side) {
                    return fmt::format("{} {} {}/{}", name, side, rep + 1, o.repeat);
                };
                repetition r;
                // Alternate which side goes first, so neither always meets the
                // WAL the other left behind.
                if (rep % 2 == 0) {
                    spec.write_base = next_base();
                    r.async = run_phase(async, spec, label("asqlite"), true);
                    spec.write_base = next_base();
                    r.raw = run_phase(raw, spec, label("raw"), true);
                } else {
                    spec.write_base = next_base();
                    r.raw = run_phase(raw, spec, label("raw"), true);
                    spec.write_base = next_base();
                    r.async = run_phase(async, spec, label("asqlite"), true);
                }
                if (has_split(w)) {
                    spec.write_base = next_base();
                    r.split = run_phase(split, spec, label("raw-split"), true);
                }
                wr.reps.push_back(r);
            }
            wr.async = median_side(wr.reps, &repetition::async);
            wr.raw = median_side(wr.reps, &repetition::raw);
            if (has_split(w)) {
                wr.split = median_side(wr.reps, &repetition::split);
                wr.overhead_over_split_us = median_of(
                    wr.reps, [](const repetition& r) { return r.overhead_over_split_us(); });
            }
            wr.ratio = median_of(wr.reps, [](const repetition& r) { return r.ratio(); });
            wr.p50_ratio = median_of(wr.reps, [](const repetition& r) { return r.p50_ratio(); });
            wr.overhead_us =
                median_of(wr.reps, [](const repetition& r) { return r.overhead_us(); });
            results.push_back(std::move(wr));
        }
    }

    std::optional<double> idle_cpu;
    if (o.idle_seconds > 0) {
        idle_cpu = async.idle_cpu(o.idle_seconds);
    }
    if (o.json) {
        print_json(o, path, threads, results, idle_cpu);
    } else {
        print_table(o, path, threads, results, idle_cpu);
    }
    if (failed) {
        fmt::print(stderr, "asqlite-bench: some operations failed; the figures are not valid\n");
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // asqlite-bench --stress SECONDS [--db PATH]: the concurrency stress run
    // (bench/stress.cpp), separate from the throughput comparison.
    if (argc >= 3 && std::string_view(argv[1]) == "--stress") {
        try {
            const double seconds = std::stod(argv[2]);
            if (!(seconds > 0)) {
                throw std::invalid_argument("seconds");
            }
            const bool own_db = !(argc >= 5 && std::string_view(argv[3]) == "--db");
            std::optional<temp_db> tmp;
            if (own_db) {
                tmp.emplace();
            }
            asqlite::configure_sqlite();
            return asqlite::bench::run_stress(own_db ? tmp->path() : std::string(argv[4]), seconds,
                                              64, 64);
        } catch (const std::invalid_argument&) {
            fmt::print(stderr, "asqlite-bench: --stress wants a positive number of seconds\n");
            return 2;
        } catch (const std::exception& e) {
            fmt::print(stderr, "asqlite-bench: {}\n", e.what());
            return 1;
        }
    }
    const bench_options options = parse_options(argc, argv);
    try {
        // Before SQLite is first used; applies to both sides alike.
        asqlite::configure_sqlite({.memory_statistics = options.memory_statistics});
        return run(options);
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-bench: {}\n", e.what());
        return 1;
    }
}
