//! The scenarios, each in namespaces and under names of its own, and the
//! pod helpers they share.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::extra::{self, Extra};
use crate::pki::Usage;
use crate::pods::{
    await_admission, check_injected, check_untouched, count_named, pod, runner_labels,
    runner_template, Mode,
};
use crate::procs::eventually;
use crate::setup::{apply_text, namespace, register_webhook, wait_for_calls};
use crate::{root, Env, FIELD_MANAGER, OPTED_OUT, RUNNERS, WAIT};

pub(crate) fn runners(env: &Env) -> Api<Pod> {
    Api::namespaced(env.client.clone(), RUNNERS)
}

pub(crate) async fn create(api: &Api<Pod>, name: &str, template: Value) -> Result<Pod> {
    api.create(&PostParams::default(), &pod(name, template)?)
        .await
        .with_context(|| format!("creating pod {name}"))
}

/// The pod as stored (not as the create call answered).
async fn stored(api: &Api<Pod>, name: &str) -> Result<Pod> {
    api.get(name)
        .await
        .with_context(|| format!("reading pod {name}"))
}

fn mode_annotation(mode: Mode) -> Value {
    json!({ dind_injector::contract::annotation::SIDECAR_MODE: mode.as_str() })
}

/// Creates `pod` expecting the apiserver to refuse it with a message that
/// says every one of `says`; prints the message as the user sees it, and
/// checks nothing was stored.
async fn refused(api: &Api<Pod>, pod: &Pod, says: &[&str]) -> Result<()> {
    let name = pod.metadata.name.as_deref().context("pod name")?;
    let message = match api.create(&PostParams::default(), pod).await {
        Ok(_) => bail!("pod {name} was created, want a refusal"),
        Err(kube::Error::Api(status)) => status.message,
        Err(other) => bail!("want the apiserver to refuse pod {name}, got {other}"),
    };
    println!("e2e:   the user sees: {message}");
    let missing: Vec<&str> = says
        .iter()
        .copied()
        .filter(|s| !message.contains(s))
        .collect();
    ensure!(
        missing.is_empty(),
        "the refusal does not say {missing:?}: {message}"
    );
    ensure!(
        api.get_opt(name).await?.is_none(),
        "the refused pod {name} was stored"
    );
    Ok(())
}

async fn sidecar_mode_is(env: &Env, mode: Mode) -> Result<()> {
    let mode = mode.as_str();
    let label = format!("mode=\"{mode}\"");
    eventually(&format!("sidecar mode {mode}"), WAIT, || {
        let label = label.clone();
        async move {
            let m = env.injector.metrics().await?;
            Ok((m.sum("dind_injector_sidecar_mode", &[&label]) == 1.0).then_some(()))
        }
    })
    .await
}

// ---- scenarios ----

/// `sidecarMode: auto` (the shipped config) against a 1.37 apiserver with no
/// nodes: native sidecars.
pub(crate) async fn auto_mode_picks_native(env: &mut Env) -> Result<()> {
    sidecar_mode_is(env, Mode::Native).await?;
    let log = env
        .injector
        .log_until(|log| log.contains("\"mode\":\"native\"") && log.contains("1.37"))
        .await;
    ensure!(
        log.contains("\"mode\":\"native\"") && log.contains("1.37"),
        "the detection is not logged with its version: {log}"
    );
    let created = create(
        &runners(env),
        "auto-mode",
        runner_template(runner_labels(), json!({})),
    )
    .await?;
    check_injected(&created, Mode::Native)
}

/// The pods a controller created in `ns`; when they do not come, the
/// namespace's events say why (a controller's FailedCreate carries the
/// apiserver's refusal).
async fn wait_for_pods(env: &Env, ns: &str, selector: &str, count: usize) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let params = ListParams::default().labels(selector);
    let found = eventually(
        &format!("{count} pods with {selector} in {ns}"),
        WAIT,
        || {
            let (pods, params) = (pods.clone(), params.clone());
            async move {
                let list = pods.list(&params).await?;
                Ok((list.items.len() == count).then_some(list.items))
            }
        },
    )
    .await;
    if found.is_err() {
        let events = Api::<Event>::namespaced(env.client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        let said: Vec<String> = events
            .items
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        return found.with_context(|| format!("events in {ns}:\n{}", said.join("\n")));
    }
    found
}

