#pragma once
// How this engine's lanes run a step (engine_core::run_held, run_on_idle,
// run_in_line): the job on the blocking pool, its completion handed back
// through the pool's inbox to the step's executor. Only async_engine.cpp
// uses these; everything else reaches a lane through engine_core.

#include "engine_core.hpp"

namespace asqlite::detail {

/// engine_core::run_held on the blocking pool. The writer lane's jobs go
/// first (`urgent`): everyone who writes waits behind the one connection
/// holding the lane.
void post_held(engine_core& lane, pooled_connection& pc, step& s, op_state* gives_back);
/// engine_core::run_on_idle on the blocking pool: the worker picks the
/// connection when the job runs (engine_core::pick), or joins the read
/// transaction it holds (engine_core::shared_read) when state.shares.
void post_on_idle(engine_core& lane, op_state& state, step& s);
/// engine_core::run_in_line on the blocking pool: the job waits for a
/// connection in the lane's line (acquire_for) and starts on the worker
/// that grants it. With pre_ping, a connection that fails the ping is
/// closed and the job waits in line again.
void post_in_line(engine_core& lane, op_state& state, step& s);

}  // namespace asqlite::detail
