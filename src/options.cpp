#include "asqlite/options.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace asqlite {
namespace {

[[noreturn]] void bad_env(std::string_view name, std::string_view value,
                          std::string_view expected) {
    throw_error(
        errc::invalid_option,
        fmt::format("environment variable {}='{}' is invalid: expected {}", name, value, expected));
}

std::size_t parse_count(std::string_view name, std::string_view text, bool allow_zero) {
    std::size_t v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() ||
        (!allow_zero && v == 0)) {
        bad_env(name, text, allow_zero ? "a non-negative integer" : "a positive integer");
    }
    return v;
}

template <class Duration = std::chrono::milliseconds>
Duration parse_seconds(std::string_view name, std::string_view text) {
    double v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() ||
        !std::isfinite(v) || v < 0 || v > 1e9) {
        bad_env(name, text, "a non-negative number of seconds");
    }
    return std::chrono::round<Duration>(std::chrono::duration<double>(v));
}

bool parse_bool(std::string_view name, std::string_view text) {
    for (auto t : {"1", "true", "yes", "on", "TRUE", "True", "YES", "ON"}) {
        if (text == t) {
            return true;
        }
    }
    for (auto f : {"0", "false", "no", "off", "FALSE", "False", "NO", "OFF"}) {
        if (text == f) {
            return false;
        }
    }
    bad_env(name, text, "a boolean (1/0, true/false, yes/no, on/off)");
}

std::string parse_choice(std::string_view name, std::string_view text,
                         std::initializer_list<std::string_view> allowed) {
    std::string lower;
    for (char c : text) {
        lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    for (auto a : allowed) {
        if (lower == a) {
            return lower;
        }
    }
    bad_env(name, text, fmt::format("one of {}", fmt::join(allowed, ", ")));
}

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr ? v : nullptr;
}

}  // namespace

std::string path_from_url(std::string_view url) {
    if (url == ":memory:" || url.empty()) {
        return ":memory:";
    }
    if (url.starts_with("file:")) {
        return std::string(url);  // an SQLite URI, passed to SQLite as it is
    }
    for (std::string_view scheme : {"sqlite+aiosqlite://", "sqlite+pysqlite://", "sqlite://"}) {
        if (url.starts_with(scheme)) {
            std::string_view rest = url.substr(scheme.size());
            if (rest.empty() || rest == "/" || rest == "/:memory:") {
                return ":memory:";
            }
            if (!rest.starts_with('/')) {
                throw_error(errc::invalid_url,
                            fmt::format("database URL '{}' has a host part; use sqlite:///relative "
                                        "or sqlite:////absolute",
                                        url));
            }
            return std::string(rest.substr(1));
        }
    }
    if (const auto colon = url.find("://"); colon != std::string_view::npos) {
        throw_error(errc::invalid_url,
                    fmt::format("database URL '{}' is not an SQLite URL (sqlite:///path.db)", url));
    }
    return std::string(url);
}

engine_options engine_options::from_url(std::string_view url) {
    engine_options o;
    o.path = path_from_url(url);
    return o;
}

