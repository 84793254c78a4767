//! `make bench-e2e`: what the webhook adds to a pod creation as a user sees
//! it, through the real apiserver (TLS, admission chain, etcd write).
//!
//! Four series, interleaved so they share the machine's noise: the runner
//! pod in a namespace the webhook serves; the same pod where the webhook is
//! not called; the pod as the webhook would have made it, where the
//! webhook is not called; and the runner pod injected by the admission
//! policies (`dind-injector policy`) instead. The third splits the
//! webhook's cost into the call itself and the apiserver's work on a bigger
//! pod; the fourth is the delivery without a webhook.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde_json::json;

use crate::pods::{pod, runner_labels, runner_template};
use crate::policy;
use crate::{Env, OPTED_OUT, RUNNERS};

const WARMUP: usize = 30;
const ROUNDS: usize = 500;

pub async fn admission(env: &Env) -> Result<()> {
    policy::policy_namespace(env, POLICY_NS).await?;
    policy::install(env, POLICY_NS, None).await?;
    let result = series(env).await;
    policy::uninstall(env, POLICY_NS).await?;
    result
}

/// Where the admission policies inject (the webhook is not called there).
const POLICY_NS: &str = "e2e-policy-bench";

async fn series(env: &Env) -> Result<()> {
    let served: Api<Pod> = Api::namespaced(env.client.clone(), RUNNERS);
    let by_policy: Api<Pod> = Api::namespaced(env.client.clone(), POLICY_NS);
    let skipped: Api<Pod> = Api::namespaced(env.client.clone(), OPTED_OUT);
    let plain = pod("bench", runner_template(runner_labels(), json!({})))?;
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // The pod as stored after injection: only what a user could write.
    let answer = served.create(&dry_run, &plain).await?;
    let injected = Pod {
        metadata: ObjectMeta {
            labels: answer.metadata.labels,
            annotations: answer.metadata.annotations,
            ..Default::default()
        },
        spec: answer.spec,
        status: None,
    };
    let before = env.injector.metrics().await?;
    let mut series = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for i in 0..WARMUP + ROUNDS {
        let runs = [
            (&served, &plain),
            (&skipped, &plain),
            (&skipped, &injected),
            (&by_policy, &plain),
        ];
        for (k, (api, template)) in runs.into_iter().enumerate() {
            let name = format!("bench-{i}-{k}");
            let mut p = template.clone();
            p.metadata.name = Some(name.clone());
            let start = Instant::now();
            api.create(&PostParams::default(), &p).await?;
            let took = start.elapsed();
            if i >= WARMUP {
                series[k].push(took);
            }
            // Keep etcd's size constant between the series.
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    let after = env.injector.metrics().await?;
    let reviews = after.reviews() - before.reviews();
    ensure!(
        reviews == (WARMUP + ROUNDS) as f64,
        "the webhook answered {reviews} reviews, want one per pod in {RUNNERS}"
    );
    let delta = |name: &str| after.sum(name, &[]) - before.sum(name, &[]);
    let server_ms = 1000.0 * delta("dind_injector_review_duration_seconds_sum")
        / delta("dind_injector_review_duration_seconds_count");
    let connections = delta("dind_injector_connections_total");
    let [a, b, c, d] = series.map(|mut s| Stats::of(&mut s));
    println!(
        "e2e bench: {ROUNDS} sequential pod creations each (after {WARMUP} warm-up), interleaved"
    );
    println!(
        "e2e bench: {:<36} {:>8} {:>8} {:>8} {:>8}",
        "", "p50", "p90", "p99", "mean"
    );
    let rows = [
        ("runner pod, through dind-injector", &a),
        ("runner pod, webhook not called", &b),
        ("injected pod, webhook not called", &c),
        ("runner pod, through the policies", &d),
    ];
    for (label, s) in rows {
        println!(
            "e2e bench: {label:<36} {:>6.2}ms {:>6.2}ms {:>6.2}ms {:>6.2}ms",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.mean)
        );
    }
    println!(
        "e2e bench: inside dind-injector: {server_ms:.3} ms per review (its histogram), {connections} connections for {reviews} reviews"
    );
    println!(
        "e2e bench: the webhook adds {:.2} ms at p50 (ratio {:.2}), {:.2} ms at p99 (ratio {:.2});",
        ms(a.p50) - ms(b.p50),
        ms(a.p50) / ms(b.p50),
        ms(a.p99) - ms(b.p99),
        ms(a.p99) / ms(b.p99)
    );
    println!(
        "e2e bench: of that at p50, {:.2} ms is the bigger pod and {:.2} ms the call",
        ms(c.p50) - ms(b.p50),
        ms(a.p50) - ms(c.p50)
    );
    println!(
        "e2e bench: the policies add {:.2} ms at p50 (ratio {:.2} to not injected, {:.2} to the webhook), {:.2} ms at p99 (ratio {:.2}, {:.2})",
        ms(d.p50) - ms(b.p50),
        ms(d.p50) / ms(b.p50),
        ms(d.p50) / ms(a.p50),
        ms(d.p99) - ms(b.p99),
        ms(d.p99) / ms(b.p99),
        ms(d.p99) / ms(a.p99)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        let total: Duration = samples.iter().sum();
        Stats {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            mean: total / samples.len() as u32,
        }
    }
}
