// End-to-end tests of asqlite-file-service: each test starts the real server
// binary on a free loopback port in a fresh temporary directory (database and
// data directory), talks to it over HTTP with a small Beast client, and
// kills it in TearDown whatever happened.

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <latch>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/migrate.hpp"
#include "schema.hpp"

extern char** environ;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

using response = http::response<http::string_body>;

const std::string api = "/v1/file_tool";

// ---- a temporary directory per test

class temp_dir {
  public:
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "asqlite-file-service-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ---- the server as a child process

class server_process {
  public:
    server_process(const std::vector<std::string>& args, const fs::path& log) {
        int out[2];
        if (::pipe(out) != 0) {
            throw std::runtime_error("pipe failed");
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&actions, out[0]);
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::vector<char*> argv;
        std::string exe = ASQLITE_FILE_SERVICE_EXE;
        argv.push_back(exe.data());
        std::vector<std::string> copy = args;
        for (auto& a : copy) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        const int rc = ::posix_spawn(&pid_, exe.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        stdout_fd_ = out[0];
        if (rc != 0) {
            pid_ = -1;
            throw std::runtime_error(fmt::format("posix_spawn failed: {}", rc));
        }
    }
    ~server_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        ::close(stdout_fd_);
    }
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;

    /// Everything the server printed on stdout up to the end of the first
    /// line, or what there was when it exited or the time ran out.
    std::string first_line(std::chrono::milliseconds timeout = 20s) {
        std::string text;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (text.find('\n') == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            pollfd p{stdout_fd_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                break;
            }
            char chunk[256];
            const auto n = ::read(stdout_fd_, chunk, sizeof chunk);
            if (n <= 0) {
                break;
            }
            text.append(chunk, static_cast<std::size_t>(n));
        }
        return text;
    }

    void signal(int sig) const { ::kill(pid_, sig); }

    /// The server's peak resident memory so far (VmHWM), in bytes.
    std::int64_t peak_resident() const {
        std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
        std::string line;
        while (std::getline(status, line)) {
            if (line.starts_with("VmHWM:")) {
                return std::stoll(line.substr(6)) * 1024;
            }
        }
        return -1;
    }

    /// The exit code, or nullopt if it did not exit in time (or was killed
    /// by a signal: then -signal).
    std::optional<int> wait(std::chrono::milliseconds timeout = 15s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            const pid_t r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
            }
            std::this_thread::sleep_for(10ms);
        }
        return std::nullopt;
    }

  private:
    pid_t pid_ = -1;
    int stdout_fd_ = -1;
};

// ---- a small HTTP client with a deadline on every operation

class client {
  public:
    explicit client(unsigned short port) : stream_(io_) {
        boost::system::error_code ec;
        run([&](auto done) {
            stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                  [&ec, done](boost::system::error_code e) {
                                      ec = e;
                                      done();
                                  });
        });
        if (ec) {
            throw boost::system::system_error(ec, "connect");
        }
    }

    /// Sends a request and reads the response; throws on a transport error.
    response exchange(http::request<http::string_body> req) {
        req.prepare_payload();
        boost::system::error_code ec;
        run([&](auto done) {
            http::async_write(stream_, req, [&ec, done](boost::system::error_code e, std::size_t) {
                ec = e;
                done();
            });
        });
        if (ec) {
            throw boost::system::system_error(ec, "write");
        }
        return read_response();
    }

    /// Sends bytes as they are (write errors ignored: the server may have
    /// answered and stopped reading).
    void send_raw(std::string_view bytes) {
        run([&](auto done) {
            asio::async_write(stream_, asio::buffer(bytes),
                              [done](boost::system::error_code, std::size_t) { done(); });
        });
    }

    response read_response() {
        response res;
        boost::system::error_code ec;
        run([&](auto done) {
            http::async_read(stream_, buffer_, res,
                             [&ec, done](boost::system::error_code e, std::size_t) {
                                 ec = e;
                                 done();
                             });
        });
        if (ec) {
            throw boost::system::system_error(ec, "read");
        }
        return res;
    }

    /// read_response() for a body of any size, with a deadline of its own.
    response read_large_response(std::chrono::seconds timeout) {
        http::response_parser<http::string_body> parser;
        parser.body_limit(boost::none);
        boost::system::error_code ec;
        run(
            [&](auto done) {
                http::async_read(stream_, buffer_, parser,
                                 [&ec, done](boost::system::error_code e, std::size_t) {
                                     ec = e;
                                     done();
                                 });
            },
            timeout);
        if (ec) {
            throw boost::system::system_error(ec, "read");
        }
        return parser.release();
    }

    /// True when the server closed the connection (EOF or reset) in time.
    bool closed_by_server() {
        std::array<char, 64> sink{};
        boost::system::error_code ec;
        run([&](auto done) {
            stream_.async_read_some(asio::buffer(sink),
                                    [&ec, done](boost::system::error_code e, std::size_t) {
                                        ec = e;
                                        done();
                                    });
        });
        return ec == asio::error::eof || ec == asio::error::connection_reset;
    }

  private:
    template <class Start>
    void run(Start start, std::chrono::seconds timeout = 20s) {
        stream_.expires_after(timeout);
        bool finished = false;
        start([&finished] { finished = true; });
        io_.restart();
        io_.run();
        if (!finished) {
            throw std::runtime_error("client operation did not complete");
        }
    }

    asio::io_context io_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
};

