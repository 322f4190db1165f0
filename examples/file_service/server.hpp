#pragma once
// The HTTP/1.1 transport of the file service: an acceptor, one coroutine per
// connection with keep-alive, and a graceful shutdown. Requests are handed to
// `routes`; this file knows nothing of the database.
//
// Threading: with more than one io thread each connection runs on its own
// strand (the acceptor and shutdown on another), so a connection's socket,
// timers and cancellation are only ever touched from one thread at a time.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>

#include "routes.hpp"

namespace file_service {

struct server_options {
    asio::ip::tcp::endpoint endpoint;
    std::size_t io_threads = 1;
    std::uint64_t max_body = 8 * 1024 * 1024;
    /// A keep-alive connection with no request for this long is closed.
    std::chrono::seconds idle_timeout{60};
    /// Reading one request, or writing one response, may take this long.
    std::chrono::seconds io_timeout{30};
};

class server {
  public:
    /// Binds and listens (throws std::system_error when the address is taken).
    server(asio::io_context& io, const routes& handler, server_options options);
    ~server();

    asio::ip::tcp::endpoint local_endpoint() const;
    /// Starts accepting.
    void start();
    /// Stops accepting, closes idle keep-alive connections at once, and lets
    /// requests in flight finish (their response says Connection: close).
    /// Once `grace` has passed, `after_grace` runs (the caller stops what
    /// the requests still busy wait for: the database's statements) and
    /// their connections are closed. Completes when no connection is left.
    /// Runs on the acceptor's strand.
    asio::awaitable<void> shutdown(std::chrono::milliseconds grace,
                                   std::function<void()> after_grace);
    const asio::strand<asio::io_context::executor_type>& strand() const noexcept { return strand_; }

  private:
    struct connection;

    asio::awaitable<void> accept_loop();
    asio::awaitable<void> serve(std::shared_ptr<connection> conn);
    asio::awaitable<void> reject(connection& conn, http::status status, std::string_view detail,
                                 unsigned version);
    /// Sends a reply whose body is streamed, chunked; false when the
    /// connection is to close (a write failed, or the body's source did,
    /// leaving the response unfinished).
    asio::awaitable<bool> write_streamed(connection& conn, reply& answer);
    void for_each_connection(void (*action)(connection&));

    asio::io_context& io_;
    const routes& routes_;
    server_options options_;
    asio::strand<asio::io_context::executor_type> strand_;
    asio::ip::tcp::acceptor acceptor_;
    std::atomic<bool> stopping_{false};

    std::mutex mutex_;
    std::set<std::shared_ptr<connection>> connections_;
};

}  // namespace file_service
