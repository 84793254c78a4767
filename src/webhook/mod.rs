//! The webhook side: what runs in the webhook Deployment (`serve`) and on a
//! developer's machine (`certs`). Async (tokio) lives here and only here.

pub mod admission;
pub mod apiserver;
pub mod certs;
pub mod cluster;
pub mod detect;
pub mod https;
pub mod outcome;
pub mod percent;
pub mod pki;
pub mod registry;
pub mod serve;