http::request<http::string_body> make_request(http::verb verb, std::string target,
                                              std::string body = {}) {
    http::request<http::string_body> req(verb, target, 11);
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = std::move(body);
    }
    return req;
}

json::value body_json_text(std::string_view text) {
    std::error_code ec;
    auto v = json::parse(text, ec);
    EXPECT_FALSE(ec) << "not JSON: " << text;
    return v;
}

json::value body_json(const response& res) {
    return body_json_text(res.body());
}

std::string upload_body(std::string_view request_id, std::string_view file_name,
                        std::string_view content, std::optional<std::string> description = {},
                        std::optional<std::string> content_type = {}) {
    json::object o{{"request_id", request_id}, {"file_name", file_name}, {"content", content}};
    if (description) {
        o["description"] = *description;
    }
    if (content_type) {
        o["content_type"] = *content_type;
    }
    return json::serialize(o);
}

// ---- the fixture

class FileService : public ::testing::Test {
  protected:
    void TearDown() override {
        server_.reset();  // SIGKILL if it still runs
        if (HasFailure() && fs::exists(log_path())) {
            std::cerr << "---- server log\n" << read_text(log_path()) << "----\n";
        }
    }

    void start(std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {
            "--db", db_path().string(), "--data-dir", data_dir().string(), "--port", "0"};
        args.insert(args.end(), extra.begin(), extra.end());
        server_ = std::make_unique<server_process>(args, log_path());
        const std::string line = server_->first_line();
        const std::string prefix = "listening on 127.0.0.1:";
        ASSERT_TRUE(line.starts_with(prefix)) << "server said: '" << line << "'\n"
                                              << read_text(log_path());
        port_ = static_cast<unsigned short>(std::stoul(line.substr(prefix.size())));
        ASSERT_NE(port_, 0);
    }

    fs::path db_path() const { return dir_.path() / "files.db"; }
    fs::path data_dir() const { return dir_.path() / "data"; }
    fs::path log_path() const { return dir_.path() / "server.log"; }

    response request(http::verb verb, const std::string& target, std::string body = {}) {
        client c(port_);
        auto req = make_request(verb, target, std::move(body));
        req.keep_alive(false);
        return c.exchange(std::move(req));
    }
    response post(const std::string& route, std::string body) {
        return request(http::verb::post, api + route, std::move(body));
    }
    response get(const std::string& route) { return request(http::verb::get, api + route); }

    /// Asserts a JSON error body with the given status.
    void expect_error(const response& res, http::status status, std::string_view context) {
        EXPECT_EQ(res.result(), status) << context << ": " << res.body();
        EXPECT_EQ(res[http::field::content_type], "application/json") << context;
        const auto v = body_json(res);
        ASSERT_TRUE(v.is_object()) << context;
        EXPECT_EQ(v.at("status").as_int64(), static_cast<int>(status)) << context;
        EXPECT_TRUE(v.at("detail").is_string()) << context;
    }

    std::int64_t count_rows(std::string_view file_id) {
        asqlite::connection c(db_path().string());
        return c.scalar<std::int64_t>("SELECT count(*) FROM fileinfo WHERE file_id = ?", file_id);
    }

    temp_dir dir_;
    std::unique_ptr<server_process> server_;
    unsigned short port_ = 0;
};

