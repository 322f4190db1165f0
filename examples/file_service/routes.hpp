#pragma once
// The /v1/file_tool routes of the seed's file-tool service: one parsed HTTP
// request in, one response out. Every handler checks out its own session with
// `co_await asqlite::get_async_session()` (the seed's Depends(get_async_session)),
// so the process default engine must be set or configurable from the
// environment before the first request.
//
// Errors never escape handle(): bad input is a 4xx JSON error, a database or
// file-system failure a 500 whose diagnostic goes to the log.
// Thread safety: handle() may run on any number of coroutines at once.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace file_service {

namespace asio = boost::asio;
namespace http = boost::beast::http;

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

inline constexpr std::string_view route_prefix = "/v1/file_tool";

/// A JSON error body {"status": 400, "error": "Bad Request", "detail": ...}.
response error_response(http::status status, std::string_view detail, unsigned version);

/// The rest of a response's body, made while it is sent: the server sends
/// the response chunked (Transfer-Encoding: chunked), its own body first,
/// then each piece next() gives until std::nullopt. A next() that throws
/// leaves the response unfinished: the server closes the connection
/// without the last chunk, so the client sees the failure.
class body_source {
  public:
    virtual ~body_source() = default;
    virtual asio::awaitable<std::optional<std::string>> next() = 0;
};

/// A handler's answer: the response, and the source of the rest of its
/// body when it is streamed (null: the response holds all of it).
struct reply {
    response res;
    std::unique_ptr<body_source> rest;
};

class routes {
  public:
    /// Uploaded content goes under `data_dir` (created if missing);
    /// file-system work runs on `file_io`, never on the HTTP threads.
    routes(std::filesystem::path data_dir, asio::any_io_executor file_io);

    asio::awaitable<reply> handle(const request& req) const;

  private:
    asio::awaitable<reply> dispatch(const request& req) const;
    asio::awaitable<response> upload_file(const request& req) const;
    asio::awaitable<response> get_file(const request& req) const;
    asio::awaitable<reply> get_file_list(const request& req) const;
    asio::awaitable<response> send_file(const request& req, std::string_view rest,
                                        bool attachment) const;

    std::filesystem::path data_dir_;
    std::filesystem::path staging_dir_;
    asio::any_io_executor file_io_;
    mutable std::atomic<std::uint64_t> staged_count_{0};
};

}  // namespace file_service
