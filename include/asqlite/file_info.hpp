#pragma once
// The FileInfo model of the seed service (table `fileinfo`), shared by the
// demo, the benchmark, the file service and users. Unlike the original, the
// table has an index on request_id: get_by_request_id no longer scans.

#include <boost/describe/class.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "asqlite/schema.hpp"
#include "asqlite/value.hpp"

namespace asqlite {

struct file_info {
    std::optional<std::int64_t> id;
    std::optional<std::string> file_id;  // md5 hex of request_id + file name
    std::string filename;
    std::string file_path;
    std::optional<std::string> description;
    std::optional<std::int64_t> file_size;
    std::int64_t status = 0;
    std::optional<std::string> request_id;
    timestamp create_time{};
};

BOOST_DESCRIBE_STRUCT(file_info, (),
                      (id, file_id, filename, file_path, description, file_size, status, request_id,
                       create_time))

/// The `fileinfo` table declaration.
const table& file_info_table();
/// A metadata holding the `fileinfo` table alone: the seed's model, what
/// `init_db(engine, file_info_metadata())` and `asqlite-init-db` create.
/// It is not in metadata::global(), which holds only the application's own
/// tables.
const metadata& file_info_metadata();

/// The column list in declaration order, for SELECT statements that map to
/// file_info: "id, file_id, filename, ...".
inline constexpr std::string_view file_info_columns =
    "id, file_id, filename, file_path, description, file_size, status, request_id, create_time";

}  // namespace asqlite
