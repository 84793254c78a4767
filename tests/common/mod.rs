//! Shared setup for the integration tests.
#![allow(dead_code)] // each test crate uses a different part of this module

/// Real processes in a simulated pod (lifecycle tests).
pub mod procs;
/// The real `serve` binary over real TLS (server tests).
pub mod server;

use std::path::{Path, PathBuf};

use dind_injector::engine::config::Config;
use dind_injector::engine::{Decision, Engine, Mode};
use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn engine() -> Engine {
    Engine::new(Config::default(), Mode::Classic).expect("the default config is valid")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Applies a patch with json-patch's strict RFC 6902 implementation.
pub fn apply(original: &Value, patch: &json_patch::Patch) -> Value {
    let mut doc = original.clone();
    json_patch::patch(&mut doc, patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    doc
}

/// A decision as a golden record: what a reviewer wants to read in a diff.
pub fn record(decision: &Decision, pod: &Value) -> Value {
    match decision {
        Decision::Inject(i) => json!({
            "decision": "inject",
            "mode": i.mode.as_str(),
            "warnings": i.warnings,
            "patch": i.patch,
            "pod": i.apply(pod).expect("the engine applies its own patch"),
        }),
        Decision::Skip { reason, warning } => json!({
            "decision": "skip",
            "reason": reason.as_str(),
            "warning": warning,
        }),
        Decision::Deny { message, .. } => json!({"decision": "deny", "message": message}),
    }
}
