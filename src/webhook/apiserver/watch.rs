//! A watch's answer: one JSON event per line, for as long as the
//! apiserver keeps the request open.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use serde::de::DeserializeOwned;

use super::ApiError;

/// The longest event line kept while it arrives (a namespace's metadata
/// is a few KiB).
pub const MAX_LINE: usize = 4 << 20;

pub struct Watch {
    path: String,
    body: Incoming,
    lines: Lines,
    idle: Duration,
}

impl Watch {
    pub(super) fn new(path: &str, body: Incoming, idle: Duration) -> Watch {
        Watch {
            path: path.into(),
            body,
            lines: Lines::default(),
            idle,
        }
    }

    /// The next event; `None` when the apiserver ended the watch.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, ApiError>> {
        loop {
            match self.lines.next() {
                Ok(Some(line)) => {
                    return Some(serde_json::from_slice(&line).map_err(|e| ApiError::Decode {
                        path: self.path.clone(),
                        message: e.to_string(),
                    }))
                }
                Ok(None) => {}
                Err(message) => return Some(Err(self.error(message))),
            }
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => {
                    let silent = format!("nothing for {} s: connection lost?", self.idle.as_secs());
                    return Some(Err(self.error(silent)));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some(Err(self.error(e.to_string()))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.lines.push(&data);
            }
        }
    }

    fn error(&self, message: String) -> ApiError {
        ApiError::Transport {
            path: self.path.clone(),
            message,
        }
    }
}

/// Bytes in, whole lines out.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline: a long line arriving
    /// in small chunks is scanned once, not once per chunk.
    scanned: usize,
}

impl Lines {
    fn push(&mut self, data: &Bytes) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole, non-blank line; an error once an unfinished one
    /// passes [`MAX_LINE`] (what is kept stays bounded).
    fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            let found = self.buf[self.scanned..].iter().position(|&b| b == b'\n');
            let Some(end) = found.map(|i| self.scanned + i) else {
                self.scanned = self.buf.len();
                if self.buf.len() > MAX_LINE {
                    *self = Lines::default();
                    return Err(format!("an event line over {MAX_LINE} bytes"));
                }
                return Ok(None);
            };
            self.scanned = 0;
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                return Ok(Some(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut lines = Lines::default();
        lines.push(&Bytes::from_static(b"{\"a\":1}\n{\"b\""));
        assert_eq!(lines.next().unwrap().as_deref(), Some(&b"{\"a\":1}\n"[..]));
        assert_eq!(lines.next().unwrap(), None);
        lines.push(&Bytes::from_static(b":2}\n\n"));
        assert_eq!(lines.next().unwrap().as_deref(), Some(&b"{\"b\":2}\n"[..]));
        assert_eq!(lines.next().unwrap(), None, "a blank line is no event");
    }

    #[test]
    fn a_long_line_in_small_chunks_is_scanned_once() {
        let mut lines = Lines::default();
        for _ in 0..1000 {
            lines.push(&Bytes::from_static(b"xxxxxxxx"));
            assert_eq!(lines.next().unwrap(), None);
            assert_eq!(lines.scanned, lines.buf.len());
        }
        lines.push(&Bytes::from_static(b"\nrest"));
        assert_eq!(lines.next().unwrap().map(|l| l.len()), Some(8001));
        assert_eq!(lines.next().unwrap(), None);
        lines.push(&Bytes::from_static(b"\n"));
        assert_eq!(lines.next().unwrap().as_deref(), Some(&b"rest\n"[..]));
    }

    #[test]
    fn a_line_without_end_is_bounded() {
        let mut lines = Lines::default();
        lines.push(&Bytes::from(vec![b'x'; MAX_LINE + 1]));
        assert!(lines.next().unwrap_err().contains("over"));
        assert!(lines.buf.is_empty());
    }
}