TEST_F(FileService, EveryRouteRoundTrips) {
    start();
    auto up = post("/upload_file", upload_body("req-1", "report.md", "# Report\nbody", "weekly"));
    ASSERT_EQ(up.result(), http::status::ok) << up.body();
    auto file = body_json(up).as_object();
    EXPECT_EQ(file.at("file_id").as_string(), "6918de7703470676e81ff608a0df5bfc");
    EXPECT_EQ(file.at("filename").as_string(), "report.md");
    EXPECT_EQ(file.at("description").as_string(), "weekly");
    EXPECT_EQ(file.at("file_size").as_int64(), 13);
    EXPECT_EQ(file.at("status").as_int64(), 1);
    EXPECT_EQ(file.at("request_id").as_string(), "req-1");
    EXPECT_EQ(file.at("download_url").as_string(), api + "/download/req-1/report.md");
    EXPECT_EQ(file.at("preview_url").as_string(), api + "/preview/req-1/report.md");
    EXPECT_EQ(read_text(std::string(file.at("file_path").as_string())), "# Report\nbody");
    EXPECT_TRUE(
        fs::equivalent(fs::path(std::string(file.at("file_path").as_string())).parent_path(),
                       data_dir() / "files" / "req-1"));

    ASSERT_EQ(post("/upload_file", upload_body("req-1", "data.csv", "a,b\n1,2\n")).result(),
              http::status::ok);
    ASSERT_EQ(post("/upload_file", upload_body("req-2", "other.txt", "x")).result(),
              http::status::ok);

    auto got = post("/get_file", R"({"request_id": "req-1", "file_name": "report.md"})");
    ASSERT_EQ(got.result(), http::status::ok) << got.body();
    EXPECT_EQ(body_json(got).at("id"), file.at("id"));
    EXPECT_EQ(body_json(got).at("create_time"), file.at("create_time"));

    auto list = post("/get_file_list", R"({"request_id": "req-1"})");
    ASSERT_EQ(list.result(), http::status::ok) << list.body();
    auto files = body_json(list).at("files").as_array();
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(files[0].at("filename").as_string(), "report.md");
    EXPECT_EQ(files[1].at("filename").as_string(), "data.csv");
    EXPECT_EQ(body_json(list).at("count").as_int64(), 2);

    auto by_ids = post("/get_file_list", R"({"file_ids": ["d10725c1e76f19e64af7b719dc5bfad7",
                                                           "6918de7703470676e81ff608a0df5bfc",
                                                           "00000000000000000000000000000000"]})");
    ASSERT_EQ(by_ids.result(), http::status::ok) << by_ids.body();
    files = body_json(by_ids).at("files").as_array();
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(files[0].at("filename").as_string(), "report.md");
    EXPECT_EQ(files[1].at("filename").as_string(), "data.csv");
    EXPECT_EQ(body_json(post("/get_file_list", R"({"file_ids": []})")).at("count").as_int64(), 0);
    EXPECT_EQ(body_json(post("/get_file_list", R"({"request_id": "nobody"})")).at("count"), 0);

    auto download = get("/download/req-1/report.md");
    ASSERT_EQ(download.result(), http::status::ok);
    EXPECT_EQ(download.body(), "# Report\nbody");
    EXPECT_EQ(download[http::field::content_type], "text/markdown")
        << "the type it was stored with";
    EXPECT_EQ(download[http::field::content_disposition], "attachment; filename*=UTF-8''report.md");

    auto preview = get("/preview/req-1/data.csv");
    ASSERT_EQ(preview.result(), http::status::ok);
    EXPECT_EQ(preview.body(), "a,b\n1,2\n");
    EXPECT_EQ(preview[http::field::content_type], "text/plain; charset=utf-8");

    // A re-upload keeps the row, updates size and content, keeps the
    // description when none is given.
    auto again = post("/upload_file", upload_body("req-1", "report.md", "shorter"));
    ASSERT_EQ(again.result(), http::status::ok) << again.body();
    EXPECT_EQ(body_json(again).at("id"), file.at("id"));
    EXPECT_EQ(body_json(again).at("file_size").as_int64(), 7);
    EXPECT_EQ(body_json(again).at("description").as_string(), "weekly");
    EXPECT_EQ(get("/download/req-1/report.md").body(), "shorter");
    EXPECT_EQ(count_rows("6918de7703470676e81ff608a0df5bfc"), 1);
    EXPECT_TRUE(fs::is_empty(data_dir() / "staging"));
}

TEST_F(FileService, NamesArePercentEncodedInUrls) {
    start();
    auto up = post("/upload_file", upload_body("req-1", "a b.txt", "spaced"));
    ASSERT_EQ(up.result(), http::status::ok) << up.body();
    EXPECT_EQ(body_json(up).at("file_id").as_string(), "95534a1d9ef7357fb4eff474f205dcb9");
    EXPECT_EQ(body_json(up).at("download_url").as_string(), api + "/download/req-1/a%20b.txt");
    EXPECT_EQ(get("/download/req-1/a%20b.txt").body(), "spaced");
    EXPECT_EQ(get("/preview/req-1/a%20b.txt").body(), "spaced");
}

TEST_F(FileService, KeepAliveServesManyRequestsOnOneConnection) {
    start();
    client c(port_);
    for (int i = 0; i < 20; ++i) {
        auto res = c.exchange(make_request(http::verb::post, api + "/upload_file",
                                           upload_body("keep", fmt::format("f{}.txt", i), "x")));
        ASSERT_EQ(res.result(), http::status::ok) << res.body();
        EXPECT_TRUE(res.keep_alive());
    }
    auto list = c.exchange(
        make_request(http::verb::post, api + "/get_file_list", R"({"request_id": "keep"})"));
    EXPECT_EQ(body_json(list).at("count").as_int64(), 20);
    // Errors keep the connection too.
    EXPECT_EQ(c.exchange(make_request(http::verb::get, api + "/nope")).result(),
              http::status::not_found);
    EXPECT_EQ(c.exchange(make_request(http::verb::get, api + "/download/keep/f0.txt")).body(), "x");
}

TEST_F(FileService, NotFound) {
    start();
    expect_error(post("/get_file", R"({"request_id": "r", "file_name": "missing.txt"})"),
                 http::status::not_found, "get_file of a missing file");
    expect_error(get("/download/r/missing.txt"), http::status::not_found, "download");
    expect_error(get("/preview/r/missing.txt"), http::status::not_found, "preview");
    for (const std::string target :
         {"/", "/v1", "/v1/file_tool", "/v1/file_tool/", "/v1/file_tool/nope",
          "/v1/file_toolx/get_file", "/v1/file_tool/get_file/extra", "/v1/file_tool/downloads/a/b",
          "/v1/file_tool/download"}) {
        expect_error(request(http::verb::get, target), http::status::not_found, target);
    }
}

