#pragma once

#include <string>

namespace asqlite::bench {

/// Runs `writers` writer and `readers` reader coroutines on the database at
/// `path` for `seconds`; returns 0 when nothing failed and nothing was lost.
int run_stress(const std::string& path, double seconds, int writers, int readers);

}  // namespace asqlite::bench
