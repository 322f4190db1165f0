#pragma once
// The whole public API of asqlite.

#include "asqlite/async_engine.hpp"
#include "asqlite/connection.hpp"
#include "asqlite/engine.hpp"
#include "asqlite/error.hpp"
#include "asqlite/file_info.hpp"
#include "asqlite/logger.hpp"
#include "asqlite/migrate.hpp"
#include "asqlite/options.hpp"
#include "asqlite/result.hpp"
#include "asqlite/row.hpp"
#include "asqlite/schema.hpp"
#include "asqlite/session.hpp"
#include "asqlite/sqlite_config.hpp"
#include "asqlite/statement.hpp"
#include "asqlite/stream.hpp"
#include "asqlite/value.hpp"
