//! clawgate: a thread-per-core AI gateway. Clients speak the OpenClaw Gateway
//! protocol (REST, SSE, WebSocket, webhooks) or OpenAI's API; clawgate authenticates
//! them, keeps their conversations and forwards each turn to a model provider.
//!
//! # The life of a request
//!
//! Each step is one function; read them in this order to follow a request end to end.
//!
//! 1. **accept**: `server::accept_loop`. Each worker (one per core, `runtime::run`)
//!    accepts on its own `SO_REUSEPORT` listener; past `max_connections_per_worker`
//!    a connection gets 503 at once instead of a task.
//! 2. **decode**: `server::serve` reads with deadlines and calls
//!    `http::Request::take` (one `httparse` pass: size limits, RFC 9112 framing and
//!    Host rules), then reads the body (`http::body::ChunkedDecoder` or a
//!    Content-Length split of the input buffer, no copy; 413 past the limit).
//! 3. **route**: `router::route` maps (method, path) to a `Route`, or 404/405.
//! 4. **auth**: `auth::KeyStore::authenticate_header_memo` checks the key (one
//!    SHA-256 per connection and key, memoised); a failure counts against the IP.
//! 5. **limit**: `ratelimit::Limiter::check_request` takes one request from the key's
//!    per-core lease (no lock); 429 with `Retry-After` when the quota is spent.
//! 6. **guard**: `server::dispatch` refuses bodies nested deeper than
//!    `server.max_json_depth` (`json::check_depth`) before any parser sees them.
//! 7. **front door**: `api::handle` (REST and OpenAI routes) or `ws::upgrade` parses
//!    the request and renders what the turn engine yields.
//! 8. **turn**: `turn::start_turn` resolves the model, takes the session's turn
//!    (`session::SessionHub::begin`, history included), reserves the token estimate
//!    (`ratelimit::Limiter::reserve_turn`) and calls the provider down the model's
//!    fallback chain; `turn::LiveTurn::next` then yields deltas and the settled usage.
//! 9. **provider policy**: `provider::policy::HttpProvider::chat` picks the key with
//!    the fewest requests in flight, asks the circuit breaker, retries what may be
//!    retried (connect errors, 429, 5xx) with backoff inside the deadline.
//! 10. **upstream pool**: `upstream::Client::send` reuses a keep-alive connection of
//!     this core's pool (TLS by rustls, DNS off the worker) and streams the answer.
//! 11. **encode**: back in `server::serve`, a whole response is written with
//!     `http::response::write_head_for`; SSE leaves one chunk per event as it is
//!     produced (`http::sse`); a `101` hands the socket to `ws::serve`.
//!
//! # Layers
//!
//! Each module imports only modules of lower layers, or of its own layer listed
//! before it (DESIGN.md "Layers"; `tests/layers.rs` enforces this list):
//!
//! ```text
//! 0  clock, error, json, config, log, stats
//! 1  peers, chat, channel, auth, http, router, upstream, tls
//! 2  provider, store, session, ratelimit
//! 3  turn, worker
//! 4  api, ws, webhook, metrics
//! 5  server, runtime
//! ```
//!
//! Lower layers hand results up (return values, events, headers to add) and never call
//! into a front door or reach for the worker.

pub mod api;
pub mod auth;
pub mod channel;
pub mod chat;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod json;
pub mod log;
pub mod metrics;
pub mod peers;
pub mod provider;
pub mod ratelimit;
pub mod router;
pub mod runtime;
pub mod server;
pub mod session;
pub mod stats;
pub mod store;
pub mod tls;
pub mod turn;
pub mod upstream;
pub mod webhook;
pub mod worker;
pub mod ws;
