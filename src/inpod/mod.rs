//! The pod side: the helpers that run inside every injected pod, from the
//! binary `init` copied into the shared bin volume.
//!
//! `init` (the init container), `supervise` (the runner's entrypoint wrapper)
//! and `sidecar` (the `dind` container's entrypoint wrapper) coordinate
//! through files in the run directory ([`rundir`]). They run in thousands of
//! CI pods a day, so they stay small and synchronous: no async runtime, no
//! webhook code (`tests/layout.rs` checks both).

pub mod init;
pub mod procfs;
pub mod rundir;
pub mod sidecar;
pub mod signals;
pub mod sigreset;
pub mod spawn;
pub mod supervise;
