// asqlite-backup: an online backup of a live database (async_engine::backup),
// for operators: other processes may go on reading and writing it.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "asqlite/async_engine.hpp"
#include "asqlite/error.hpp"

namespace {

namespace asio = boost::asio;

void usage(std::FILE* out) {
    fmt::print(out,
               "usage: asqlite-backup [--quiet] SRC DEST\n"
               "\n"
               "Copies the SQLite database SRC (a file or sqlite:/// URL) to DEST while it is\n"
               "in use: the copy is the database as it was when the backup began, taken in\n"
               "steps inside one read transaction, so writers go on. DEST is written as\n"
               "DEST.asqlite-partial-* and renamed once complete; it must not exist.\n"
               "\n"
               "  --quiet     no progress lines\n"
               "  --help      show this text\n"
               "\n"
               "Exit status: 0 copied, 1 failed (the message says why), 2 bad usage.\n");
}

}  // namespace

int main(int argc, char** argv) {
    bool quiet = false;
    std::string source;
    std::string destination;
    int positional = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        }
        if (arg == "--quiet") {
            quiet = true;
        } else if (!arg.empty() && arg.front() == '-') {
            fmt::print(stderr, "asqlite-backup: unknown option '{}'\n", arg);
            usage(stderr);
            return 2;
        } else if (positional == 0) {
            source = arg;
            ++positional;
        } else if (positional == 1) {
            destination = arg;
            ++positional;
        } else {
            fmt::print(stderr, "asqlite-backup: one source and one destination, got more\n");
            usage(stderr);
            return 2;
        }
    }
    if (positional != 2) {
        usage(stderr);
        return 2;
    }
    try {
        asqlite::engine_options options = asqlite::engine_options::from_url(source);
        std::error_code ec;
        if (options.path != ":memory:" && !std::filesystem::exists(options.path, ec)) {
            fmt::print(stderr, "asqlite-backup: source database '{}' does not exist\n",
                       options.path);
            return 1;
        }
        options.echo = false;
        options.pool_size = 2;
        asio::io_context io;
        auto db = asqlite::create_async_engine(io.get_executor(), options);
        asqlite::backup_options how;
        std::size_t last_percent = 101;
        if (!quiet) {
            how.on_progress = [&](const asqlite::backup_progress& p) {
                const std::size_t percent =
                    p.total == 0 ? 100 : (p.total - p.remaining) * 100 / p.total;
                if (percent / 10 != last_percent / 10 || p.remaining == 0) {
                    fmt::print("asqlite-backup: {}% ({} of {} pages)\n", percent,
                               p.total - p.remaining, p.total);
                    last_percent = percent;
                }
            };
        }
        std::exception_ptr failure;
        asio::co_spawn(io, db.backup(destination, how),
                       [&](std::exception_ptr ep) { failure = ep; });
        io.run();
        if (failure) {
            std::rethrow_exception(failure);
        }
        if (!quiet) {
            fmt::print("asqlite-backup: {} copied to {}\n", source, destination);
        }
        return 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-backup: {}\n", e.what());
        return 1;
    }
}
