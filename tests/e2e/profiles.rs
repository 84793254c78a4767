//! Docker settings per workload on the node: profiles picked by a pod's
//! annotation and by its namespace's, per-pod resources, and Docker's
//! storage on a generic ephemeral volume. The webhook runs with the e2e
//! config plus two profiles and `namespaceProfiles: true`, and the shipped
//! RBAC of components/namespace-profiles; the daemon itself is asked what
//! it got (`docker info`, a container reading `/etc/docker/certs.d`).

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

use crate::on_node::{job_condition, pod_of, runner_labels, template, terminal, RUN, RUNNER};
use crate::pods::{check_injected, Mode};
use crate::runs::{watch_until, Recording};
use crate::setup::apply_text;
use crate::{root, Env, RUNNERS};

/// A namespace whose annotation names the `tuned` profile.
const PROFILED_NS: &str = "e2e-profiled";
const DAEMON_CONFIG: &str = "e2e-docker-daemon";
const REGISTRY_CA: &str = "e2e-registry-ca";
const REGISTRY: &str = "registry.e2e.example:5000";
const MIRROR: &str = "http://mirror.e2e.example:5000";
const STORAGE_CLASS: &str = "e2e-manual";
const PV: &str = "e2e-docker-storage";
/// Only read by dockerd when it pulls from the registry: any PEM will do
/// to show that the daemon sees the file where it looks for it.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBe2e\n-----END CERTIFICATE-----\n";

/// What the daemon reports about its settings, and what a container it
/// runs sees at `/etc/docker/certs.d` (resolved in the dind container).
const DOCKER_REPORT: &str = "load_job_image > /dev/null \
    && docker info --format 'labels={{json .Labels}} mirrors={{json .RegistryConfig.Mirrors}}' \
    && docker run --rm -v /etc/docker/certs.d:/c \"$JOB_IMAGE\" \
       sh -c 'echo ca=$(head -n 1 /c/registry.e2e.example:5000/ca.crt)'";

/// The e2e config with the profiles this scenario uses.
fn profiles_config(env: &Env) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(env.dir.join("config.yaml"))?;
    let mut config: Value = serde_norway::from_str(&text)?;
    config["namespaceProfiles"] = json!(true);
    config["profiles"] = json!({
        "tuned": {
            "registryMirrors": [MIRROR],
            "daemonConfig": {"configMap": DAEMON_CONFIG},
            "registryCertificates": [{"registry": REGISTRY, "configMap": REGISTRY_CA}],
            "env": [{"name": "E2E_PROFILE", "value": "tuned"}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "2Gi"}},
        },
        "ephemeral": {
            "storage": {"type": "ephemeral", "storageClassName": STORAGE_CLASS},
            "storageSizeLimit": "1Gi",
        },
    });
    let path = env.dir.join("config-profiles.yaml");
    std::fs::write(&path, serde_norway::to_string(&config)?)?;
    Ok(path)
}

/// The ConfigMaps the `tuned` profile mounts, in `ns`.
fn settings_objects(ns: &str) -> [Value; 2] {
    let daemon = json!({"labels": ["e2e-profile=tuned"]}).to_string();
    [
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": DAEMON_CONFIG, "namespace": ns},
               "data": {"daemon.json": daemon}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": REGISTRY_CA, "namespace": ns},
               "data": {"ca.crt": CA_PEM}}),
    ]
}

/// Server-side applies each object (`what` names them in errors).
async fn apply(env: &Env, objects: &[Value], what: &str) -> Result<()> {
    for object in objects {
        let text = serde_norway::to_string(object)?;
        apply_text(&env.client, &text, what, None, false).await?;
    }
    Ok(())
}

pub(crate) async fn node_profiles_take_effect(env: &mut Env) -> Result<()> {
    let config = profiles_config(env)?;
    apply_text(
        &env.client,
        &std::fs::read_to_string(root().join("manifests/components/namespace-profiles/rbac.yaml"))?,
        "components/namespace-profiles/rbac.yaml",
        None,
        false,
    )
    .await?;
    env.injector.stop()?;
    let shipped = env.injector.set_config(&config);
    let result = match env.injector.start() {
        Ok(()) => profiles_take_effect(env).await,
        Err(e) => Err(e),
    };
    // The other scenarios run with the e2e config, whatever happened here.
    let _ = env.injector.stop();
    env.injector.set_config(&shipped);
    env.injector.start()?;
    let log = env.injector.log();
    result.with_context(|| {
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        format!(
            "webhook log (last lines, newest first):\n{}",
            tail.join("\n")
        )
    })
}

