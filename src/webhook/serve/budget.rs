//! The memory that reviews in flight may take, bounded whatever the core
//! count.
//!
//! Any pod can reach `/mutate`, and a review costs memory twice: its body
//! while it is read and held, and the parse tree built from it (several
//! times the body for a worst-case `[0,0,…]`, measured at about 35× with
//! `serde_json::Value`). Without a bound the parses in flight are as many as
//! the runtime's threads, so the same flood that a 2-core node survives
//! kills the replica on a 16-core node. Two budgets fix the worst case
//! independently of the node:
//!
//! - bytes of admitted bodies (read, or waiting to be reviewed);
//! - reviews at once, each on the blocking pool (so that the async threads
//!   stay free for I/O), weighted by body size: together they parse at most
//!   one largest body's worth of bytes. Many small reviews run side by side;
//!   a worst-case body runs alone. Peak memory is then about
//!   `inflight_bytes + amplification × max_body`, whatever the core count.
//!
//! A request that finds a budget full waits a short time, then gets 503
//! with reason `overloaded`: the apiserver's `failurePolicy` and its retries
//! handle a busy replica better than an OOM-killed one.
//!
//! Bodies up to [`Budget::small_body`] (real pods are a few KiB) have a lane
//! of their own, with budgets of the same two kinds: a flood of largest
//! bodies fills the large lane and gets 503s, and the apiserver's reviews
//! beside it still pass (found by `make soak`: its hostile bursts failed 16
//! legitimate reviews before).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much may be in flight, and how long a request waits for room.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Sum of the body sizes admitted and not yet answered.
    pub inflight_bytes: usize,
    /// Reviews parsed and decided at the same time, when their bodies are
    /// small (their bodies add up to at most the body limit).
    pub concurrent_reviews: usize,
    /// How long a request waits for room before it is refused.
    pub wait: Duration,
    /// Bodies up to this size use the small lane: `SMALL_LANE_BODIES` of
    /// them in flight, `concurrent_reviews` reviewed at once.
    pub small_body: usize,
    /// Bodies up to this size are reviewed on the async thread that read
    /// them: their review takes tens of microseconds, less than handing it
    /// to the blocking pool and back costs (two thread wake-ups, and a
    /// malloc arena per blocking thread).
    pub inline_body: usize,
}

/// How many small bodies the small lane holds in flight.
pub const SMALL_LANE_BODIES: usize = 32;

/// A budget was still full after [`Budget::wait`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error(
        "the webhook is overloaded: {inflight_bytes} bytes of request bodies are already in \
         flight (--max-inflight-bytes); retry"
    )]
    Bytes { inflight_bytes: usize },
    #[error(
        "the webhook is overloaded: {concurrent_reviews} reviews are already being decided \
         (--max-concurrent-reviews); retry"
    )]
    Reviews { concurrent_reviews: usize },
}

/// A body larger than the whole bytes budget could never be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--max-inflight-bytes ({inflight_bytes}) must be at least --max-body-bytes ({max_body}) \
     and at most {max}, and --max-concurrent-reviews at least 1 (got {concurrent_reviews})",
    max = u32::MAX
)]
pub struct Invalid {
    inflight_bytes: usize,
    max_body: usize,
    concurrent_reviews: usize,
}

/// The live budgets, shared by every request: one lane for small bodies,
/// one for the rest.
pub struct Gate {
    budget: Budget,
    small: Lane,
    large: Lane,
    /// Called when the last large body in flight is let go.
    large_drained: Option<Drained>,
}

/// What is called when the large lane empties (`serve` gives the memory of
/// a burst of large bodies back then).
type Drained = Arc<dyn Fn() + Send + Sync>;

/// The two budgets of one lane.
struct Lane {
    /// Bytes of bodies admitted, `bytes_cap` in all.
    bytes: Arc<Semaphore>,
    bytes_cap: usize,
    /// Counted in body bytes, `reviews_cap` in all; a review takes at least
    /// `least`, so at most `reviews_cap / least` run at once.
    reviews: Arc<Semaphore>,
    reviews_cap: usize,
    least: usize,
}

impl Lane {
    fn new(bytes_cap: usize, reviews_cap: usize, concurrent: usize) -> Self {
        let (bytes_cap, reviews_cap) = (bytes_cap.max(1), reviews_cap.max(1));
        Self {
            bytes: Arc::new(Semaphore::new(bytes_cap)),
            bytes_cap,
            reviews: Arc::new(Semaphore::new(reviews_cap)),
            reviews_cap,
            least: (reviews_cap / concurrent.max(1)).max(1),
        }
    }
}

/// Room for one body: given back when dropped (after the answer is built).
pub struct Admitted {
    permit: Option<OwnedSemaphorePermit>,
    /// For a large body: the lane's bytes, to tell when it is empty.
    large: Option<(Arc<Semaphore>, usize, Drained)>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("permit", &self.permit)
            .field("large", &self.large.is_some())
            .finish()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Some((bytes, capacity, drained)) = &self.large {
            if bytes.available_permits() == *capacity {
                drained();
            }
        }
    }
}

