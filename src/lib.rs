//! dind-injector: a Kubernetes mutating admission webhook that gives CI runner
//! pods a correct Docker-in-Docker sidecar and lifecycle.
//!
//! The library is the whole program; `main.rs` only parses the command line.
//! [`inject`] is the pure engine; everything else is a thin shell around it.

#![forbid(unsafe_code)]

pub mod admission;
pub mod cmd;
pub mod config;
pub mod contract;
pub mod detect;
pub mod image;
pub mod inject;
pub mod logging;
pub mod pki;
pub mod quantity;
pub mod server;
pub mod workload;
pub mod x509;
