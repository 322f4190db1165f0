#include "asqlite/migrate.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "asqlite/error.hpp"
#include "asqlite/schema.hpp"

namespace asqlite {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void refuse(std::string message) {
    throw_error(errc::migration_refused, std::move(message));
}

const std::string create_table_sql = fmt::format(
    "CREATE TABLE IF NOT EXISTS {} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "checksum TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    migrations_table);

std::vector<applied_migration> read_applied(connection& c) {
    if (!has_table(c, migrations_table)) {
        return {};
    }
    std::vector<applied_migration> out;
    for (auto& [version, name, checksum, at] :
         c.query<std::tuple<std::int64_t, std::string, std::string, std::string>>(
             fmt::format("SELECT version, name, checksum, applied_at FROM {} ORDER BY version",
                         migrations_table))) {
        out.push_back({version, std::move(name), std::move(checksum), std::move(at)});
    }
    return out;
}

std::string describe(const migration& m) {
    return fmt::format("migration {} ({})", m.version, m.name);
}

/// The program's migrations by version, checked to be 1..N.
std::vector<const migration*> in_order(const std::vector<migration>& migrations) {
    std::vector<const migration*> sorted;
    for (const auto& m : migrations) {
        sorted.push_back(&m);
    }
    std::sort(sorted.begin(), sorted.end(),
              [](const migration* a, const migration* b) { return a->version < b->version; });
    for (std::size_t i = 0; i < sorted.size(); ++i) {
        const auto want = static_cast<std::int64_t>(i) + 1;
        const migration& m = *sorted[i];
        if (m.version == want) {
            continue;
        }
        if (m.version < want) {
            refuse(m.version < 1 ? fmt::format("{}: versions start at 1", describe(m))
                                 : fmt::format("version {} is used twice ({} and {})", m.version,
                                               sorted[i - 1]->name, m.name));
        }
        refuse(fmt::format("migration version {} is missing: the versions go from {} to {}", want,
                           want - 1, m.version));
    }
    return sorted;
}

/// The status, or a refusal when the records do not fit the program's
/// migrations (see migration_state()).
migration_status compare(const std::vector<applied_migration>& applied,
                         const std::vector<const migration*>& sorted) {
    migration_status s;
    const auto latest = static_cast<std::int64_t>(sorted.size());
    for (std::size_t i = 0; i < applied.size(); ++i) {
        const applied_migration& a = applied[i];
        if (a.version > latest) {
            refuse(fmt::format(
                "the database records migration {} ({}), newer than this program's latest ({}): "
                "it was migrated by a newer program; nothing was applied",
                a.version, a.name, latest));
        }
        if (a.version != static_cast<std::int64_t>(i) + 1) {
            refuse(fmt::format(
                "the database records migration {} ({}) but not {}: its records are not the "
                "versions 1..N; nothing was applied",
                a.version, a.name, i + 1));
        }
        const migration& m = *sorted[i];
        const std::string now = migration_checksum(m.sql);
        if (a.checksum != now) {
            refuse(fmt::format(
                "{} changed after it was applied (recorded checksum {}, the script's now {}): "
                "add a new migration instead of editing an applied one; nothing was applied",
                describe(m), a.checksum, now));
        }
    }
    s.applied = applied;
    for (std::size_t i = applied.size(); i < sorted.size(); ++i) {
        s.pending.push_back(*sorted[i]);
    }
    return s;
}

std::optional<std::int64_t> parse_version(std::string_view digits) {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc{} || end != digits.data() + digits.size()) {
        return std::nullopt;
    }
    return v;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
        refuse(fmt::format("cannot read migration file '{}'", p.string()));
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

std::string migration_checksum(std::string_view sql) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (const char ch : sql) {
        h ^= static_cast<unsigned char>(ch);
        h *= 0x100000001b3ULL;
    }
    return fmt::format("{:016x}", h);
}

