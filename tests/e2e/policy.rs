//! The policy delivery (`dind-injector policy`) against the real apiserver:
//! the rendered objects are accepted; every fixture pod of the golden tests,
//! a runner Job and a ReplicaSet are created once through the webhook and
//! once through the policy and the stored pods compared field by field;
//! invalid annotations are refused; a dry run stores nothing; a second
//! webhook does not lead to a second dind.
//!
//! The policies are bound to namespaces of their own, which the webhook
//! leaves alone (the documented opt-out label), and removed at the end of
//! each scenario, so the webhook scenarios are unaffected.

use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::pods::{
    await_admission, check_injected, count_named, pod, runner_labels, runner_template, Mode,
};
use crate::procs::eventually;
use crate::scenarios::ensure_extra;
use crate::setup::{apply_text, namespace};
use crate::{extra, on_node};
use crate::{injector, root, Env, FIELD_MANAGER, WAIT};

/// Where pods go through the webhook (selected like any runner namespace).
const VIA_WEBHOOK: &str = "e2e-policy-webhook";

/// The documented differences between the two deliveries, per fixture:
/// pods the webhook injects and the policy refuses (docs/policy.md).
const POLICY_REFUSES: &[(&str, &str)] = &[
    (
        "entrypoint-annotation",
        "annotation dind-injector.io/entrypoint: not supported by dind-injector's admission policy",
    ),
    (
        "name-collisions",
        "volume dind-certs: the pod already has a volume of that name",
    ),
    (
        "runner-by-annotation",
        "annotation dind-injector.io/work-dir: not supported by dind-injector's admission policy",
    ),
    (
        "runner-with-init-and-storage-limit",
        "not supported by dind-injector's admission policy",
    ),
];

/// Injected by both, differently (docs/policy.md): per pod, the paths
/// (prefixes of [`differences`]' lines) that may differ. None now: a
/// classic runner without a command (`unknown-image-no-command-classic`)
/// is watched by the sidecar in both deliveries (issue 16).
const POLICY_DIFFERS: &[(&str, &[&str])] = &[];

/// The rendered policies, for the config the webhook runs with.
fn render(env: &Env, mode: Option<Mode>) -> Result<Vec<Value>> {
    let mut command = Command::new(injector::bin());
    command
        .arg("policy")
        .arg("--config")
        .arg(env.dir.join("config.yaml"));
    if let Some(mode) = mode {
        command.args(["--mode", mode.as_str()]);
    }
    let out = command.output().context("running dind-injector policy")?;
    ensure!(
        out.status.success(),
        "dind-injector policy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let mut objects = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        objects.push(serde::Deserialize::deserialize(doc)?);
    }
    ensure!(
        objects.len() == 4,
        "{} objects rendered, want 4",
        objects.len()
    );
    Ok(objects)
}

/// The four objects, renamed after `ns` and matching only pods in `ns`.
pub(crate) async fn install(env: &Env, ns: &str, mode: Option<Mode>) -> Result<()> {
    let name = format!("dind-injector-{ns}");
    let only_here = json!({"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}
    ]});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for mut object in render(env, mode)? {
        object["metadata"]["name"] = json!(name);
        if object["spec"]["policyName"].is_string() {
            object["spec"]["policyName"] = json!(name);
        } else {
            object["spec"]["matchConstraints"]["namespaceSelector"] = only_here.clone();
        }
        let c = env.client.clone();
        match object["kind"].as_str().unwrap_or_default() {
            "MutatingAdmissionPolicy" => Api::<MutatingAdmissionPolicy>::all(c)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(drop),
            "MutatingAdmissionPolicyBinding" => Api::<MutatingAdmissionPolicyBinding>::all(c)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(drop),
            "ValidatingAdmissionPolicy" => Api::<ValidatingAdmissionPolicy>::all(c)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(drop),
            "ValidatingAdmissionPolicyBinding" => Api::<ValidatingAdmissionPolicyBinding>::all(c)
                .patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(drop),
            other => bail!("unexpected kind {other}"),
        }
        .with_context(|| format!("applying {} {name}", object["kind"]))?;
    }
    // Policies reach admission through informers: dry-run pods until one
    // comes back injected.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    await_admission(
        &pods,
        runner_labels(),
        "dind",
        &format!("the policy in {ns} to take effect"),
    )
    .await?;
    // The validating policy has an informer of its own.
    eventually(
        &format!("the validating policy in {ns} to take effect"),
        WAIT,
        || {
            let pods = pods.clone();
            async move {
                let probe = pod(
                    "probe",
                    runner_template(runner_labels(), json!({"dind-injector.io/typo": "1"})),
                )?;
                let dry_run = PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                Ok(match pods.create(&dry_run, &probe).await {
                    Err(kube::Error::Api(status))
                        if status.message.contains("ValidatingAdmissionPolicy") =>
                    {
                        Some(())
                    }
                    _ => None,
                })
            }
        },
    )
    .await
}

