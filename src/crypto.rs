//! One crypto provider, ring, for every TLS configuration in the process:
//! the webhook's server, the sidecar's readiness ping, `init`'s checks and
//! the apiserver and registry clients. With aws-lc-rs linked too, rustls
//! cannot pick a default and code that asks it for one panics at first use
//! (`cargo tree -i aws-lc-rs` must stay empty).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

fn ring() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The provider to build TLS configurations with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring())
}

/// Makes ring the process default, for code that asks rustls for it
/// (dependencies' defaults). A second call is harmless.
pub fn install_default_provider() {
    let _ = ring().install_default();
}
