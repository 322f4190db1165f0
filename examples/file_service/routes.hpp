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
#include <string_view>

namespace file_service {

namespace asio = boost::asio;
namespace http = boost::beast::http;

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

inline constexpr std::string_view route_prefix = "/v1/file_tool";

/// A JSON error body {"status": 400, "error": "Bad Request", "detail": ...}.
response error_response(http::status status, std::string_view detail, unsigned version);

class routes {
  public:
    /// Uploaded content goes under `data_dir` (created if missing);
    /// file-system work runs on `file_io`, never on the HTTP threads.
    routes(std::filesystem::path data_dir, asio::any_io_executor file_io);

    asio::awaitable<response> handle(const request& req) const;

  private:
    asio::awaitable<response> dispatch(const request& req) const;
    asio::awaitable<response> upload_file(const request& req) const;
    asio::awaitable<response> get_file(const request& req) const;
    asio::awaitable<response> get_file_list(const request& req) const;
    asio::awaitable<response> send_file(const request& req, std::string_view rest,
                                        bool attachment) const;

    std::filesystem::path data_dir_;
    std::filesystem::path staging_dir_;
    asio::any_io_executor file_io_;
    mutable std::atomic<std::uint64_t> staged_count_{0};
};

}  // namespace file_service
