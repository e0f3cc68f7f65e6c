//! Integration tests of the `clawgate` binary (and of the `mock_upstream` binary it
//! is tested against). Each test starts the real binary on `127.0.0.1:0` with its own
//! temp config, talks raw HTTP/1.1 (or raw WebSocket frames) to it and asserts exact
//! status codes, headers and bodies as PROTOCOL.md fixes them. Run with
//! `cargo nextest run --test it`; CI runs the suite once with `CLAWGATE_IO=uring` and
//! once with `CLAWGATE_IO=epoll` (the variable is inherited by every gateway the tests
//! start).
//!
//! Modules: `support` (one gateway harness, one `mock_upstream` harness, the raw HTTP
//! and WebSocket clients, JSON and SSE helpers), `rest` (health, status, catalogue,
//! routing, auth, request ids), `chat` (JSON and SSE turns, validation, mock
//! failures), `sessions` (listing, paging, actions, ownership, serialised turns),
//! `http_edges` (pipelining, split writes, chunked bodies, limits, timeouts, load
//! shedding), `ws_edges` (WebSocket framing, close codes, pings), `ratelimit` (request
//! and token limits, per-IP limits on failed keys, reload), `providers` (the OpenAI,
//! Anthropic and compatible adapters in front of `mock_upstream`: retries, fallback,
//! timeouts, TLS, breaker, pass-through), `mock_upstream` (the fake provider's own wire
//! formats and faults), `lifecycle` (drain on SIGTERM, SIGHUP reload, config checks), `fronts_small`
//! (`GET /v1/models/{id}`, `POST /v1/embeddings`, CORS).

// The tests are the client, not a worker: they block, sleep, unwrap and panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

mod support;

mod chat;
mod fronts_small;
mod http_edges;
mod lifecycle;
mod matrix;
mod mock_upstream;
mod providers;
mod ratelimit;
mod rest;
mod sessions;
mod store;
mod translation;
mod ws_edges;
