// Child process of the crash-durability test: commits rows through the async
// engine (synchronous=FULL) and reports each acknowledged commit on stdout,
// until it is killed. With WRITERS > 1, that many coroutines write at once
// (ids FIRST_ID + w, + WRITERS, ...), half through write(fn) and half as
// autocommit statements, so their writes share group commits; every 64
// acknowledgements it also prints "g N", N the group commits so far.
//
// usage: asqlite_crash_writer DB_PATH FIRST_ID [WRITERS]

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "asqlite/asqlite.hpp"

namespace asio = boost::asio;

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: asqlite_crash_writer DB_PATH FIRST_ID [WRITERS]\n");
        return 2;
    }
    const long long writers = argc == 4 ? std::atoll(argv[3]) : 1;
    if (writers < 1) {
        std::fprintf(stderr, "WRITERS must be at least 1\n");
        return 2;
    }
    asio::io_context io;
    asqlite::engine_options o;
    o.path = argv[1];
    o.synchronous = "full";
    o.pool_size = 2;
    auto db = asqlite::create_async_engine(io.get_executor(), o);
    const long long first = std::atoll(argv[2]);
    long long acknowledged = 0;
    for (long long w = 0; w < writers; ++w) {
        asio::co_spawn(
            io,
            [&, w]() -> asio::awaitable<void> {
                auto s = co_await db.session();
                for (long long id = first + w;; id += writers) {
                    if (w % 2 == 0) {
                        co_await s.write([id](asqlite::connection& c) {
                            c.execute("INSERT INTO acked (id, payload) VALUES (?, ?)", id,
                                      std::string(200, 'x'));
                        });
                    } else {
                        co_await s.execute("INSERT INTO acked (id, payload) VALUES (?, ?)", id,
                                           std::string(200, 'x'));
                    }
                    // Acknowledged only after COMMIT returned.
                    std::printf("%lld\n", id);
                    if (++acknowledged % 64 == 0) {
                        std::printf("g %llu\n",
                                    static_cast<unsigned long long>(db.stats().group_commits));
                    }
                    std::fflush(stdout);
                }
            },
            asio::detached);
    }
    io.run();
    return 0;
}