pub(crate) async fn uninstall(env: &Env, ns: &str) -> Result<()> {
    let name = format!("dind-injector-{ns}");
    let dp = DeleteParams::default();
    let c = env.client.clone();
    Api::<MutatingAdmissionPolicyBinding>::all(c.clone())
        .delete(&name, &dp)
        .await?;
    Api::<MutatingAdmissionPolicy>::all(c.clone())
        .delete(&name, &dp)
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(c.clone())
        .delete(&name, &dp)
        .await?;
    Api::<ValidatingAdmissionPolicy>::all(c)
        .delete(&name, &dp)
        .await?;
    Ok(())
}

/// A namespace the webhook leaves alone, for the policy.
pub(crate) async fn policy_namespace(env: &Env, ns: &str) -> Result<()> {
    namespace(
        &env.client,
        ns,
        json!({"dind-injector.io/injection": "disabled"}),
    )
    .await
}

/// The rendered objects as they ship, through the apiserver's validation
/// (CEL compiled) as a server-side dry run.
pub(crate) async fn policy_objects_accepted(env: &mut Env) -> Result<()> {
    for mode in [Mode::Classic, Mode::Native] {
        let objects = render(env, Some(mode))?;
        let mut text = String::new();
        for o in &objects {
            text.push_str("---\n");
            text.push_str(&serde_norway::to_string(o)?);
        }
        let what = format!("dind-injector policy --mode {}", mode.as_str());
        let applied = apply_text(&env.client, &text, &what, None, true).await?;
        println!("e2e:   {what}: {applied} objects accepted (server-side dry run)");
    }
    // The kustomize component, as shipped (base + component).
    let kustomize =
        std::env::var_os("KUSTOMIZE").context("KUSTOMIZE is not set: run `make e2e`")?;
    let overlay = env.dir.join("policy-overlay");
    std::fs::create_dir_all(&overlay)?;
    // kustomize takes no absolute roots: the repository, relative to the overlay.
    let up = "../".repeat(overlay.components().count().saturating_sub(1));
    let manifests = format!(
        "{up}{}",
        root()
            .join("manifests")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [{manifests}/base]\ncomponents: [{manifests}/components/policy-delivery]\n"
        ),
    )?;
    let out = Command::new(kustomize)
        .arg("build")
        .arg("--load-restrictor=LoadRestrictionsNone")
        .arg(&overlay)
        .output()
        .context("running kustomize")?;
    ensure!(
        out.status.success(),
        "kustomize build (base + components/policy-delivery): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let what = "kustomize build (base + components/policy-delivery)";
    let applied = apply_text(
        &env.client,
        &String::from_utf8(out.stdout)?,
        what,
        None,
        true,
    )
    .await?;
    ensure!(
        applied == 4,
        "{what}: {applied} objects, want the 4 policies"
    );
    println!("e2e:   {what}: {applied} objects accepted (server-side dry run)");
    Ok(())
}

