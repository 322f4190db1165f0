// Uses the installed asqlite: an in-memory database with the shipped FileInfo
// schema, one row written and read back. Exit code 0 only when the row read
// back is the row written.

#include <asqlite/connection.hpp>
#include <asqlite/file_info.hpp>
#include <asqlite/schema.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

int main() {
    try {
        const std::string file_id = "0123456789abcdef0123456789abcdef";
        const std::string select = std::string("SELECT ") +
                                   std::string(asqlite::file_info_columns) +
                                   " FROM fileinfo WHERE file_id = ?";

        asqlite::connection db(":memory:");
        asqlite::file_info_metadata().create_all(db);
        db.execute(
            "INSERT INTO fileinfo (file_id, filename, file_path, file_size) VALUES (?, ?, ?, ?)",
            file_id, "a.txt", "/tmp/a.txt", 42);

        const auto count = db.scalar<std::int64_t>("SELECT count(*) FROM fileinfo");
        const auto file = db.one<asqlite::file_info>(select, file_id);
        if (count != 1 || file.filename != "a.txt" || file.file_size != 42 || file.status != 0) {
            std::fprintf(stderr, "asqlite_consumer: unexpected result\n");
            return 1;
        }
        std::printf("asqlite_consumer: ok (%s, %lld bytes)\n", file.filename.c_str(),
                    static_cast<long long>(*file.file_size));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asqlite_consumer: %s\n", e.what());
        return 1;
    }
}