impl Gate {
    pub fn new(budget: Budget, max_body: usize) -> Result<Self, Invalid> {
        let small_lane = budget
            .small_body
            .saturating_mul(SMALL_LANE_BODIES.max(budget.concurrent_reviews));
        let fits = [budget.inflight_bytes, max_body, small_lane]
            .into_iter()
            .all(|n| u32::try_from(n).is_ok());
        if !fits || budget.inflight_bytes < max_body || budget.concurrent_reviews == 0 {
            return Err(Invalid {
                inflight_bytes: budget.inflight_bytes,
                max_body,
                concurrent_reviews: budget.concurrent_reviews,
            });
        }
        let small_body = budget.small_body.min(max_body);
        let concurrent = budget.concurrent_reviews;
        Ok(Self {
            small: Lane::new(
                small_body.saturating_mul(SMALL_LANE_BODIES),
                small_body.saturating_mul(concurrent),
                concurrent,
            ),
            large: Lane::new(budget.inflight_bytes, max_body, concurrent),
            large_drained: None,
            budget,
        })
    }

    /// Calls `drained` each time the large-body lane empties: a body over
    /// [`Budget::small_body`] was let go and no other is in flight.
    pub fn on_large_drained(mut self, drained: impl Fn() + Send + Sync + 'static) -> Self {
        self.large_drained = Some(Arc::new(drained));
        self
    }

    fn lane(&self, size: usize) -> &Lane {
        if size <= self.budget.small_body {
            &self.small
        } else {
            &self.large
        }
    }

    /// Room for a body of `size` bytes (the declared length, or the body
    /// limit when the length is not declared).
    pub async fn admit_body(&self, size: usize) -> Result<Admitted, Full> {
        let full = Full::Bytes {
            inflight_bytes: self.budget.inflight_bytes,
        };
        let lane = self.lane(size);
        let acquire = acquire(&lane.bytes, size, lane.bytes_cap);
        let permit = match tokio::time::timeout(self.budget.wait, acquire).await {
            Ok(Some(permit)) => permit,
            _ => return Err(full),
        };
        let large = match &self.large_drained {
            Some(drained) if size > self.budget.small_body => {
                Some((lane.bytes.clone(), lane.bytes_cap, drained.clone()))
            }
            _ => None,
        };
        Ok(Admitted {
            permit: Some(permit),
            large,
        })
    }

    /// Runs `decide` (the review of a body of `size` bytes) once there is
    /// room for it: here when the body is small enough to be quick, on the
    /// blocking pool otherwise. A panic in it is returned, not propagated.
    pub async fn decide<T: Send + 'static>(
        &self,
        size: usize,
        decide: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Result<T, Panicked>, Full> {
        let lane = self.lane(size);
        let acquire = acquire(&lane.reviews, size.max(lane.least), lane.reviews_cap);
        let slot = match tokio::time::timeout(self.budget.wait, acquire).await {
            Ok(Some(slot)) => slot,
            _ => {
                return Err(Full::Reviews {
                    concurrent_reviews: self.budget.concurrent_reviews,
                })
            }
        };
        let result = if size <= self.budget.inline_body {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(decide))
                .map_err(|payload| Panicked::from_payload(payload.as_ref()))
        } else {
            tokio::task::spawn_blocking(decide)
                .await
                .map_err(|e| match e.try_into_panic() {
                    Ok(payload) => Panicked::from_payload(payload.as_ref()),
                    Err(e) => Panicked(e.to_string()),
                })
        };
        drop(slot);
        Ok(result)
    }
}

/// A review that panicked (an engine bug): its message, answered as an
/// internal error for that one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("panicked: {0}")]
pub struct Panicked(String);

impl Panicked {
    fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        Panicked(message.to_string())
    }
}

