//! What a Server-Sent Events response looked like on the wire. `SseTracker` is a
//! `BodySink`: it sees every HTTP chunk with the time and number of the read that
//! completed it, and counts
//!
//! - **events**: blocks ended by a blank line (LF or CRLF line ends), across chunks;
//! - **merged chunks**: HTTP chunks in which two or more events end. A server that
//!   writes one event per chunk never produces one, whatever the network does; a
//!   server (or proxy) that buffers does;
//! - **coalesced reads**: reads that completed two or more chunks (the events were
//!   framed separately but arrived together; on a loaded box this is normal);
//! - **time to first byte** (first body chunk) and the **gaps** between consecutive
//!   chunks, each measured at the read that completed the chunk.
//!
//! Cost: one pass over the body bytes looking for line ends.

use std::time::Instant;

use crate::http::BodySink;

/// When the chunks of one stream arrived: first one, gaps between consecutive ones,
/// and how many reads carried more than one. Shared by SSE and WebSocket turns.
pub struct ChunkTimes {
    pub chunks: u32,
    pub coalesced_reads: u32,
    pub first_at: Option<Instant>,
    /// Gaps between consecutive chunks, in nanoseconds.
    pub gaps_ns: Vec<u64>,
    last_at: Option<Instant>,
    last_read: Option<u64>,
    /// Chunks completed by the current read so far.
    chunks_this_read: u32,
}

impl Default for ChunkTimes {
    fn default() -> Self {
        ChunkTimes {
            chunks: 0,
            coalesced_reads: 0,
            first_at: None,
            gaps_ns: Vec::with_capacity(32),
            last_at: None,
            last_read: None,
            chunks_this_read: 0,
        }
    }
}

impl ChunkTimes {
    /// One chunk, completed by read number `read_no` which returned at `at`.
    pub fn arrive(&mut self, at: Instant, read_no: u64) {
        self.chunks += 1;
        if self.last_read == Some(read_no) {
            self.chunks_this_read += 1;
            if self.chunks_this_read == 2 {
                self.coalesced_reads += 1;
            }
        } else {
            self.last_read = Some(read_no);
            self.chunks_this_read = 1;
        }
        match self.last_at {
            None => self.first_at = Some(at),
            Some(prev) => self.gaps_ns.push(at.saturating_duration_since(prev).as_nanos() as u64),
        }
        self.last_at = Some(at);
    }
}

/// Per-response SSE observations.
#[derive(Default)]
pub struct SseTracker {
    pub times: ChunkTimes,
    pub events: u32,
    pub merged_chunks: u32,
    /// Length of the line being read (without its end).
    line_len: usize,
    /// Whether the current event has a non-empty line yet.
    event_open: bool,
}

impl SseTracker {
    /// Counts the events that end in `data`.
    fn scan(&mut self, data: &[u8]) -> u32 {
        let mut ended = 0;
        for &b in data {
            match b {
                b'\r' => {}
                b'\n' => {
                    if self.line_len == 0 {
                        if self.event_open {
                            ended += 1;
                            self.event_open = false;
                        }
                    } else {
                        self.event_open = true;
                        self.line_len = 0;
                    }
                }
                _ => self.line_len += 1,
            }
        }
        ended
    }
}

impl BodySink for SseTracker {
    fn chunk(&mut self, data: &[u8], at: Instant, read_no: u64) {
        if data.is_empty() {
            return;
        }
        let ended = self.scan(data);
        self.events += ended;
        if ended > 1 {
            self.merged_chunks += 1;
        }
        self.times.arrive(at, read_no);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_across_chunks_and_flags_merged_ones() {
        let t0 = Instant::now();
        let mut s = SseTracker::default();
        s.chunk(b"data: {\"a\":1}\n\n", t0, 1);
        s.chunk(b"data: {\"b\"", t0, 1);
        s.chunk(b":2}\r\n\r\ndata: [DONE]\r\n\r\n", t0, 2);
        s.chunk(b": comment\n\nevent: x\ndata: y\n\n", t0, 3);
        assert_eq!(s.events, 5);
        assert_eq!(s.times.chunks, 4);
        assert_eq!(s.merged_chunks, 2);
        assert_eq!(s.times.coalesced_reads, 1);
        assert_eq!(s.times.gaps_ns.len(), 3);
        assert_eq!(s.times.first_at, Some(t0));
    }
}
