#pragma once
// A small fmt-based logger with levels and a pluggable sink. Echo mode of the
// engines writes every statement through it at `log_level::info`.
//
// Thread safety: every member may be called from any thread; the sink is
// invoked under the logger's mutex, so a sink needs no locking of its own.

#include <fmt/format.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string_view>

namespace asqlite {

enum class log_level { trace, debug, info, warn, error, off };

std::string_view to_string(log_level level) noexcept;

class logger {
  public:
    using sink_type = std::function<void(log_level, std::string_view)>;

    /// The process-wide logger used by the engines unless told otherwise.
    static logger& global();

    logger();  // writes to stderr, level info

    void set_level(log_level level) noexcept { level_.store(level, std::memory_order_relaxed); }
    log_level level() const noexcept { return level_.load(std::memory_order_relaxed); }
    bool enabled(log_level level) const noexcept { return level >= this->level(); }

    /// Replaces the sink; an empty function restores the stderr sink.
    void set_sink(sink_type sink);

    void write(log_level level, std::string_view message);

    template <class... Args>
    void log(log_level level, fmt::format_string<Args...> format, Args&&... args) {
        if (enabled(level)) {
            write(level, fmt::format(format, std::forward<Args>(args)...));
        }
    }

  private:
    std::atomic<log_level> level_{log_level::info};
    std::mutex mutex_;
    sink_type sink_;
};

}  // namespace asqlite
