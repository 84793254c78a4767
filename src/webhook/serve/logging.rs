//! Structured logs via `tracing`: JSON in clusters, text for people.
//! `RUST_LOG` filters by target and level (default `info`), e.g. `debug`
//! or `info,dind_injector=debug,h2=warn`; a value that does not parse
//! stops the start with an error that names it. These are `EnvFilter`'s
//! target directives without its span and field matching, which needs a
//! regular-expression engine: its tables, relocated at every start, were
//! the largest part of the executable's copied-on-write memory
//! (`docs/design.md`, issue 12).
//!
//! Lines are written to stderr by a thread of their own: a review formats
//! its line and hands it over, instead of waiting for a write to a pipe the
//! container runtime may be slow to drain. The hand-over is a byte buffer
//! under a mutex: a line is one copy into memory that is already there, and
//! the writer thread swaps the buffer for its own empty one and writes what
//! it took outside the lock. A channel of lines cost, measured with DHAT
//! under load, 128 KiB of slots allocated up front, a 64 KiB `BufWriter`
//! in the writer thread's own malloc arena and an allocation and a free
//! per line, in a process whose peak RSS we hold near a minimal webhook's;
//! the two buffers here grow to what one linger gathers and give back what
//! a burst made them grow ([`KEPT_BYTES`]).
//!
//! The buffer is bounded ([`QUEUED_BYTES`]): a line that would take it past
//! the bound waits until the writer has taken it, so no line is ever
//! dropped; a line longer than the bound waits for an empty buffer and goes
//! alone. The thread writes what it took in one write, then lingers
//! ([`LINGER`]) before it looks again: under load the lines of that
//! interval go out in one write, and no review pays for waking the thread
//! (a futex call and a context switch per line, measured in
//! `docs/performance.md`): a line wakes it only when it sleeps waiting for
//! lines, and nothing wakes a review unless one waits. A line is late by at
//! most the linger and a write. If the thread is gone (it panicked) or
//! could not be started, lines go straight to stderr.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Bytes that may wait for the writer thread. A review's line is a few
/// hundred bytes (its fields are cut: a few KiB at most), so this holds
/// hundreds of lines, where at the highest rate measured (17,000 reviews a
/// second) a linger gathers some 30, 10 to 15 KiB: reviews wait only when
/// the output has stalled for tens of milliseconds, and then they have to
/// wait or memory grows without end. It is also the most either buffer
/// grows to (two of them: 512 KiB at worst, during a stall, given back
/// after it).
pub const QUEUED_BYTES: usize = 256 * 1024;

/// How long the writer thread lets lines gather after a write: short
/// enough that logs stay live, long enough that at thousands of reviews a
/// second it wakes a few hundred times, not once per line.
pub const LINGER: Duration = Duration::from_millis(2);

/// The most capacity a buffer keeps after its lines are written: a few
/// lingers' worth at the highest rate, so steady load never reallocates.
/// A buffer that grew past it is let go whole ([`after_write`]).
pub const KEPT_BYTES: usize = 64 * 1024;

/// A buffer's first allocation: a handful of lines, not more.
const FIRST_BYTES: usize = 4 * 1024;

/// The hand-over between the threads that log and the writer thread.
struct Queue {
    state: Mutex<State>,
    /// [`QUEUED_BYTES`], smaller in tests.
    bound: usize,
    /// The writer thread waits here for lines.
    lines: Condvar,
    /// Lines wait here for the writer to take the buffer.
    room: Condvar,
    /// [`Lines::flush`] waits here for the writer to have written.
    written: Condvar,
}

struct State {
    /// Lines handed over and not yet taken by the writer.
    pending: Vec<u8>,
    /// Lines handed over since the start, and written since the start: a
    /// flush waits for `written` to reach the `appended` it saw.
    appended: u64,
    written: u64,
    /// Who waits (the writer for lines, lines for room, flushes for a
    /// write), so that nobody signals a condition no one waits on (a futex
    /// call each): under load the writer lingers instead of waiting, and
    /// lines hand over without a system call.
    writer_waiting: bool,
    waiting_for_room: usize,
    flushing: usize,
    /// False once the writer thread has ended: lines go to stderr.
    writer_alive: bool,
    /// Every [`Lines`] is dropped: the writer ends once `pending` is empty.
    closed: bool,
    /// The most `pending` held, for the tests of the bound.
    #[cfg(test)]
    peak: usize,
}

