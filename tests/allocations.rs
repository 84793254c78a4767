//! Allocations and peak live bytes per review, counted by a global
//! allocator, against the stated budget (docs/performance.md): the request
//! path (body bytes in, answer bytes out) may hold at most
//! `PEAK_FACTOR` × the body plus `PEAK_SLACK` bytes at any moment, and
//! makes at most `MAX_ALLOCATIONS` allocations for a realistic review.
//! A plain `main` (harness = false): the test harness's own threads would
//! count too. Prints the figures; `cargo test --test allocations`.

#[path = "../benches/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{measure, Counting, Usage};
use dind_injector::engine::config::Config;
use dind_injector::engine::{Engine, Mode};
use dind_injector::webhook::admission;
use serde_json::{json, Value};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak live bytes per review ≤ PEAK_FACTOR × body + PEAK_SLACK.
const PEAK_FACTOR: usize = 2;
/// The answer's own size (the base64 patch of the objects we add) and the
/// engine's small per-review values, whatever the body.
const PEAK_SLACK: usize = 48 * 1024;
/// For the realistic review and the 10 KB pod.
const MAX_ALLOCATIONS: usize = 125;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn review_with(object: Value) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join("examples/admission-review.json"))
        .expect("example review");
    let mut review: Value = serde_json::from_str(&text).expect("example review is JSON");
    review["request"]["object"] = object;
    serde_json::to_vec(&review).expect("json")
}

fn bodies() -> Vec<(&'static str, Vec<u8>, bool)> {
    let realistic = std::fs::read(root().join("examples/admission-review.json")).expect("review");
    let pod_text = std::fs::read_to_string(root().join("tests/fixtures/bench-runner-pod.json"))
        .expect("bench pod");
    let pod: Value = serde_json::from_str(&pod_text).expect("bench pod is JSON");
    // A half-megabyte pod: the bench pod with ten thousand more env vars.
    let mut big = pod.clone();
    let env = big["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("bench pod has env");
    for i in 0..10_000 {
        env.push(json!({"name": format!("VAR_{i}"), "value": "a value of some length"}));
    }
    // The worst case for a tree of values: a field we do not know, holding
    // half a million small numbers (two bytes of body, a 32-byte value each).
    let mut numbers = pod.clone();
    numbers["spec"]["futureField"] = json!(vec![0; 500_000]);
    vec![
        ("realistic review", realistic, true),
        ("10 KB pod", review_with(pod), true),
        ("0.5 MB pod (10k more env vars)", review_with(big), false),
        (
            "1 MB of small numbers in an unknown field",
            review_with(numbers),
            false,
        ),
    ]
}

fn answer(engine: &Engine, body: &[u8]) -> Vec<u8> {
    let answer = admission::answer(engine, body).expect("a review we answer");
    answer.json
}

fn main() {
    let engine = Engine::new(Config::default(), Mode::Classic).expect("default config");
    let mut failures = Vec::new();
    println!(
        "| body | body bytes | allocations | bytes allocated | peak live bytes | peak / body |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, body, realistic) in bodies() {
        let _ = answer(&engine, &body); // warm: lazily built statics
        let Usage {
            allocations,
            bytes,
            peak,
        } = measure(|| answer(&engine, &body));
        println!(
            "| {name} | {} | {allocations} | {bytes} | {peak} | {:.2} |",
            body.len(),
            peak as f64 / body.len() as f64
        );
        let budget = PEAK_FACTOR * body.len() + PEAK_SLACK;
        if peak > budget {
            failures.push(format!("{name}: peak {peak} bytes > budget {budget}"));
        }
        if realistic && allocations > MAX_ALLOCATIONS {
            failures.push(format!(
                "{name}: {allocations} allocations > budget {MAX_ALLOCATIONS}"
            ));
        }
    }
    if failures.is_empty() {
        println!("allocations: 1 passed, 0 failed");
    } else {
        for f in &failures {
            eprintln!("over budget: {f}");
        }
        println!("allocations: 0 passed, 1 failed");
        std::process::exit(1);
    }
}
