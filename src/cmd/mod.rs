//! The subcommands' shells around the library, one module each.

pub mod certs;
pub mod init;
pub mod inject;
pub mod serve;
pub mod sidecar;
pub mod supervise;
pub mod wait_docker;
