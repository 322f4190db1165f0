#include "routes.hpp"

#include <openssl/evp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json.hpp>

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "asqlite/async_engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/logger.hpp"
#include "asqlite/stream.hpp"
#include "schema.hpp"

namespace file_service {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using asqlite::log_level;

/// A 4xx outcome decided by a handler; handle() turns it into a response.
struct http_error : std::runtime_error {
    http_error(http::status s, std::string detail, std::string_view allowed = {})
        : std::runtime_error(std::move(detail)), status(s), allow(allowed) {}
    http::status status;
    std::string_view allow;  // the Allow header of a 405
};

[[noreturn]] void bad_request(std::string detail) {
    throw http_error(http::status::bad_request, std::move(detail));
}

// The seed service's file_id: md5 hex of request_id + file name.
std::string md5_hex(std::string_view request_id, std::string_view file_name) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), request_id.data(), request_id.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), file_name.data(), file_name.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), digest.data(), &size) != 1) {
        throw std::runtime_error("OpenSSL md5 failed");
    }
    std::string hex;
    hex.reserve(2 * size);
    for (unsigned int i = 0; i < size; ++i) {
        fmt::format_to(std::back_inserter(hex), "{:02x}", digest[i]);
    }
    return hex;
}

/// A media type as "type/subtype" with token characters (RFC 9110),
/// optionally "; name=value" parameters of token characters: what can go
/// into a Content-Type header as it is.
bool valid_media_type(std::string_view t) {
    const auto token = [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
    };
    // States: in the type, in the subtype, in a parameter's name or value.
    enum { type, subtype, name, value } at = type;
    std::size_t run = 0;  // token characters since the last separator
    for (std::size_t i = 0; i < t.size(); ++i) {
        const char ch = t[i];
        if (token(ch)) {
            ++run;
            continue;
        }
        const bool after_token = run != 0;
        run = 0;
        if (ch == '/' && at == type && after_token) {
            at = subtype;
        } else if (ch == ';' && (at == subtype || at == value) && after_token) {
            at = name;
            if (i + 1 < t.size() && t[i + 1] == ' ') {
                ++i;
            }
        } else if (ch == '=' && at == name && after_token) {
            at = value;
        } else {
            return false;
        }
    }
    return run != 0 && (at == subtype || at == value) && t.size() <= 127;
}

/// The media type of a file name's extension; application/octet-stream
/// when unknown.
std::string_view guess_media_type(std::string_view file_name) {
    static constexpr std::pair<std::string_view, std::string_view> known[] = {
        {"txt", "text/plain"},        {"md", "text/markdown"},    {"csv", "text/csv"},
        {"json", "application/json"}, {"html", "text/html"},      {"htm", "text/html"},
        {"xml", "application/xml"},   {"pdf", "application/pdf"}, {"png", "image/png"},
        {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},     {"gif", "image/gif"},
        {"svg", "image/svg+xml"},     {"zip", "application/zip"}, {"py", "text/x-python"},
    };
    const auto dot = file_name.rfind('.');
    if (dot != std::string_view::npos) {
        std::string ext(file_name.substr(dot + 1));
        for (char& ch : ext) {
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        for (const auto& [e, type] : known) {
            if (ext == e) {
                return type;
            }
        }
    }
    return "application/octet-stream";
}

// request_id and file_name become a directory and a file under the data
// directory: anything that could name another place is refused.
void check_name(std::string_view field, std::string_view name) {
    if (name.empty()) {
        bad_request(fmt::format("'{}' must not be empty", field));
    }
    if (name == "." || name == "..") {
        bad_request(fmt::format("'{}' must not be '.' or '..'", field));
    }
    if (name.find_first_of(std::string_view("/\\\0", 3)) != std::string_view::npos) {
        bad_request(fmt::format("'{}' must not contain '/', '\\' or NUL", field));
    }
    if (name.size() > 255) {
        bad_request(fmt::format("'{}' is longer than 255 bytes", field));
    }
}

json::object parse_object(std::string_view body) {
    std::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) {
        bad_request(fmt::format("malformed JSON: {}", ec.message()));
    }
    if (!v.is_object()) {
        bad_request("the request body must be a JSON object");
    }
    return std::move(v.as_object());
}

