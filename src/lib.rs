//! dind-injector: a Kubernetes mutating admission webhook that gives CI runner
//! pods a correct Docker-in-Docker sidecar and lifecycle.
//!
//! The library is the whole program; `main.rs` only parses the command line.
//! [`inject`] is the pure engine; everything else is a thin shell around it.

#![deny(unsafe_code)] // allowed in exactly one module: sigreset

pub mod admission;
pub mod cmd;
pub mod config;
pub mod contract;
pub mod detect;
pub mod image;
pub mod init;
pub mod inject;
pub mod logging;
pub mod pki;
pub mod procfs;
pub mod quantity;
pub mod rundir;
pub mod server;
pub mod sidecar;
pub mod signals;
pub mod sigreset;
pub mod spawn;
pub mod supervise;
pub mod workload;
pub mod x509;
