//! Structured logs via `tracing`: JSON in clusters, text for people.
//! `RUST_LOG` filters as usual (default `info`).
//!
//! Lines are written to stderr by a thread of their own: a review formats
//! its line and hands it over, instead of waiting for a write to a pipe the
//! container runtime may be slow to drain. The hand-over is bounded
//! ([`QUEUED_LINES`]); when it is full the request waits, so no line is
//! ever dropped. The thread writes what has queued up in one go, flushes
//! as soon as the queue is empty, then lingers ([`LINGER`]) before it waits
//! again: under load the lines of that interval go out in one write, and no
//! review pays for waking the thread (a futex call and a context switch
//! per line, measured in `docs/performance.md`). A line is late by at most
//! the linger and a write.

use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Lines that may wait for the writer thread.
pub const QUEUED_LINES: usize = 4096;

/// How long the writer thread lets lines gather after a write: short
/// enough that logs stay live, long enough that at thousands of reviews a
/// second it wakes a few hundred times, not once per line.
pub const LINGER: Duration = Duration::from_millis(2);

enum Message {
    Line(Vec<u8>),
    /// Write everything before this, then answer.
    Flush(SyncSender<()>),
}

/// Hands lines to the writer thread ([`MakeWriter`] for the fmt layer).
#[derive(Clone)]
pub struct Lines {
    sender: SyncSender<Message>,
}

/// One event's line: tracing-subscriber writes an event's formatted line
/// in one call, which becomes one message.
pub struct Line {
    sender: SyncSender<Message>,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sender
            .send(Message::Line(buf.to_vec()))
            // The writer thread is gone (process exiting): the line goes
            // straight to stderr rather than nowhere.
            .or_else(|_| io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line {
            sender: self.sender.clone(),
        }
    }
}

impl Lines {
    /// Starts the writer thread over `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> io::Result<Lines> {
        let (sender, receiver) = mpsc::sync_channel(QUEUED_LINES);
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(receiver, out))?;
        Ok(Lines { sender })
    }

    /// Waits (at most `within`) until every line handed over before this
    /// call is written: before the process exits.
    pub fn flush(&self, within: Duration) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
    }
}

fn write_lines(receiver: Receiver<Message>, out: impl Write) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
        std::thread::sleep(LINGER);
    }
}

/// Installs the subscriber; the returned [`Lines`] is to be flushed before
/// the process exits (`None` if the writer thread could not be started:
/// lines then go straight to stderr).
pub fn init(format: &str) -> Option<Lines> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = Lines::spawn(io::stderr()).ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(match lines.clone() {
            Some(lines) => BoxMakeWriter::new(lines),
            None => BoxMakeWriter::new(io::stderr),
        });
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What reached the output, and in how many writes.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>, Arc<Mutex<usize>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            *self.1.lock().map_err(|_| io::Error::other("poisoned"))? += 1;
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_flush() {
        let out = Shared::default();
        let lines = Lines::spawn(out.clone()).unwrap();
        for i in 0..10_000 {
            let mut w = lines.make_writer();
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        lines.flush(Duration::from_secs(10));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    /// Lines arriving faster than every [`LINGER`] share writes: 200 lines
    /// 100 µs apart took 200 writes when the thread went back to waiting
    /// as soon as it had written.
    #[test]
    fn lines_arriving_close_together_share_a_write() {
        let out = Shared::default();
        let lines = Lines::spawn(out.clone()).unwrap();
        for i in 0..200 {
            lines
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
            std::thread::sleep(Duration::from_micros(100));
        }
        lines.flush(Duration::from_secs(10));
        let writes = *out.1.lock().unwrap();
        assert!(writes <= 100, "{writes} writes for 200 lines");
    }
}