/// Every fixture as a pod to create in `ns`: named after its file, never
/// scheduled, no owner (the garbage collector would delete it).
fn fixtures() -> Result<Vec<(String, Value)>> {
    let dir = root().join("tests/fixtures/pods");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("name")?
            .to_string();
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let meta = v["metadata"].as_object_mut().context("metadata")?;
        meta.remove("generateName");
        meta.remove("ownerReferences");
        meta.insert("name".into(), json!(name));
        v["spec"]["schedulerName"] = json!("e2e-admission-only");
        out.push((name, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // runner-by-annotation also moves the work dir, which the policy
    // refuses; the runner-container annotation alone is honoured.
    let mut alone = out
        .iter()
        .find(|(n, _)| n == "runner-by-annotation")
        .context("fixture runner-by-annotation")?
        .1
        .clone();
    let annotations = alone["metadata"]["annotations"]
        .as_object_mut()
        .context("annotations")?;
    annotations.retain(|k, _| k == "dind-injector.io/runner-container");
    alone["metadata"]["name"] = json!("runner-container-annotation");
    out.push(("runner-container-annotation".into(), alone));
    Ok(out)
}

/// What creating a pod gave: the stored pod, or the refusal's message.
async fn create(api: &Api<Pod>, v: &Value) -> Result<std::result::Result<Value, String>> {
    let p: Pod = serde_json::from_value(v.clone())?;
    match api.create(&PostParams::default(), &p).await {
        Ok(created) => {
            let name = created.metadata.name.clone().context("name")?;
            Ok(Ok(serde_json::to_value(api.get(&name).await?)?))
        }
        Err(kube::Error::Api(status)) => Ok(Err(status.message)),
        Err(other) => Err(other.into()),
    }
}

/// The parts of a stored pod that admission decides: labels, annotations,
/// the spec. The ServiceAccount plugin's token volume has a random suffix
/// per pod (`kube-api-access-x7k2p`): compared without it.
fn admitted(pod: &Value) -> Value {
    let mut v = json!({
        "labels": pod["metadata"]["labels"],
        "annotations": pod["metadata"]["annotations"],
        "spec": pod["spec"],
    });
    unsuffix_token_volume(&mut v);
    v
}

fn unsuffix_token_volume(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("kube-api-access-") => *s = "kube-api-access-*".into(),
        Value::Array(items) => items.iter_mut().for_each(unsuffix_token_volume),
        Value::Object(map) => map.values_mut().for_each(unsuffix_token_volume),
        _ => {}
    }
}

/// Every path where `a` and `b` differ, with both values.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}/{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}/{i}"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: webhook {a} | policy {b}")),
        _ => {}
    }
}

/// Creates each pod in both namespaces and compares; the differences
/// found, by pod name.
async fn compare(env: &Env, policy_ns: &str, pods: &[(String, Value)]) -> Result<Vec<String>> {
    let via_webhook: Api<Pod> = Api::namespaced(env.client.clone(), VIA_WEBHOOK);
    let via_policy: Api<Pod> = Api::namespaced(env.client.clone(), policy_ns);
    let mut problems = Vec::new();
    for (name, v) in pods {
        let w = create(&via_webhook, v).await?;
        let p = create(&via_policy, v).await?;
        let fixture = name.trim_end_matches("-classic");
        let documented = POLICY_REFUSES.iter().find(|(n, _)| *n == fixture);
        match (&w, &p, documented) {
            (Ok(w), Ok(p), None) => {
                let mut diff = Vec::new();
                differences("", &admitted(w), &admitted(p), &mut diff);
                let allowed = POLICY_DIFFERS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(&[][..], |(_, paths)| *paths);
                let (documented, rest): (Vec<String>, Vec<String>) = diff
                    .into_iter()
                    .partition(|d| allowed.iter().any(|a| d.starts_with(a)));
                if !documented.is_empty() {
                    println!(
                        "e2e:   {name}: documented differences:\n    {}",
                        documented.join("\n    ")
                    );
                }
                let diff = rest;
                if diff.is_empty() {
                    let injected =
                        w["metadata"]["annotations"]["dind-injector.io/status"].is_string();
                    println!(
                        "e2e:   {name}: identical ({})",
                        if injected { "injected" } else { "left alone" }
                    );
                } else {
                    println!(
                        "e2e:   {name}: {} differences:\n    {}",
                        diff.len(),
                        diff.join("\n    ")
                    );
                    problems.push(format!("{name}: {}", diff.join("; ")));
                }
            }
            (Err(w), Err(p), None) => {
                println!("e2e:   {name}: both refuse\n    webhook: {w}\n    policy:  {p}");
                // The same words: the webhook's denial (after the
                // apiserver's prefix) is in the policy's.
                let words = w
                    .split_once("denied the request: ")
                    .map_or(w.as_str(), |(_, m)| m);
                if !p.contains(words) {
                    problems.push(format!("{name}: the refusals differ: {w} | {p}"));
                }
            }
            (Ok(_), Err(p), Some((_, says))) if p.contains(says) => {
                println!("e2e:   {name}: documented difference, the policy refuses: {p}")
            }
            (w, p, _) => {
                let show = |r: &std::result::Result<Value, String>| match r {
                    Ok(_) => "created".to_string(),
                    Err(m) => format!("refused: {m}"),
                };
                println!("e2e:   {name}: webhook {} | policy {}", show(w), show(p));
                problems.push(format!("{name}: webhook {} | policy {}", show(w), show(p)));
            }
        }
    }
    Ok(problems)
}

