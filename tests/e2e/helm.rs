//! The platform team's journey on the real node, with the packaged chart:
//! `helm install` from an OCI registry (Debian's docker-registry on the
//! run's loopback), the webhook running as the chart's Deployment on the
//! node from the image `make image` builds, reached by the apiserver
//! through its Service, with the chart-generated certificate; a runner Job
//! completes; `helm upgrade` of the dind resources while runner pods are
//! being created loses none of them and the new pods carry the new values;
//! `helm uninstall` leaves no webhook configuration and runner pods are
//! created untouched afterwards.
//!
//! The release selects only its own runner namespace (a label of its own);
//! that namespace is opted out of the suite's host webhook, so every
//! injection seen here is the release's.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

use crate::on_node::job_runs_docker;
use crate::pods::{check_injected, check_untouched, pod, runner_labels, runner_template, Mode};
use crate::procs::{eventually, free_port, Proc};
use crate::setup::namespace;
use crate::{root, Env, WAIT};

const RELEASE: &str = "journey";
const RELEASE_NS: &str = "e2e-helm-journey";
const RUNNER_NS: &str = "e2e-helm-runners";
/// The namespace label the release selects (and nothing else does).
const SELECT: (&str, &str) = ("e2e-helm", "runners");

/// Runs `helm` with the run's admin kubeconfig (`dir` is the run's
/// directory); its output on failure. It blocks: from async code, through
/// `spawn_blocking` when other tasks must go on meanwhile.
fn helm<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> Result<String> {
    let helm = std::env::var_os("HELM").context("HELM is not set: run `make e2e`")?;
    let args: Vec<&std::ffi::OsStr> = args.iter().map(AsRef::as_ref).collect();
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(helm)
        .args(&args)
        .arg("--kubeconfig")
        .arg(dir.join("admin.kubeconfig"))
        .env("HELM_CACHE_HOME", dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", dir.join("helm/config"))
        .env("HELM_DATA_HOME", dir.join("helm/data"))
        .output()
        .with_context(|| format!("running helm {shown}"))?;
    ensure!(
        out.status.success(),
        "helm {shown} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Debian's docker-registry on a free loopback port, storing in the run's
/// directory; stopped when dropped.
fn registry(dir: &Path) -> Result<(Proc, String)> {
    let port = free_port()?;
    let host = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: \"{host}\"}}\n",
            dir.join("registry").display()
        ),
    )?;
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&config);
    let proc = Proc::spawn("docker-registry", cmd, &dir.join("registry.log"))?;
    Ok((proc, host))
}

/// `repository:tag` of an image reference.
fn split_ref(image: &str) -> Result<(&str, &str)> {
    image
        .rsplit_once(':')
        .filter(|(repo, _)| !repo.is_empty())
        .with_context(|| format!("image {image} has no tag"))
}

/// The dind container of an injected pod, wherever the mode put it.
fn dind_requests(p: &Pod) -> Result<Value> {
    let v = serde_json::to_value(p)?;
    let spec = &v["spec"];
    let all = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten();
    for c in all {
        if c["name"] == "dind" {
            return Ok(c["resources"]["requests"].clone());
        }
    }
    bail!("no dind container in {}", v["metadata"]["name"])
}

/// What admission decides of a pod, in fields the apiserver's defaulting
/// leaves alone: the containers as injected, the volumes by name, the
/// pod-level fields the injection sets, the status annotation.
fn injected_parts(pod: &Value) -> Value {
    let containers = |key: &str| -> Vec<Value> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mounts: Vec<Value> = c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["name"].as_str().is_some_and(|n| !n.starts_with("kube-api-access")))
                    .map(|m| json!([m["name"], m["mountPath"], m["readOnly"]]))
                    .collect();
                json!({
                    "name": c["name"], "image": c["image"], "command": c["command"], "args": c["args"],
                    // The apiserver defaults absent resources to {}.
                    "env": c["env"], "resources": if c["resources"].is_null() { json!({}) } else { c["resources"].clone() },
                    "securityContext": c["securityContext"],
                    "restartPolicy": c["restartPolicy"], "mounts": mounts,
                })
            })
            .collect()
    };
    let volumes: Vec<&Value> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| &v["name"])
        .filter(|n| {
            n.as_str()
                .is_some_and(|n| !n.starts_with("kube-api-access"))
        })
        .collect();
    json!({
        "status": pod["metadata"]["annotations"]["dind-injector.io/status"],
        "containers": containers("containers"),
        "initContainers": containers("initContainers"),
        "volumes": volumes,
        "terminationGracePeriodSeconds": pod["spec"]["terminationGracePeriodSeconds"],
        "shareProcessNamespace": pod["spec"]["shareProcessNamespace"],
    })
}

