#include "asqlite/sqlite_config.hpp"

#include <sqlite3.h>

#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "asqlite/error.hpp"

namespace asqlite {
namespace {

// What the first successful call applied; guarded by the mutex, which also
// keeps two of our own callers from configuring SQLite at once.
std::mutex applied_mutex;
std::optional<sqlite_config> applied;

[[noreturn]] void refuse(const char* why) {
    throw_error(errc::misuse,
                fmt::format("configure_sqlite(): {}; call it first thing in main(), before "
                            "any connection opens",
                            why));
}

}  // namespace

void configure_sqlite(const sqlite_config& config) {
    const std::lock_guard lock(applied_mutex);
    if (applied) {
        if (*applied != config) {
            refuse("SQLite was already configured in this process with other settings");
        }
        return;
    }
    // sqlite3_config() answers SQLITE_MISUSE once SQLite is initialised.
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, config.memory_statistics ? 1 : 0) != SQLITE_OK) {
        refuse("SQLite is already initialised in this process");
    }
    if (const int rc = sqlite3_initialize(); rc != SQLITE_OK) {
        throw_error(
            std::error_code(rc, category()),
            fmt::format("configure_sqlite(): sqlite3_initialize() failed: {}", sqlite3_errstr(rc)));
    }
    applied = config;
}

}  // namespace asqlite