/// Waits for `count` pods of a workload in `ns`; their admitted parts, with
/// what differs from pod to pod (names of generated things) left out.
async fn workload_pods(env: &Env, ns: &str, selector: &str) -> Result<Value> {
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let pods = eventually(&format!("pods of {selector} in {ns}"), WAIT, || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default().labels(selector)).await?;
            Ok(list.items.into_iter().next())
        }
    })
    .await?;
    let mut v = admitted(&serde_json::to_value(pods)?);
    // Generated per pod by the controllers: not admission's doing.
    for key in [
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "pod-template-hash",
    ] {
        if let Some(labels) = v["labels"].as_object_mut() {
            labels.remove(key);
        }
    }
    Ok(v)
}

/// A Job and a ReplicaSet through both deliveries.
async fn compare_workloads(env: &Env, policy_ns: &str) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let template = runner_template(json!({"runner": "true", "app": "e2e-policy"}), json!({}));
    for ns in [VIA_WEBHOOK, policy_ns] {
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "policy-job"},
            "spec": {"backoffLimit": 0, "template": template},
        }))?;
        Api::<Job>::namespaced(env.client.clone(), ns)
            .create(&PostParams::default(), &job)
            .await
            .with_context(|| format!("job in {ns}"))?;
        let mut rs_template = template.clone();
        rs_template["spec"]["restartPolicy"] = json!("Always");
        rs_template["metadata"]["labels"]["rs"] = json!("policy-rs");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "policy-rs"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"rs": "policy-rs"}}, "template": rs_template},
        }))?;
        Api::<ReplicaSet>::namespaced(env.client.clone(), ns)
            .create(&PostParams::default(), &rs)
            .await
            .with_context(|| format!("replicaset in {ns}"))?;
    }
    for (what, selector) in [
        ("Job", "job-name=policy-job"),
        ("ReplicaSet", "rs=policy-rs"),
    ] {
        let w = workload_pods(env, VIA_WEBHOOK, selector).await?;
        let p = workload_pods(env, policy_ns, selector).await?;
        let mut diff = Vec::new();
        differences("", &w, &p, &mut diff);
        if diff.is_empty() {
            println!("e2e:   {what} pod: identical");
        } else {
            println!(
                "e2e:   {what} pod: {} differences:\n    {}",
                diff.len(),
                diff.join("\n    ")
            );
            problems.push(format!("{what}: {}", diff.join("; ")));
        }
    }
    Ok(problems)
}