async fn profiles_take_effect(env: &Env) -> Result<()> {
    // Not synced, not serving: the list comes before the first review.
    // (The writer thread may not have written the "serving" line yet.)
    let waiting = "namespaceProfiles: waiting for the first list";
    let log = env
        .injector
        .log_until(|log| {
            log.rfind(waiting)
                .is_some_and(|at| log[at..].contains("\"message\":\"serving\""))
        })
        .await;
    let restart = log
        .rfind(waiting)
        .context("the webhook did not wait for the namespaces")?;
    let after = &log[restart..];
    let listed = after.find("namespaceProfiles: namespaces listed");
    let serving = after.find("\"message\":\"serving\"");
    ensure!(
        matches!((listed, serving), (Some(l), Some(s)) if l < s),
        "the webhook served before it listed the namespaces:\n{after}"
    );
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": PROFILED_NS, "annotations": {"dind-injector.io/profile": "tuned"}}});
    // Created (with its ServiceAccount) first, then annotated: one field
    // manager, so the second apply says everything the namespace has.
    crate::setup::namespace(&env.client, PROFILED_NS, json!({})).await?;
    apply(env, &[namespace], "namespace").await?;
    for ns in [RUNNERS, PROFILED_NS] {
        apply(env, &settings_objects(ns), "docker settings").await?;
    }
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": PV},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                 "hostPath": {"path": env.dir.join("pv-docker").display().to_string(),
                              "type": "DirectoryOrCreate"}}});
    apply(env, &[pv], "persistent volume").await?;

    let by_annotation = async {
        let annotations = json!({
            "dind-injector.io/profile": "tuned",
            "dind-injector.io/memory-limit": "3Gi",
            "dind-injector.io/cpu-limit": "2",
        });
        let (pod, rec) = run_job(env, RUNNERS, "profile-pod", Mode::Native, annotations).await?;
        let dind = dind_of(&pod)?;
        ensure!(
            dind["resources"]
                == json!({"limits": {"cpu": "2", "memory": "3Gi"},
                                        "requests": {"cpu": "50m", "memory": "64Mi"}}),
            "the pod's annotations on the profile's resources: {}",
            dind["resources"]
        );
        ensure!(
            dind["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == "E2E_PROFILE")),
            "dind env: {}",
            dind["env"]
        );
        daemon_reports_tuned(&rec)?;
        println!("e2e:   profile by annotation (native): dind resources {}, dockerd has the daemon.json label, the mirror and the registry CA; Job complete", dind["resources"]);
        Ok(())
    };
    let by_namespace = async {
        let (pod, rec) = run_job(env, PROFILED_NS, "profile-ns", Mode::Classic, json!({})).await?;
        ensure!(
            dind_of(&pod)?["resources"]["limits"]["memory"] == "2Gi",
            "the namespace's profile's resources"
        );
        daemon_reports_tuned(&rec)?;
        println!("e2e:   profile by namespace default (classic): dockerd has the daemon.json label, the mirror and the registry CA; Job complete");
        Ok(())
    };
    let on_ephemeral = async {
        let annotations = json!({"dind-injector.io/profile": "ephemeral"});
        let (pod, rec) = run_job(env, RUNNERS, "profile-eph", Mode::Native, annotations).await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), RUNNERS);
        let claim = claims
            .get(&format!("{name}-dind-storage"))
            .await
            .context("the ephemeral claim")?;
        let volume = claim.spec.and_then(|s| s.volume_name).unwrap_or_default();
        ensure!(volume == PV, "the claim is bound to {volume:?}, not {PV}");
        rec.first(RUNNER, "file=from-the-job")?;
        println!("e2e:   Docker storage on a generic ephemeral volume: claim {name}-dind-storage bound to PV {PV} (hostPath, storage class {STORAGE_CLASS}); Job complete");
        Ok(())
    };
    let (a, n, e) = tokio::join!(by_annotation, by_namespace, on_ephemeral);
    let errors: Vec<String> = [
        ("by annotation", a),
        ("by namespace", n),
        ("ephemeral storage", e),
    ]
    .into_iter()
    .filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e:#}")))
    .collect();
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let _ = pvs.delete(PV, &DeleteParams::background()).await;
    ensure!(errors.is_empty(), "{}", errors.join("\n"));
    Ok(())
}

fn daemon_reports_tuned(rec: &Recording) -> Result<()> {
    rec.first(RUNNER, "labels=[\"e2e-profile=tuned\"]")
        .context("daemon.json from the ConfigMap")?;
    rec.first(RUNNER, MIRROR)
        .context("the profile's registry mirror")?;
    rec.first(RUNNER, "ca=-----BEGIN CERTIFICATE-----")
        .context("the registry CA in /etc/docker/certs.d")?;
    Ok(())
}

/// The `dind` container of a stored pod, as JSON.
fn dind_of(pod: &Pod) -> Result<Value> {
    let spec = serde_json::to_value(pod.spec.as_ref().context("spec")?)?;
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[k].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == "dind")
        .context("no dind container")
}

/// Runs a runner Job (the daemon report, then the work-dir job of the node
/// scenarios) to completion; the stored pod and what it logged.
async fn run_job(
    env: &Env,
    ns: &str,
    run: &str,
    mode: Mode,
    annotations: Value,
) -> Result<(Pod, Recording)> {
    let commands = format!(
        "{DOCKER_REPORT} && job_container 'echo from-the-job > out' && echo file=$(cat \"$WORK_DIR/out\")"
    );
    let mut template = template(
        env,
        mode,
        runner_labels(run),
        &[("JOB_COMMANDS", &commands)],
        json!({}),
    );
    if let (Some(into), Some(extra)) = (
        template["metadata"]["annotations"].as_object_mut(),
        annotations.as_object(),
    ) {
        into.extend(extra.clone());
    }
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": run},
        "spec": {"backoffLimit": 0, "template": template},
    }))?;
    jobs.create(&PostParams::default(), &job).await?;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let name = pod_of(&api, run).await?;
    let pod = api.get(&name).await?;
    check_injected(&pod, mode)?;
    let mut rec = Recording::default();
    watch_until(&api, &name, &mut rec, RUN, "terminal", terminal).await?;
    ensure!(
        rec.phase() == "Succeeded",
        "phase {}:\n{}",
        rec.phase(),
        rec.dump()
    );
    job_condition(&jobs, run, "Complete").await?;
    jobs.delete(run, &DeleteParams::background()).await?;
    Ok((pod, rec))
}
