#include "server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "asqlite/logger.hpp"

namespace file_service {
namespace {

namespace beast = boost::beast;
using asio::ip::tcp;
using asqlite::log_level;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

void log_exception(std::string_view where, const std::exception_ptr& e) {
    if (!e) {
        return;
    }
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        asqlite::logger::global().log(log_level::error, "{}: {}", where, x.what());
    } catch (...) {
        asqlite::logger::global().log(log_level::error, "{}: unknown exception", where);
    }
}

bool is_http_parse_error(const boost::system::error_code& ec) {
    return ec.category() == beast::http::make_error_code(beast::http::error::bad_method).category();
}

}  // namespace

struct server::connection {
    explicit connection(tcp::socket socket) : stream(std::move(socket)) {}
    beast::tcp_stream stream;
    // Waiting for the first byte of a request; only touched on the
    // connection's executor.
    bool idle = false;
};

server::server(asio::io_context& io, const routes& handler, server_options options)
    : io_(io),
      routes_(handler),
      options_(options),
      strand_(asio::make_strand(io)),
      acceptor_(strand_, options.endpoint) {}

server::~server() = default;

tcp::endpoint server::local_endpoint() const {
    return acceptor_.local_endpoint();
}

void server::start() {
    asio::co_spawn(strand_, accept_loop(),
                   [](std::exception_ptr e) { log_exception("accept loop", e); });
}