impl Queue {
    /// The state, even if a thread panicked holding it: the buffer is
    /// bytes and counters, consistent between any two statements, and a
    /// log line must not take a review down.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, on: &Condvar, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        on.wait(state).unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends `line` to `pending`, doubling its capacity as a `Vec` would but
/// never past the bound (or the one line, if longer): a buffer's memory
/// stays within [`QUEUED_BYTES`].
fn append(pending: &mut Vec<u8>, line: &[u8], bound: usize) {
    let needed = pending.len() + line.len();
    if needed > pending.capacity() {
        let capacity = (pending.capacity() * 2)
            .max(FIRST_BYTES)
            .min(bound)
            .max(needed);
        pending.reserve_exact(capacity - pending.len());
    }
    pending.extend_from_slice(line);
}

/// Hands lines to the writer thread ([`MakeWriter`] for the fmt layer).
#[derive(Clone)]
pub struct Lines {
    handle: Arc<Handle>,
}

/// Closes the queue when the last [`Lines`] goes, so that the writer
/// thread ends after writing what is left (the process's own `Lines` lives
/// as long as the subscriber; the tests' go).
struct Handle {
    queue: Arc<Queue>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.closed = true;
        if state.writer_waiting {
            state.writer_waiting = false;
            self.queue.lines.notify_one();
        }
    }
}

/// One event's line: tracing-subscriber writes an event's formatted line
/// in one call, which is appended whole.
pub struct Line<'a> {
    queue: &'a Queue,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            // Counted, it would be a line a flush waits for and no writer
            // wakes up to write.
            return Ok(0);
        }
        let queue = self.queue;
        let mut state = queue.lock();
        loop {
            if !state.writer_alive {
                drop(state);
                io::stderr().write_all(buf)?;
                return Ok(buf.len());
            }
            if state.pending.is_empty() || state.pending.len() + buf.len() <= queue.bound {
                break;
            }
            state.waiting_for_room += 1;
            state = queue.wait(&queue.room, state);
            state.waiting_for_room -= 1;
        }
        append(&mut state.pending, buf, queue.bound);
        state.appended += 1;
        #[cfg(test)]
        {
            state.peak = state.peak.max(state.pending.len());
        }
        if state.writer_waiting {
            state.writer_waiting = false;
            queue.lines.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line {
            queue: &self.handle.queue,
        }
    }
}

impl Lines {
    /// Starts the writer thread over `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> io::Result<Lines> {
        Lines::start(out, QUEUED_BYTES)
    }

    fn start(out: impl Write + Send + 'static, bound: usize) -> io::Result<Lines> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                pending: Vec::new(),
                appended: 0,
                written: 0,
                writer_waiting: false,
                waiting_for_room: 0,
                flushing: 0,
                writer_alive: true,
                closed: false,
                #[cfg(test)]
                peak: 0,
            }),
            bound,
            lines: Condvar::new(),
            room: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = queue.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                let _gone = Gone(&writer);
                write_lines(&writer, out);
            })?;
        Ok(Lines {
            handle: Arc::new(Handle { queue }),
        })
    }

    /// Waits (at most `within`) until every line handed over before this
    /// call is written: before the process exits.
    pub fn flush(&self, within: Duration) {
        let queue = &self.handle.queue;
        let start = Instant::now();
        let mut state = queue.lock();
        let target = state.appended;
        while state.writer_alive && state.written < target {
            let left = within.saturating_sub(start.elapsed());
            if left.is_zero() {
                return;
            }
            state.flushing += 1;
            state = match queue.written.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.flushing -= 1;
        }
    }

    /// The most bytes that waited for the writer at once.
    #[cfg(test)]
    fn peak(&self) -> usize {
        self.handle.queue.lock().peak
    }
}

/// Empties a written buffer, and lets it go if a stall grew it past
/// [`KEPT_BYTES`]. Both buffers pass through here in turn, so a stall's
/// growth goes within two writes. Not `shrink_to`: glibc maps a block of
/// 128 KiB or more on its own, and shrinking one only remaps it smaller;
/// it then stayed a mapping of its own, every page touched (after the
/// bench loads, `malloc_stats` counted two such blocks, 136 KiB, in a
/// process whose peak RSS is held near a minimal webhook's). Freed, it is
/// unmapped, and the buffer grows again inside the arena.
fn after_write(taken: &mut Vec<u8>) {
    if taken.capacity() > KEPT_BYTES {
        *taken = Vec::new();
    } else {
        taken.clear();
    }
}

