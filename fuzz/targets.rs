//! The fuzz targets: bytes in, no panic out. Shared by the AFL++ harness
//! (`fuzz/main.rs`) and by the replay of the corpus and of every crash in
//! `make test` (`tests/fuzz_corpus.rs`).

use dind_injector::engine::config::Config;
use dind_injector::engine::overrides::Overrides;
use dind_injector::engine::view::{Pairs, Text};
use dind_injector::engine::{inject, Engine, Mode};
use dind_injector::webhook::admission;
use serde_json::Value;
use std::borrow::Cow;

/// A target: any bytes, no panic.
pub type Target = fn(&[u8]);

/// Every target by name: its corpus directory is `fuzz/corpus/NAME`.
pub const TARGETS: &[(&str, Target)] = &[
    ("review", review),
    ("pod", pod),
    ("config", config),
    ("annotations", annotations),
    ("inject", inject_yaml),
];

fn engine() -> Engine {
    Engine::new(Config::default(), Mode::Classic).expect("the default config is valid")
}

/// The whole request path after the body is read: bytes → answer.
pub fn review(data: &[u8]) {
    let _ = admission::review(&engine(), data);
}

/// The engine on an arbitrary pod (any JSON; labelled a runner, so the
/// engine goes past selection).
pub fn pod(data: &[u8]) {
    let Ok(mut pod) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("labels".into(), serde_json::json!({"runner": "true"}));
    }
    for mode in [Mode::Classic, Mode::Native] {
        let engine = Engine::new(Config::default(), mode).expect("valid");
        let _ = engine.review(&pod);
    }
}

/// The configuration file's parser and validation.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::from_yaml(text) {
            let _ = Engine::new(config, Mode::Classic);
        }
    }
}

/// The annotation parser: `key=value` lines, keys under our prefix.
pub fn annotations(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs = Pairs(
        text.lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| {
                let key = Text(Cow::Owned(format!("dind-injector.io/{k}")));
                (key, Text(Cow::Owned(v.to_string())))
            })
            .collect(),
    );
    let _ = Overrides::parse(Some(&pairs));
}

/// `dind-injector inject` on a YAML stream.
pub fn inject_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = inject::inject_stream(&engine(), text, "fuzz", &mut std::io::sink());
    }
}
