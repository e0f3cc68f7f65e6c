//! Limiter tests.
