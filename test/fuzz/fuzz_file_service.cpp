// fuzz_file_service: the file service's request handling
// (examples/file_service/routes.cpp), fed whole HTTP requests without a
// socket.
//
// The input is the byte stream of one keep-alive connection. It is parsed as
// the server does (server.cpp: Beast's request_parser, its 8 KiB header limit,
// a body limit, here 64 KiB), each request handed to routes::handle() on the
// async engine (a file database and a data directory in a scratch
// directory, emptied before each input), until the stream ends or a request
// cannot be read. Properties, for every response:
// 1. It is a well-formed HTTP response: Beast serialises it as the server
//    sends it and reads it back with the same status, headers and body.
// 2. Its status is in the documented error model (docs/file-service.md):
//    200, 400, 404, 405 (with Allow), 413, 431; never 500 or 503 here,
//    where the database and the disk are healthy. Every error is the JSON
//    object {"status": N, "error": reason, "detail": text} with N the status.
// 3. Nothing outside the data directory is touched, and nothing is written
//    for a refused request: the scratch directory (data directory, a
//    sibling directory with a file in it, the database's directory left
//    aside) is compared before and after each request. A refused request
//    (not 200) changes nothing; an answered upload changes exactly
//    data/files/<request_id>/<file_name> (and creates that directory),
//    which then holds the uploaded content; any other answer changes
//    nothing.
// 4. A downloaded or previewed body is the content of a file under
//    data/files/: nothing else is ever read.

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include "asqlite/async_engine.hpp"
#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/logger.hpp"
#include "routes.hpp"
#include "schema.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;

constexpr std::uint64_t max_body = 64 * 1024;

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "fuzz_file_service: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

/// Every file and directory under root (except the database's directory),
/// with each file's content.
using tree = std::map<std::string, std::optional<std::string>>;  // nullopt: a directory

tree snapshot(const fs::path& root) {
    tree t;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        const std::string rel = fs::relative(it->path(), root).string();
        if (rel == "db") {
            it.disable_recursion_pending();
            continue;
        }
        if (it->is_directory()) {
            t.emplace(rel, std::nullopt);
        } else {
            std::ifstream in(it->path(), std::ios::binary);
            t.emplace(rel, std::string(std::istreambuf_iterator<char>(in), {}));
        }
    }
    return t;
}

std::string describe(const tree& before, const tree& after) {
    std::string out;
    for (const auto& [path, content] : after) {
        auto it = before.find(path);
        if (it == before.end()) {
            out += "created " + path + "\n";
        } else if (it->second != content) {
            out += "changed " + path + "\n";
        }
    }
    for (const auto& [path, content] : before) {
        if (!after.contains(path)) {
            out += "removed " + path + "\n";
        }
    }
    return out;
}

struct service {
    fs::path root;  // scratch: data/, db/, outside/
    asio::io_context io;
    asio::thread_pool file_io{1};
    std::optional<file_service::routes> routes;
    std::optional<asqlite::engine> sync;

    service() {
        const char* tmp = std::getenv("TMPDIR");
        std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/asqlite-fuzz-XXXXXX";
        if (mkdtemp(pattern.data()) == nullptr) {
            fail("mkdtemp failed", pattern);
        }
        root = pattern;
        fs::create_directories(root / "db");
        fs::create_directories(root / "outside");
        std::ofstream(root / "outside" / "secret.txt") << "not for download";
        asqlite::logger::global().set_level(asqlite::log_level::off);

        asqlite::engine_options options;
        options.path = (root / "db" / "files.db").string();
        options.echo = false;
        options.pool_size = 3;
        options.threads = 1;
        sync.emplace(asqlite::create_engine(options));
        file_service::prepare_database(*sync);  // the service's schema, as it starts
        asqlite::set_default_engine(asqlite::create_async_engine(io.get_executor(), options));
        routes.emplace(root / "data", file_io.get_executor());
    }

    ~service() {
        asqlite::reset_default_engine();
        std::error_code ignored;
        fs::remove_all(root, ignored);
    }

    void reset() {
        auto conn = sync->connect();
        conn.exec("DELETE FROM fileinfo");
        for (const char* dir : {"files", "staging"}) {
            for (const auto& entry : fs::directory_iterator(root / "data" / dir)) {
                fs::remove_all(entry.path());
            }
        }
    }

    /// The reply, with a streamed body read to its end into the response
    /// (as a client that de-chunks it sees it).
    file_service::response handle(const file_service::request& req) {
        std::optional<file_service::response> res;
        asio::co_spawn(io, whole(req), [&res](std::exception_ptr e, file_service::response r) {
            if (e) {
                fail("routes::handle() threw, or a streamed body failed", "");
            }
            res = std::move(r);
        });
        while (!res) {
            if (io.run_one() == 0) {
                io.restart();
            }
        }
        return std::move(*res);
    }

    asio::awaitable<file_service::response> whole(file_service::request req) {
        file_service::reply answer = co_await routes->handle(req);
        while (answer.rest) {
            auto piece = co_await answer.rest->next();
            if (!piece) {
                break;
            }
            answer.res.body() += *piece;
        }
        co_return std::move(answer.res);
    }
};

