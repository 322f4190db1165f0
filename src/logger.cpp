#include "asqlite/logger.hpp"

#include <chrono>
#include <cstdio>

namespace asqlite {

std::string_view to_string(log_level level) noexcept {
    switch (level) {
        case log_level::trace:
            return "TRACE";
        case log_level::debug:
            return "DEBUG";
        case log_level::info:
            return "INFO";
        case log_level::warn:
            return "WARN";
        case log_level::error:
            return "ERROR";
        case log_level::off:
            return "OFF";
    }
    return "?";
}

namespace {
void stderr_sink(log_level level, std::string_view message) {
    fmt::print(stderr, "asqlite {:<5} {}\n", to_string(level), message);
}
}  // namespace

logger& logger::global() {
    static logger instance;
    return instance;
}

logger::logger() : sink_(stderr_sink) {}

void logger::set_sink(sink_type sink) {
    std::lock_guard lock(mutex_);
    sink_ = sink ? std::move(sink) : sink_type(stderr_sink);
}

void logger::write(log_level level, std::string_view message) {
    if (!enabled(level)) {
        return;
    }
    std::lock_guard lock(mutex_);
    sink_(level, message);
}

}  // namespace asqlite