/// `dind-injector inject --from-cluster` renders what the release's webhook
/// stores, with the upgraded config read from the cluster.
async fn inject_from_cluster_matches(env: &Env, pods: &Api<Pod>) -> Result<()> {
    let manifest = pod("from-cluster", runner_template(runner_labels(), json!({})))?;
    let file = env.dir.join("helm/from-cluster-pod.yaml");
    std::fs::write(&file, serde_norway::to_string(&manifest)?)?;
    let out = Command::new(crate::injector::bin())
        .args(["inject", "--from-cluster", "--namespace", RELEASE_NS, "-f"])
        .arg(&file)
        .env("KUBECONFIG", env.dir.join("admin.kubeconfig"))
        .output()
        .context("running dind-injector inject --from-cluster")?;
    ensure!(
        out.status.success(),
        "inject --from-cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_norway::from_slice(&out.stdout)?;
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let admitted = serde_json::to_value(pods.create(&dry_run, &manifest).await?)?;
    let (offline, admitted) = (injected_parts(&offline), injected_parts(&admitted));
    ensure!(
        offline == admitted,
        "inject --from-cluster differs from the webhook's pod:\n offline: {offline}\n webhook: {admitted}"
    );
    ensure!(
        offline["status"] == "injected" && offline.to_string().contains("150m"),
        "inject --from-cluster did not use the upgraded config: {offline}"
    );
    println!(
        "e2e:   inject --from-cluster (ConfigMap of the release, upgraded): the same containers, volumes and fields as the webhook's pod"
    );
    Ok(())
}

pub(crate) async fn helm_install_upgrade_uninstall(env: &mut Env) -> Result<()> {
    let env = &*env;
    let dir = env.dir.join("helm");
    std::fs::create_dir_all(&dir)?;
    namespace(&env.client, RELEASE_NS, json!({})).await?;
    namespace(
        &env.client,
        RUNNER_NS,
        json!({SELECT.0: SELECT.1, "dind-injector.io/injection": "disabled"}),
    )
    .await?;

    // The packaged chart, pushed to and installed from the OCI registry.
    let (_registry, host) = registry(&dir)?;
    eventually("docker-registry to answer", WAIT, || {
        let host = host.clone();
        async move { Ok(std::net::TcpStream::connect(&host).is_ok().then_some(())) }
    })
    .await?;
    let chart = root().join("manifests/helm/dind-injector");
    let dist = dir.display().to_string();
    helm(
        &env.dir,
        &[
            "package",
            &chart.display().to_string(),
            "--destination",
            &dist,
        ],
    )?;
    let version =
        serde_norway::from_str::<Value>(&std::fs::read_to_string(chart.join("Chart.yaml"))?)?
            ["version"]
            .as_str()
            .context("Chart.yaml version")?
            .to_string();
    let package = format!("{dist}/dind-injector-{version}.tgz");
    let oci = format!("oci://{host}/charts");
    helm(&env.dir, &["push", &package, &oci, "--plain-http"])?;
    let chart_ref = format!("{oci}/dind-injector");

    let (repository, tag) = split_ref(&env.images.injector)?;
    let values = dir.join("values.yaml");
    std::fs::write(
        &values,
        serde_norway::to_string(&json!({
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
            // The pods cannot reach the apiserver's Service (no kube-proxy):
            // no auto-detection, the mode is given.
            "config": {"sidecarMode": "native", "dind": {"image": env.images.dind}},
            "webhook": {
                "optOutLabel": {"key": "e2e-helm/injection", "value": "disabled"},
                "namespaceSelectorExpressions": [{"key": SELECT.0, "operator": "In", "values": [SELECT.1]}],
            },
            "server": {"logFormat": "text"},
        }))?,
    )?;
    let values = values.display().to_string();
    let common = [
        "--namespace",
        RELEASE_NS,
        "--version",
        version.as_str(),
        "--plain-http",
        "--wait",
        "--timeout",
        "180s",
    ];
    let mut install = vec![
        "install",
        RELEASE,
        chart_ref.as_str(),
        "--values",
        values.as_str(),
    ];
    install.extend(common);
    helm(&env.dir, &install)?;
    println!("e2e:   helm install {chart_ref} --version {version}: Deployment ready");

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), RUNNER_NS);
    // The webhook configuration reaches admission through an informer.
    eventually("the release's webhook to inject", WAIT, || {
        let pods = pods.clone();
        async move {
            let probe = pod("probe", runner_template(runner_labels(), json!({})))?;
            let dry_run = PostParams {
                dry_run: true,
                ..Default::default()
            };
            Ok(pods
                .create(&dry_run, &probe)
                .await
                .ok()
                .filter(|p| check_injected(p, Mode::Native).is_ok())
                .map(drop))
        }
    })
    .await?;

    // A runner Job on the node, injected by the release.
    job_runs_docker(env, RUNNER_NS, Mode::Native, "helm-job").await?;

    // helm upgrade of the dind resources while runner pods are created.
    let creating = Arc::new(AtomicBool::new(true));
    let creator = {
        let pods = pods.clone();
        let creating = creating.clone();
        tokio::spawn(async move {
            let (mut created, mut failed) = (Vec::new(), Vec::new());
            let mut i = 0;
            while creating.load(Ordering::Relaxed) {
                let name = format!("during-upgrade-{i}");
                i += 1;
                let p = pod(&name, runner_template(runner_labels(), json!({})));
                match p {
                    Ok(p) => match pods.create(&PostParams::default(), &p).await {
                        Ok(p) => created.push(p),
                        Err(e) => failed.push(format!("{name}: {e}")),
                    },
                    Err(e) => failed.push(format!("{name}: {e:#}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (created, failed)
        })
    };
    let mut upgrade = vec![
        "upgrade",
        RELEASE,
        chart_ref.as_str(),
        "--reuse-values",
        "--set",
        "config.dind.resources.requests.cpu=150m",
        "--set",
        "config.dind.resources.requests.memory=300Mi",
    ];
    upgrade.extend(common);
    // Blocking helm off the runtime's only thread, so the creations go on.
    let upgrade: Vec<String> = upgrade.into_iter().map(String::from).collect();
    let run_dir = env.dir.clone();
    let upgraded = tokio::task::spawn_blocking(move || helm(&run_dir, &upgrade)).await?;
    // Old replicas drain (readiness off, then shutdown) after the rollout:
    // keep creating until only the new ones are left.
    let webhook_pods: Api<Pod> = Api::namespaced(env.client.clone(), RELEASE_NS);
    let settled = eventually("the old webhook replicas to be gone", WAIT, || {
        let webhook_pods = webhook_pods.clone();
        async move {
            let list = webhook_pods
                .list(&ListParams::default().labels("app.kubernetes.io/component=webhook"))
                .await?;
            Ok((list.items.len() == 2).then_some(()))
        }
    })
    .await;
    creating.store(false, Ordering::Relaxed);
    let (created, failed) = creator.await?;
    upgraded?;
    settled?;
    ensure!(
        failed.is_empty(),
        "{} of {} creations failed during the upgrade:\n{}",
        failed.len(),
        failed.len() + created.len(),
        failed.join("\n")
    );
    for p in &created {
        check_injected(p, Mode::Native)?;
    }
    let new_values = json!({"cpu": "150m", "memory": "300Mi"});
    let old = created
        .iter()
        .filter(|p| dind_requests(p).map(|r| r != new_values).unwrap_or(true))
        .count();
    // The creations overlapped the rollout: the first ones met the old replicas.
    ensure!(
        old > 0,
        "no pod created during the upgrade got the old resources: the creations did not overlap the rollout"
    );
    for i in 0..3 {
        let name = format!("after-upgrade-{i}");
        let p = pods
            .create(
                &PostParams::default(),
                &pod(&name, runner_template(runner_labels(), json!({})))?,
            )
            .await?;
        check_injected(&p, Mode::Native)?;
        let requests = dind_requests(&p)?;
        ensure!(
            requests == new_values,
            "{name}: dind requests {requests}, want {new_values}"
        );
    }
    println!(
        "e2e:   helm upgrade while creating runner pods: {} created, 0 refused ({} with the old resources, {} with the new); every pod after it has the new ones",
        created.len(),
        old,
        created.len() - old
    );

    inject_from_cluster_matches(env, &pods).await?;

    // helm uninstall: no webhook configuration left, pods untouched after.
    helm(
        &env.dir,
        &["uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait"],
    )?;
    let left: Vec<String> = Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
        .await?
        .items
        .into_iter()
        .filter_map(|w| w.metadata.name)
        .collect();
    ensure!(
        left.is_empty(),
        "webhook configurations left after helm uninstall: {left:?}"
    );
    let untouched = eventually("runner pods untouched after helm uninstall", WAIT, || {
        let pods = pods.clone();
        async move {
            let name = "after-uninstall";
            let _ = pods
                .delete(name, &DeleteParams::default().grace_period(0))
                .await;
            let p = pods
                .create(
                    &PostParams::default(),
                    &pod(name, runner_template(runner_labels(), json!({})))?,
                )
                .await?;
            Ok(check_untouched(&p).is_ok().then_some(p))
        }
    })
    .await?;
    check_untouched(&untouched)?;
    println!("e2e:   helm uninstall: no webhook configuration left, runner pods created untouched");
    Ok(())
}