/// Property 1 and 2.
void check_response(file_service::response res, const std::string& what) {
    // As the server sends it.
    res.keep_alive(true);
    res.set(http::field::server, "asqlite-file-service");
    res.prepare_payload();
    std::ostringstream wire;
    wire << res;
    const std::string sent = wire.str();

    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(16 * 1024 * 1024);
    beast::error_code ec;
    parser.put(asio::buffer(sent), ec);
    if (!ec && !parser.is_done()) {
        parser.put_eof(ec);
    }
    if (ec || !parser.is_done()) {
        fail("the response is not well-formed HTTP", sent);
    }
    const auto& back = parser.get();
    if (back.result() != res.result() || back.body() != res.body()) {
        fail("the response does not read back as it was sent", sent);
    }

    const unsigned status = res.result_int();
    if (status == 200) {
        return;
    }
    if (status != 400 && status != 404 && status != 405 && status != 413 && status != 431) {
        fail("a status outside the error model (or a 500/503 on a healthy service)",
             what + "\n---\n" + sent);
    }
    if (status == 405 && res[http::field::allow].empty()) {
        fail("a 405 without Allow", sent);
    }
    if (res[http::field::content_type] != "application/json") {
        fail("an error that is not JSON", sent);
    }
    boost::system::error_code jec;
    const json::value body = json::parse(res.body(), jec);
    if (jec || !body.is_object() || !body.as_object().contains("status") ||
        !body.as_object().contains("error") || !body.as_object().contains("detail") ||
        !body.at("status").is_int64() || body.at("status").as_int64() != status ||
        !body.at("error").is_string() || !body.at("detail").is_string()) {
        fail("an error body outside the error model", sent);
    }
}

/// The data directory's part of the tree a successful upload may change.
std::optional<std::pair<std::string, std::string>> upload_names(const file_service::request& req) {
    boost::system::error_code ec;
    const json::value v = json::parse(req.body(), ec);
    if (ec || !v.is_object()) {
        return std::nullopt;
    }
    const auto& o = v.as_object();
    const json::value* rid = o.if_contains("request_id");
    const json::value* name = o.if_contains("file_name");
    if (rid == nullptr || name == nullptr || !rid->is_string() || !name->is_string()) {
        return std::nullopt;
    }
    return std::pair{std::string(rid->get_string()), std::string(name->get_string())};
}

/// Property 3 and 4 for one answered request.
void check_files(const tree& before, const tree& after, const file_service::request& req,
                 const file_service::response& res) {
    const std::string changes = describe(before, after);
    const std::string_view target = req.target();
    const bool upload = res.result_int() == 200 && req.method() == http::verb::post &&
                        target.substr(0, target.find('?')) == "/v1/file_tool/upload_file";
    if (!upload) {
        if (!changes.empty()) {
            fail("a request that uploads nothing changed files",
                 std::string(target) + "\n" + changes);
        }
        const bool sends_file = res.result_int() == 200 && req.method() == http::verb::get;
        if (sends_file) {
            bool found = false;
            for (const auto& [path, content] : after) {
                found = found || (path.starts_with("data/files/") && content == res.body());
            }
            if (!found) {
                fail("a download that is no file of the data directory", std::string(target));
            }
        }
        return;
    }
    const auto names = upload_names(req);
    if (!names) {
        fail("an upload answered 200 for a body without the names", req.body());
    }
    const std::string dir = "data/files/" + names->first;
    const std::string file = dir + "/" + names->second;
    for (const auto& [path, content] : after) {
        const auto it = before.find(path);
        if ((it == before.end() || it->second != content) && path != dir && path != file) {
            fail("an upload changed another file than its own", path + "\n" + changes);
        }
    }
    for (const auto& [path, content] : before) {
        if (!after.contains(path)) {
            fail("an upload removed a file", path);
        }
    }
    const auto stored = after.find(file);
    boost::system::error_code ec;
    const json::value body = json::parse(req.body(), ec);
    if (stored == after.end() || !stored->second ||
        *stored->second != body.at("content").get_string()) {
        fail("an upload did not store its content at its place", file);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static service s;
    s.reset();
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    tree before = snapshot(s.root);
    while (!rest.empty()) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(max_body);
        parser.eager(true);
        beast::error_code ec;
        // Feeds what is left of the stream, as the server's reads would.
        while (!parser.is_done()) {
            const std::size_t used = parser.put(asio::buffer(rest.data(), rest.size()), ec);
            rest.remove_prefix(used);
            if (ec == http::error::need_more || (!ec && used == 0 && !parser.is_done())) {
                if (used == 0) {
                    ec = http::error::need_more;
                    break;  // the stream ends inside a request: no response
                }
                ec = {};
                continue;
            }
            if (ec) {
                break;
            }
        }
        if (ec == http::error::need_more) {
            break;
        }
        std::optional<file_service::response> res;
        if (ec == http::error::body_limit) {
            res = file_service::error_response(http::status::payload_too_large, "too large", 11);
        } else if (ec == http::error::header_limit) {
            res = file_service::error_response(http::status::request_header_fields_too_large,
                                               "header", 11);
        } else if (ec) {
            res = file_service::error_response(http::status::bad_request, ec.message(), 11);
        }
        if (res) {
            // The server answers and closes the connection; nothing ran.
            check_response(*res, "unreadable request");
            break;
        }
        const file_service::request req = parser.release();
        file_service::response answer = s.handle(req);
        check_response(answer, std::string(req.method_string()) + " " + std::string(req.target()));
        tree after = snapshot(s.root);
        check_files(before, after, req, answer);
        before = std::move(after);
        if (!req.keep_alive()) {
            break;
        }
    }
    return 0;
}
