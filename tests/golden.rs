//! Golden tests: realistic pods, as the apiserver sends them, through the
//! engine with the default config. `UPDATE_GOLDEN=1 cargo test --test golden`
//! rewrites the expected files; review the diff before committing it.
//!
//! The injected pods in `tests/golden/` are also validated against the strict
//! Kubernetes JSON schema by `make schema` (part of `make test`).

mod common;

use std::path::Path;

use dind_injector::engine::config::Config;
use dind_injector::engine::{Decision, Engine, Mode, SkipReason};
use serde_json::Value;

fn fixtures() -> Vec<(String, Value)> {
    let out = common::pod_fixtures();
    assert!(out.len() >= 15, "fixtures missing from tests/fixtures/pods");
    out
}

/// The profile fixtures: each a pod and the profile its namespace names,
/// reviewed with `tests/fixtures/profiles/config.yaml`.
fn profile_fixtures() -> Vec<(String, Option<String>, Value)> {
    let dir = common::root().join("tests/fixtures/profiles");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("profile fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let case = common::read_json(&p);
            let namespace = case["namespaceProfile"].as_str().map(String::from);
            (name.to_string(), namespace, case["pod"].clone())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 7,
        "profile fixtures missing from {}",
        dir.display()
    );
    out
}

fn profile_engine() -> Engine {
    let path = common::root().join("tests/fixtures/profiles/config.yaml");
    let config = Config::load(&path).expect("the profile fixtures' config is valid");
    Engine::new(config, Mode::Classic).expect("engine")
}

/// Each fixture's decision against its golden file in `dir` (rewritten
/// with `UPDATE_GOLDEN=1`).
fn compare_with_golden(dir: &str, decisions: Vec<(String, Decision, Value)>) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let golden_dir = common::root().join(dir);
    let mut mismatched = Vec::new();
    for (name, decision, pod) in decisions {
        let got = common::record(&decision, &pod);
        let path = golden_dir.join(format!("{name}.json"));
        if update {
            let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
            std::fs::write(&path, text).expect("write golden");
            continue;
        }
        if !Path::new(&path).exists() || common::read_json(&path) != got {
            mismatched.push(name);
        }
    }
    assert!(
        mismatched.is_empty(),
        "engine output differs from {dir} for: {mismatched:?} (UPDATE_GOLDEN=1 to rewrite, then review the diff)"
    );
}

#[test]
fn every_fixture_matches_its_golden_file() {
    let engine = common::engine();
    let decisions = fixtures()
        .into_iter()
        .map(|(name, pod)| (name, engine.review(&pod).expect("engine"), pod))
        .collect();
    compare_with_golden("tests/golden", decisions);
}

#[test]
fn every_profile_fixture_matches_its_golden_file() {
    let engine = profile_engine();
    let decisions = profile_fixtures()
        .into_iter()
        .map(|(name, namespace, pod)| {
            let decision = engine
                .review_with(&pod, namespace.as_deref(), &|_| None)
                .expect("engine");
            (name, decision, pod)
        })
        .collect();
    compare_with_golden("tests/golden/profiles", decisions);
}

