#pragma once
// SQLite as the async engine's backend (see backend.hpp).

#include <memory>

#include "asqlite/options.hpp"
#include "backend.hpp"

namespace asqlite::detail {

/// The backend of `options`: a file database gets read connections
/// (query_only, writes refused before they run) and one writer; ":memory:"
/// one shared in-memory database, kept alive while the backend lives, on a
/// single lane of one connection; pool_size 1 a single lane.
std::shared_ptr<backend> make_sqlite_backend(const engine_options& options);

}  // namespace asqlite::detail
