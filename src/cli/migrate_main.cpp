// asqlite-migrate: applies the numbered SQL scripts of a directory to a
// database, in order, each once (docs/migrations.md).

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "asqlite/engine.hpp"
#include "asqlite/error.hpp"
#include "asqlite/migrate.hpp"

namespace {

void usage(std::FILE* out) {
    fmt::print(out,
               "usage: asqlite-migrate [--db URL] --dir DIR [--quiet] [COMMAND]\n"
               "\n"
               "Applies versioned migrations: the files <version>_<name>.sql of DIR, in\n"
               "order, each in its own transaction, recorded in the asqlite_migrations table\n"
               "with a checksum. Refuses, changing nothing, when a recorded script changed,\n"
               "the versions have a gap, or the database is newer than DIR.\n"
               "\n"
               "Commands:\n"
               "  status               what is applied and what is pending (the default)\n"
               "  up [--to N]          applies the pending migrations, up to N if given\n"
               "     [--dry-run]       prints the SQL that would run and applies nothing\n"
               "  baseline N           records 1..N as applied without running them, for a\n"
               "                       database whose schema was made another way (init_db)\n"
               "\n"
               "  --db URL    database file or sqlite:/// URL (default: $SQLITE_DB_PATH,\n"
               "              else autobots.db in the working directory)\n"
               "  --dir DIR   the migration scripts\n"
               "  --quiet     do not echo SQL statements\n"
               "  --help      show this text\n"
               "\n"
               "Exit status: 0 done, 1 refused or failed (the message says why), 2 bad usage.\n");
}

std::optional<std::int64_t> version_of(std::string_view text) {
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return v;
}

struct command_line {
    asqlite::engine_options options;
    std::string dir;
    std::string command = "status";
    std::optional<std::int64_t> version;  // up --to N, baseline N
    bool dry_run = false;
};

/// The parsed arguments, or a message for bad usage.
std::variant<command_line, std::string> parse(int argc, char** argv) {
    command_line cl;
    cl.options = asqlite::engine_options::from_env();
    bool command_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const auto value = [&](std::string_view name) -> std::optional<std::string_view> {
            if (arg.starts_with(std::string(name) + "=")) {
                return arg.substr(name.size() + 1);
            }
            if (arg == name && i + 1 < argc) {
                return std::string_view(argv[++i]);
            }
            return std::nullopt;
        };
        if (arg == "--quiet" || arg == "-q") {
            cl.options.echo = false;
        } else if (arg == "--dry-run") {
            cl.dry_run = true;
        } else if (arg.starts_with("--db")) {
            const auto v = value("--db");
            if (!v) {
                return fmt::format("'{}' needs a value", arg);
            }
            cl.options.path = asqlite::path_from_url(*v);
        } else if (arg.starts_with("--dir")) {
            const auto v = value("--dir");
            if (!v) {
                return fmt::format("'{}' needs a value", arg);
            }
            cl.dir = std::string(*v);
        } else if (arg.starts_with("--to")) {
            const auto v = value("--to");
            if (!v || !(cl.version = version_of(*v))) {
                return fmt::format("--to wants a version number, got '{}'", v.value_or(""));
            }
        } else if (!command_given && (arg == "status" || arg == "up" || arg == "baseline")) {
            cl.command = std::string(arg);
            command_given = true;
            if (arg == "baseline") {
                if (i + 1 >= argc || !(cl.version = version_of(argv[i + 1]))) {
                    return "baseline wants a version number";
                }
                ++i;
            }
        } else {
            return fmt::format("unknown or extra argument '{}'", arg);
        }
    }
    if (cl.dir.empty()) {
        return "--dir is required";
    }
    if (cl.command != "up" && (cl.dry_run || (cl.command == "status" && cl.version))) {
        return "--to and --dry-run go with 'up'";
    }
    return cl;
}

int run(const command_line& cl) {
    const auto migrations = asqlite::load_migrations(cl.dir);
    if (cl.command == "status") {
        auto quiet = cl.options;
        quiet.echo = false;
        auto c = asqlite::create_engine(quiet).connect();
        const auto s = asqlite::migration_state(c, migrations);
        fmt::print("{}: version {} of {}\n", cl.options.path, s.current(), migrations.size());
        for (const auto& a : s.applied) {
            fmt::print("  {:>4} {:<32} applied {}\n", a.version, a.name, a.applied_at);
        }
        for (const auto& m : s.pending) {
            fmt::print("  {:>4} {:<32} pending\n", m.version, m.name);
        }
        return 0;
    }
    const auto engine = asqlite::create_engine(cl.options);
    if (cl.command == "baseline") {
        asqlite::baseline(engine, migrations, *cl.version);
        fmt::print("{}: recorded 1..{} as applied\n", cl.options.path, *cl.version);
        return 0;
    }
    const auto versions =
        asqlite::migrate(engine, migrations, {.to = cl.version, .dry_run = cl.dry_run});
    for (const std::int64_t v : versions) {
        const auto& m = migrations[static_cast<std::size_t>(v - 1)];
        if (cl.dry_run) {
            fmt::print("-- migration {} ({}): would be applied\n{}\n", v, m.name, m.sql);
        } else {
            fmt::print("applied {} ({})\n", v, m.name);
        }
    }
    if (versions.empty()) {
        fmt::print("{}: nothing to apply\n", cl.options.path);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        }
    }
    try {
        auto parsed = parse(argc, argv);
        if (const auto* message = std::get_if<std::string>(&parsed)) {
            fmt::print(stderr, "asqlite-migrate: {}\n\n", *message);
            usage(stderr);
            return 2;
        }
        return run(std::get<command_line>(parsed));
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-migrate: error: {}\n", e.what());
        return 1;
    }
}
