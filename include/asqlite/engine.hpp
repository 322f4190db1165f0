#pragma once
// The synchronous engine: the seed's create_engine(..., echo=True), used to
// create the schema (init_db) and for scripts. No Asio here.
//
// Thread safety: an engine may be shared; every connect() opens a new,
// independent connection, which belongs to the calling thread.

#include <string_view>
#include <vector>

#include "asqlite/connection.hpp"
#include "asqlite/options.hpp"
#include "asqlite/schema.hpp"

namespace asqlite {

class engine {
  public:
    /// Validates the options (errc::invalid_option); opens nothing yet.
    explicit engine(engine_options options);

    const engine_options& options() const noexcept { return options_; }
    /// Opens a connection with the engine's pragmas; echo defaults to on.
    connection connect() const;

  private:
    engine_options options_;
};

engine create_engine(engine_options options);
/// From a database URL ("sqlite:///autobots.db") or path, other options
/// default.
engine create_engine(std::string_view url);

/// Creates every table of `tables` (by default metadata::global(), the
/// application's registry) and logs one line when done; a warning when
/// `tables` is empty. The seed's table: init_db(e, file_info_metadata()).
std::vector<table_report> init_db(const engine& e, const metadata& tables = metadata::global());

}  // namespace asqlite
