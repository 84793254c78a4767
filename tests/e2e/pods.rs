//! Runner pods as users write them, and what a stored pod must look like
//! after the apiserver ran our webhook, its own defaulting and validation.

use anyhow::{bail, ensure, Context, Result};
use dind_injector::contract::{
    annotation, container, path, volume, DOCKER_HOST, RUNNER_MARKER_ENV, STATUS_INJECTED,
};
pub use dind_injector::engine::Mode;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

pub const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:2.329.0";
pub const RUNNER_ENTRYPOINT: &str = "/home/runner/run.sh";

/// The pod template of a runner: the label, the runner image, no command
/// (the webhook knows this image's entrypoint). These pods are only
/// admitted and stored: a scheduler name no scheduler answers to keeps them
/// off the node (whose scenarios, on_node.rs, run pods of their own).
pub fn runner_template(labels: Value, annotations: Value) -> Value {
    json!({
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "schedulerName": "e2e-admission-only",
            "restartPolicy": "Never",
            "containers": [{"name": "runner", "image": RUNNER_IMAGE}]
        }
    })
}

pub fn runner_labels() -> Value {
    json!({"runner": "true"})
}

/// A bare pod named `name` from a template.
pub fn pod(name: &str, template: Value) -> Result<Pod> {
    let mut value = template;
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Pod");
    value["metadata"]["name"] = json!(name);
    Ok(serde_json::from_value(value)?)
}

fn named<'a>(list: &'a Value, name: &str) -> Vec<&'a Value> {
    list.as_array()
        .map(|items| items.iter().filter(|i| i["name"] == name).collect())
        .unwrap_or_default()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default()
}

fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    named(&c["env"], name)
        .first()
        .and_then(|e| e["value"].as_str())
}

/// Every part of the injection, as stored.
pub fn check_injected(pod: &Pod, mode: Mode) -> Result<()> {
    check_injected_as(pod, mode, Some(RUNNER_ENTRYPOINT))
}

/// [`check_injected`] for a runner supervised around `entrypoint` (its
/// image's, read from a registry: issue 16).
pub fn check_injected_running(pod: &Pod, mode: Mode, entrypoint: &str) -> Result<()> {
    check_injected_as(pod, mode, Some(entrypoint))
}

/// [`check_injected`] for a runner whose command is unknown (issue 16):
/// not supervised, and in classic mode watched by the sidecar instead.
pub fn check_injected_unsupervised(pod: &Pod, mode: Mode) -> Result<()> {
    check_injected_as(pod, mode, None)
}

/// `supervised`: the program the supervisor must end with, or `None` for
/// an unsupervised runner.
fn check_injected_as(pod: &Pod, mode: Mode, supervised: Option<&str>) -> Result<()> {
    let v = serde_json::to_value(pod)?;
    let name = v["metadata"]["name"].as_str().unwrap_or("?").to_string();
    check(&v, mode, supervised).with_context(|| {
        format!(
            "pod {name}: {}",
            serde_json::to_string_pretty(&v["spec"]).unwrap_or_default()
        )
    })
}

