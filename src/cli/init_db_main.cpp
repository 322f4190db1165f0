// asqlite-init-db: creates the registered tables (FileInfo) in the database
// named by SQLITE_DB_PATH (or --db), like `python -m genie_tool.db.db_engine`.

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <string_view>

#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"

namespace {

void usage(std::FILE* out) {
    fmt::print(out,
               "usage: asqlite-init-db [--db PATH] [--quiet]\n"
               "\n"
               "Creates the asqlite schema (the fileinfo table and its indexes) in a SQLite\n"
               "database. Safe to run more than once.\n"
               "\n"
               "  --db PATH   database file or sqlite:/// URL (default: $SQLITE_DB_PATH,\n"
               "              else autobots.db in the working directory)\n"
               "  --quiet     do not echo SQL statements\n"
               "  --help      show this text\n"
               "\n"
               "Environment: SQLITE_DB_PATH and the ASQLITE_* variables (see docs/async.md).\n");
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto options = asqlite::engine_options::from_env();
        for (int i = 1; i < argc; ++i) {
            const std::string_view arg = argv[i];
            if (arg == "--help" || arg == "-h") {
                usage(stdout);
                return 0;
            }
            if (arg == "--quiet" || arg == "-q") {
                options.echo = false;
            } else if (arg == "--db" && i + 1 < argc) {
                options.path = asqlite::path_from_url(argv[++i]);
            } else if (arg.starts_with("--db=")) {
                options.path = asqlite::path_from_url(arg.substr(5));
            } else {
                fmt::print(stderr, "asqlite-init-db: unknown or incomplete argument '{}'\n\n", arg);
                usage(stderr);
                return 2;
            }
        }
        const auto engine = asqlite::create_engine(options);
        const auto report = asqlite::init_db(engine, asqlite::file_info_metadata());
        for (const auto& r : report) {
            fmt::print("{}: {}\n", r.table, asqlite::to_string(r.status));
        }
        return 0;
    } catch (const asqlite::error& e) {
        fmt::print(stderr, "asqlite-init-db: error: {}\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-init-db: error: {}\n", e.what());
        return 1;
    }
}