engine_options engine_options::from_env() {
    engine_options o;
    if (const char* v = env("SQLITE_DB_PATH"); v != nullptr) {
        if (*v == '\0') {
            bad_env("SQLITE_DB_PATH", v, "a database path or sqlite:/// URL");
        }
        try {
            o.path = path_from_url(v);
        } catch (const error& e) {
            // The same error, saying where the URL came from.
            throw_error(e.code(),
                        fmt::format("environment variable SQLITE_DB_PATH: {}", e.message()));
        }
    }
    if (const char* v = env("ASQLITE_POOL_SIZE")) {
        o.pool_size = parse_count("ASQLITE_POOL_SIZE", v, false);
    }
    if (const char* v = env("ASQLITE_MAX_OVERFLOW")) {
        o.max_overflow = parse_count("ASQLITE_MAX_OVERFLOW", v, true);
    }
    if (const char* v = env("ASQLITE_POOL_TIMEOUT")) {
        o.pool_timeout = parse_seconds("ASQLITE_POOL_TIMEOUT", v);
    }
    if (const char* v = env("ASQLITE_POOL_RECYCLE")) {
        o.pool_recycle = parse_seconds("ASQLITE_POOL_RECYCLE", v);
    }
    if (const char* v = env("ASQLITE_PRE_PING")) {
        o.pre_ping = parse_bool("ASQLITE_PRE_PING", v);
    }
    if (const char* v = env("ASQLITE_ECHO")) {
        o.echo = parse_bool("ASQLITE_ECHO", v);
    }
    if (const char* v = env("ASQLITE_JOURNAL_MODE")) {
        o.journal_mode = parse_choice("ASQLITE_JOURNAL_MODE", v,
                                      {"delete", "truncate", "persist", "memory", "wal", "off"});
    }
    if (const char* v = env("ASQLITE_SYNCHRONOUS")) {
        o.synchronous = parse_choice("ASQLITE_SYNCHRONOUS", v, {"off", "normal", "full", "extra"});
    }
    if (const char* v = env("ASQLITE_FOREIGN_KEYS")) {
        o.foreign_keys = parse_bool("ASQLITE_FOREIGN_KEYS", v);
    }
    if (const char* v = env("ASQLITE_BUSY_TIMEOUT")) {
        o.busy_timeout = parse_seconds("ASQLITE_BUSY_TIMEOUT", v);
    }
    if (const char* v = env("ASQLITE_STATEMENT_CACHE_SIZE")) {
        o.statement_cache_size = parse_count("ASQLITE_STATEMENT_CACHE_SIZE", v, true);
    }
    if (const char* v = env("ASQLITE_THREADS")) {
        o.threads = parse_count("ASQLITE_THREADS", v, true);  // 0: hardware concurrency
    }
    if (const char* v = env("ASQLITE_COMPLETION_HOLD")) {
        o.completion_hold = parse_seconds<std::chrono::microseconds>("ASQLITE_COMPLETION_HOLD", v);
    }
    if (const char* v = env("ASQLITE_SPIN_WAIT")) {
        o.spin_wait = parse_seconds<std::chrono::microseconds>("ASQLITE_SPIN_WAIT", v);
    }
    if (const char* v = env("ASQLITE_GROUP_COMMIT")) {
        o.group_commit = parse_bool("ASQLITE_GROUP_COMMIT", v);
    }
    if (const char* v = env("ASQLITE_GROUP_COMMIT_MAX_JOBS")) {
        o.group_commit_max_jobs = parse_count("ASQLITE_GROUP_COMMIT_MAX_JOBS", v, false);
    }
    if (const char* v = env("ASQLITE_GROUP_COMMIT_MAX_TIME")) {
        o.group_commit_max_time =
            parse_seconds<std::chrono::microseconds>("ASQLITE_GROUP_COMMIT_MAX_TIME", v);
    }
    return o;
}

void engine_options::validate() const {
    auto fail = [](std::string message) { throw_error(errc::invalid_option, std::move(message)); };
    if (path.empty()) {
        fail("path is empty: use a file path or \":memory:\"");
    }
    if (pool_size == 0) {
        fail("pool_size must be at least 1");
    }
    if (pool_timeout.count() < 0 || pool_recycle.count() < 0 || busy_timeout.count() < 0 ||
        completion_hold.count() < 0 || spin_wait.count() < 0 || group_commit_max_time.count() < 0) {
        fail("durations must not be negative");
    }
    for (const auto& [name, value] :
         {std::pair{"completion_hold", completion_hold}, std::pair{"spin_wait", spin_wait},
          std::pair{"group_commit_max_time", group_commit_max_time}}) {
        if (value > std::chrono::seconds{1}) {
            fail(fmt::format("{} is {} us: at most one second (1000000 us)", name, value.count()));
        }
    }
    if (group_commit_max_jobs == 0) {
        fail("group_commit_max_jobs must be at least 1 (1: every write commits alone)");
    }
    if (busy_timeout.count() > std::numeric_limits<int>::max()) {
        fail("busy_timeout is too large");
    }
    connection_settings(false).validate();
}

connection_options engine_options::connection_settings(bool default_echo) const {
    connection_options c;
    c.journal_mode = journal_mode;
    c.synchronous = synchronous;
    c.foreign_keys = foreign_keys;
    c.busy_timeout = busy_timeout;
    c.statement_cache_size = statement_cache_size;
    c.echo = echo.value_or(default_echo);
    return c;
}

}  // namespace asqlite