TEST_F(FileService, WrongMethodIs405WithAllow) {
    start();
    for (const std::string route : {"/upload_file", "/get_file", "/get_file_list"}) {
        auto res = request(http::verb::get, api + route);
        expect_error(res, http::status::method_not_allowed, route);
        EXPECT_EQ(res[http::field::allow], "POST") << route;
        expect_error(request(http::verb::delete_, api + route), http::status::method_not_allowed,
                     route);
    }
    for (const std::string route : {"/download/r/f.txt", "/preview/r/f.txt"}) {
        auto res = request(http::verb::post, api + route, "{}");
        expect_error(res, http::status::method_not_allowed, route);
        EXPECT_EQ(res[http::field::allow], "GET") << route;
    }
}

TEST_F(FileService, MalformedJsonIs400) {
    start();
    for (const std::string route : {"/upload_file", "/get_file", "/get_file_list"}) {
        for (const std::string body : {"", "{", "not json", "[1, 2]", "\"text\"", "42", "null",
                                       R"({"request_id": "r",})", "{\"a\": 1} trailing"}) {
            expect_error(post(route, body), http::status::bad_request, route + " <- " + body);
        }
    }
}

TEST_F(FileService, MissingOrMistypedFieldsAre400) {
    start();
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"/upload_file", R"({"file_name": "f", "content": "c"})"},
        {"/upload_file", R"({"request_id": "r", "content": "c"})"},
        {"/upload_file", R"({"request_id": "r", "file_name": "f"})"},
        {"/upload_file", R"({"request_id": 5, "file_name": "f", "content": "c"})"},
        {"/upload_file", R"({"request_id": "r", "file_name": ["f"], "content": "c"})"},
        {"/upload_file", R"({"request_id": "r", "file_name": "f", "content": null})"},
        {"/upload_file", R"({"request_id": "r", "file_name": "f", "content": {"a": 1}})"},
        {"/upload_file", R"({"request_id": "r", "file_name": "f", "content": "c",
                             "description": 3})"},
        {"/get_file", R"({"request_id": "r"})"},
        {"/get_file", R"({"file_name": "f"})"},
        {"/get_file", R"({"request_id": true, "file_name": "f"})"},
        {"/get_file_list", R"({})"},
        {"/get_file_list", R"({"request_id": "r", "file_ids": []})"},
        {"/get_file_list", R"({"request_id": 7})"},
        {"/get_file_list", R"({"file_ids": "abc"})"},
        {"/get_file_list", R"({"file_ids": [1, 2]})"},
        {"/get_file_list", R"({"file_ids": ["a", null]})"},
    };
    for (const auto& [route, body] : cases) {
        auto res = post(route, body);
        expect_error(res, http::status::bad_request, route + " <- " + body);
    }
    // A null or absent description is fine.
    EXPECT_EQ(post("/upload_file", R"({"request_id": "r", "file_name": "f", "content": "c",
                                       "description": null})")
                  .result(),
              http::status::ok);
}

TEST_F(FileService, PathTraversalIs400AndWritesNothing) {
    start();
    const std::vector<std::string> bad_names = {
        "../evil.txt", "../../etc/passwd",     "a/b", "/abs", "a\\b",
        "..\\x",       std::string("a\0b", 3), "",    "..",   "."};
    for (const auto& name : bad_names) {
        expect_error(post("/upload_file", upload_body("r", name, "pwned")),
                     http::status::bad_request, "upload file_name " + name);
        expect_error(post("/upload_file", upload_body(name, "f.txt", "pwned")),
                     http::status::bad_request, "upload request_id " + name);
        expect_error(post("/get_file",
                          json::serialize(json::object{{"request_id", "r"}, {"file_name", name}})),
                     http::status::bad_request, "get_file " + name);
    }
    for (const std::string route :
         {"/download/r/..%2Fevil.txt", "/download/r/%2E%2E", "/download/r/../../etc/passwd",
          "/download/../r/f.txt", "/download/r/a%2Fb", "/download/r/a%5Cb", "/download/r/a%00b",
          "/download/r/", "/download/r", "/download/%2E%2E/f.txt", "/preview/r/..%2F..%2Fx",
          "/preview/r/a/b/c", "/download/r/%zz"}) {
        expect_error(get(route), http::status::bad_request, route);
    }
    // Nothing was written anywhere: no row, no file, no directory.
    asqlite::connection c(db_path().string());
    EXPECT_EQ(c.scalar<std::int64_t>("SELECT count(*) FROM fileinfo"), 0);
    EXPECT_TRUE(fs::is_empty(data_dir() / "files"));
    EXPECT_TRUE(fs::is_empty(data_dir() / "staging"));
    std::set<std::string> top;
    for (const auto& entry : fs::directory_iterator(dir_.path())) {
        top.insert(entry.path().filename().string());
    }
    for (const auto& name : top) {
        EXPECT_TRUE(name == "data" || name == "server.log" || name.starts_with("files.db")) << name;
    }
}

