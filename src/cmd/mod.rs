//! The subcommands' shells around the library, one module each.

pub mod init;
pub mod inject;
pub mod sidecar;
pub mod supervise;
