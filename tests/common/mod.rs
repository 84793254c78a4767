//! Shared setup for the integration tests.
#![allow(dead_code)] // each test crate uses a different part of this module

/// Real processes in a simulated pod (lifecycle tests).
pub mod procs;
/// The real `serve` binary over real TLS (server tests).
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use dind_injector::engine::config::Config;
use dind_injector::engine::{Decision, Engine, Mode};
use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dind-injector")
}

/// A fresh, empty directory under the system temp dir, unique to this
/// process and call. Whoever needs it gone removes it ([`procs::Pod`] does,
/// unless the test failed, so the files can be read).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dind-injector-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

pub fn engine() -> Engine {
    Engine::new(Config::default(), Mode::Classic).expect("the default config is valid")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The pods of `tests/fixtures/pods`, by file stem, sorted.
pub fn pod_fixtures() -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures/pods");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            (name, read_json(&p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
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
