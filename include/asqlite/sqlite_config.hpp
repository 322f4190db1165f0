#pragma once
// Process-wide SQLite settings, applied once before SQLite is first used.

namespace asqlite {

/// Settings SQLite keeps for the whole process. SQLite accepts them only
/// before it is initialised, which happens when the first connection opens.
struct sqlite_config {
    /// SQLite's memory statistics: sqlite3_memory_used(), sqlite3_status()
    /// for memory, and the soft and hard heap limits, which need them. While
    /// they are on, every allocation inside SQLite takes one process-wide
    /// mutex; with statements running on two or more threads, as the async
    /// engine runs them, that mutex's cache line moves between cores on
    /// nearly every allocation (the Debian build of SQLite has no lookaside
    /// allocator, so a read allocates several times). SQLite's own list of
    /// recommended compile-time options turns them off; so does asqlite.
    bool memory_statistics = false;

    bool operator==(const sqlite_config&) const = default;
};

/// Applies `config` and initialises SQLite. Call it first thing in main(),
/// before any thread uses SQLite: SQLite's configuration call is not
/// thread-safe. Calls after the first with the same settings do nothing.
///
/// Not calling it keeps SQLite's defaults (memory statistics on), which
/// work, only slower under concurrency.
///
/// Throws asqlite::error with errc::misuse, and changes nothing, when SQLite
/// was initialised before (a connection was opened, or someone called
/// sqlite3_initialize()) and the settings were not applied by an earlier
/// call with the same values; this holds for settings equal to SQLite's
/// defaults too, since what SQLite was initialised with cannot be read
/// back. When sqlite3_initialize() itself fails, throws with SQLite's code;
/// the settings stay configured then, and a later call may try again.
void configure_sqlite(const sqlite_config& config = {});

}  // namespace asqlite
