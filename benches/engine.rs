//! The engine on a realistic ~10 KB runner pod (a Job's pod as the apiserver
//! sends it, with 95 env vars; 10 KB as compact JSON, affinity and tolerations), next to a baseline
//! every webhook pays anyway: parsing and re-serialising that pod. The ratio
//! is the figure to watch (docs/performance.md); absolute times vary with the
//! machine.

use criterion::{criterion_group, criterion_main, Criterion};
use dind_injector::engine::config::Config;
use dind_injector::engine::{Decision, Engine, Mode};
use serde_json::Value;
use std::hint::black_box;

fn pod_text() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bench-runner-pod.json"
    );
    std::fs::read_to_string(path).expect("bench fixture")
}

fn bench(c: &mut Criterion) {
    let text = pod_text();
    let pod: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let compact = serde_json::to_string(&pod).expect("json");
    let engine = Engine::new(Config::default(), Mode::Classic).expect("default config");
    let native = Engine::new(Config::default(), Mode::Native).expect("default config");
    assert!(matches!(engine.review(&pod), Ok(Decision::Inject(_))));

    let mut group = c.benchmark_group("runner-pod-10k");
    group.bench_function("baseline: parse + serialise", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_str(black_box(&compact)).expect("json");
            black_box(serde_json::to_vec(&v).expect("json"))
        })
    });
    let pod_view_text = compact.clone();
    group.bench_function("request path: view + engine + patch bytes (classic)", |b| {
        b.iter(|| {
            let view = dind_injector::engine::view::PodView::parse(black_box(&pod_view_text))
                .expect("view");
            match engine.review_view(&view, None, &|_| None) {
                Ok(Some(Decision::Inject(i))) => {
                    let mut out = Vec::new();
                    i.patch.write_json(&mut out).expect("write");
                    black_box(out)
                }
                other => panic!("unexpected {other:?}"),
            }
        })
    });
    group.bench_function("engine review (classic)", |b| {
        b.iter(|| black_box(engine.review(black_box(&pod))))
    });
    group.bench_function("engine review (native)", |b| {
        b.iter(|| black_box(native.review(black_box(&pod))))
    });
    group.bench_function("engine review + patch to JSON (classic)", |b| {
        b.iter(|| match engine.review(black_box(&pod)) {
            Ok(Decision::Inject(i)) => black_box(serde_json::to_vec(&i.patch).expect("json")),
            other => panic!("unexpected {other:?}"),
        })
    });
    group.finish();

    // The whole request path of the server minus the sockets: bytes of the
    // example AdmissionReview in, answer bytes out.
    let review_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/admission-review.json"
    );
    let review_bytes = std::fs::read(review_path).expect("example review");
    let mut group = c.benchmark_group("admission-review-5k");
    group.bench_function("baseline: parse review", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<Value>(black_box(&review_bytes)).expect("json"))
        })
    });
    // The server's request path (borrowed views, the answer written in
    // place), on the example as it is and as the apiserver sends it:
    // compact (Go's encoding/json writes no whitespace), 2.6 KB against
    // the example's 4.8 KB indented.
    let value: Value = serde_json::from_slice(&review_bytes).expect("example review");
    let compact = serde_json::to_vec(&value).expect("json");
    for (name, body) in [
        ("review to answer bytes", &review_bytes),
        ("compact review to answer bytes", &compact),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let answer = dind_injector::webhook::admission::answer(&engine, black_box(body))
                    .expect("review");
                black_box(answer.json)
            })
        });
    }
    // The reference way: the body as a Value, as the webhook did before.
    group.bench_function("reference: review through a Value", |b| {
        b.iter(|| {
            let answer =
                dind_injector::webhook::admission::review(&engine, black_box(&review_bytes))
                    .expect("review");
            black_box(serde_json::to_vec(&answer.review).expect("json"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