std::optional<std::string> optional_string(const json::object& body, std::string_view field) {
    const json::value* v = body.if_contains(field);
    if (v == nullptr || v->is_null()) {
        return std::nullopt;
    }
    if (!v->is_string()) {
        bad_request(fmt::format("'{}' must be a string", field));
    }
    return std::string(v->get_string());
}

std::string required_string(const json::object& body, std::string_view field) {
    if (!body.contains(field)) {
        bad_request(fmt::format("missing field '{}'", field));
    }
    auto s = optional_string(body, field);
    if (!s) {
        bad_request(fmt::format("'{}' must be a string", field));
    }
    return std::move(*s);
}

/// A path segment of /download/{request_id}/{file_name}, %XX-decoded.
std::string percent_decode(std::string_view in) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        if (i + 2 >= in.size() || hex(in[i + 1]) < 0 || hex(in[i + 2]) < 0) {
            bad_request("malformed percent-encoding in the path");
        }
        out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
        i += 2;
    }
    return out;
}

std::string percent_encode(std::string_view in) {
    std::string out;
    for (const char c : in) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            fmt::format_to(std::back_inserter(out), "%{:02X}", u);
        }
    }
    return out;
}

std::string file_url(std::string_view kind, std::string_view request_id,
                     std::string_view file_name) {
    return fmt::format("{}/{}/{}/{}", route_prefix, kind, percent_encode(request_id),
                       percent_encode(file_name));
}

json::value or_null(const std::optional<std::string>& v) {
    return v ? json::value(*v) : json::value(nullptr);
}

json::object to_json(const stored_file& f) {
    json::object o;
    o["id"] = f.id ? json::value(*f.id) : json::value(nullptr);
    o["file_id"] = or_null(f.file_id);
    o["filename"] = f.filename;
    o["file_path"] = f.file_path;
    o["description"] = or_null(f.description);
    o["file_size"] = f.file_size ? json::value(*f.file_size) : json::value(nullptr);
    o["status"] = f.status;
    o["request_id"] = or_null(f.request_id);
    o["create_time"] = asqlite::format_timestamp(f.create_time);
    o["content_type"] = or_null(f.content_type);
    return o;
}

/// The files of get_file_list after its opening `{"files": [`: the rows
/// as they are stepped, then `], "count": N}`.
class file_list_source final : public body_source {
  public:
    explicit file_list_source(asqlite::row_stream<stored_file> rows) : rows_(std::move(rows)) {}

    asio::awaitable<std::optional<std::string>> next() override {
        if (finished_) {
            co_return std::nullopt;
        }
        std::string piece;
        for (std::size_t i = 0; i < asqlite::stream_batch_rows; ++i) {
            auto file = co_await rows_.next();
            if (!file) {
                piece += fmt::format(R"(], "count": {}}})", count_);
                finished_ = true;
                break;
            }
            if (count_++ != 0) {
                piece += ',';
            }
            piece += json::serialize(to_json(*file));
        }
        co_return piece;
    }

  private:
    asqlite::row_stream<stored_file> rows_;
    std::size_t count_ = 0;
    bool finished_ = false;
};

response json_response(const request& req, const json::value& body) {
    response res(http::status::ok, req.version());
    res.set(http::field::content_type, "application/json");
    res.body() = json::serialize(body);
    return res;
}

const std::string& select_sql(std::string_view where) {
    // Built once per WHERE clause: the same text hits each connection's
    // statement cache.
    static const std::string by_file_id =
        fmt::format("SELECT {} FROM fileinfo WHERE file_id = ?", stored_file_columns());
    static const std::string by_request_id = fmt::format(
        "SELECT {} FROM fileinfo WHERE request_id = ? ORDER BY id", stored_file_columns());
    // One statement for any number of ids: the list travels as one JSON
    // parameter, so there is no variable-count SQL and no bind limit.
    static const std::string by_file_ids = fmt::format(
        "SELECT {} FROM fileinfo WHERE file_id IN (SELECT value FROM json_each(?)) ORDER BY id",
        stored_file_columns());
    return where == "file_id" ? by_file_id : where == "request_id" ? by_request_id : by_file_ids;
}