/// `n` permits of `semaphore` (whose capacity is `capacity`), at least one
/// and at most all of them; `None` only if the semaphore was closed.
async fn acquire(
    semaphore: &Arc<Semaphore>,
    n: usize,
    capacity: usize,
) -> Option<OwnedSemaphorePermit> {
    // Capacities were checked to fit u32 by `Gate::new`.
    let n = u32::try_from(n.clamp(1, capacity)).unwrap_or(u32::MAX);
    semaphore.clone().acquire_many_owned(n).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies of 10 bytes at most; up to 2 bytes use the small lane; none
    /// is reviewed inline (the tests block in their reviews).
    fn gate(bytes: usize, reviews: usize) -> Gate {
        let budget = Budget {
            inflight_bytes: bytes,
            concurrent_reviews: reviews,
            wait: Duration::from_millis(50),
            small_body: 2,
            inline_body: 0,
        };
        Gate::new(budget, 10).expect("valid")
    }

    #[test]
    fn impossible_budgets_are_refused_with_the_flags_named() {
        let budget = |bytes, reviews| Budget {
            inflight_bytes: bytes,
            concurrent_reviews: reviews,
            wait: Duration::ZERO,
            small_body: 1,
            inline_body: 0,
        };
        for (bytes, reviews) in [(9, 1), (10, 0), (usize::MAX, 1)] {
            let err = Gate::new(budget(bytes, reviews), 10)
                .err()
                .expect("invalid");
            let text = err.to_string();
            assert!(text.contains("--max-inflight-bytes"), "{text}");
        }
        assert!(Gate::new(budget(10, 1), 10).is_ok());
    }

    #[tokio::test]
    async fn bytes_come_back_when_the_body_is_dropped() {
        let gate = gate(100, 1);
        let first = gate.admit_body(60).await.expect("room");
        let refused = gate.admit_body(60).await.expect_err("full");
        assert_eq!(
            refused,
            Full::Bytes {
                inflight_bytes: 100
            }
        );
        assert!(refused.to_string().contains("overloaded"), "{refused}");
        let small = gate.admit_body(40).await.expect("what is left");
        drop(first);
        drop(small);
        gate.admit_body(100).await.expect("all of it again");
    }

    #[tokio::test]
    async fn a_waiting_body_gets_room_freed_within_the_wait() {
        let gate = Arc::new(gate(100, 1));
        let first = gate.admit_body(100).await.expect("room");
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit_body(100).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        assert_eq!(waiter.await.expect("task"), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reviews_beyond_the_slots_are_refused() {
        let gate = Arc::new(gate(100, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let gate = gate.clone();
            async move { gate.decide(1, move || rx.recv().is_ok()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = gate.decide(1, || ()).await.expect_err("no slot");
        assert_eq!(
            refused,
            Full::Reviews {
                concurrent_reviews: 1
            }
        );
        tx.send(()).expect("send");
        let done = busy.await.expect("task").expect("slot").expect("no panic");
        assert!(done);
        gate.decide(1, || ())
            .await
            .expect("slot back")
            .expect("no panic");
    }

    /// Smaller reviews side by side, up to the count; a largest body alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_largest_body_is_reviewed_alone() {
        let gate = Arc::new(gate(100, 2));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let smaller = tokio::spawn({
            let gate = gate.clone();
            async move { gate.decide(3, move || rx.recv().is_ok()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.decide(5, || ())
            .await
            .expect("a second smaller one")
            .expect("ok");
        let large = gate
            .decide(10, || ())
            .await
            .expect_err("not beside a smaller one");
        assert_eq!(
            large,
            Full::Reviews {
                concurrent_reviews: 2
            }
        );
        tx.send(()).expect("send");
        smaller
            .await
            .expect("task")
            .expect("slot")
            .expect("no panic");
        gate.decide(10, || ()).await.expect("alone").expect("ok");
    }

    /// The hook runs when the last large body is let go, not before, and
    /// never for small bodies.
    #[tokio::test]
    async fn the_large_lane_tells_when_it_empties() {
        let drained = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = drained.clone();
        let gate = gate(100, 1).on_large_drained(move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let times = || drained.load(std::sync::atomic::Ordering::SeqCst);
        drop(gate.admit_body(2).await.expect("small"));
        assert_eq!(times(), 0, "a small body");
        let (first, second) = (gate.admit_body(10).await, gate.admit_body(3).await);
        drop(first.expect("room"));
        assert_eq!(times(), 0, "another large body is still in flight");
        drop(second.expect("room"));
        assert_eq!(times(), 1);
    }

    /// A flood of largest bodies fills the large lane; small bodies (real
    /// pods) still get room and a review.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_bodies_pass_a_full_large_lane() {
        let gate = Arc::new(gate(20, 1));
        let _held = [
            gate.admit_body(10).await.expect("room"),
            gate.admit_body(10).await.expect("room"),
        ];
        assert!(gate.admit_body(10).await.is_err(), "the large lane is full");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let large = tokio::spawn({
            let gate = gate.clone();
            async move { gate.decide(10, move || rx.recv().is_ok()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let small = gate.admit_body(2).await.expect("the small lane has room");
        gate.decide(2, || ())
            .await
            .expect("a review slot")
            .expect("ok");
        drop(small);
        tx.send(()).expect("send");
        large.await.expect("task").expect("slot").expect("no panic");
    }

    /// Small bodies are reviewed on the thread that asks, larger ones
    /// elsewhere; a panic either way comes back as [`Panicked`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_reviews_run_inline_and_panics_come_back() {
        let gate = Gate::new(
            Budget {
                inflight_bytes: 100,
                concurrent_reviews: 2,
                wait: Duration::from_millis(50),
                small_body: 4,
                inline_body: 3,
            },
            10,
        )
        .expect("valid");
        let here = std::thread::current().id();
        let on = |size| gate.decide(size, move || std::thread::current().id() != here);
        assert_eq!(on(3).await, Ok(Ok(false)), "inline");
        assert_eq!(on(4).await, Ok(Ok(true)), "on the blocking pool");
        for size in [3, 4] {
            let panicked = gate
                .decide(size, || -> () { panic!("engine bug {}", 7) })
                .await
                .expect("a slot");
            assert_eq!(
                panicked,
                Err(Panicked("engine bug 7".into())),
                "size {size}"
            );
        }
        gate.decide(3, || ())
            .await
            .expect("slots came back")
            .expect("ok");
    }
}
