//! The subcommands' shells around the library, one module each.

pub mod certs;
pub mod inject;
pub mod serve;
