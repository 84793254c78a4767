//! The subcommands' shells around the library, one module each.

pub mod inject;
