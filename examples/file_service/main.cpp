// asqlite-file-service: the seed's FastAPI file-tool service as a Beast
// HTTP/1.1 server on asqlite's async engine. See docs/file-service.md.
//
// Startup mirrors the original's deployment: the schema through the
// synchronous engine (migrations, schema.hpp), then the async engine for the
// request handlers. The process default
// engine is created here, explicitly, rather than lazily on the first
// get_async_session(): a bad ASQLITE_* variable then stops the server before
// it listens instead of failing every request, and the engine is bound to
// the io_context itself, not to whichever connection strand asked first.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>

#include <fmt/format.h>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "asqlite/async_engine.hpp"
#include "asqlite/engine.hpp"
#include "asqlite/logger.hpp"
#include "asqlite/sqlite_config.hpp"
#include "routes.hpp"
#include "schema.hpp"
#include "server.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

constexpr std::string_view usage =
    "usage: asqlite-file-service [--db PATH] [--bind ADDRESS] [--port N] [--data-dir DIR]\n"
    "                            [--io-threads N] [--max-body BYTES] [--shutdown-grace S]\n"
    "\n"
    "  --db PATH         database file or sqlite:/// URL (default: $SQLITE_DB_PATH, else "
    "autobots.db)\n"
    "  --bind ADDRESS    listen address (default: $FILE_SERVICE_BIND, else 127.0.0.1)\n"
    "  --port N          listen port, 0 picks a free one (default: $FILE_SERVICE_PORT, else "
    "8000)\n"
    "  --data-dir DIR    where uploaded content is stored (default: $FILE_SERVICE_DATA_DIR, "
    "else file_service_data)\n"
    "  --io-threads N    threads running the HTTP side (default 1)\n"
    "  --max-body BYTES  largest request body accepted, else 413 (default 8388608)\n"
    "  --shutdown-grace S  seconds requests in flight may take after SIGINT/SIGTERM before\n"
    "                    their statements are interrupted (503) (default 10)\n"
    "\n"
    "The pool and pragma settings come from the ASQLITE_* variables (see README.md).\n"
    "Prints 'listening on ADDRESS:PORT' once ready; SIGINT or SIGTERM stop it gracefully.\n";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct config {
    std::optional<std::string> db;
    std::string bind = "127.0.0.1";
    std::uint64_t port = 8000;
    std::string data_dir = "file_service_data";
    std::uint64_t io_threads = 1;
    std::uint64_t max_body = 8 * 1024 * 1024;
    std::uint64_t shutdown_grace_s = 10;
};

std::uint64_t parse_number(std::string_view name, std::string_view text, std::uint64_t min,
                           std::uint64_t max) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty() || v < min ||
        v > max) {
        throw usage_error(
            fmt::format("{} must be a number from {} to {}, got '{}'", name, min, max, text));
    }
    return v;
}

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
}

config parse_config(int argc, char** argv) {
    config c;
    if (const char* v = env("FILE_SERVICE_BIND")) {
        c.bind = v;
    }
    if (const char* v = env("FILE_SERVICE_PORT")) {
        c.port = parse_number("FILE_SERVICE_PORT", v, 0, 65535);
    }
    if (const char* v = env("FILE_SERVICE_DATA_DIR")) {
        c.data_dir = v;
    }
    for (int i = 1; i < argc; ++i) {
        const std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            fmt::print("{}", usage);
            std::exit(0);
        }
        if (i + 1 >= argc) {
            throw usage_error(fmt::format("unknown option or missing value: {}", flag));
        }
        const std::string_view value = argv[++i];
        if (flag == "--db") {
            c.db = std::string(value);
        } else if (flag == "--bind") {
            c.bind = std::string(value);
        } else if (flag == "--port") {
            c.port = parse_number("--port", value, 0, 65535);
        } else if (flag == "--data-dir") {
            c.data_dir = std::string(value);
        } else if (flag == "--io-threads") {
            c.io_threads = parse_number("--io-threads", value, 1, 256);
        } else if (flag == "--shutdown-grace") {
            c.shutdown_grace_s = parse_number("--shutdown-grace", value, 0, 3600);
        } else if (flag == "--max-body") {
            c.max_body = parse_number("--max-body", value, 1, std::uint64_t{1} << 32);
        } else {
            throw usage_error(fmt::format("unknown option: {}", flag));
        }
    }
    return c;
}

int run(const config& cfg) {
    // Process-wide SQLite settings: before the first connection opens.
    asqlite::configure_sqlite();
    auto& log = asqlite::logger::global();
    auto options = asqlite::engine_options::from_env();  // SQLITE_DB_PATH, ASQLITE_*
    if (cfg.db) {
        options.path = asqlite::path_from_url(*cfg.db);
    }
    // The seed's `python -m genie_tool.db.db_engine`, as versioned
    // migrations: the synchronous engine (echo on unless ASQLITE_ECHO says
    // otherwise) brings the schema up to date, a database from before the
    // migrations included (schema.hpp).
    file_service::prepare_database(asqlite::create_engine(options));

    boost::system::error_code address_ec;
    const auto address = asio::ip::make_address(cfg.bind, address_ec);
    if (address_ec) {
        throw usage_error(fmt::format("--bind: '{}' is not an IP address", cfg.bind));
    }

    const auto threads = static_cast<int>(cfg.io_threads);
    asio::io_context io(threads);
    asio::thread_pool file_io(2);
    asqlite::set_default_engine(asqlite::create_async_engine(io.get_executor(), options));

    const file_service::routes routes(cfg.data_dir, file_io.get_executor());
    file_service::server server(io, routes,
                                {.endpoint = {address, static_cast<unsigned short>(cfg.port)},
                                 .io_threads = cfg.io_threads,
                                 .max_body = cfg.max_body});
    // The signals are caught before the port is announced: a SIGTERM sent
    // as soon as "listening" is read shuts down cleanly, never kills.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (ec) {
            return;
        }
        log.log(asqlite::log_level::info, "file service: signal {}, shutting down", signal);
        asio::co_spawn(
            server.strand(),
            [&]() -> asio::awaitable<void> {
                auto& db = asqlite::default_engine(io.get_executor());
                co_await server.shutdown(std::chrono::seconds(cfg.shutdown_grace_s), [&db] {
                    // Requests still busy: their statements are interrupted
                    // (they answer 503), without blocking this thread.
                    db.async_close(0s, asio::detached);
                });
                // Every session is back: close the pool and its connections.
                co_await db.async_close(0s);
                asqlite::reset_default_engine();
            },
            [](std::exception_ptr e) {
                if (e) {
                    std::rethrow_exception(e);
                }
            });
    });
    const auto endpoint = server.local_endpoint();
    fmt::print("listening on {}:{}\n", endpoint.address().to_string(), endpoint.port());
    std::fflush(stdout);
    log.log(asqlite::log_level::info, "file service: database {}, data under {}, {} io thread(s)",
            options.path, cfg.data_dir, threads);
    server.start();

    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) {
        extra.emplace_back([&io] { io.run(); });
    }
    io.run();
    for (auto& t : extra) {
        t.join();
    }
    file_io.join();
    log.log(asqlite::log_level::info, "file service: stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse_config(argc, argv));
    } catch (const usage_error& e) {
        fmt::print(stderr, "asqlite-file-service: {}\n{}", e.what(), usage);
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-file-service: error: {}\n", e.what());
        return 1;
    }
}