asio::awaitable<void> server::accept_loop() {
    while (!stopping_) {
        // One strand per connection when several threads run the io_context;
        // with one thread the io_context is already serial.
        asio::any_io_executor executor = options_.io_threads > 1
                                             ? asio::any_io_executor(asio::make_strand(io_))
                                             : asio::any_io_executor(io_.get_executor());
        auto [ec, socket] = co_await acceptor_.async_accept(executor, tuple_awaitable);
        if (stopping_ || ec == asio::error::operation_aborted) {
            break;
        }
        if (ec) {
            // EMFILE and friends: wait a little instead of spinning.
            asqlite::logger::global().log(log_level::warn, "accept: {}", ec.message());
            asio::steady_timer pause(strand_, std::chrono::milliseconds(100));
            co_await pause.async_wait(tuple_awaitable);
            continue;
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto conn = std::make_shared<connection>(std::move(socket));
        {
            // Registered before shutdown() can look, since both run here.
            std::lock_guard lock(mutex_);
            connections_.insert(conn);
        }
        asio::co_spawn(executor, serve(conn),
                       [](std::exception_ptr e) { log_exception("connection", e); });
    }
}

asio::awaitable<void> server::serve(std::shared_ptr<connection> conn) {
    try {
        beast::flat_buffer buffer;
        for (;;) {
            if (buffer.size() == 0) {
                conn->idle = true;
                if (stopping_) {
                    break;
                }
                conn->stream.expires_after(options_.idle_timeout);
                auto [ec, n] = co_await conn->stream.async_read_some(buffer.prepare(16 * 1024),
                                                                     tuple_awaitable);
                conn->idle = false;
                if (ec) {
                    break;  // closed by the client, idle timeout, or shutdown
                }
                buffer.commit(n);
            }
            // From the first byte on, the request is in flight: shutdown lets
            // it finish.
            http::request_parser<http::string_body> parser;
            parser.body_limit(options_.max_body);
            conn->stream.expires_after(options_.io_timeout);
            auto [ec, n] = co_await http::async_read(conn->stream, buffer, parser, tuple_awaitable);
            if (ec == http::error::body_limit) {
                co_await reject(*conn, http::status::payload_too_large,
                                fmt::format("the body is larger than {} bytes", options_.max_body),
                                parser.get().version());
                break;
            }
            if (ec == http::error::header_limit) {
                co_await reject(*conn, http::status::request_header_fields_too_large,
                                "the request header is too large", 11);
                break;
            }
            if (is_http_parse_error(ec) && ec != http::error::end_of_stream &&
                ec != http::error::partial_message) {
                co_await reject(*conn, http::status::bad_request,
                                fmt::format("malformed HTTP request: {}", ec.message()), 11);
                break;
            }
            if (ec) {
                break;  // the client went away or timed out mid-request
            }

            request req = parser.release();
            reply answer = co_await routes_.handle(req);
            response& res = answer.res;
            const bool keep_alive = req.keep_alive() && !stopping_;
            res.keep_alive(keep_alive);
            res.set(http::field::server, "asqlite-file-service");
            if (answer.rest) {
                if (!co_await write_streamed(*conn, answer)) {
                    break;
                }
            } else {
                res.prepare_payload();
                conn->stream.expires_after(options_.io_timeout);
                auto [write_ec, written] =
                    co_await http::async_write(conn->stream, res, tuple_awaitable);
                if (write_ec) {
                    break;
                }
            }
            if (!keep_alive) {
                break;
            }
        }
    } catch (...) {
        log_exception("connection", std::current_exception());
    }
    boost::system::error_code ignored;
    conn->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn->stream.close();
    std::lock_guard lock(mutex_);
    connections_.erase(conn);
}

asio::awaitable<bool> server::write_streamed(connection& conn, reply& answer) {
    http::response<http::empty_body> head(answer.res.result(), answer.res.version());
    for (const auto& field : answer.res) {
        head.set(field.name_string(), field.value());
    }
    // HTTP/1.0 has no chunks: there the body ends with the connection.
    const bool chunked = answer.res.version() >= 11;
    head.keep_alive(chunked && answer.res.keep_alive());
    head.chunked(chunked);
    http::response_serializer<http::empty_body> header(head);
    conn.stream.expires_after(options_.io_timeout);
    if (auto [ec, n] = co_await http::async_write_header(conn.stream, header, tuple_awaitable);
        ec) {
        co_return false;
    }
    std::optional<std::string> piece = std::move(answer.res.body());
    while (piece) {
        if (!piece->empty()) {
            conn.stream.expires_after(options_.io_timeout);
            boost::system::error_code ec;
            if (chunked) {
                std::tie(ec, std::ignore) = co_await asio::async_write(
                    conn.stream, http::make_chunk(asio::buffer(*piece)), tuple_awaitable);
            } else {
                std::tie(ec, std::ignore) =
                    co_await asio::async_write(conn.stream, asio::buffer(*piece), tuple_awaitable);
            }
            if (ec) {
                co_return false;
            }
        }
        try {
            piece = co_await answer.rest->next();
        } catch (...) {
            log_exception("streamed response", std::current_exception());
            co_return false;  // no last chunk: the client sees it unfinished
        }
    }
    if (!chunked) {
        co_return false;  // the close ends the body
    }
    conn.stream.expires_after(options_.io_timeout);
    auto [ec, n] =
        co_await asio::async_write(conn.stream, http::make_chunk_last(), tuple_awaitable);
    co_return !ec;
}

asio::awaitable<void> server::reject(connection& conn, http::status status, std::string_view detail,
                                     unsigned version) {
    response res = error_response(status, detail, version);
    res.keep_alive(false);
    res.set(http::field::server, "asqlite-file-service");
    res.prepare_payload();
    conn.stream.expires_after(options_.io_timeout);
    auto [ec, n] = co_await http::async_write(conn.stream, res, tuple_awaitable);
    if (ec) {
        co_return;
    }
    // Lingering close: read and drop what the client is still sending, so
    // that closing does not reset the connection before the client has read
    // the response (an upload over the limit is usually still on its way).
    boost::system::error_code ignored;
    conn.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    conn.stream.expires_after(std::chrono::seconds(2));
    std::array<char, 16 * 1024> sink{};
    std::uint64_t drained = 0;
    while (drained < 2 * options_.max_body + 1024 * 1024) {
        auto [read_ec, k] =
            co_await conn.stream.async_read_some(asio::buffer(sink), tuple_awaitable);
        if (read_ec) {
            break;
        }
        drained += k;
    }
}

void server::for_each_connection(void (*action)(connection&)) {
    std::vector<std::shared_ptr<connection>> all;
    {
        std::lock_guard lock(mutex_);
        all.assign(connections_.begin(), connections_.end());
    }
    for (auto& conn : all) {
        // On the connection's own executor: its stream is not thread-safe.
        asio::post(conn->stream.get_executor(), [conn, action] { action(*conn); });
    }
}

asio::awaitable<void> server::shutdown(std::chrono::milliseconds grace,
                                       std::function<void()> after_grace) {
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for_each_connection([](connection& c) {
        if (c.idle) {
            c.stream.cancel();
        }
    });
    auto deadline = std::chrono::steady_clock::now() + grace;
    asio::steady_timer timer(strand_);
    for (;;) {
        std::size_t left = 0;
        {
            std::lock_guard lock(mutex_);
            left = connections_.size();
        }
        if (left == 0) {
            break;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            asqlite::logger::global().log(
                log_level::warn, "shutdown: closing {} connection(s) still busy after {} ms", left,
                grace.count());
            after_grace();
            for_each_connection([](connection& c) { c.stream.close(); });
            deadline = std::chrono::steady_clock::time_point::max();
        }
        timer.expires_after(std::chrono::milliseconds(10));
        co_await timer.async_wait(tuple_awaitable);
    }
}

}  // namespace file_service
