#include "asqlite/engine.hpp"

#include <fmt/format.h>

namespace asqlite {

engine::engine(engine_options options) : options_(std::move(options)) {
    options_.validate();
}

connection engine::connect() const {
    connection c(options_.path, options_.connection_settings(true));
    if (options_.on_connect) {
        options_.on_connect(c);
    }
    return c;
}

engine create_engine(engine_options options) {
    return engine(std::move(options));
}

engine create_engine(std::string_view url) {
    return engine(engine_options::from_url(url));
}

std::vector<table_report> init_db(const engine& e, const metadata& tables) {
    if (tables.tables().empty()) {
        logger::global().log(log_level::warn,
                             "init_db: no tables to create in database '{}' (register them with "
                             "metadata::global().add(...), or pass a metadata)",
                             e.options().path);
    }
    auto c = e.connect();
    auto report = tables.create_all(c);
    std::vector<std::string> parts;
    for (const auto& r : report) {
        parts.push_back(fmt::format("{} {}", r.table, to_string(r.status)));
    }
    logger::global().log(log_level::info, "init_db: database '{}' initialized ({})",
                         e.options().path, fmt::join(parts, ", "));
    return report;
}

}  // namespace asqlite
