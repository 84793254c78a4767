//! dind-injector: a Kubernetes mutating admission webhook that gives CI runner
//! pods a correct Docker-in-Docker sidecar and lifecycle.
//!
//! One binary, two halves, and the pure engine between them:
//!
//! - [`webhook`]: what runs in the webhook Deployment and on a developer's
//!   machine — `serve` (the HTTPS AdmissionReview endpoint, metrics, cluster
//!   detection), the AdmissionReview envelope, `certs`;
//! - [`engine`]: pod JSON and config in, a decision out, no I/O — and its
//!   offline shell `inject`;
//! - [`inpod`]: what runs inside every injected pod — `init`, `supervise`,
//!   `sidecar` and the run-dir protocol they share. Synchronous: no async
//!   runtime, nothing the webhook needs (`tests/layout.rs` holds this);
//! - [`contract`]: what the halves agree on — the names and paths of an
//!   injected pod, the in-pod helpers' command lines; and [`crypto`], the
//!   one TLS provider both halves use.
//!
//! `main.rs` is the table of contents: one subcommand per module.

#![deny(unsafe_code)] // allowed in two small modules: inpod::sigreset, webhook::serve::allocator

pub mod contract;
pub mod crypto;
pub mod engine;
pub mod inpod;
pub mod webhook;
