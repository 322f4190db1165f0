// asqlite-demo: the synchronous API on one page. Stores a few FileInfo rows
// in a database that asqlite-init-db created, reads them back and prints
// them, with echo on (every statement is logged to stderr).
//
// usage: asqlite-demo [--db PATH]   (default: $SQLITE_DB_PATH, else autobots.db)

#include <openssl/evp.h>

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"

namespace {

// The seed service's file_id: md5 hex of request_id + file name.
std::string md5_hex(std::string_view text) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_md5(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(md5) failed");
    }
    std::string hex;
    for (unsigned int i = 0; i < size; ++i) {
        hex += fmt::format("{:02x}", digest[i]);
    }
    return hex;
}

struct demo_file {
    std::string_view name;
    std::int64_t size;
};

}  // namespace

int main(int argc, char** argv) {
    try {
        auto options = asqlite::engine_options::from_env();
        if (argc == 3 && std::string_view(argv[1]) == "--db") {
            options.path = asqlite::path_from_url(argv[2]);
        } else if (argc != 1) {
            fmt::print(stderr, "usage: asqlite-demo [--db PATH]\n");
            return 2;
        }
        options.echo = true;  // as the seed's sync engine: log every statement

        const auto engine = asqlite::create_engine(options);
        asqlite::init_db(engine, asqlite::file_info_metadata());  // idempotent: reports "already
                                                                  // present" after asqlite-init-db
        auto conn = engine.connect();

        const std::string request_id = "demo-request-1";
        constexpr std::array files{demo_file{"report.pdf", 48'213}, demo_file{"data.csv", 1'024},
                                   demo_file{"notes.txt", 77}};
        {
            auto tx = conn.begin();  // BEGIN IMMEDIATE; rolls back unless committed
            // Makes the demo re-runnable on the same database (file_id is UNIQUE).
            conn.execute("DELETE FROM fileinfo WHERE request_id = ?", request_id);
            for (const auto& f : files) {
                conn.execute(
                    "INSERT INTO fileinfo (file_id, filename, file_path, file_size, request_id) "
                    "VALUES (?, ?, ?, ?, ?)",
                    md5_hex(request_id + std::string(f.name)), f.name,
                    fmt::format("/files/{}/{}", request_id, f.name), f.size, request_id);
            }
            tx.commit();
        }

        const auto select = fmt::format("SELECT {} FROM fileinfo", asqlite::file_info_columns);
        const auto stored = conn.query<asqlite::file_info>(
            select + " WHERE request_id = ? ORDER BY id", request_id);
        for (const auto& f : stored) {
            fmt::print("#{} {} {:<10} {:>6} bytes  status={} created {}\n", f.id.value_or(0),
                       f.file_id.value_or("-"), f.filename, f.file_size.value_or(0), f.status,
                       asqlite::format_timestamp(f.create_time));
        }

        const auto wanted = md5_hex(request_id + "data.csv");
        const auto found =
            conn.one_or_none<asqlite::file_info>(select + " WHERE file_id = ?", wanted);
        const auto missing = conn.one_or_none<asqlite::file_info>(select + " WHERE file_id = ?",
                                                                  md5_hex("no such file"));
        fmt::print("by file_id {}: {}\n", wanted, found ? found->file_path : "not found");
        fmt::print("by an unknown file_id: {}\n", missing ? "found (unexpected)" : "not found");

        if (stored.size() != files.size() || !found || found->filename != "data.csv" || missing) {
            fmt::print(stderr, "asqlite-demo: the rows read back are not the rows written\n");
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "asqlite-demo: error: {}\n", e.what());
        return 1;
    }
}
