//! Issue 16 through the real apiserver: a runner without a command, whose
//! image is private, gets its image's ENTRYPOINT from its registry with the
//! credentials of a pull Secret the webhook reads from the apiserver, with
//! exactly the rights the project ships for that (components/pull-secrets,
//! the chart's rule with `config.registry.readPullSecrets`).
//!
//! Debian's docker-registry runs in the run's network namespace on
//! 127.0.0.1, TLS from a CA of its own that the webhook trusts
//! (`registry.caFile`), basic auth (htpasswd): anonymous pulls are refused.
//! The pods are only admitted (a scheduler name no scheduler answers to);
//! what is checked is the pod the apiserver stored, and the webhook's own
//! review line for each. Every case pulls its own tag of the one image: the
//! webhook caches by image reference, whoever asked.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

use crate::injector;
use crate::pods::{
    check_injected_running, check_injected_unsupervised, pod, runner_labels, runner_template, Mode,
};
use crate::procs::{eventually, free_port, Proc};
use crate::setup::{apply_text, namespace};
use crate::{root, Env, WAIT};

#[path = "../registry/serve.rs"]
mod serve;

/// The runners' namespace, and one with a Secret of the same name that
/// must never be used for them.
const NS: &str = "e2e-pull-secrets";
const OTHER_NS: &str = "e2e-pull-secrets-other";
/// The pod's own pull Secret, its ServiceAccount's, and the name that
/// exists only in [`OTHER_NS`].
const POD_SECRET: &str = "regcred";
const ACCOUNT_SECRET: &str = "regcred-account";
const ELSEWHERE_SECRET: &str = "regcred-elsewhere";
const ACCOUNT: &str = "builder";
/// The webhook's identity, as the shipped RBAC binds it.
const IDENTITY: &str = "system:serviceaccount:dind-injector:dind-injector";
const RBAC_FILE: &str = "manifests/components/pull-secrets/rbac.yaml";
/// The private image's ENTRYPOINT (tests/registry/push-images.py).
const ENTRYPOINT: &str = "/private.sh";
/// Each case's tag of the private image.
const TAGS: [&str; 6] = [
    "no-rbac",
    "pod-secret",
    "account-secret",
    "account-read",
    "anonymous",
    "elsewhere",
];

pub(crate) async fn pull_secrets_read_through_the_apiserver(env: &mut Env) -> Result<()> {
    let dir = env.dir.join("pull-secrets");
    std::fs::create_dir_all(&dir)?;
    let (_registry, host) = registry(&dir)?;
    let config = webhook_config(env, &dir)?;
    env.injector.stop()?;
    let shipped = env.injector.set_config(&config);
    let result = match env.injector.start() {
        Ok(()) => cases(env, &host).await,
        Err(e) => Err(e),
    };
    // The other scenarios run with the e2e config and the base's RBAC,
    // whatever happened here.
    let _ = env.injector.stop();
    env.injector.set_config(&shipped);
    env.injector.start()?;
    remove_rbac(env).await?;
    for ns in [NS, OTHER_NS] {
        Api::<Namespace>::all(env.client.clone())
            .delete(ns, &DeleteParams::background())
            .await?;
    }
    let log = env.injector.log();
    result.with_context(|| {
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .filter(|l| l.contains("registry"))
            .take(15)
            .collect();
        format!(
            "webhook log (registry lines, newest first):\n{}",
            tail.join("\n")
        )
    })
}

/// The registry with its own CA (from `dind-injector certs`), basic auth,
/// the private image pushed under every case's tag; its `host:port`.
fn registry(dir: &Path) -> Result<(Proc, String)> {
    let certs = dir.join("registry-certs");
    injector::certs(&certs)?;
    let port = free_port()?;
    let host = format!("127.0.0.1:{port}");
    let config = serve::write_config(
        dir,
        port,
        Some((&certs.join("tls.crt"), &certs.join("tls.key"))),
        true,
    )?;
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(config);
    let mut proc = Proc::spawn("docker-registry", cmd, &dir.join("registry.log"))?;
    serve::wait_until_listening(port, WAIT, || {
        proc.check_alive().map_err(|e| format!("{e:#}"))
    })
    .map_err(anyhow::Error::msg)?;
    let user = format!("{}:{}", serve::USER, serve::PASSWORD);
    let out = serve::push_command(
        &root(),
        &format!("https://{host}"),
        &certs.join("ca.crt"),
        Some(&user),
        &TAGS,
    )
    .output()
    .context("python3 tests/registry/push-images.py")?;
    ensure!(
        out.status.success(),
        "pushing the private image failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proc.log_tail(20)
    );
    Ok((proc, host))
}