/// Every fixture, a Job and a ReplicaSet through the webhook and through
/// the policy (native, as the webhook's auto mode decides on this cluster;
/// then classic, both asked for classic by annotation): stored pods equal
/// but for the documented differences.
pub(crate) async fn policy_pods_match_webhook(env: &mut Env) -> Result<()> {
    namespace(&env.client, VIA_WEBHOOK, json!({})).await?;
    let mut problems = Vec::new();
    let native_ns = "e2e-policy-native";
    policy_namespace(env, native_ns).await?;
    install(env, native_ns, None).await?;
    println!("e2e:   native: fixtures");
    let result = async {
        problems.extend(compare(env, native_ns, &fixtures()?).await?);
        problems.extend(compare_workloads(env, native_ns).await?);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    uninstall(env, native_ns).await?;
    result?;

    // Classic: the same fixtures asking for classic mode, webhook vs the
    // policy rendered in classic mode; only the pods in a fresh namespace.
    let classic_ns = "e2e-policy-classic";
    policy_namespace(env, classic_ns).await?;
    install(env, classic_ns, Some(Mode::Classic)).await?;
    println!(
        "e2e:   classic: fixtures with {}: classic",
        dind_injector::contract::annotation::SIDECAR_MODE
    );
    let result = async {
        let mut pods = Vec::new();
        for (name, mut v) in fixtures()? {
            let annotations = v["metadata"]
                .as_object_mut()
                .context("metadata")?
                .entry("annotations")
                .or_insert(json!({}));
            if annotations.get("dind-injector.io/sidecar-mode").is_some() {
                continue;
            }
            annotations["dind-injector.io/sidecar-mode"] = json!("classic");
            let name = format!("{name}-classic");
            v["metadata"]["name"] = json!(name);
            pods.push((name, v));
        }
        problems.extend(compare(env, classic_ns, &pods).await?);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    uninstall(env, classic_ns).await?;
    result?;
    ensure!(
        problems.is_empty(),
        "undocumented differences between the deliveries:\n{}",
        problems.join("\n")
    );
    Ok(())
}

/// Invalid and misspelt annotations are refused by the policy with a
/// message naming the annotation.
pub(crate) async fn policy_invalid_annotations_refused(env: &mut Env) -> Result<()> {
    let ns = "e2e-policy-invalid";
    policy_namespace(env, ns).await?;
    install(env, ns, None).await?;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let result = async {
        for (i, (key, value, says)) in [
            (
                "dind-injector.io/drain-timout",
                "60",
                "no such dind-injector annotation",
            ),
            (
                "dind-injector.io/inject",
                "maybe",
                "expected \"true\" or \"false\"",
            ),
            (
                "dind-injector.io/sidecar-mode",
                "sidecar",
                "expected classic, native or auto",
            ),
            (
                "dind-injector.io/runner-container",
                "agent",
                "no container named",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let p = pod(
                &format!("bad-{i}"),
                runner_template(runner_labels(), json!({ key: value })),
            )?;
            let message = match api.create(&PostParams::default(), &p).await {
                Ok(_) => bail!("{key}: {value:?} was accepted"),
                Err(kube::Error::Api(status)) => status.message,
                Err(other) => bail!("{key}: {other}"),
            };
            println!("e2e:   the user sees: {message}");
            ensure!(
                message.contains(key) && message.contains(says),
                "the refusal does not name {key} and say {says:?}: {message}"
            );
        }
        Ok(())
    }
    .await;
    uninstall(env, ns).await?;
    result
}

/// A dry run through the policy answers the injected pod and stores nothing.
pub(crate) async fn policy_dry_run_stores_nothing(env: &mut Env) -> Result<()> {
    let ns = "e2e-policy-dry-run";
    policy_namespace(env, ns).await?;
    install(env, ns, None).await?;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let result = crate::scenarios::dry_run_injects_and_stores_nothing(&api).await;
    uninstall(env, ns).await?;
    result
}

/// A second mutating webhook that adds a container: the policy is
/// reinvoked (IfNeeded) and skips the pod as already injected; one dind.
pub(crate) async fn policy_reinvocation_keeps_one_dind(env: &mut Env) -> Result<()> {
    ensure_extra(env).await?;
    let ns = "e2e-policy-reinvocation";
    policy_namespace(env, ns).await?;
    install(env, ns, None).await?;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let result = async {
        let labels = json!({"runner": "true", extra::LABEL: "true"});
        api.create(
            &PostParams::default(),
            &pod("reinvoked", runner_template(labels, json!({})))?,
        )
        .await?;
        let p = api.get("reinvoked").await?;
        check_injected(&p, Mode::Native)?;
        ensure!(
            count_named(&p, extra::CONTAINER)? == 1,
            "the second webhook's container is missing"
        );
        ensure!(count_named(&p, "dind")? == 1, "more than one dind");
        Ok(())
    }
    .await;
    uninstall(env, ns).await?;
    result
}

/// On the node: a runner Job injected by the policy (classic and native,
/// each policy in a namespace of its own) completes, as the webhook's does;
/// so does one whose runner sets no command and whose image the policy
/// does not know.
pub(crate) async fn node_policy_job_completes(env: &mut Env) -> Result<()> {
    let env = &*env;
    let ns = |mode: Mode| format!("e2e-policy-node-{}", mode.as_str());
    for mode in [Mode::Classic, Mode::Native] {
        policy_namespace(env, &ns(mode)).await?;
        install(env, &ns(mode), Some(mode)).await?;
    }
    let mut result = on_node::both(|mode| {
        let ns = ns(mode);
        async move { on_node::job_runs_docker(env, &ns, mode, "policy-job").await }
    })
    .await;
    // Issue 16: a runner without a command, its image unknown to the
    // policy: in classic mode the sidecar watches it, so the Job completes.
    if result.is_ok() {
        result = on_node::both(|mode| {
            let ns = ns(mode);
            async move {
                on_node::runner_without_command_completes(env, &ns, mode, "policy-entrypoint").await
            }
        })
        .await;
    }
    for mode in [Mode::Classic, Mode::Native] {
        uninstall(env, &ns(mode)).await?;
    }
    result
}
