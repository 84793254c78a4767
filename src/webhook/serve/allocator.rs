//! glibc's malloc told to give large blocks back, so that memory after a
//! burst of large bodies comes back to what it was (issue 13's soak).
//!
//! By default glibc slides its thresholds: each time a mapped block (over
//! 128 KiB) is freed, blocks up to that size (at most 32 MiB) are carved
//! from the arenas from then on, and free space up to twice that size is
//! kept at the top of each arena. After the first 3 MiB body was freed,
//! every later one came from an arena and stayed there once freed: bodies
//! are read on whichever runtime thread and reviewed on whichever
//! blocking-pool thread, glibc gives threads up to 8 arenas per core, and
//! so each hostile burst left about 3.5 MiB resident in the arenas it had
//! not used before. `make soak` saw RSS step up after every burst and never
//! come down (16 → 43 MiB); `malloc_stats` after four bursts showed 8 of 16
//! arenas holding about 3.6 MiB each with under 60 KiB in use. Not the
//! blocking pool: its threads grow under load (about 40 at saturation on 2
//! cores, whatever the budgets) and leave after 10 s idle, and arenas
//! outlive them; the number of arenas only sets how many bodies' worth can
//! be kept (`MALLOC_ARENA_MAX=2`: one, flat, but every thread on two locks).
//!
//! Fixing both thresholds at glibc's own initial values keeps the
//! behaviour of a fresh process for good: blocks over 128 KiB are mapped
//! and unmapped, and an arena keeps at most 128 KiB free at its top. Real
//! reviews (a few KiB) allocate nothing that large, so their path is
//! unchanged; a large body pays one `mmap` and one `munmap` per block over
//! the threshold, next to a parse that takes milliseconds.
//!
//! What the thresholds cannot give back are freed blocks under them that
//! sit below a block still in use: a body arrives in TLS records of 16 KiB,
//! collected on a runtime thread, and one small allocation made meanwhile
//! pins the freed chunks beneath it (`tests/hostile.rs`'s bursts left 1.6
//! to 7.5 MiB that way, varying by burst). [`Trimmer`] runs `malloc_trim(0)`, which
//! returns the free pages inside every arena, once the large-body lane is
//! empty again: real reviews use the small lane and never pay for it.
//!
//! Only `serve` calls this: the in-pod helpers keep glibc's defaults.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Blocks at least this large are mapped on their own and unmapped when
/// freed; free space at an arena's top beyond it is given back.
pub const THRESHOLD: usize = 128 * 1024;

/// Fixes glibc's mmap and trim thresholds at [`THRESHOLD`] (which also
/// stops them sliding). Call before the runtime's threads start. An error
/// names the setting glibc refused; other C libraries need nothing.
pub fn give_back_large_blocks() -> Result<(), &'static str> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(THRESHOLD).unwrap_or(libc::c_int::MAX);
        for (param, name) in [
            (libc::M_MMAP_THRESHOLD, "M_MMAP_THRESHOLD"),
            (libc::M_TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
        ] {
            // SAFETY: mallopt only sets malloc's parameters under its own
            // lock; both values are within the ranges glibc accepts (it
            // returns 0, and changes nothing, otherwise).
            if unsafe { libc::mallopt(param, threshold) } != 1 {
                return Err(name);
            }
        }
    }
    Ok(())
}

/// A trim runs at most this often, however many large bodies come and go:
/// it locks each arena in turn while it walks its free blocks.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Asks for the free memory inside the arenas to be given back.
#[derive(Clone)]
pub struct Trimmer {
    wanted: Arc<Notify>,
}

impl Trimmer {
    /// Starts the task that trims after each request, at most once per
    /// [`TRIM_INTERVAL`]: requests meanwhile make one more trim after it,
    /// so the last burst is always followed by one. Inside the runtime.
    pub fn start() -> Self {
        let wanted = Arc::new(Notify::new());
        tokio::spawn(trim_when_asked(wanted.clone()));
        Self { wanted }
    }

    pub fn request(&self) {
        self.wanted.notify_one();
    }
}

async fn trim_when_asked(wanted: Arc<Notify>) {
    loop {
        wanted.notified().await;
        if tokio::task::spawn_blocking(trim).await.is_err() {
            tracing::warn!("malloc_trim panicked");
        }
        tokio::time::sleep(TRIM_INTERVAL).await;
    }
}

/// Gives the free pages inside every arena back to the system.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes each arena's own lock while it consolidates
    // free blocks and advises the kernel that their pages are unused; it
    // touches no memory in use. Its result (whether anything was returned)
    // needs no answer.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_both_thresholds() {
        assert_eq!(give_back_large_blocks(), Ok(()));
    }
}