fn owned_by(pod: &Pod, kind: &str, name: &str) -> Result<()> {
    let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
    ensure!(
        owners
            .iter()
            .any(|o| o.kind == kind && o.name == name && o.controller == Some(true)),
        "pod {:?} is not controlled by {kind} {name}: {owners:?}",
        pod.metadata.name
    );
    Ok(())
}

/// Creates `workload` (two runner pods) and checks the pods its controller
/// creates through the webhook: the injection as stored, and the owner.
async fn workload_pods_injected<K>(env: &Env, workload: Value, selector: &str) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let kind = workload["kind"].as_str().context("kind")?.to_string();
    let name = workload["metadata"]["name"]
        .as_str()
        .context("name")?
        .to_string();
    let object: K = serde_json::from_value(workload)?;
    Api::<K>::namespaced(env.client.clone(), RUNNERS)
        .create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating {kind} {name}"))?;
    for p in wait_for_pods(env, RUNNERS, selector, 2).await? {
        owned_by(&p, &kind, &name)?;
        check_injected(&p, Mode::Native)?;
    }
    Ok(())
}

pub(crate) async fn job_pods_injected(env: &mut Env) -> Result<()> {
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "runner-job"},
        "spec": {
            "parallelism": 2,
            "completions": 2,
            "backoffLimit": 0,
            "template": runner_template(runner_labels(), json!({})),
        }
    });
    workload_pods_injected::<Job>(env, job, "batch.kubernetes.io/job-name=runner-job").await
}

pub(crate) async fn replicaset_pods_injected(env: &mut Env) -> Result<()> {
    let labels = json!({"runner": "true", "app": "runner-rs"});
    let mut template = runner_template(labels.clone(), json!({}));
    // ReplicaSets allow only restartPolicy Always.
    template["spec"]["restartPolicy"] = json!("Always");
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "runner-rs"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template}
    });
    workload_pods_injected::<ReplicaSet>(env, rs, "app=runner-rs").await
}

pub(crate) async fn bare_pods_classic_and_native(env: &mut Env) -> Result<()> {
    let pods = runners(env);
    for (name, mode) in [
        ("bare-classic", Mode::Classic),
        ("bare-native", Mode::Native),
    ] {
        create(
            &pods,
            name,
            runner_template(runner_labels(), mode_annotation(mode)),
        )
        .await?;
        check_injected(&stored(&pods, name).await?, mode)?;
    }
    Ok(())
}

/// The selectors keep the apiserver from calling us at all.
pub(crate) async fn unselected_pods_untouched(env: &mut Env) -> Result<()> {
    let before = env.injector.metrics().await?.reviews();
    ensure!(
        before > 0.0,
        "no reviews counted yet: the metric cannot show a call"
    );
    let cases = [
        (RUNNERS, "no-runner-label", json!({"app": "web"})),
        (OPTED_OUT, "opted-out-namespace", runner_labels()),
        ("kube-system", "system-namespace", runner_labels()),
    ];
    for (ns, name, labels) in cases {
        let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
        create(&api, name, runner_template(labels, json!({}))).await?;
        check_untouched(&stored(&api, name).await?).with_context(|| format!("{ns}/{name}"))?;
    }
    let after = env.injector.metrics().await?.reviews();
    ensure!(
        after == before,
        "the webhook was called {} times for unselected pods",
        after - before
    );
    Ok(())
}

pub(crate) async fn invalid_annotation_rejected(env: &mut Env) -> Result<()> {
    let pods = runners(env);
    let key = dind_injector::contract::annotation::DRAIN_TIMEOUT;
    let bad = pod(
        "bad-annotation",
        runner_template(runner_labels(), json!({ key: "soon" })),
    )?;
    // The webhook, the annotation and the bad value.
    refused(&pods, &bad, &["inject.dind-injector.io", key, "\"soon\""]).await?;
    Ok(())
}

/// A server-side dry run of a runner pod: the answer is injected (native),
/// and nothing is stored. Whoever injects (webhook or policy).
pub(crate) async fn dry_run_injects_and_stores_nothing(pods: &Api<Pod>) -> Result<()> {
    let answer = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod("dry-run", runner_template(runner_labels(), json!({})))?,
        )
        .await?;
    check_injected(&answer, Mode::Native)?;
    ensure!(
        pods.get_opt("dry-run").await?.is_none(),
        "a dry-run pod was stored"
    );
    Ok(())
}

