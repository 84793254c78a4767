//! The layout is a promise: the pod side (`src/inpod`) runs in every CI pod,
//! so it must stay synchronous and free of the webhook's code; the contract
//! between the halves depends on neither half's runtime. These checks read
//! the sources, so a `use` that breaks the promise fails here, by name.

mod common;

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every line of `dir`'s sources that mentions one of `forbidden`.
fn offending_lines(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = common::root();
    let files = rust_files(&root.join(dir));
    assert!(!files.is_empty(), "no sources under {dir}");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    let shown = file.strip_prefix(&root).unwrap_or(&file).display();
                    found.push(format!("{shown}:{}: {word}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    found
}

/// The in-pod helpers' memory and start-up time are paid thousands of times
/// a day: no async runtime, no HTTP stack, no Kubernetes client, nothing
/// from the webhook side or the engine.
#[test]
fn the_pod_side_stays_synchronous_and_apart() {
    let found = offending_lines(
        "src/inpod",
        &[
            "tokio",
            "axum",
            "hyper",
            "kube::",
            "prometheus_client",
            "tracing",
            "crate::webhook",
            "crate::engine",
        ],
    );
    assert!(
        found.is_empty(),
        "the pod side reaches too far:\n{}",
        found.join("\n")
    );
}

/// The contract is what both halves build on; it builds on neither.
#[test]
fn the_contract_depends_on_neither_half() {
    let found = offending_lines(
        "src/contract",
        &["tokio", "crate::webhook", "crate::engine", "crate::inpod"],
    );
    assert!(
        found.is_empty(),
        "the contract depends on a half:\n{}",
        found.join("\n")
    );
}

/// The engine is pure and knows nothing of the server or the pod's helpers.
#[test]
fn the_engine_knows_neither_half() {
    let found = offending_lines(
        "src/engine",
        &["tokio", "axum", "crate::webhook", "crate::inpod"],
    );
    assert!(
        found.is_empty(),
        "the engine reaches into a half:\n{}",
        found.join("\n")
    );
}
