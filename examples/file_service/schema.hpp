#pragma once
// The file service's database schema as versioned migrations
// (docs/migrations.md), and the row type its handlers read.
//
//   1  fileinfo and its request_id index: exactly what init_db made before
//      the service used migrations, so such a database is recorded at 1
//      (baselined) and nothing of it is run again;
//   2  fileinfo.content_type: the media type given at upload or guessed
//      from the file name, sent back with downloads.

#include <boost/describe/class.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "asqlite/engine.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/migrate.hpp"

namespace file_service {

/// A fileinfo row: the seed's columns, then what the migrations added.
struct stored_file : asqlite::file_info {
    std::optional<std::string> content_type;
};
BOOST_DESCRIBE_STRUCT(stored_file, (asqlite::file_info), (content_type))

/// The columns of stored_file, in order, for SELECT and RETURNING.
std::string_view stored_file_columns();

/// The service's migrations, in order. Their text never changes once
/// released: a change is a new version.
const std::vector<asqlite::migration>& migrations();

/// Brings the database up to the latest version at startup: a database
/// that init_db made (fileinfo, no migration records) is baselined at
/// version 1 first, its rows untouched. Returns the versions applied.
std::vector<std::int64_t> prepare_database(const asqlite::engine& e);

}  // namespace file_service