pub(crate) async fn dry_run_stores_nothing(env: &mut Env) -> Result<()> {
    let pods = runners(env);
    let before = env.injector.metrics().await?.reviews();
    dry_run_injects_and_stores_nothing(&pods).await?;
    let after = env.injector.metrics().await?.reviews();
    ensure!(
        after - before == 1.0,
        "dry run made {} reviews, want 1",
        after - before
    );
    ensure!(
        env.injector
            .log_until(|log| log.contains("\"dry_run\":true"))
            .await
            .contains("\"dry_run\":true"),
        "the review log does not say dry_run"
    );
    Ok(())
}

/// Registers the second webhook (once) and waits until it acts.
pub(crate) async fn ensure_extra(env: &mut Env) -> Result<()> {
    if env.extra.is_some() {
        return Ok(());
    }
    env.ca.issue(
        &env.dir,
        "extra",
        "e2e-extra",
        Usage::Server {
            sans: &["127.0.0.1"],
        },
    )?;
    let server = Extra::start(&env.dir).await?;
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        // Sorts after "dind-injector": called after ours.
        "metadata": {"name": "e2e-extra"},
        "webhooks": [{
            "name": "extra.e2e.dind-injector.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "url": format!("https://{}/", server.addr),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&env.ca.cert_pem),
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "objectSelector": {"matchLabels": {extra::LABEL: "true"}},
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": 10,
        }]
    }))?;
    Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .patch(
            "e2e-extra",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&config),
        )
        .await?;
    let pods = runners(env);
    await_admission(
        &pods,
        json!({ extra::LABEL: "true" }),
        extra::CONTAINER,
        "the second webhook to take effect",
    )
    .await?;
    env.extra = Some(server);
    Ok(())
}

/// Another webhook changes the pod after ours: with the shipped
/// matchConditions the apiserver does not even ask us again; without them
/// (components/no-match-conditions, clusters < 1.30) it asks, and we answer
/// "already injected". Either way: one dind.
pub(crate) async fn reinvocation_keeps_one_dind(env: &mut Env) -> Result<()> {
    ensure_extra(env).await?;
    let both = json!({"runner": "true", extra::LABEL: "true"});
    let pods = runners(env);
    for (variant, match_conditions, calls) in [
        ("with-conditions", true, 1.0),
        ("without-conditions", false, 2.0),
    ] {
        if !match_conditions {
            register_webhook(env, false).await?;
            wait_for_calls(
                env,
                "the configuration without matchConditions",
                both.clone(),
                2,
            )
            .await?;
        }
        let m = env.injector.metrics().await?;
        let (reviews, already) = (
            m.reviews(),
            m.sum(
                "dind_injector_reviews_total",
                &["reason=\"already-injected\""],
            ),
        );
        let extra_calls = env.extra.as_ref().map_or(0, Extra::calls);
        let name = format!("reinvoked-{variant}");
        create(&pods, &name, runner_template(both.clone(), json!({}))).await?;
        let p = stored(&pods, &name).await?;
        check_injected(&p, Mode::Native)?;
        ensure!(
            count_named(&p, extra::CONTAINER)? == 1,
            "{name}: the second webhook's container is missing"
        );
        let m = env.injector.metrics().await?;
        let (calls_now, already_now) = (
            m.reviews() - reviews,
            m.sum(
                "dind_injector_reviews_total",
                &["reason=\"already-injected\""],
            ) - already,
        );
        ensure!(
            calls_now == calls,
            "{name}: our webhook was called {calls_now} times, want {calls}"
        );
        ensure!(
            already_now == calls - 1.0,
            "{name}: {already_now} already-injected answers, want {}",
            calls - 1.0
        );
        let extra_now = env.extra.as_ref().map_or(0, Extra::calls) - extra_calls;
        ensure!(extra_now >= 1, "{name}: the second webhook was not called");
        println!("e2e:   {variant}: our webhook called {calls_now} time(s), the other {extra_now}");
    }
    register_webhook(env, true).await?;
    wait_for_calls(env, "the shipped configuration again", both, 1).await
}

