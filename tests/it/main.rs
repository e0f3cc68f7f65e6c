//! Integration tests of the `clawgate` binary. Each test starts the real binary on
//! `127.0.0.1:0` with its own temp config and the built-in mock provider, talks raw
//! HTTP/1.1 to it and asserts exact status codes, headers and bodies as PROTOCOL.md
//! fixes them. Run with `cargo nextest run --test it`; CI runs the suite once with
//! `CLAWGATE_IO=uring` and once with `CLAWGATE_IO=epoll` (the variable is inherited by
//! every gateway the tests start).
//!
//! Modules: `support` (process harness, raw client, JSON and SSE helpers), `rest`
//! (health, status, catalogue, routing, auth, request ids), `chat` (JSON and SSE turns,
//! validation, mock failures), `sessions` (listing, paging, actions, ownership,
//! serialised turns), `http_edges` (pipelining, split writes, chunked bodies, limits,
//! timeouts, load shedding), `lifecycle` (drain on SIGTERM, SIGHUP reload, config
//! checks).

// The tests are the client, not a worker: they block, sleep, unwrap and panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

mod support;

mod chat;
mod http_edges;
mod lifecycle;
mod providers;
mod rest;
mod sessions;
