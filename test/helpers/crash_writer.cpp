// Child process of the crash-durability test: commits rows through the async
// engine (synchronous=FULL) and reports each acknowledged commit on stdout,
// until it is killed.
//
// usage: asqlite_crash_writer DB_PATH FIRST_ID

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "asqlite/asqlite.hpp"

namespace asio = boost::asio;

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: asqlite_crash_writer DB_PATH FIRST_ID\n");
        return 2;
    }
    asio::io_context io;
    asqlite::engine_options o;
    o.path = argv[1];
    o.synchronous = "full";
    o.pool_size = 2;
    auto db = asqlite::create_async_engine(io.get_executor(), o);
    const long long first = std::atoll(argv[2]);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto s = co_await db.session();
            for (long long id = first;; ++id) {
                co_await s.write([id](asqlite::connection& c) {
                    c.execute("INSERT INTO acked (id, payload) VALUES (?, ?)", id,
                              std::string(200, 'x'));
                });
                // Acknowledged only after COMMIT returned.
                std::printf("%lld\n", id);
                std::fflush(stdout);
            }
        },
        asio::detached);
    io.run();
    return 0;
}