/// What each profile fixture must show, stated in code as for the others.
#[test]
fn profile_decisions_per_fixture() {
    let engine = profile_engine();
    let dind = |decision: &Decision, pod: &Value| -> Value {
        let Decision::Inject(injection) = decision else {
            panic!("not injected: {decision:?}");
        };
        let out = injection.apply(pod).expect("apply");
        ["containers", "initContainers"]
            .iter()
            .flat_map(|k| out["spec"][k].as_array().cloned().unwrap_or_default())
            .find(|c| c["name"] == "dind")
            .expect("dind")
    };
    for (name, namespace, pod) in profile_fixtures() {
        let decision = engine
            .review_with(&pod, namespace.as_deref(), &|_| None)
            .expect("engine");
        let deny = |text: &str| {
            assert!(
                matches!(&decision, Decision::Deny { message, .. } if message.contains(text)),
                "{name}: {decision:?}"
            )
        };
        match name.as_str() {
            "unknown-profile" => {
                deny("annotation dind-injector.io/profile: \"huge\" is not a configured profile")
            }
            "unknown-namespace-profile" => {
                deny("the namespace's annotation dind-injector.io/profile: \"retired\"")
            }
            "request-above-limit" => {
                deny("memory-request: \"16Gi\" is above the memory limit 10Gi")
            }
            "profile-by-annotation" => {
                let d = dind(&decision, &pod);
                assert_eq!(d["resources"]["limits"]["memory"], "8Gi", "{name}");
                let paths: Vec<&str> = d["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["mountPath"].as_str().unwrap())
                    .collect();
                for p in [
                    "/etc/docker/daemon.json",
                    "/etc/docker/certs.d",
                    "/var/cache/buildkit",
                    "/etc/ci",
                ] {
                    assert!(paths.contains(&p), "{name}: {p} not in {paths:?}");
                }
            }
            "profile-by-namespace" => {
                assert_eq!(
                    dind(&decision, &pod)["resources"]["limits"]["memory"],
                    "10Gi",
                    "{name}"
                )
            }
            "pod-annotation-over-namespace" => {
                let r = &dind(&decision, &pod)["resources"];
                assert_eq!(
                    (
                        r["requests"]["cpu"].as_str(),
                        r["limits"]["memory"].as_str()
                    ),
                    (Some("250m"), Some("2Gi")),
                    "{name}"
                );
            }
            "pod-resources-and-storage-size" => {
                let r = &dind(&decision, &pod)["resources"];
                assert_eq!(r["limits"]["cpu"], "4", "{name}");
                assert_eq!(r["requests"]["memory"], "6Gi", "{name}");
            }
            other => panic!("profile fixture {other} has no stated decision"),
        }
    }
}

#[test]
fn every_injection_patch_applies_strictly_and_reinjection_is_a_no_op() {
    let engine = common::engine();
    let mut injected = 0;
    for (name, pod) in fixtures() {
        let Decision::Inject(injection) = engine.review(&pod).expect("engine") else {
            continue;
        };
        injected += 1;
        let output = injection.apply(&pod).expect("apply");
        assert_eq!(common::apply(&pod, &injection.patch), output, "{name}");
        let again = engine.review(&output).expect("engine");
        assert_eq!(
            again,
            Decision::Skip {
                reason: SkipReason::AlreadyInjected,
                warning: None
            },
            "{name}"
        );
    }
    assert!(injected >= 10, "only {injected} fixtures were injected");
}

/// The decisions themselves, stated once more in code so that a golden file
/// regenerated carelessly cannot hide a changed decision.
#[test]
fn decisions_per_fixture() {
    let engine = common::engine();
    let expect_skip = [
        ("non-runner", SkipReason::NotRunner),
        ("opted-out", SkipReason::OptedOut),
        ("own-dind-sidecar", SkipReason::OwnDaemon),
        ("mirror-pod", SkipReason::MirrorPod),
    ];
    let expect_deny = [
        ("host-network", "hostNetwork"),
        (
            "invalid-annotation",
            "annotation dind-injector.io/drain-timeout: \"forever\"",
        ),
    ];
    for (name, pod) in fixtures() {
        let decision = engine.review(&pod).expect("engine");
        if let Some((_, reason)) = expect_skip.iter().find(|(n, _)| *n == name) {
            assert!(
                matches!(&decision, Decision::Skip { reason: r, .. } if r == reason),
                "{name}: {decision:?}"
            );
        } else if let Some((_, text)) = expect_deny.iter().find(|(n, _)| *n == name) {
            assert!(
                matches!(&decision, Decision::Deny { message, .. } if message.contains(text)),
                "{name}: {decision:?}"
            );
        } else {
            assert!(
                matches!(decision, Decision::Inject(_)),
                "{name}: {decision:?}"
            );
        }
    }
}

/// Rules the apiserver's pod validation enforces beyond the JSON schema
/// (which `make schema` checks): unique names, mounts that name a volume,
/// one mount per path, `restartPolicy` only on init containers.
#[test]
fn injected_pods_follow_the_apiservers_pod_rules() {
    let (engine, profiles) = (common::engine(), profile_engine());
    let cases = fixtures()
        .into_iter()
        .map(|(name, pod)| (name, &engine, None, pod))
        .chain(
            profile_fixtures()
                .into_iter()
                .map(|(name, namespace, pod)| (name, &profiles, namespace, pod)),
        );
    for (name, engine, namespace, pod) in cases {
        let decision = engine
            .review_with(&pod, namespace.as_deref(), &|_| None)
            .expect("engine");
        let Decision::Inject(injection) = decision else {
            continue;
        };
        let output = injection.apply(&pod).expect("apply");
        let spec = &output["spec"];
        let volumes: Vec<&str> = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| v["name"].as_str().expect("volume name"))
            .collect();
        let unique = |names: &[&str]| {
            names.iter().collect::<std::collections::HashSet<_>>().len() == names.len()
        };
        assert!(unique(&volumes), "{name}: duplicate volumes {volumes:?}");
        let mut container_names = Vec::new();
        for key in ["initContainers", "containers"] {
            for c in spec[key].as_array().into_iter().flatten() {
                let cname = c["name"].as_str().expect("container name");
                container_names.push(cname);
                let mounts = c["volumeMounts"].as_array().map_or(&[][..], Vec::as_slice);
                let paths: Vec<&str> = mounts
                    .iter()
                    .map(|m| m["mountPath"].as_str().expect("path"))
                    .collect();
                assert!(
                    unique(&paths),
                    "{name}/{cname}: duplicate mount paths {paths:?}"
                );
                for m in mounts {
                    let v = m["name"].as_str().expect("mount name");
                    assert!(
                        volumes.contains(&v),
                        "{name}/{cname}: mount of missing volume {v}"
                    );
                }
                if key == "containers" {
                    assert!(
                        c.get("restartPolicy").is_none(),
                        "{name}/{cname}: restartPolicy on a container"
                    );
                }
            }
        }
        assert!(
            unique(&container_names),
            "{name}: duplicate containers {container_names:?}"
        );
        if spec["hostPID"] == true {
            assert!(
                spec.get("shareProcessNamespace").is_none(),
                "{name}: hostPID with shareProcessNamespace"
            );
        }
    }
}
