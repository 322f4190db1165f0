// asqlite-txn-cost: what a one-row lookup costs SQLite outside the query
// itself. Runs lookups by file_id on one raw sqlite3 connection, in
// autocommit and with N lookups per BEGIN ... COMMIT, and prints the CPU
// time per lookup for each N (docs/benchmarks.md, ninth session). The
// database is one seeded by asqlite-bench (--db PATH keeps it).

#include <sqlite3.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

double cpu_us() {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    const auto us = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
    };
    return us(r.ru_utime) + us(r.ru_stime);
}

void check(int rc, sqlite3* db, std::string_view what) {
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        throw std::runtime_error(fmt::format("{}: {}", what, sqlite3_errmsg(db)));
    }
}

class stmt {
  public:
    stmt(sqlite3* db, const char* sql) : db_(db) {
        check(sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr), db, sql);
    }
    ~stmt() { sqlite3_finalize(s_); }
    stmt(const stmt&) = delete;
    stmt& operator=(const stmt&) = delete;
    sqlite3_stmt* get() const { return s_; }
    /// Steps once and resets; whether a row came.
    bool step_once() {
        const int rc = sqlite3_step(s_);
        check(rc, db_, sqlite3_sql(s_));
        sqlite3_reset(s_);
        return rc == SQLITE_ROW;
    }

  private:
    sqlite3* db_;
    sqlite3_stmt* s_ = nullptr;
};

std::size_t parse_count(std::string_view flag, std::string_view text) {
    std::size_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || v == 0) {
        throw std::invalid_argument(
            fmt::format("{} wants a whole number above 0, not '{}'", flag, text));
    }
    return v;
}

constexpr const char* usage =
    "usage: asqlite-txn-cost --db PATH [--lookups K] [--per-transaction N ...]\n"
    "  PATH: a database seeded by asqlite-bench (--db PATH keeps it)\n"
    "  K: lookups per measurement (default 200000)\n"
    "  N: lookups per transaction, one measurement each (default 1 4 10 32)\n";

}  // namespace

int main(int argc, char** argv) {
    std::string path;
    std::size_t lookups = 200000;
    std::vector<std::size_t> per_tx;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view arg = argv[i];
            if (arg == "--help") {
                std::fputs(usage, stdout);
                return 0;
            }
            if (i + 1 >= argc) {
                throw std::invalid_argument(fmt::format("{} wants a value", arg));
            }
            if (arg == "--db") {
                path = argv[++i];
            } else if (arg == "--lookups") {
                lookups = parse_count(arg, argv[++i]);
            } else if (arg == "--per-transaction") {
                while (i + 1 < argc && argv[i + 1][0] != '-') {
                    per_tx.push_back(parse_count(arg, argv[++i]));
                }
            } else {
                throw std::invalid_argument(fmt::format("unknown option {}", arg));
            }
        }
        if (path.empty()) {
            throw std::invalid_argument("--db PATH is required");
        }
        if (!std::filesystem::is_regular_file(path)) {
            throw std::invalid_argument(fmt::format("no database file at {}", path));
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-txn-cost: {}\n{}", e.what(), usage);
        return 2;
    }
    if (per_tx.empty()) {
        per_tx = {1, 4, 10, 32};
    }
    sqlite3* db = nullptr;
    try {
        check(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                              nullptr),
              db, path);
        check(sqlite3_exec(db, "PRAGMA journal_mode=wal", nullptr, nullptr, nullptr), db,
              "journal_mode");
        std::vector<std::string> ids;
        {
            stmt all(db, "SELECT file_id FROM fileinfo");
            int rc = 0;
            while ((rc = sqlite3_step(all.get())) == SQLITE_ROW) {
                ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(all.get(), 0)));
            }
            check(rc, db, "SELECT file_id FROM fileinfo");
        }
        if (ids.empty()) {
            throw std::runtime_error(fmt::format("{} has no fileinfo rows", path));
        }
        stmt lookup(db,
                    "SELECT id, file_id, filename, file_path, description, file_size, status, "
                    "request_id, create_time FROM fileinfo WHERE file_id = ?");
        stmt begin(db, "BEGIN");
        stmt commit(db, "COMMIT");
        fmt::print("{} rows in {}; {} lookups per measurement\n", ids.size(), path, lookups);
        fmt::print("{:>16} {:>16}\n", "per transaction", "CPU us/lookup");
        for (const std::size_t n : per_tx) {
            std::mt19937_64 rng(1);  // the same keys for every n
            std::size_t found = 0;
            const double start = cpu_us();
            for (std::size_t i = 0; i < lookups; ++i) {
                if (n > 1 && i % n == 0) {
                    begin.step_once();
                }
                const std::string& id = ids[rng() % ids.size()];
                sqlite3_bind_text(lookup.get(), 1, id.data(), static_cast<int>(id.size()),
                                  SQLITE_STATIC);
                found += lookup.step_once() ? 1U : 0U;
                if (n > 1 && (i % n == n - 1 || i + 1 == lookups)) {
                    commit.step_once();
                }
            }
            const double per = (cpu_us() - start) / static_cast<double>(lookups);
            if (found != lookups) {
                throw std::runtime_error(
                    fmt::format("{} of {} lookups found their row", found, lookups));
            }
            fmt::print("{:>16} {:>16.2f}\n",
                       n == 1 ? std::string("1 (autocommit)") : std::to_string(n), per);
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-txn-cost: {}\n", e.what());
        sqlite3_close(db);
        return 1;
    }
    sqlite3_close(db);
    return 0;
}
