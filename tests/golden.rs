//! Golden tests: realistic pods, as the apiserver sends them, through the
//! engine with the default config. `UPDATE_GOLDEN=1 cargo test --test golden`
//! rewrites the expected files; review the diff before committing it.
//!
//! The injected pods in `tests/golden/` are also validated against the strict
//! Kubernetes JSON schema by `make schema` (part of `make test`).

mod common;

use std::path::Path;

use dind_injector::engine::{Decision, SkipReason};
use serde_json::Value;

fn fixtures() -> Vec<(String, Value)> {
    let out = common::pod_fixtures();
    assert!(out.len() >= 15, "fixtures missing from tests/fixtures/pods");
    out
}

#[test]
fn every_fixture_matches_its_golden_file() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let golden_dir = common::root().join("tests/golden");
    let mut mismatched = Vec::new();
    for (name, pod) in fixtures() {
        let decision = common::engine().review(&pod).expect("engine");
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
        "engine output differs from tests/golden for: {mismatched:?} (UPDATE_GOLDEN=1 to rewrite, then review the diff)"
    );
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
    let engine = common::engine();
    for (name, pod) in fixtures() {
        let Decision::Inject(injection) = engine.review(&pod).expect("engine") else {
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