/// `failurePolicy: Fail`: no runner pod without Docker, other pods unaffected.
pub(crate) async fn webhook_down_fails_closed(env: &mut Env) -> Result<()> {
    let pods = runners(env);
    env.injector.stop()?;
    let runner = pod("while-down", runner_template(runner_labels(), json!({})))?;
    refused(
        &pods,
        &runner,
        &["failed calling webhook \"inject.dind-injector.io\""],
    )
    .await?;
    create(
        &pods,
        "plain-while-down",
        runner_template(json!({"app": "web"}), json!({})),
    )
    .await?;
    check_untouched(&stored(&pods, "plain-while-down").await?)?;
    env.injector.start()?;
    let created = eventually("a runner pod after the restart", WAIT, || {
        let pods = pods.clone();
        async move {
            match pods
                .create(
                    &PostParams::default(),
                    &pod("after-restart", runner_template(runner_labels(), json!({})))?,
                )
                .await
            {
                Ok(p) => Ok(Some(p)),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await?;
    check_injected(&created, Mode::Native)
}

/// `serve --client-ca` (issue 13): the apiserver presents its webhook
/// client certificate through its AdmissionConfiguration's kubeConfigFile
/// (every other scenario's reviews go through it); a client without a
/// certificate from that CA gets no answer.
pub(crate) async fn webhook_requires_a_client_certificate(env: &mut Env) -> Result<()> {
    let with = env.injector.healthz(true).await?;
    ensure!(
        with.starts_with("HTTP/1.1 200"),
        "with a certificate: {with:?}"
    );
    let without = env.injector.healthz(false).await;
    ensure!(
        without.as_ref().map_or(true, |line| !line.contains("200")),
        "without a certificate the webhook answered: {without:?}"
    );
    let pods = runners(env);
    let created = pods
        .create(
            &PostParams::default(),
            &pod("client-cert", runner_template(runner_labels(), json!({})))?,
        )
        .await?;
    check_injected(&created, Mode::Native)
}

/// New serving certificates (same CA) while pods are being created.
pub(crate) async fn certificate_rotation_loses_nothing(env: &mut Env) -> Result<()> {
    let pods = runners(env);
    let stop = std::cell::Cell::new(false);
    let creator = async {
        let (mut created, mut failures) = (Vec::new(), Vec::new());
        let mut n = 0;
        while !stop.get() {
            n += 1;
            let name = format!("rotation-{n}");
            match pods
                .create(
                    &PostParams::default(),
                    &pod(&name, runner_template(runner_labels(), json!({})))?,
                )
                .await
            {
                Ok(p) => created.push(p),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Ok::<_, anyhow::Error>((created, failures))
    };
    let rotator = async {
        let result = async {
            let (mut served, _) = env.injector.served_and_file_cert().await?;
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                env.injector.issue_certs()?;
                let new = eventually("the new certificate to be served", WAIT, || async {
                    let (now, file) = env.injector.served_and_file_cert().await?;
                    Ok((now == file && now != served).then_some(now))
                })
                .await?;
                served = new;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        stop.set(true);
        result
    };
    let (created, rotated) = tokio::join!(creator, rotator);
    rotated?;
    let (created, failures) = created?;
    ensure!(
        failures.is_empty(),
        "creations failed during rotation: {failures:?}"
    );
    ensure!(
        created.len() >= 10,
        "only {} pods created during rotation",
        created.len()
    );
    for p in &created {
        check_injected(p, Mode::Native)?;
    }
    println!(
        "e2e:   {} pods created across 3 rotations, none failed",
        created.len()
    );
    Ok(())
}

/// docs/install.md: runner namespaces must be `privileged`; at `baseline`
/// Pod Security (which checks the mutated pod) refuses the dind container.
pub(crate) async fn pod_security_baseline_refuses_dind(env: &mut Env) -> Result<()> {
    let ns = "e2e-baseline";
    namespace(
        &env.client,
        ns,
        json!({"pod-security.kubernetes.io/enforce": "baseline"}),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let runner = pod("runner", runner_template(runner_labels(), json!({})))?;
    refused(
        &pods,
        &runner,
        &["PodSecurity", "privileged", "container \"dind\""],
    )
    .await?;
    // The same namespace takes pods the webhook leaves alone.
    create(
        &pods,
        "web",
        runner_template(json!({"app": "web"}), json!({})),
    )
    .await?;
    Ok(())
}

/// The shipped Deployment (manifests/base) in its `restricted` namespace:
/// the ReplicaSet controller's pods pass the apiserver's Pod Security.
pub(crate) async fn own_deployment_passes_restricted(env: &mut Env) -> Result<()> {
    let path = root().join("manifests/base/deployment.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let deployment: Value =
        serde_norway::from_str(&text).with_context(|| path.display().to_string())?;
    let ns = deployment["metadata"]["namespace"]
        .as_str()
        .context("namespace")?;
    let replicas = deployment["spec"]["replicas"]
        .as_u64()
        .context("replicas")? as usize;
    let levels = Api::<Namespace>::all(env.client.clone()).get(ns).await?;
    let enforce = levels
        .metadata
        .labels
        .unwrap_or_default()
        .remove("pod-security.kubernetes.io/enforce");
    ensure!(
        enforce.as_deref() == Some("restricted"),
        "namespace {ns} enforces {enforce:?}, want restricted"
    );
    apply_text(&env.client, &text, &path.display().to_string(), None, false).await?;
    let selector = "app.kubernetes.io/name=dind-injector,app.kubernetes.io/component=webhook";
    let pods = wait_for_pods(env, ns, selector, replicas).await?;
    for p in &pods {
        ensure!(
            p.metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(dind_injector::contract::annotation::STATUS)),
            "the webhook's own pod was injected"
        );
    }
    Ok(())
}

/// The path of a tool `make e2e` passes in the environment.
fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os(name)
        .with_context(|| format!("{name} is not set: run `make e2e`, which builds it"))?;
    Ok(PathBuf::from(path))
}

/// Everything we ship, as rendered for users, through the real apiserver's
/// validation, defaulting and admission (CEL in matchConditions included),
/// which is stricter than any schema: a server-side dry run of every object.
pub(crate) async fn shipped_manifests_accepted(env: &mut Env) -> Result<()> {
    let (helm, kustomize) = (tool("HELM")?, tool("KUSTOMIZE")?);
    let release_ns = "e2e-helm";
    namespace(&env.client, release_ns, json!({})).await?;
    let chart = root().join("manifests/helm/dind-injector");
    let mut kustomize_base = Command::new(&kustomize);
    kustomize_base
        .arg("build")
        .arg(root().join("manifests/base"));
    let helm_template = |set: &[&str]| {
        let mut command = Command::new(&helm);
        command
            .args(["template", "ci"])
            .arg(&chart)
            .args(["--namespace", release_ns]);
        for value in set {
            command.args(["--set", value]);
        }
        command
    };
    // delivery=policy: the ConfigMap, the four policy objects (the chart's
    // shipped rendering, renamed, its namespace selection) and the test hooks.
    let renders = [
        ("kustomize build manifests/base", kustomize_base, 8),
        ("helm template (defaults)", helm_template(&[]), 8),
        (
            "helm template --set config.sidecarMode=native",
            helm_template(&["config.sidecarMode=native"]),
            8,
        ),
        (
            "helm template --set delivery=policy",
            helm_template(&["delivery=policy"]),
            7,
        ),
    ];
    for (what, mut command, least) in renders {
        let out = command
            .output()
            .with_context(|| format!("running {what}"))?;
        ensure!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout)?;
        let applied = apply_text(&env.client, &text, what, Some(release_ns), true).await?;
        ensure!(applied >= least, "{what}: only {applied} objects");
        println!("e2e:   {what}: {applied} objects accepted (server-side dry run)");
    }
    Ok(())
}

/// A node with a kubelet older than 1.29 joins: auto mode turns classic, and
/// back to native when it leaves.
pub(crate) async fn auto_mode_follows_old_nodes(env: &mut Env) -> Result<()> {
    let nodes: Api<Node> = Api::all(env.client.clone());
    let info = json!({
        "machineID": "e2e", "systemUUID": "e2e", "bootID": "e2e", "kernelVersion": "6.1.0",
        "osImage": "Debian", "containerRuntimeVersion": "containerd://1.7.0",
        "kubeletVersion": "v1.28.15", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"
    });
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "e2e-old-kubelet"}
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    nodes
        .patch_status(
            "e2e-old-kubelet",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeInfo": info}})),
        )
        .await?;
    sidecar_mode_is(env, Mode::Classic).await?;
    let pods = runners(env);
    create(
        &pods,
        "old-node-present",
        runner_template(runner_labels(), json!({})),
    )
    .await?;
    check_injected(&stored(&pods, "old-node-present").await?, Mode::Classic)?;
    nodes.delete("e2e-old-kubelet", &Default::default()).await?;
    sidecar_mode_is(env, Mode::Native).await?;
    create(
        &pods,
        "old-node-gone",
        runner_template(runner_labels(), json!({})),
    )
    .await?;
    check_injected(&stored(&pods, "old-node-gone").await?, Mode::Native)
}