/// Takes what the lines left, writes it, lingers; until the queue is
/// closed and empty.
fn write_lines(queue: &Queue, mut out: impl Write) {
    let mut taken = Vec::new();
    loop {
        let mut state = queue.lock();
        while state.pending.is_empty() {
            if state.closed {
                return;
            }
            state.writer_waiting = true;
            state = queue.wait(&queue.lines, state);
            state.writer_waiting = false;
        }
        std::mem::swap(&mut state.pending, &mut taken);
        let upto = state.appended;
        if state.waiting_for_room > 0 {
            queue.room.notify_all();
        }
        drop(state);

        let _ = out.write_all(&taken);
        let _ = out.flush();
        after_write(&mut taken);

        let mut state = queue.lock();
        state.written = upto;
        if state.flushing > 0 {
            queue.written.notify_all();
        }
        drop(state);
        std::thread::sleep(LINGER);
    }
}

/// Marks the writer thread gone when it ends, by a panic in the output's
/// `write` too: what was pending goes to stderr (under the lock, so before
/// any later line), later lines go there directly, and nobody waits for
/// room or a flush that would never come.
struct Gone<'a>(&'a Queue);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.writer_alive = false;
        let _ = io::stderr().write_all(&state.pending);
        state.pending = Vec::new();
        self.0.room.notify_all();
        self.0.written.notify_all();
    }
}

/// The environment variable [`filter`] reads.
pub const FILTER_VAR: &str = "RUST_LOG";

/// What `RUST_LOG` asks for: unset or empty is `info`; anything else must
/// parse, so a typo is an error at start rather than a silent `info`.
pub fn filter(value: Option<&str>) -> Result<Targets, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Targets::new().with_default(tracing::Level::INFO)),
        Some(directives) => directives.parse().map_err(|e| {
            format!(
                "{FILTER_VAR}={directives:?}: {e}; expected a level or target=level \
                 directives, e.g. info,dind_injector=debug"
            )
        }),
    }
}

/// Installs the subscriber; the returned [`Lines`] is to be flushed before
/// the process exits (`None` if the writer thread could not be started:
/// lines then go straight to stderr).
pub fn init(format: &str) -> anyhow::Result<Option<Lines>> {
    let value = match std::env::var(FILTER_VAR) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(value)) => {
            anyhow::bail!("{FILTER_VAR}={value:?} is not UTF-8")
        }
    };
    let filter = filter(value.as_deref()).map_err(anyhow::Error::msg)?;
    let lines = Lines::spawn(io::stderr()).ok();
    let writer = match lines.clone() {
        Some(lines) => BoxMakeWriter::new(lines),
        None => BoxMakeWriter::new(io::stderr),
    };
    // try_init: a second initialisation (tests) is not an error worth dying for.
    let _ = subscriber(format == "json", filter, writer).try_init();
    Ok(lines)
}