std::vector<migration> load_migrations(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        refuse(fmt::format("migration directory '{}' does not exist", dir.string()));
    }
    std::map<std::int64_t, fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir)) {
        const fs::path& p = entry.path();
        if (p.extension() != ".sql" || !entry.is_regular_file()) {
            continue;
        }
        const std::string stem = p.stem().string();
        const auto underscore = stem.find('_');
        const std::string_view digits = std::string_view(stem).substr(0, underscore);
        const std::string_view name = underscore == std::string::npos
                                          ? std::string_view{}
                                          : std::string_view(stem).substr(underscore + 1);
        const bool name_ok =
            !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char ch) {
                return std::isalnum(ch) != 0 || ch == '_';
            });
        const auto version = digits.empty() ? std::nullopt : parse_version(digits);
        if (!version || !name_ok || *version < 1) {
            refuse(fmt::format(
                "migration file '{}': the name is not <version>_<name>.sql (a version from 1, "
                "then letters, digits or '_', as in 0001_create_fileinfo.sql)",
                p.string()));
        }
        if (const auto [it, added] = files.emplace(*version, p); !added) {
            refuse(fmt::format("migration version {} is used twice: '{}' and '{}'", *version,
                               it->second.string(), p.string()));
        }
    }
    std::vector<migration> out;
    for (const auto& [version, p] : files) {
        const std::string stem = p.stem().string();
        out.push_back({version, stem.substr(stem.find('_') + 1), read_file(p)});
    }
    in_order(out);  // a gap is refused here, naming the versions
    return out;
}

migration_status migration_state(connection& c, const std::vector<migration>& migrations) {
    return compare(read_applied(c), in_order(migrations));
}

std::vector<std::int64_t> migrate(const engine& e, const std::vector<migration>& migrations,
                                  const migrate_options& options) {
    const auto sorted = in_order(migrations);
    auto c = e.connect();
    const migration_status before = compare(read_applied(c), sorted);
    const std::int64_t target = options.to.value_or(static_cast<std::int64_t>(sorted.size()));
    if (target < before.current()) {
        refuse(fmt::format(
            "the database is at migration {}, above the version asked for ({}): there are no "
            "down migrations; nothing was applied",
            before.current(), target));
    }
    if (target > static_cast<std::int64_t>(sorted.size())) {
        refuse(fmt::format("there is no migration {}: the latest is {}; nothing was applied",
                           target, sorted.size()));
    }
    std::vector<std::int64_t> applied;
    if (options.dry_run) {
        for (const auto& m : before.pending) {
            if (m.version <= target) {
                applied.push_back(m.version);
            }
        }
        return applied;
    }
    for (std::int64_t v = before.current() + 1; v <= target; ++v) {
        const migration& m = *sorted[static_cast<std::size_t>(v - 1)];
        transaction_guard tx(c, transaction_mode::immediate);
        // Under the write lock: another process may have gone ahead.
        c.exec(create_table_sql);
        const migration_status now = compare(read_applied(c), sorted);
        if (now.current() >= v) {
            continue;  // applied meanwhile (the guard rolls back nothing)
        }
        try {
            c.exec(m.sql);
        } catch (const error& failure) {
            throw error(failure.code(),
                        fmt::format("{} failed, the database stays at version {}: {}", describe(m),
                                    v - 1, failure.message()),
                        failure.sql());
        }
        c.execute(fmt::format("INSERT INTO {} (version, name, checksum) VALUES (?, ?, ?)",
                              migrations_table),
                  m.version, m.name, migration_checksum(m.sql));
        tx.commit();
        applied.push_back(v);
    }
    return applied;
}

void baseline(const engine& e, const std::vector<migration>& migrations, std::int64_t version) {
    const auto sorted = in_order(migrations);
    if (version < 1 || version > static_cast<std::int64_t>(sorted.size())) {
        refuse(fmt::format("cannot baseline at version {}: the migrations go from 1 to {}", version,
                           sorted.size()));
    }
    auto c = e.connect();
    transaction_guard tx(c, transaction_mode::immediate);
    c.exec(create_table_sql);
    if (const auto applied = read_applied(c); !applied.empty()) {
        refuse(fmt::format(
            "cannot baseline: the database records migrations already (up to {}); nothing was "
            "recorded",
            applied.back().version));
    }
    for (std::int64_t v = 1; v <= version; ++v) {
        const migration& m = *sorted[static_cast<std::size_t>(v - 1)];
        c.execute(fmt::format("INSERT INTO {} (version, name, checksum) VALUES (?, ?, ?)",
                              migrations_table),
                  m.version, m.name, migration_checksum(m.sql));
    }
    tx.commit();
}

}  // namespace asqlite