/// The e2e config, reading pull secrets and trusting the registry's CA. The
/// budget is well under the webhook's 10 s timeout and far over what a
/// look-up on the loopback takes, so that a busy machine cannot turn a
/// found command into the fallback.
fn webhook_config(env: &Env, dir: &Path) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(env.dir.join("config.yaml"))?;
    let mut config: Value = serde_norway::from_str(&text)?;
    config["registry"]["readPullSecrets"] = json!(true);
    config["registry"]["caFile"] = json!(dir.join("registry-certs/ca.crt"));
    config["registry"]["budgetMilliseconds"] = json!(5000);
    let path = dir.join("config.yaml");
    std::fs::write(&path, serde_norway::to_string(&config)?)?;
    Ok(path)
}

/// A `kubernetes.io/dockerconfigjson` Secret with the registry's credentials.
fn pull_secret(name: &str, ns: &str, host: &str) -> Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        serve::USER,
        serve::PASSWORD
    ));
    let config = json!({"auths": {host: {"auth": auth}}}).to_string();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": name, "namespace": ns},
           "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}})
}

/// Whether the webhook's identity may `get` `resource` in [`NS`], as the
/// apiserver's authorizer answers.
async fn may_get(env: &Env, resource: &str) -> Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(IDENTITY.into()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(NS.into()),
                verb: Some("get".into()),
                resource: Some(resource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(env.client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn remove_rbac(env: &Env) -> Result<()> {
    let name = "dind-injector-pull-secrets";
    let _ = Api::<ClusterRoleBinding>::all(env.client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(env.client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    Ok(())
}

/// A classic runner pod without a command, its image the private one's `tag`.
fn runner(host: &str, tag: &str, spec: Value) -> Result<Pod> {
    let annotations = json!({ dind_injector::contract::annotation::SIDECAR_MODE: "classic" });
    let mut template = runner_template(runner_labels(), annotations);
    template["spec"]["containers"][0]["image"] = json!(format!("{host}/private/runner:{tag}"));
    if let (Some(into), Some(extra)) = (template["spec"].as_object_mut(), spec.as_object()) {
        into.extend(extra.clone());
    }
    pod(tag, template)
}

/// The webhook's review line for pod `name` in [`NS`]: how the runner's
/// command was found.
async fn command_source(env: &Env, name: &str) -> Result<String> {
    let find = |log: &str| {
        log.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "review" && v["namespace"] == NS && v["pod"] == name)
            .find(|v| v["dry_run"] == false)
            .and_then(|v| v["command_source"].as_str().map(str::to_string))
    };
    find(&env.injector.log_until(|log| find(log).is_some()).await)
        .with_context(|| format!("no review line for pod {name} in the webhook log"))
}

async fn cases(env: &Env, host: &str) -> Result<()> {
    namespace(&env.client, NS, json!({})).await?;
    namespace(&env.client, OTHER_NS, json!({})).await?;
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": ACCOUNT, "namespace": NS},
        "imagePullSecrets": [{"name": ACCOUNT_SECRET}]});
    for object in [
        pull_secret(POD_SECRET, NS, host),
        pull_secret(ACCOUNT_SECRET, NS, host),
        // Valid for the registry, but in another namespace.
        pull_secret(ELSEWHERE_SECRET, OTHER_NS, host),
        account,
    ] {
        apply_text(
            &env.client,
            &serde_norway::to_string(&object)?,
            "pull secrets",
            None,
            false,
        )
        .await?;
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    // The case's runner pod (named for its tag), as stored.
    let create = |tag: &'static str, spec: Value| {
        let (pods, pod) = (pods.clone(), runner(host, tag, spec));
        async move {
            pods.create(&PostParams::default(), &pod?)
                .await
                .with_context(|| format!("creating pod {tag}"))?;
            pods.get(tag)
                .await
                .with_context(|| format!("reading pod {tag}"))
        }
    };

    // The base's RBAC only: the webhook may not read Secrets, so even the
    // pod's own pull Secret does not help. This is what makes the cases
    // below depend on the shipped rule.
    ensure!(
        !may_get(env, "secrets").await? && !may_get(env, "serviceaccounts").await?,
        "the webhook's identity reads Secrets or ServiceAccounts without components/pull-secrets"
    );
    let stored = create(TAGS[0], json!({"imagePullSecrets": [{"name": POD_SECRET}]})).await?;
    check_injected_unsupervised(&stored, Mode::Classic)?;
    ensure!(
        env.injector
            .log()
            .lines()
            .any(|l| l.contains("registry: cannot read the pull secret") && l.contains("forbidden")),
        "no forbidden read of the pull secret in the webhook's log"
    );
    println!("e2e:   base RBAC only: the pull secret cannot be read (forbidden), the runner is unsupervised, watched by the sidecar");

    apply_text(
        &env.client,
        &std::fs::read_to_string(root().join(RBAC_FILE))?,
        RBAC_FILE,
        None,
        false,
    )
    .await?;
    eventually(
        "the pull-secrets RBAC to take effect",
        WAIT,
        || async move {
            Ok(
                (may_get(env, "secrets").await? && may_get(env, "serviceaccounts").await?)
                    .then_some(()),
            )
        },
    )
    .await?;

    // (a) The pod's own imagePullSecrets.
    let stored = create(TAGS[1], json!({"imagePullSecrets": [{"name": POD_SECRET}]})).await?;
    check_injected_running(&stored, Mode::Classic, ENTRYPOINT)?;
    println!(
        "e2e:   pod's imagePullSecrets: supervised around the image's ENTRYPOINT {ENTRYPOINT}"
    );

    // (b) None on the pod, one on its ServiceAccount: the apiserver's
    // ServiceAccount admission plugin copies it into the pod before any
    // webhook runs, so the webhook finds it on the pod.
    let stored = create(TAGS[2], json!({"serviceAccountName": ACCOUNT})).await?;
    check_injected_running(&stored, Mode::Classic, ENTRYPOINT)?;
    let copied = serde_json::to_value(
        stored
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone()),
    )?;
    ensure!(
        copied == json!([{"name": ACCOUNT_SECRET}]),
        "the ServiceAccount's imagePullSecrets were not copied into the pod: {copied}"
    );
    println!("e2e:   ServiceAccount's imagePullSecrets (copied into the pod by the apiserver): supervised");

    // (b') The pod names a Secret that does not exist, so the apiserver
    // copies nothing: only the webhook's own read of the ServiceAccount
    // finds the credentials.
    let stored = create(
        TAGS[3],
        json!({"serviceAccountName": ACCOUNT, "imagePullSecrets": [{"name": "absent"}]}),
    )
    .await?;
    check_injected_running(&stored, Mode::Classic, ENTRYPOINT)?;
    println!("e2e:   ServiceAccount's imagePullSecrets read by the webhook itself: supervised");

    // (c) No secret anywhere: anonymous is refused, the fallback.
    let stored = create(TAGS[4], json!({})).await?;
    check_injected_unsupervised(&stored, Mode::Classic)?;
    // (d) The pod names a Secret that exists only in another namespace.
    let stored = create(
        TAGS[5],
        json!({"imagePullSecrets": [{"name": ELSEWHERE_SECRET}]}),
    )
    .await?;
    check_injected_unsupervised(&stored, Mode::Classic)?;
    println!("e2e:   no secret, or one only in another namespace: anonymous refused, unsupervised (watched by the sidecar), admitted");

    let want = [
        (TAGS[0], "none"),
        (TAGS[1], "registry"),
        (TAGS[2], "registry"),
        (TAGS[3], "registry"),
        (TAGS[4], "none"),
        (TAGS[5], "none"),
    ];
    for (name, source) in want {
        let got = command_source(env, name).await?;
        ensure!(
            got == source,
            "pod {name}: command_source {got:?}, want {source:?}"
        );
    }
    let metrics = env.injector.metrics().await?;
    let count = |source: &str| {
        metrics.sum(
            "dind_injector_runner_commands_total",
            &[&format!("source=\"{source}\"")],
        )
    };
    ensure!(
        count("registry") == 3.0 && count("none") == 3.0,
        "runner commands by source: registry {}, none {}; want 3 and 3",
        count("registry"),
        count("none")
    );
    Ok(())
}
