#pragma once
// Versioned migrations: numbered SQL scripts applied in order, each in its
// own transaction, recorded in the database with a checksum of its text
// (docs/migrations.md). Synchronous, like init_db: run them at startup,
// before the async engine opens its connections, or with asqlite-migrate.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/engine.hpp"

namespace asqlite {

/// One script. Versions are 1, 2, 3, ... without gaps; the name says what
/// it does (messages, the record); the SQL is one or more statements and
/// must not begin or end a transaction itself.
struct migration {
    std::int64_t version = 0;
    std::string name;
    std::string sql;
};

/// What the database records of an applied migration.
struct applied_migration {
    std::int64_t version = 0;
    std::string name;
    std::string checksum;
    std::string applied_at;  // UTC, "YYYY-MM-DD HH:MM:SS"
};

/// The table the records live in.
inline constexpr std::string_view migrations_table = "asqlite_migrations";

/// The checksum recorded for a script: FNV-1a (64 bits) of its exact text,
/// as 16 hex digits. It detects edits, not tampering.
std::string migration_checksum(std::string_view sql);

/// The scripts of `dir`: every file named <version>_<name>.sql, the
/// version in decimal digits (leading zeros allowed: 0001_create.sql), the
/// name made of letters, digits and '_'. Other files are ignored. A
/// missing directory, a malformed *.sql name, a version used twice or a
/// gap (1, 2, 4) is errc::migration_refused naming the file.
std::vector<migration> load_migrations(const std::filesystem::path& dir);

struct migration_status {
    std::vector<applied_migration> applied;  // by version
    std::vector<migration> pending;          // by version
    /// The last applied version; 0 when none is.
    std::int64_t current() const noexcept { return applied.empty() ? 0 : applied.back().version; }
};

/// Compares what `c`'s database records with `migrations` and throws
/// errc::migration_refused when they do not fit: the program's versions
/// are not 1..N, the database records a version the program does not have
/// (it is newer), skips one, or recorded a different checksum (the script
/// changed after it was applied). Reads only.
migration_status migration_state(connection& c, const std::vector<migration>& migrations);

struct migrate_options {
    /// Apply up to and including this version (default: all). Below the
    /// database's version is errc::migration_refused: there are no down
    /// migrations.
    std::optional<std::int64_t> to;
    /// Check and report what would be applied; change nothing.
    bool dry_run = false;
};

/// Applies the pending migrations in order, each in its own BEGIN
/// IMMEDIATE transaction with its record, and returns the versions it
/// applied (with dry_run: would apply). Nothing is applied when
/// migration_state() refuses. A script that fails rolls back with its
/// record, leaves the database at the version before it and throws the
/// failing statement's error, its message naming the migration and the
/// statement. Safe to call from several processes at once: each takes
/// the write lock and looks again at what is recorded before it applies a
/// version, so each version is applied once.
std::vector<std::int64_t> migrate(const engine& e, const std::vector<migration>& migrations,
                                  const migrate_options& options = {});

/// Records versions 1..`version` as applied without running them, for a
/// database whose schema was made another way (init_db) and is exactly
/// what those scripts would make. Refused (errc::migration_refused) when
/// the database records migrations already, or `version` is not one of
/// `migrations`.
void baseline(const engine& e, const std::vector<migration>& migrations, std::int64_t version);

}  // namespace asqlite