// The seed's add flow (get_by_file_id, then UPDATE or INSERT, then
// get_by_file_id again, in three sessions) as one statement in one write
// transaction: concurrent uploads of the same file cannot race into a
// UNIQUE failure. A re-upload keeps the row (id, create_time) and updates
// what the new content changes, like the original's UPDATE.
const std::string& upsert_sql() {
    static const std::string sql = fmt::format(
        "INSERT INTO fileinfo (file_id, filename, file_path, description, file_size, status, "
        "request_id, content_type) VALUES (?, ?, ?, ?, ?, 1, ?, ?) "
        "ON CONFLICT(file_id) DO UPDATE SET file_path = excluded.file_path, "
        "description = coalesce(excluded.description, description), "
        "file_size = excluded.file_size, status = 1, content_type = excluded.content_type "
        "RETURNING {}",
        stored_file_columns());
    return sql;
}

/// Runs fn() on `pool` and resumes the caller on its own executor.
template <class Fn>
asio::awaitable<std::invoke_result_t<Fn&>> run_on(const asio::any_io_executor& pool, Fn fn) {
    using R = std::invoke_result_t<Fn&>;
    co_return co_await asio::co_spawn(
        pool, [fn = std::move(fn)]() mutable -> asio::awaitable<R> { co_return fn(); },
        asio::use_awaitable);
}

void write_file(const fs::path& path, std::string_view content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) {
        throw std::system_error(errno, std::generic_category(),
                                fmt::format("cannot write {}", path.string()));
    }
}

std::optional<std::string> read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void require_method(const request& req, http::verb verb) {
    if (req.method() != verb) {
        throw http_error(http::status::method_not_allowed,
                         fmt::format("use {} for this route", http::to_string(verb)),
                         http::to_string(verb));
    }
}

response failure_response(const std::exception_ptr& failure, const request& req) {
    try {
        std::rethrow_exception(failure);
    } catch (const http_error& e) {
        auto res = error_response(e.status, e.what(), req.version());
        if (!e.allow.empty()) {
            res.set(http::field::allow, e.allow);
        }
        return res;
    } catch (const asqlite::error& e) {
        asqlite::logger::global().log(log_level::error, "{} {}: database error {} ({}): {} [{}]",
                                      req.method_string(), req.target(), e.code().value(),
                                      e.code().message(), e.message(), e.sql());
        // The engine shutting down, or no connection free in time: a
        // condition of the service, not of the request.
        if (e.code() == asqlite::errc::pool_closed || e.code() == asqlite::errc::pool_timeout) {
            return error_response(http::status::service_unavailable, "database unavailable",
                                  req.version());
        }
        return error_response(http::status::internal_server_error, "database error", req.version());
    } catch (const std::exception& e) {
        asqlite::logger::global().log(log_level::error, "{} {}: {}", req.method_string(),
                                      req.target(), e.what());
    } catch (...) {
        asqlite::logger::global().log(log_level::error, "{} {}: unknown exception",
                                      req.method_string(), req.target());
    }
    return error_response(http::status::internal_server_error, "internal error", req.version());
}

}  // namespace

response error_response(http::status status, std::string_view detail, unsigned version) {
    response res(status, version);
    res.set(http::field::content_type, "application/json");
    res.body() = json::serialize(json::object{{"status", static_cast<int>(status)},
                                              {"error", http::obsolete_reason(status)},
                                              {"detail", detail}});
    return res;
}