/// The registry, `filter` as the one filter, and the JSON or text layer.
/// Not `fmt()`'s builder: it caps events at `info` below any filter
/// added to it, so `RUST_LOG=debug` printed nothing below `info`.
fn subscriber<W>(json: bool, filter: Targets, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (json_layer, text_layer) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(writer);
        (Some(layer), None)
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer);
        (None, Some(layer))
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(json_layer)
        .with(text_layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

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

    /// An output that holds every write until [`open`] (a pipe nobody
    /// drains), then takes `delay` per write (a slow one).
    #[derive(Clone)]
    struct Held {
        out: Shared,
        gate: Arc<(Mutex<bool>, Condvar)>,
        delay: Duration,
    }

    fn held(delay: Duration, open: bool) -> Held {
        Held {
            out: Shared::default(),
            gate: Arc::new((Mutex::new(open), Condvar::new())),
            delay,
        }
    }

    fn open(held: &Held) {
        *held.gate.0.lock().unwrap() = true;
        held.gate.1.notify_all();
    }

    impl Write for Held {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, opened) = &*self.gate;
            let mut open = open.lock().map_err(|_| io::Error::other("poisoned"))?;
            while !*open {
                open = opened
                    .wait(open)
                    .map_err(|_| io::Error::other("poisoned"))?;
            }
            drop(open);
            std::thread::sleep(self.delay);
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text(out: &Shared) -> String {
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    /// A stalled output: the buffer fills to the bound, the logging thread
    /// then waits (it neither drops lines nor queues past the bound), and
    /// once the output drains every line is there, in order.
    #[test]
    fn a_stalled_output_makes_lines_wait_within_the_bound() {
        let bound = 4096;
        let out = held(Duration::ZERO, false);
        let lines = Lines::start(out.clone(), bound).unwrap();
        let line = |i: usize| format!("line {i:04} {}\n", "x".repeat(89));
        assert_eq!(line(0).len(), 100);
        let handed = Arc::new(AtomicUsize::new(0));
        let logging = {
            let (lines, handed) = (lines.clone(), handed.clone());
            std::thread::spawn(move || {
                for i in 0..200 {
                    lines.make_writer().write_all(line(i).as_bytes()).unwrap();
                    handed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let before = handed.load(Ordering::SeqCst);
        // At most a bound's worth (40 lines) held by the stalled write, 40
        // in the buffer: the next one waits (on a busy machine the thread
        // may not have got that far).
        assert!(before <= 80, "{before} lines handed over past a stall");
        assert!(lines.peak() <= bound, "{} bytes queued", lines.peak());
        open(&out);
        logging.join().unwrap();
        lines.flush(Duration::from_secs(10));
        let expected: String = (0..200).map(line).collect();
        assert_eq!(text(&out.out), expected);
        assert!(lines.peak() <= bound, "{} bytes queued", lines.peak());
    }

    /// A line longer than the bound waits for an empty buffer and goes
    /// through whole, alone, in its place.
    #[test]
    fn a_line_larger_than_the_bound_is_written_whole() {
        let bound = 1024;
        // Slow writes: the next lines find the buffer not empty.
        let out = held(Duration::from_millis(20), true);
        let lines = Lines::start(out.clone(), bound).unwrap();
        let large = format!("large {}\n", "y".repeat(10 * bound));
        let sequence = [
            "first\n".to_string(),
            "second\n".into(),
            large.clone(),
            "last\n".into(),
        ];
        let (done, finished) = mpsc::channel();
        {
            let (lines, sequence) = (lines.clone(), sequence.clone());
            std::thread::spawn(move || {
                for line in &sequence {
                    lines.make_writer().write_all(line.as_bytes()).unwrap();
                }
                let _ = done.send(());
            });
        }
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the large line went through");
        lines.flush(Duration::from_secs(10));
        assert_eq!(text(&out.out), sequence.concat());
        assert_eq!(lines.peak(), large.len(), "the large line went alone");
    }

    /// Threads logging at once, through a small bound so that they also
    /// wait for room: every line once, whole, each thread's in its order.
    #[test]
    fn concurrent_lines_are_written_once_and_whole() {
        const THREADS: usize = 8;
        const EACH: usize = 1000;
        let out = Shared::default();
        let lines = Lines::start(out.clone(), 8 * 1024).unwrap();
        let padding = |t: usize, n: usize| "z".repeat((n * 37 + t) % 200);
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        let line = format!("{t} {n} {}\n", padding(t, n));
                        lines.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        lines.flush(Duration::from_secs(10));
        let mut next = [0; THREADS];
        let text = text(&out);
        for line in text.lines() {
            let mut fields = line.split(' ');
            let (Some(t), Some(n), Some(pad), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                panic!("a broken line: {line:?}");
            };
            let (t, n): (usize, usize) = (t.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[t], "thread {t}'s lines out of order or repeated");
            assert_eq!(pad, padding(t, n), "line {t} {n} not whole");
            next[t] += 1;
        }
        assert_eq!(next, [EACH; THREADS], "lines missing");
    }

    /// A flush returns only once the lines before it are written: not when
    /// the writer has taken them (its writes take 30 ms here), nor while it
    /// lingers after the previous write.
    #[test]
    fn flush_waits_for_earlier_lines_while_the_writer_lingers() {
        let out = held(Duration::from_millis(30), true);
        let lines = Lines::spawn(out.clone()).unwrap();
        lines.make_writer().write_all(b"a\n").unwrap();
        lines.flush(Duration::from_secs(10));
        assert_eq!(text(&out.out), "a\n");
        // The writer has just written: it lingers now.
        lines.make_writer().write_all(b"b\n").unwrap();
        lines.flush(Duration::from_secs(10));
        assert_eq!(text(&out.out), "a\nb\n");
        // Nothing new: nothing to wait for.
        let start = Instant::now();
        lines.flush(Duration::from_secs(10));
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    /// Before exit a stalled output holds the process up at most `within`.
    #[test]
    fn flush_gives_up_after_within() {
        let out = held(Duration::ZERO, false);
        let lines = Lines::spawn(out.clone()).unwrap();
        lines.make_writer().write_all(b"stuck\n").unwrap();
        let start = Instant::now();
        lines.flush(Duration::from_millis(100));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        open(&out);
        lines.flush(Duration::from_secs(10));
        assert_eq!(text(&out.out), "stuck\n");
    }

    /// The writer thread gone (here its output panicked): lines go to
    /// stderr and nobody waits for it, even past the bound.
    #[test]
    fn without_the_writer_thread_nothing_waits() {
        struct Panics;
        impl Write for Panics {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                panic!("the output broke (on purpose, in a test)")
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::start(Panics, 64).unwrap();
        lines
            .make_writer()
            .write_all(b"to stderr (a test)\n")
            .unwrap();
        let start = Instant::now();
        while lines.handle.queue.lock().writer_alive {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the writer lives on"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = Instant::now();
        for _ in 0..2 {
            lines
                .make_writer()
                .write_all(
                    b"to stderr (a test): a line longer than this test's bound of 64 bytes\n",
                )
                .unwrap();
        }
        lines.flush(Duration::from_secs(10));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    /// Whether `filter` lets an event of `level` from `target` through.
    fn passes(filter: &Targets, target: &str, level: tracing::Level) -> bool {
        filter.would_enable(target, &level)
    }

    #[test]
    fn a_buffer_grown_past_what_is_kept_is_let_go_whole() {
        let mut grown = Vec::with_capacity(2 * QUEUED_BYTES);
        grown.extend_from_slice(b"line\n");
        after_write(&mut grown);
        assert_eq!((grown.len(), grown.capacity()), (0, 0));

        let mut steady = Vec::with_capacity(KEPT_BYTES);
        steady.extend_from_slice(b"line\n");
        after_write(&mut steady);
        assert_eq!((steady.len(), steady.capacity()), (0, KEPT_BYTES));
    }

    #[test]
    fn rust_log_unset_or_empty_is_info() {
        for value in [None, Some(""), Some("  ")] {
            let filter = filter(value).unwrap();
            assert!(passes(&filter, "dind_injector", tracing::Level::INFO));
            assert!(passes(&filter, "h2", tracing::Level::WARN));
            assert!(!passes(&filter, "dind_injector", tracing::Level::DEBUG));
        }
    }

    #[test]
    fn rust_log_sets_levels_by_target() {
        let filter = filter(Some("warn,dind_injector=debug")).unwrap();
        assert!(passes(
            &filter,
            "dind_injector::webhook",
            tracing::Level::DEBUG
        ));
        assert!(!passes(&filter, "dind_injector", tracing::Level::TRACE));
        assert!(!passes(&filter, "h2", tracing::Level::INFO));
        assert!(passes(&filter, "h2", tracing::Level::WARN));
    }

    /// What the installed subscriber writes for a debug and an info event.
    fn written(json: bool, rust_log: Option<&str>) -> String {
        let out = Shared::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let subscriber = subscriber(json, filter(rust_log).unwrap(), writer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "dind_injector::test", "a debug line");
            tracing::info!(target: "dind_injector::test", "an info line");
        });
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn the_installed_subscriber_follows_rust_log_below_info() {
        for json in [true, false] {
            let default = written(json, None);
            assert!(
                default.contains("an info line") && !default.contains("a debug line"),
                "{default}"
            );
            let debug = written(json, Some("dind_injector=debug"));
            assert!(
                debug.contains("a debug line") && debug.contains("an info line"),
                "{debug}"
            );
            let warn = written(json, Some("warn"));
            assert!(warn.is_empty(), "{warn}");
        }
        assert!(written(true, None).starts_with('{'));
    }

    #[test]
    fn a_bad_rust_log_is_an_error_that_names_it() {
        for bad in ["dind_injector=loud", "info,h2=verbose", "a=b=c"] {
            let Err(e) = filter(Some(bad)) else {
                panic!("{bad:?} parsed")
            };
            assert!(e.contains(&format!("RUST_LOG={bad:?}")), "{e}");
        }
    }
}
