#pragma once
// How the public operations take any completion token: each is written once,
// as a coroutine returning asio::awaitable<T>, and started here in the form
// the caller's token asks for.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>

namespace asqlite::detail {

namespace asio = boost::asio;

template <class T>
struct op_signature_of {
    using type = void(std::exception_ptr, T);
};
template <>
struct op_signature_of<void> {
    using type = void(std::exception_ptr);
};
/// The completion signature of an operation giving a T.
template <class T>
using op_signature = typename op_signature_of<T>::type;

template <class Token>
inline constexpr bool is_use_awaitable =
    std::is_same_v<std::decay_t<Token>, asio::use_awaitable_t<>>;

/// The execution context of `ex`, nullptr when it has none to ask. Throws
/// (bad_executor) for an empty executor, as posting to it would.
template <class Executor>
const void* context_of(const Executor& ex) {
    if constexpr (requires { asio::query(ex, asio::execution::context); }) {
        return static_cast<const void*>(&asio::query(ex, asio::execution::context));
    } else {
        return nullptr;
    }
}

/// The executor an operation's coroutine runs on for `handler`: the
/// handler's own when it belongs to the engine's execution context (a
/// strand of it, say: where the session is used and cancellation comes
/// from); otherwise the engine's, `engine` (use_future's handler, for one,
/// runs whatever it is given inline, on any thread). co_spawn hands the
/// completion to the handler's own executor either way.
template <class Handler>
asio::any_io_executor operation_executor(const Handler& handler,
                                         const asio::any_io_executor& engine) {
    auto ex = asio::get_associated_executor(handler, engine);
    if constexpr (std::is_convertible_v<decltype(ex), asio::any_io_executor>) {
        if (!engine || (context_of(ex) != nullptr && context_of(ex) == context_of(engine))) {
            return ex;
        }
    }
    return engine;
}

/// Starts the operation `make()` describes (a callable returning
/// asio::awaitable<T>) with `token`. For use_awaitable (the default of every
/// operation) that is make()'s awaitable itself. Any other token (a
/// callback, use_future, deferred, as_tuple(...), a bound cancellation
/// slot) gets the operation run as a coroutine on operation_executor(),
/// completing with
/// void(std::exception_ptr, T); a terminal cancellation emitted on the
/// handler's slot reaches the operation as it would through co_await.
template <class T, class Token, class Make>
auto start_operation(Token&& token, asio::any_io_executor fallback, Make make) {
    if constexpr (is_use_awaitable<Token>) {
        return make();
    } else {
        return asio::async_initiate<Token, op_signature<T>>(
            [fallback = std::move(fallback)](auto handler, Make m) {
                auto ex = operation_executor(handler, fallback);
                asio::co_spawn(std::move(ex), std::move(m), std::move(handler));
            },
            token, std::move(make));
    }
}

/// start_operation() for an object that may be unusable (a session without
/// an engine, a finished transaction): check() throws at once for a token
/// other than use_awaitable; with use_awaitable, the co_await throws.
template <class T, class Token, class Check, class Make>
auto start_checked(Token&& token, Check check, asio::any_io_executor fallback, Make make) {
    if constexpr (!is_use_awaitable<Token>) {
        check();
    }
    return start_operation<T>(std::forward<Token>(token), std::move(fallback), std::move(make));
}

template <class... A>
struct last_of {
    using type = void;
};
template <class A0, class... A>
struct last_of<A0, A...> {
    using type = std::tuple_element_t<sizeof...(A), std::tuple<A0, A...>>;
};

/// Whether the last of a call's arguments is a completion token for `Sig`
/// (a statement parameter never is: it is not a handler).
template <class Sig, class... A>
inline constexpr bool ends_with_token = [] {
    if constexpr (sizeof...(A) == 0) {
        return false;
    } else {
        return asio::completion_token_for<typename last_of<A...>::type, Sig>;
    }
}();

/// Calls op(params, token): `params` the statement parameters among `args`
/// (each by value, in a std::tuple), `token` the last argument when it is a
/// completion token for Sig, use_awaitable otherwise.
template <class Sig, class Op, class... A>
auto split_token(Op&& op, A&&... args) {
    if constexpr (ends_with_token<Sig, A...>) {
        auto all = std::forward_as_tuple(std::forward<A>(args)...);
        return [&]<std::size_t... I>(std::index_sequence<I...>) {
            return op(std::make_tuple(std::get<I>(std::move(all))...),
                      std::get<sizeof...(A) - 1>(std::move(all)));
        }
        (std::make_index_sequence<sizeof...(A) - 1>());
    } else {
        return op(std::make_tuple(std::forward<A>(args)...), asio::use_awaitable);
    }
}

}  // namespace asqlite::detail