TEST_F(FileService, BodyOverTheLimitIs413) {
    start({"--max-body", "65536"});
    // Within the limit.
    ASSERT_EQ(
        post("/upload_file", upload_body("r", "small.txt", std::string(60'000, 's'))).result(),
        http::status::ok);
    // Over it, with a Content-Length: refused from the header on.
    expect_error(post("/upload_file", upload_body("r", "big.txt", std::string(100'000, 'b'))),
                 http::status::payload_too_large, "content-length body");
    // Over it, chunked: refused when the body passes the limit.
    {
        client c(port_);
        std::string raw = fmt::format(
            "POST {}/upload_file HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", api);
        for (int i = 0; i < 10; ++i) {
            raw += fmt::format("{:x}\r\n{}\r\n", 10'000, std::string(10'000, 'c'));
        }
        raw += "0\r\n\r\n";
        c.send_raw(raw);
        expect_error(c.read_response(), http::status::payload_too_large, "chunked body");
    }
    // The server carries on.
    EXPECT_EQ(get("/download/r/small.txt").body().size(), 60'000u);
    EXPECT_FALSE(fs::exists(data_dir() / "files" / "r" / "big.txt"));
}

TEST_F(FileService, MalformedHttpIs400) {
    start();
    for (const std::string raw :
         {"GARBAGE\r\n\r\n", "GET /x HTTP/1.1\r\nBad Header\r\n\r\n",
          "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
          "POST /v1/file_tool/get_file HTTP/1.1\r\nContent-Length: nope\r\n\r\n"}) {
        client c(port_);
        c.send_raw(raw);
        auto res = c.read_response();
        expect_error(res, http::status::bad_request, raw);
        EXPECT_FALSE(res.keep_alive());
    }
    {
        client c(port_);
        c.send_raw(fmt::format("GET /x HTTP/1.1\r\nX-Big: {}\r\n\r\n", std::string(10'000, 'h')));
        expect_error(c.read_response(), http::status::request_header_fields_too_large, "header");
    }
    EXPECT_EQ(get("/nope").result(), http::status::not_found) << "still serving";
}

TEST_F(FileService, ConcurrentUploadsOfOneFileAllSucceed) {
    start({"--io-threads", "4"});
    constexpr int uploaders = 8;
    for (int round = 0; round < 5; ++round) {
        const std::string file_name = round == 0 ? "race.txt" : fmt::format("race{}.txt", round);
        std::vector<std::string> contents;
        for (int i = 0; i < uploaders; ++i) {
            // Distinct sizes: the stored size tells which upload won.
            contents.push_back(
                std::string(static_cast<std::size_t>(1000 * (i + 1)), static_cast<char>('a' + i)));
        }
        std::latch ready(uploaders);
        std::vector<response> results(uploaders);
        std::vector<std::string> failures(uploaders);
        std::vector<std::thread> threads;
        for (int i = 0; i < uploaders; ++i) {
            threads.emplace_back([&, i] {
                try {
                    client c(port_);
                    auto req = make_request(
                        http::verb::post, api + "/upload_file",
                        upload_body("race", file_name, contents[static_cast<std::size_t>(i)]));
                    ready.arrive_and_wait();
                    results[static_cast<std::size_t>(i)] = c.exchange(std::move(req));
                } catch (const std::exception& e) {
                    failures[static_cast<std::size_t>(i)] = e.what();
                }
            });
        }
        for (auto& t : threads) {
            t.join();
        }
        std::set<std::int64_t> ids;
        for (int i = 0; i < uploaders; ++i) {
            const auto& res = results[static_cast<std::size_t>(i)];
            ASSERT_EQ(failures[static_cast<std::size_t>(i)], "");
            ASSERT_EQ(res.result(), http::status::ok) << res.body();
            ids.insert(body_json(res).at("id").as_int64());
        }
        EXPECT_EQ(ids.size(), 1u) << "every upload returned the same row";
        const auto listed = body_json(post("/get_file_list", R"({"request_id": "race"})"));
        EXPECT_EQ(listed.at("count").as_int64(), round + 1);

        const auto info = body_json(
            post("/get_file",
                 json::serialize(json::object{{"request_id", "race"}, {"file_name", file_name}})));
        const auto content = get("/download/race/" + file_name).body();
        EXPECT_EQ(static_cast<std::int64_t>(content.size()), info.at("file_size").as_int64())
            << "the row describes the content on disk";
        EXPECT_NE(std::find(contents.begin(), contents.end(), content), contents.end())
            << "the content is one whole upload";
    }
    EXPECT_EQ(count_rows("83145027c94d6ecae0269899a04d661d"), 1);
    EXPECT_TRUE(fs::is_empty(data_dir() / "staging"));
}

TEST_F(FileService, AnUploadRecordsItsContentType) {
    start();
    auto up = post("/upload_file", upload_body("r", "table.csv", "a,b\n"));
    ASSERT_EQ(up.result(), http::status::ok) << up.body();
    EXPECT_EQ(body_json(up).at("content_type").as_string(), "text/csv") << "guessed from the name";
    up = post("/upload_file",
              upload_body("r", "notes", "n", std::nullopt, "text/plain; charset=utf-8"));
    ASSERT_EQ(up.result(), http::status::ok) << up.body();
    EXPECT_EQ(body_json(up).at("content_type").as_string(), "text/plain; charset=utf-8");
    up = post("/upload_file", upload_body("r", "blob.bin2", "b"));
    EXPECT_EQ(body_json(up).at("content_type").as_string(), "application/octet-stream");
    for (const std::string& bad : std::vector<std::string>{
             "text", "text/", "/plain", "text/plain\r\nX-Evil: 1", "text/plain; charset",
             "text/pl ain", std::string(130, 'a') + "/b"}) {
        expect_error(post("/upload_file", upload_body("r", "x.txt", "x", std::nullopt, bad)),
                     http::status::bad_request, bad);
    }
    EXPECT_EQ(count_rows("x.txt"), 0);

    const auto got = body_json(post("/get_file", R"({"request_id": "r", "file_name": "notes"})"));
    EXPECT_EQ(got.at("content_type").as_string(), "text/plain; charset=utf-8");
    const auto list = body_json(post("/get_file_list", R"({"request_id": "r"})"));
    EXPECT_EQ(list.at("count").as_int64(), 3);
    EXPECT_EQ(list.at("files").as_array()[0].at("content_type").as_string(), "text/csv");
    auto download = get("/download/r/notes");
    EXPECT_EQ(download[http::field::content_type], "text/plain; charset=utf-8");
    EXPECT_EQ(download["X-Content-Type-Options"], "nosniff");
    // A re-upload replaces the type.
    up = post("/upload_file", upload_body("r", "notes", "m", std::nullopt, "text/markdown"));
    EXPECT_EQ(get("/download/r/notes")[http::field::content_type], "text/markdown");
}

TEST_F(FileService, AHugeFileListIsStreamedInBoundedMemory) {
    // 1,000,000 files of one request id (fewer under the sanitizers, whose
    // shadow memory and quarantine make resident size meaningless).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    constexpr std::int64_t files = 50'000;
    constexpr bool measure = false;
#else
    constexpr std::int64_t files = 1'000'000;
    constexpr bool measure = true;
#endif
    {
        auto options = asqlite::engine_options::from_url(db_path().string());
        options.echo = false;
        const auto engine = asqlite::create_engine(options);
        file_service::prepare_database(engine);
        engine.connect().execute(
            "INSERT INTO fileinfo (file_id, filename, file_path, file_size, status, request_id, "
            "content_type) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE "
            "i < ?) SELECT printf('%032d', i), printf('f%d.txt', i), printf('/d/f%d.txt', i), i, "
            "1, 'huge', 'text/plain' FROM n",
            files);
    }
    start();
    const std::int64_t before = server_->peak_resident();
    client c(port_);
    auto req = make_request(http::verb::post, api + "/get_file_list", R"({"request_id": "huge"})");
    req.prepare_payload();
    std::ostringstream raw;
    raw << req;
    c.send_raw(raw.str());
    const response res = c.read_large_response(300s);
    const std::int64_t after = server_->peak_resident();
    ASSERT_EQ(res.result(), http::status::ok);
    EXPECT_TRUE(res.chunked()) << "not streamed";
    const std::string& body = res.body();
    EXPECT_TRUE(body.starts_with(R"({"files": [{"id":1,)")) << body.substr(0, 100);
    EXPECT_TRUE(body.ends_with(fmt::format(R"(], "count": {}}})", files)))
        << body.substr(body.size() - 100);
    std::int64_t listed = 0;
    for (auto at = body.find(R"("file_id":)"); at != std::string::npos;
         at = body.find(R"("file_id":)", at + 1)) {
        ++listed;
    }
    EXPECT_EQ(listed, files);
    // The pieces join into one JSON document (its tail: the last files).
    const auto tail = body_json_text("{\"files\": [" + body.substr(body.rfind("{\"id\":")));
    EXPECT_EQ(tail.at("count").as_int64(), files);
    EXPECT_EQ(tail.at("files").as_array().back().at("filename").as_string(),
              fmt::format("f{}.txt", files));
    if (measure) {
        EXPECT_LT(after - before, 64 << 20)
            << "the server's peak memory grew by " << (after - before) << " bytes for a "
            << body.size() << "-byte list";
    }
}

TEST_F(FileService, AnHttp10ClientGetsTheStreamedListUnchunked) {
    start();
    ASSERT_EQ(post("/upload_file", upload_body("r", "a.txt", "x")).result(), http::status::ok);
    ASSERT_EQ(post("/upload_file", upload_body("r", "b.txt", "y")).result(), http::status::ok);
    client c(port_);
    auto req = make_request(http::verb::post, api + "/get_file_list", R"({"request_id": "r"})");
    req.version(10);
    const auto res = c.exchange(std::move(req));
    ASSERT_EQ(res.result(), http::status::ok);
    EXPECT_FALSE(res.chunked()) << "HTTP/1.0 has no chunked encoding";
    EXPECT_FALSE(res.keep_alive());
    const auto list = body_json(res);
    EXPECT_EQ(list.at("count").as_int64(), 2);
    EXPECT_EQ(list.at("files").as_array()[1].at("filename").as_string(), "b.txt");
}

TEST_F(FileService, UpgradesADatabaseMadeByInitDbInPlace) {
    // The database of the service before it used migrations: init_db's
    // fileinfo with rows in it, no migration records.
    auto options = asqlite::engine_options::from_url(db_path().string());
    options.echo = false;
    const auto engine = asqlite::create_engine(options);
    asqlite::init_db(engine, asqlite::file_info_metadata());
    {
        auto c = engine.connect();
        for (int i = 0; i < 3; ++i) {
            c.execute(
                "INSERT INTO fileinfo (file_id, filename, file_path, description, file_size, "
                "status, request_id, create_time) VALUES (?, ?, ?, 'old', ?, 1, 'old-req', "
                "'2026-01-02 03:04:05')",
                fmt::format("id{}", i), fmt::format("f{}.txt", i), fmt::format("/old/f{}.txt", i),
                i + 10);
        }
    }
    start();
    server_->signal(SIGTERM);
    ASSERT_EQ(server_->wait(), 0);
    const std::string log = read_text(log_path());
    EXPECT_NE(log.find("recorded at migration 1"), std::string::npos) << log;
    EXPECT_NE(log.find("applied migration 2 (fileinfo_content_type)"), std::string::npos) << log;
    EXPECT_EQ(log.find("applied migration 1"), std::string::npos) << "version 1 ran again";
    {
        auto c = engine.connect();
        EXPECT_EQ(asqlite::migration_state(c, file_service::migrations()).current(), 2);
    }

    // Started again, it has nothing to do; every old row is there, whole.
    start();
    const auto list = body_json(post("/get_file_list", R"({"request_id": "old-req"})"));
    ASSERT_EQ(list.at("count").as_int64(), 3);
    for (int i = 0; i < 3; ++i) {
        const auto& f = list.at("files").as_array()[static_cast<std::size_t>(i)].as_object();
        EXPECT_EQ(f.at("file_id").as_string(), fmt::format("id{}", i));
        EXPECT_EQ(f.at("filename").as_string(), fmt::format("f{}.txt", i));
        EXPECT_EQ(f.at("file_size").as_int64(), i + 10);
        EXPECT_EQ(f.at("description").as_string(), "old");
        EXPECT_EQ(f.at("create_time").as_string(), "2026-01-02 03:04:05");
        EXPECT_TRUE(f.at("content_type").is_null());
    }
    auto up = post("/upload_file", upload_body("new-req", "page.html", "<p>"));
    ASSERT_EQ(up.result(), http::status::ok) << up.body();
    EXPECT_EQ(body_json(up).at("content_type").as_string(), "text/html");
    server_->signal(SIGTERM);
    ASSERT_EQ(server_->wait(), 0);
    EXPECT_EQ(read_text(log_path()).find("applied migration"), std::string::npos)
        << "the second start applied something";
}

TEST_F(FileService, RefusesADatabaseNewerThanItself) {
    start();
    server_->signal(SIGTERM);
    ASSERT_EQ(server_->wait(), 0);
    {
        asqlite::connection c(db_path().string());
        c.execute(
            "INSERT INTO asqlite_migrations (version, name, checksum) VALUES (3, 'future', 'x')");
    }
    server_process p({"--db", db_path().string(), "--data-dir", data_dir().string(), "--port", "0"},
                     log_path());
    EXPECT_EQ(p.wait(), 1);
    const std::string log = read_text(log_path());
    EXPECT_NE(log.find("newer than this program's latest (2)"), std::string::npos) << log;
}

TEST_F(FileService, DatabaseErrorIs500AndLogged) {
    start();
    ASSERT_EQ(post("/upload_file", upload_body("r", "f.txt", "x")).result(), http::status::ok);
    asqlite::connection(db_path().string()).exec("DROP TABLE fileinfo");

    expect_error(post("/get_file", R"({"request_id": "r", "file_name": "f.txt"})"),
                 http::status::internal_server_error, "get_file");
    expect_error(post("/upload_file", upload_body("r", "g.txt", "y")),
                 http::status::internal_server_error, "upload_file");
    expect_error(post("/get_file_list", R"({"file_ids": ["x"]})"),
                 http::status::internal_server_error, "get_file_list");
    expect_error(get("/download/r/f.txt"), http::status::internal_server_error, "download");
    EXPECT_EQ(body_json(post("/get_file", R"({"request_id": "r", "file_name": "f.txt"})"))
                  .at("detail")
                  .as_string(),
              "database error")
        << "no SQL in the response";
    EXPECT_TRUE(fs::is_empty(data_dir() / "staging")) << "the failed upload left nothing staged";
    EXPECT_FALSE(fs::exists(data_dir() / "files" / "r" / "g.txt"));

    const std::string log = read_text(log_path());
    EXPECT_NE(log.find("database error"), std::string::npos) << log;
    EXPECT_NE(log.find("no such table: fileinfo"), std::string::npos) << log;

    // Once the table is back (as the service's migrations made it) the same
    // server works again.
    asqlite::connection c(db_path().string());
    for (const auto& m : file_service::migrations()) {
        c.exec(m.sql);
    }
    EXPECT_EQ(post("/upload_file", upload_body("r", "g.txt", "y")).result(), http::status::ok);
    EXPECT_EQ(get("/download/r/g.txt").body(), "y");
}

TEST_F(FileService, SigtermFinishesTheRequestInFlightThenExits) {
    start({"--io-threads", "2"});
    // An idle keep-alive connection, and a request whose body is half sent.
    client idle(port_);
    ASSERT_EQ(idle.exchange(make_request(http::verb::get, api + "/nope")).result(),
              http::status::not_found);
    client busy(port_);
    const std::string body = upload_body("r", "late.txt", "made it");
    busy.send_raw(
        fmt::format("POST {}/upload_file HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", api,
                    body.size()) +
        body.substr(0, 10));
    std::this_thread::sleep_for(300ms);

    server_->signal(SIGTERM);
    std::this_thread::sleep_for(300ms);
    EXPECT_TRUE(idle.closed_by_server()) << "idle connections close at once";
    EXPECT_THROW(client{port_}, boost::system::system_error) << "no longer accepting";

    busy.send_raw(body.substr(10));
    auto res = busy.read_response();
    EXPECT_EQ(res.result(), http::status::ok) << res.body();
    EXPECT_FALSE(res.keep_alive()) << "the last response says Connection: close";

    EXPECT_EQ(server_->wait(), 0);
    EXPECT_NE(read_text(log_path()).find("file service: stopped"), std::string::npos);
    asqlite::connection c(db_path().string());
    EXPECT_EQ(c.scalar<std::int64_t>("SELECT count(*) FROM fileinfo WHERE filename = 'late.txt'"),
              1);
}

// A statement that never ends by itself (a trigger that counts a
// 10^12-row cross join) is running when SIGTERM arrives: the service waits
// --shutdown-grace for it, then interrupts it and exits, instead of
// waiting for the statement.
TEST_F(FileService, SigtermWithASlowQueryInFlightExitsWithinTheGrace) {
    {
        auto options = asqlite::engine_options::from_url(db_path().string());
        options.echo = false;
        asqlite::init_db(asqlite::create_engine(options), asqlite::file_info_metadata());
        asqlite::connection c(db_path().string());
        c.exec(
            "CREATE TABLE thousand (x INTEGER);"
            "INSERT INTO thousand WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
            "WHERE x < 1000) SELECT x FROM n;"
            "CREATE TRIGGER slow AFTER INSERT ON fileinfo BEGIN "
            "SELECT count(*) FROM thousand a, thousand b, thousand c, thousand d; END;");
    }
    start({"--shutdown-grace", "1"});
    client busy(port_);
    auto req = make_request(http::verb::post, api + "/upload_file",
                            upload_body("r", "slow.txt", "never stored"));
    req.prepare_payload();
    std::ostringstream raw;
    raw << req;
    busy.send_raw(raw.str());
    std::this_thread::sleep_for(300ms);  // (the request reaches the trigger, or soon will)

    const auto signalled = std::chrono::steady_clock::now();
    server_->signal(SIGTERM);
    EXPECT_EQ(server_->wait(20s), 0) << "exits once the grace is over";
    const auto took = std::chrono::steady_clock::now() - signalled;
    EXPECT_GE(took, 1s) << "the request in flight had its grace";
    const std::string log = read_text(log_path());
    EXPECT_NE(log.find("interrupted"), std::string::npos) << log;
    EXPECT_NE(log.find("file service: stopped"), std::string::npos) << log;
    asqlite::connection c(db_path().string());
    EXPECT_EQ(c.scalar<std::int64_t>("SELECT count(*) FROM fileinfo"), 0);
}

TEST_F(FileService, SigintExitsCleanly) {
    start();
    ASSERT_EQ(post("/upload_file", upload_body("r", "f.txt", "x")).result(), http::status::ok);
    server_->signal(SIGINT);
    EXPECT_EQ(server_->wait(), 0);
}

TEST_F(FileService, BadStartupArgumentsFail) {
    {
        server_process p({"--port", "http"}, log_path());
        EXPECT_EQ(p.wait(), 2);
    }
    {
        server_process p({"--io-threads", "0"}, log_path());
        EXPECT_EQ(p.wait(), 2);
    }
    {
        server_process p({"--db", (dir_.path() / "no" / "such" / "dir.db").string(), "--port", "0",
                          "--data-dir", data_dir().string()},
                         log_path());
        EXPECT_EQ(p.wait(), 1);
        EXPECT_NE(read_text(log_path()).find("error"), std::string::npos);
    }
}

}  // namespace
