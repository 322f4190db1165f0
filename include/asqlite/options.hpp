#pragma once
// Engine configuration: one plain aggregate whose defaults match the seed
// module (SQLITE_DB_PATH=autobots.db, pool of 10, recycle after 3600 s).

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "asqlite/connection.hpp"

namespace asqlite {

struct engine_options {
    /// Database file, ":memory:" or a "file:" URI. Database URLs
    /// ("sqlite:///rel.db", "sqlite:////abs.db", "sqlite://") go through
    /// from_url() or the SQLITE_DB_PATH variable.
    std::string path = "autobots.db";

    std::size_t pool_size = 10;
    std::size_t max_overflow = 0;
    std::chrono::milliseconds pool_timeout{30'000};
    /// Connections older than this are closed and replaced at checkout;
    /// zero disables recycling.
    std::chrono::milliseconds pool_recycle{3'600'000};
    /// Check a connection with a trivial query before handing it out.
    bool pre_ping = false;

    /// Log every statement. Unset: on for the sync engine, off for the async
    /// engine, as in the seed.
    std::optional<bool> echo;

    std::string journal_mode = "wal";
    std::string synchronous = "normal";
    bool foreign_keys = true;
    std::chrono::milliseconds busy_timeout{5'000};
    std::size_t statement_cache_size = 100;

    /// Threads of the async engine's blocking pool; 0: hardware concurrency,
    /// at least 2. Only as many as the cores less one for the io thread (at
    /// least one) work at once while they keep up; the others are woken when
    /// those are stuck in long statements.
    std::size_t threads = 0;

    /// How long a finished statement's completion may wait in the blocking
    /// pool's inbox while the worker goes on with the jobs queued behind it,
    /// so that one wake-up of the io thread hands back a batch. Completions
    /// go back at once when the queue runs dry (an idle engine answers
    /// without delay) and as soon as as many wait as jobs remain queued,
    /// except that they also wait through the writer's next job while the
    /// writer's jobs take under half of this (a line of writes is handed
    /// back in batches); this bounds the wait in a busy one, also while a
    /// long statement runs (SQLite's progress handler checks it). Zero: no
    /// completion waits for the jobs behind it (more wake-ups of the io
    /// thread, more CPU per statement). At most one second.
    std::chrono::microseconds completion_hold{200};

    /// How long a thread of the async engine that ran out of work stays
    /// awake looking for more before it sleeps, while work has recently
    /// come back within that time: a blocking-pool thread waits for the
    /// next job (one at a time), and the io thread for the completion of
    /// the statement it just sent when nothing else was out. A query then
    /// costs no sleeping hand-off at concurrency 1; an idle engine uses no
    /// CPU (the spinning stops after this long). Zero: threads sleep at
    /// once. At most one second.
    std::chrono::microseconds spin_wait{50};

    /// Group commit: writes waiting in line for the writer (autocommit
    /// statements that write, write(fn)) run in one transaction, each in a
    /// savepoint of its own, and commit once; each completes after that
    /// commit, and one that fails rolls back only its own savepoint
    /// (docs/concurrency.md, "Group commit"). A group takes at most
    /// group_commit_max_jobs writes, and no more join it once it has run
    /// for group_commit_max_time (at most one second). false, or
    /// max_jobs 1: every write commits alone.
    bool group_commit = true;
    std::size_t group_commit_max_jobs = 64;
    std::chrono::microseconds group_commit_max_time{2000};

    /// Called on every new connection (on a blocking-pool thread for the
    /// async engine) before it is used: register functions, extra pragmas.
    std::function<void(connection&)> on_connect;

    /// Reads SQLITE_DB_PATH and the ASQLITE_* variables (see docs/async.md)
    /// over the defaults. A malformed value throws errc::invalid_option
    /// naming the variable and the value.
    static engine_options from_env();
    /// Defaults with the database taken from a URL or plain path.
    static engine_options from_url(std::string_view url);

    /// Throws errc::invalid_option for values no engine can use.
    void validate() const;
    /// The per-connection settings these options imply.
    connection_options connection_settings(bool default_echo) const;
};

/// "sqlite:///rel.db" -> "rel.db", "sqlite:////abs.db" -> "/abs.db",
/// "sqlite://" and ":memory:" -> ":memory:", a plain path -> itself.
/// "sqlite+aiosqlite://" is accepted as a synonym. Anything else with a
/// scheme throws errc::invalid_url.
std::string path_from_url(std::string_view url);

}  // namespace asqlite
