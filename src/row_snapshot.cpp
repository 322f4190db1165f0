#include "asqlite/detail/row_snapshot.hpp"

#include "asqlite/statement.hpp"

#include <bit>

namespace asqlite::detail {

namespace {
// Kept between captures up to these sizes; a larger row's buffers go after
// it has been read.
constexpr std::size_t kept_bytes = 64 * 1024;
constexpr std::size_t kept_columns = 256;
// Snapshots kept per thread: one for each read that can be in flight at
// once in a busy server is plenty; more are freed when they come back.
constexpr std::size_t kept_snapshots = 256;

std::vector<std::unique_ptr<row_snapshot>>& snapshot_cache() {
    thread_local std::vector<std::unique_ptr<row_snapshot>> cache;
    return cache;
}
}  // namespace

snapshot_lease::snapshot_lease() {
    auto& cache = snapshot_cache();
    if (cache.empty()) {
        snap_ = std::make_unique<row_snapshot>();
    } else {
        snap_ = std::move(cache.back());
        cache.pop_back();
    }
}

snapshot_lease::~snapshot_lease() {
    if (!snap_) {
        return;
    }
    auto& cache = snapshot_cache();
    if (cache.size() < kept_snapshots) {
        try {
            cache.push_back(std::move(snap_));
        } catch (...) {
            // Out of memory for the cache: the snapshot is simply freed.
        }
    }
}

row_snapshot::range row_snapshot::append(std::string_view text) {
    const range r{bytes_.size(), text.size()};
    bytes_.append(text);
    return r;
}

void row_snapshot::capture(const statement& st, bool has_row) {
    const int n = st.column_count();
    has_row_ = has_row;
    const statement::layout_key layout = st.layout();
    if (layout == names_of_ && cells_.size() == static_cast<std::size_t>(n)) {
        bytes_.resize(names_size_);  // the same statement's names are here already
    } else {
        names_of_ = {};  // until the names are complete
        cells_.resize(static_cast<std::size_t>(n));
        names_.resize(static_cast<std::size_t>(n));
        bytes_.clear();
        // The names first, each closed by a NUL (no SQLite name contains
        // one): together they are the layout read() recognises.
        for (int i = 0; i < n; ++i) {
            names_[index(i)] = append(st.column_name(i));
            bytes_.push_back('\0');
        }
        names_size_ = bytes_.size();
        names_of_ = layout;
    }
    const auto put_bytes = [this](cell& c, std::string_view text) {
        const range r = append(text);
        c.bits = r.offset;
        c.size = static_cast<std::uint32_t>(r.size);
    };
    for (int i = 0; i < n; ++i) {
        cell& c = cells_[index(i)];
        c.type = has_row ? st.column_type(i) : value_type::null;
        switch (c.type) {
            case value_type::integer:
                c.bits = std::bit_cast<std::uint64_t>(st.column_int64(i));
                break;
            case value_type::real:
                c.bits = std::bit_cast<std::uint64_t>(st.column_double(i));
                break;
            case value_type::text:
                put_bytes(c, st.column_text(i));
                break;
            case value_type::blob: {
                const auto b = st.column_blob(i);
                put_bytes(c, {reinterpret_cast<const char*>(b.data()), b.size()});
                break;
            }
            case value_type::null:
                break;
        }
    }
}

void row_snapshot::trim() noexcept {
    if (bytes_.capacity() > kept_bytes) {
        std::string().swap(bytes_);
        names_of_ = {};
    }
    if (cells_.capacity() > kept_columns) {
        std::vector<cell>().swap(cells_);
        std::vector<range>().swap(names_);
        names_of_ = {};
    }
}

}  // namespace asqlite::detail