routes::routes(std::filesystem::path data_dir, asio::any_io_executor file_io)
    : data_dir_(std::move(data_dir)), file_io_(std::move(file_io)) {
    // Content lives under files/; a new upload is staged under staging/ (same
    // file system) and renamed into place, so a reader never sees half a file.
    fs::create_directories(data_dir_ / "files");
    fs::create_directories(data_dir_ / "staging");
    data_dir_ = fs::canonical(data_dir_);
    staging_dir_ = data_dir_ / "staging";
}

asio::awaitable<reply> routes::handle(const request& req) const {
    std::exception_ptr failure;
    try {
        co_return co_await dispatch(req);
    } catch (...) {
        failure = std::current_exception();
    }
    reply answer{failure_response(failure, req), nullptr};
    co_return answer;
}

asio::awaitable<reply> routes::dispatch(const request& req) const {
    reply answer;
    std::string_view path = req.target();
    path = path.substr(0, path.find('?'));
    if (!path.starts_with(route_prefix) || !path.substr(route_prefix.size()).starts_with('/')) {
        throw http_error(http::status::not_found, "no such route");
    }
    const std::string_view route = path.substr(route_prefix.size() + 1);
    if (route == "upload_file") {
        require_method(req, http::verb::post);
        answer.res = co_await upload_file(req);
        co_return answer;
    }
    if (route == "get_file") {
        require_method(req, http::verb::post);
        answer.res = co_await get_file(req);
        co_return answer;
    }
    if (route == "get_file_list") {
        require_method(req, http::verb::post);
        co_return co_await get_file_list(req);
    }
    for (const std::string_view kind : {"download", "preview"}) {
        if (route.starts_with(kind) && route.substr(kind.size()).starts_with('/')) {
            require_method(req, http::verb::get);
            answer.res = co_await send_file(req, route.substr(kind.size() + 1), kind == "download");
            co_return answer;
        }
    }
    throw http_error(http::status::not_found, "no such route");
}

asio::awaitable<response> routes::upload_file(const request& req) const {
    const json::object body = parse_object(req.body());
    const std::string request_id = required_string(body, "request_id");
    const std::string file_name = required_string(body, "file_name");
    const std::optional<std::string> description = optional_string(body, "description");
    const std::string content = required_string(body, "content");
    const std::optional<std::string> given_type = optional_string(body, "content_type");
    check_name("request_id", request_id);
    check_name("file_name", file_name);
    if (given_type && !valid_media_type(*given_type)) {
        bad_request(
            "'content_type' must be a media type such as \"text/plain\" or "
            "\"text/csv; charset=utf-8\"");
    }
    const std::string content_type =
        given_type ? *given_type : std::string(guess_media_type(file_name));

    const std::string file_id = md5_hex(request_id, file_name);
    const fs::path dir = data_dir_ / "files" / request_id;
    const fs::path final_path = dir / file_name;
    const fs::path staged =
        staging_dir_ / fmt::format("{}-{}", file_id, staged_count_.fetch_add(1));
    co_await run_on(file_io_, [&] {
        fs::create_directories(dir);
        write_file(staged, content);
        return 0;
    });

    std::optional<stored_file> stored;
    try {
        auto session = co_await asqlite::get_async_session();
        // Row and content change together on the writer lane: the content is
        // renamed into place inside the transaction, so concurrent uploads of
        // one file serialise and the row's file_size always matches the file
        // on disk. A failed rename rolls the row back.
        stored = co_await session.write([&](asqlite::connection& c) {
            auto row = c.one<stored_file>(upsert_sql(), file_id, file_name, final_path.string(),
                                          description, static_cast<std::int64_t>(content.size()),
                                          request_id, content_type);
            fs::rename(staged, final_path);
            return row;
        });
    } catch (...) {
        std::error_code ignored;
        fs::remove(staged, ignored);
        throw;
    }
    json::object out = to_json(*stored);
    out["download_url"] = file_url("download", request_id, file_name);
    out["preview_url"] = file_url("preview", request_id, file_name);
    co_return json_response(req, out);
}