fn check(v: &Value, mode: Mode, supervised: Option<&str>) -> Result<()> {
    let spec = &v["spec"];
    ensure!(
        v["metadata"]["annotations"][annotation::STATUS] == STATUS_INJECTED,
        "no {} annotation",
        annotation::STATUS
    );
    let (in_containers, in_init) = (
        named(&spec["containers"], container::DIND),
        named(&spec["initContainers"], container::DIND),
    );
    ensure!(
        in_containers.len() + in_init.len() == 1,
        "{} dind containers and {} dind init containers: want exactly one",
        in_containers.len(),
        in_init.len()
    );
    let dind = match mode {
        Mode::Classic => {
            ensure!(
                in_containers.len() == 1,
                "classic mode: dind must be a container"
            );
            ensure!(
                spec["shareProcessNamespace"] == true,
                "classic mode: shareProcessNamespace must be true"
            );
            in_containers[0]
        }
        Mode::Native => {
            ensure!(
                in_init.len() == 1,
                "native mode: dind must be an init container"
            );
            ensure!(
                in_init[0]["restartPolicy"] == "Always",
                "native mode: dind needs restartPolicy Always"
            );
            in_init[0]
        }
    };
    ensure!(
        dind["securityContext"]["privileged"] == true,
        "dind is not privileged"
    );
    ensure!(
        dind["command"]
            .as_array()
            .is_some_and(|c| c.first() == Some(&json!(path::BINARY))),
        "dind does not start through {}",
        path::BINARY
    );
    let init_names = names(&spec["initContainers"]);
    ensure!(
        init_names.first() == Some(&container::INIT),
        "{} must be the first init container, have {init_names:?}",
        container::INIT
    );

    let volumes = names(&spec["volumes"]);
    for want in [volume::CERTS, volume::RUN, volume::BIN, volume::STORAGE] {
        ensure!(
            volumes.contains(&want),
            "volume {want} missing: {volumes:?}"
        );
    }
    let mut unique = volumes.clone();
    unique.sort_unstable();
    unique.dedup();
    ensure!(
        unique.len() == volumes.len(),
        "duplicate volume names: {volumes:?}"
    );
    ensure!(
        volumes.iter().any(|v| v.starts_with("kube-api-access-")),
        "the ServiceAccount admission plugin's token volume is gone: {volumes:?}"
    );

    let Some(runner) = named(&spec["containers"], "runner").first().copied() else {
        bail!("no runner container");
    };
    let command: Vec<&str> = runner["command"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(entrypoint) = supervised {
        ensure!(
            command.first() == Some(&path::BINARY) && command.get(1) == Some(&"supervise"),
            "runner not supervised: {command:?}"
        );
        ensure!(
            command.last() == Some(&entrypoint),
            "runner entrypoint {entrypoint} lost: {command:?}"
        );
    } else {
        ensure!(
            command.is_empty(),
            "an unsupervised runner got a command: {command:?}"
        );
        let flag = dind["command"][2].as_str().unwrap_or("");
        let (want_flag, want_marker) = match mode {
            Mode::Classic => ("--watch-runner=runner", Some("runner")),
            Mode::Native => ("--standalone", None),
        };
        ensure!(
            flag == want_flag,
            "dind's flag {flag:?}, want {want_flag:?}"
        );
        ensure!(
            env_value(runner, RUNNER_MARKER_ENV) == want_marker,
            "{RUNNER_MARKER_ENV} on the runner: {:?}, want {want_marker:?}",
            env_value(runner, RUNNER_MARKER_ENV)
        );
    }
    ensure!(
        env_value(runner, "DOCKER_HOST") == Some(DOCKER_HOST),
        "DOCKER_HOST"
    );
    ensure!(
        env_value(runner, "DOCKER_TLS_VERIFY") == Some("1"),
        "DOCKER_TLS_VERIFY"
    );
    ensure!(
        env_value(runner, "DOCKER_CERT_PATH") == Some(path::CLIENT_CERTS_DIR),
        "DOCKER_CERT_PATH"
    );
    let mounts = named(&runner["volumeMounts"], volume::CERTS);
    ensure!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == path::CLIENT_CERTS_DIR),
        "runner lacks the client certificates at {}",
        path::CLIENT_CERTS_DIR
    );
    ensure!(
        !named(&runner["volumeMounts"], volume::RUN).is_empty(),
        "runner lacks {}",
        volume::RUN
    );
    ensure!(
        spec["terminationGracePeriodSeconds"].as_i64().unwrap_or(0) >= 3600,
        "grace period {} < 3600",
        spec["terminationGracePeriodSeconds"]
    );
    Ok(())
}

/// Stored exactly as written: nothing of ours in it.
pub fn check_untouched(pod: &Pod) -> Result<()> {
    let v = serde_json::to_value(pod)?;
    let spec = &v["spec"];
    ensure!(
        v["metadata"]["annotations"][annotation::STATUS].is_null(),
        "status annotation on an untouched pod"
    );
    ensure!(
        names(&spec["containers"]) == ["runner"],
        "containers changed: {:?}",
        names(&spec["containers"])
    );
    ensure!(
        spec["initContainers"].is_null(),
        "init containers added: {}",
        spec["initContainers"]
    );
    ensure!(
        spec["shareProcessNamespace"].is_null(),
        "shareProcessNamespace set"
    );
    ensure!(
        spec["terminationGracePeriodSeconds"] == 30,
        "grace period changed: {}",
        spec["terminationGracePeriodSeconds"]
    );
    let runner = &spec["containers"][0];
    ensure!(
        runner["command"].is_null(),
        "runner command set: {}",
        runner["command"]
    );
    ensure!(runner["env"].is_null(), "runner env set: {}", runner["env"]);
    Ok(())
}

pub fn count_named(pod: &Pod, name: &str) -> Result<usize> {
    let v = serde_json::to_value(pod)?;
    Ok(named(&v["spec"]["containers"], name).len()
        + named(&v["spec"]["initContainers"], name).len())
}

/// Dry-runs a runner pod with `labels` in `pods` until the answer carries
/// exactly one container (or init container) named `container`: admission
/// objects (webhooks, policies) reach admission through informers, so a
/// freshly applied one takes effect a moment later.
pub async fn await_admission(
    pods: &kube::Api<Pod>,
    labels: Value,
    container: &str,
    what: &str,
) -> Result<()> {
    crate::procs::eventually(what, crate::WAIT, || {
        let (pods, labels) = (pods.clone(), labels.clone());
        async move {
            let probe = pod("probe", runner_template(labels, json!({})))?;
            let dry_run = kube::api::PostParams {
                dry_run: true,
                ..Default::default()
            };
            let answer = pods.create(&dry_run, &probe).await?;
            Ok((count_named(&answer, container)? == 1).then_some(()))
        }
    })
    .await
}
