#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/this_coro.hpp>

#include <mutex>

#include "asqlite/async_engine.hpp"

namespace asqlite {
namespace {

struct default_slot {
    std::mutex mutex;
    std::unique_ptr<async_engine> engine;
};

default_slot& slot() {
    static default_slot instance;
    return instance;
}

// Closes the default engine when the execution context it runs on shuts
// down, so its timer and strand never outlive their io_context.
class default_engine_guard : public asio::execution_context::service {
  public:
    using key_type = default_engine_guard;
    static inline asio::execution_context::id id;

    explicit default_engine_guard(asio::execution_context& ctx)
        : asio::execution_context::service(ctx) {}

  private:
    void shutdown() override { reset_default_engine(); }
};

void guard(const asio::any_io_executor& executor) {
    asio::use_service<default_engine_guard>(asio::query(executor, asio::execution::context));
}

}  // namespace

async_engine& default_engine(const asio::any_io_executor& executor) {
    auto& s = slot();
    std::lock_guard lock(s.mutex);
    if (!s.engine) {
        s.engine = std::make_unique<async_engine>(executor, engine_options::from_env());
        guard(executor);
    }
    return *s.engine;
}

void set_default_engine(async_engine engine) {
    auto& s = slot();
    std::unique_ptr<async_engine> previous;
    {
        std::lock_guard lock(s.mutex);
        guard(engine.get_executor());
        previous = std::exchange(s.engine, std::make_unique<async_engine>(std::move(engine)));
    }
}

void reset_default_engine() {
    auto& s = slot();
    std::unique_ptr<async_engine> previous;
    {
        std::lock_guard lock(s.mutex);
        previous = std::move(s.engine);
    }
}

asio::awaitable<session> get_async_session() {
    auto executor = co_await asio::this_coro::executor;
    co_return co_await default_engine(executor).session();
}

}  // namespace asqlite