asio::awaitable<response> routes::get_file(const request& req) const {
    const json::object body = parse_object(req.body());
    const std::string request_id = required_string(body, "request_id");
    const std::string file_name = required_string(body, "file_name");
    check_name("request_id", request_id);
    check_name("file_name", file_name);

    auto session = co_await asqlite::get_async_session();
    auto file = co_await session.one_or_none<stored_file>(select_sql("file_id"),
                                                          md5_hex(request_id, file_name));
    if (!file) {
        throw http_error(http::status::not_found, "file not found");
    }
    co_return json_response(req, to_json(*file));
}

asio::awaitable<reply> routes::get_file_list(const request& req) const {
    const json::object body = parse_object(req.body());
    const json::value* ids = body.if_contains("file_ids");
    const bool by_request = body.contains("request_id");
    if ((ids != nullptr) == by_request) {
        bad_request("give exactly one of 'request_id' or 'file_ids'");
    }
    reply answer;
    if (by_request) {
        // A request id may have any number of files: streamed, a batch of
        // rows at a time, so the service's memory does not grow with them.
        const std::string request_id = required_string(body, "request_id");
        auto session = co_await asqlite::get_async_session();
        auto rows = co_await session.stream<stored_file>(select_sql("request_id"), request_id);
        answer.res = response(http::status::ok, req.version());
        answer.res.set(http::field::content_type, "application/json");
        answer.res.body() = R"({"files": [)";
        answer.rest = std::make_unique<file_list_source>(std::move(rows));
        co_return answer;
    }
    if (!ids->is_array()) {
        bad_request("'file_ids' must be an array of strings");
    }
    for (const auto& id : ids->get_array()) {
        if (!id.is_string()) {
            bad_request("'file_ids' must be an array of strings");
        }
    }
    auto session = co_await asqlite::get_async_session();
    const auto files =
        co_await session.all<stored_file>(select_sql("file_ids"), json::serialize(*ids));
    json::array list;
    list.reserve(files.size());
    for (const auto& f : files) {
        list.emplace_back(to_json(f));
    }
    answer.res =
        json_response(req, json::object{{"count", files.size()}, {"files", std::move(list)}});
    co_return answer;
}

asio::awaitable<response> routes::send_file(const request& req, std::string_view rest,
                                            bool attachment) const {
    // {request_id}/{file_name}: a file name with a raw '/' (or "../") shows
    // up here as extra segments, and is refused like any other bad name.
    const auto slash = rest.find('/');
    const std::string request_id = percent_decode(rest.substr(0, slash));
    const std::string file_name =
        slash == std::string_view::npos ? std::string() : percent_decode(rest.substr(slash + 1));
    check_name("request_id", request_id);
    check_name("file_name", file_name);

    auto session = co_await asqlite::get_async_session();
    auto file = co_await session.one_or_none<stored_file>(select_sql("file_id"),
                                                          md5_hex(request_id, file_name));
    session = asqlite::session();  // back to the pool before the file is read
    if (!file) {
        throw http_error(http::status::not_found, "file not found");
    }
    auto content = co_await run_on(file_io_, [&] { return read_file(file->file_path); });
    if (!content) {
        asqlite::logger::global().log(log_level::warn, "{}: row {} names a missing file {}",
                                      req.target(), file->id.value_or(0), file->file_path);
        throw http_error(http::status::not_found, "file content missing");
    }

    response res(http::status::ok, req.version());
    if (attachment) {
        // The type it was uploaded with; saved as a file, never shown.
        res.set(http::field::content_type, file->content_type.value_or("application/octet-stream"));
        res.set("X-Content-Type-Options", "nosniff");
        res.set(http::field::content_disposition,
                fmt::format("attachment; filename*=UTF-8''{}", percent_encode(file_name)));
    } else {
        // Shown as text whatever it contains: an uploaded page never runs.
        res.set(http::field::content_type, "text/plain; charset=utf-8");
        res.set("X-Content-Type-Options", "nosniff");
    }
    res.body() = std::move(*content);
    co_return res;
}

}  // namespace file_service
