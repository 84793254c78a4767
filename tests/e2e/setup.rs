//! Bringing the cluster to where every scenario starts: the control plane,
//! the webhook's identity from the shipped RBAC, the webhook itself, the
//! namespaces and the shipped webhook configuration; and the helpers that
//! apply manifests and wait for configuration changes to take effect.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use kube::Client;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cluster::{self, ControlPlane};
use crate::injector::Injector;
use crate::node::{Images, Node};
use crate::pki::{self, Ca};
use crate::pods::{pod, runner_labels, runner_template};
use crate::procs::eventually;
use crate::scenarios::runners;
use crate::{root, Env, FIELD_MANAGER, OPTED_OUT, RUNNERS, WAIT, WEBHOOK_CONFIG};

/// What `make e2e` built for the run: the control plane's executable, the
/// container runtime, the images the node imports.
pub(crate) struct Inputs {
    pub controlplane: PathBuf,
    pub containerd: PathBuf,
    pub images: Images,
}

impl Inputs {
    pub fn from_env(controlplane: PathBuf) -> Result<Inputs> {
        let var = |name: &str, what: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .with_context(|| format!("{name} is not set: run `make e2e`, which builds {what}"))
        };
        let containerd = var("DIND_E2E_CONTAINERD", "containerd")?;
        let images = var("DIND_E2E_IMAGES", "the node's images")?;
        Ok(Inputs {
            controlplane,
            containerd,
            images: Images::read(&images)?,
        })
    }

    /// The versions of everything the run starts, as they say themselves.
    pub fn print_versions(&self) -> Result<()> {
        for component in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "etcd",
        ] {
            println!(
                "e2e: {component}: {}",
                cluster::component_version(&self.controlplane, component)?
            );
        }
        let first_line = |cmd: &mut Command| -> Result<String> {
            let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            Ok(text.lines().next().unwrap_or_default().trim().to_string())
        };
        println!(
            "e2e: containerd: {}",
            first_line(Command::new(self.containerd.join("containerd")).arg("--version"))?
        );
        println!(
            "e2e: runc: {}",
            first_line(Command::new("runc").arg("--version"))?
        );
        let cni = first_line(Command::new("dpkg-query").args([
            "-W",
            "-f",
            "${Version}",
            "containernetworking-plugins",
        ]))?;
        println!("e2e: CNI plugins (Debian containernetworking-plugins, /usr/lib/cni): {cni}");
        Ok(())
    }
}

pub(crate) async fn start(dir: &Path, inputs: &Inputs) -> Result<Env> {
    let start = Instant::now();
    let bin = &inputs.controlplane;
    let ca = Ca::generate("dind-injector e2e cluster CA")?;
    let (cp, client) = ControlPlane::start(bin, dir, &ca).await?;
    let version = client.apiserver_version().await?;
    println!(
        "e2e: control plane up in {:.1} s: apiserver {} at {}",
        start.elapsed().as_secs_f64(),
        version.git_version,
        cp.server
    );

    let token = install_identity(&client).await?;
    let kubeconfig = dir.join("injector.kubeconfig");
    pki::write(
        &kubeconfig,
        &cluster::kubeconfig(&cp.server, &cp.ca_file, cluster::Credentials::Token(&token)),
    )?;
    let node = Node::start(
        bin,
        &inputs.containerd,
        dir,
        &ca,
        &cp,
        &client,
        &inputs.images,
    )
    .await?;
    let config = node_config(dir, &inputs.images)?;
    let mut injector = Injector::new(dir, &kubeconfig, &config, &cp.ca_file, &cp.webhook_client)?;
    injector.start()?;
    let mut env = Env {
        dir: dir.to_path_buf(),
        client,
        ca,
        extra: None,
        images: inputs.images.clone(),
        node,
        injector,
        cp,
    };
    namespace(
        &env.client,
        RUNNERS,
        json!({"e2e.dind-injector.io/role": "runners"}),
    )
    .await?;
    namespace(
        &env.client,
        OPTED_OUT,
        json!({"dind-injector.io/injection": "disabled"}),
    )
    .await?;
    register_webhook(&env, true).await?;
    wait_for_calls(
        &env,
        "the webhook configuration to take effect",
        runner_labels(),
        1,
    )
    .await?;
    println!(
        "e2e: webhook registered and answering after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    env.cp.check_alive()?;
    Ok(env)
}

/// The shipped configuration with the images the node has: the webhook
/// injects what the node can run, and nothing else changes.
fn node_config(dir: &Path, images: &Images) -> Result<PathBuf> {
    let shipped = root().join("manifests/base/config.yaml");
    let text = std::fs::read_to_string(&shipped).with_context(|| shipped.display().to_string())?;
    let mut config: Value = serde_norway::from_str(&text)?;
    config["injector"]["image"] = json!(images.injector);
    config["dind"]["image"] = json!(images.dind);
    let path = dir.join("config.yaml");
    pki::write(&path, &serde_norway::to_string(&config)?)?;
    Ok(path)
}

/// The webhook's ServiceAccount with the project's own RBAC, and a token for
/// it: auto mode reads the cluster with exactly the rights it ships with.
async fn install_identity(client: &Client) -> Result<String> {
    for file in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"] {
        apply_file(client, &root().join("manifests/base").join(file)).await?;
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "dind-injector");
    let answer = accounts
        .create_token_request("dind-injector", &PostParams::default(), &request)
        .await
        .context("token for the dind-injector ServiceAccount")?;
    answer
        .status
        .and_then(|s| s.token)
        .context("TokenRequest answered without a token")
}

/// Server-side applies every object of a manifest file, as `kubectl apply
/// --server-side -f` would.
async fn apply_file(client: &Client, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    apply_text(client, &text, &path.display().to_string(), None, false).await?;
    Ok(())
}

/// Server-side applies every object of a multi-document YAML text (a dry
/// run: the apiserver validates, defaults and admits, and stores nothing);
/// objects without a namespace go to `namespace` when their kind is
/// namespaced. How many objects were applied.
pub(crate) async fn apply_text(
    client: &Client,
    text: &str,
    source: &str,
    namespace: Option<&str>,
    dry_run: bool,
) -> Result<usize> {
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = dry_run;
    let mut applied = 0;
    for doc in serde_norway::Deserializer::from_str(text) {
        let object =
            Option::<DynamicObject>::deserialize(doc).with_context(|| source.to_string())?;
        let Some(object) = object else { continue };
        let types = object.types.as_ref().context("apiVersion and kind")?;
        let (resource, capabilities) =
            kube::discovery::pinned_kind(client, &GroupVersionKind::try_from(types)?).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = object.metadata.namespace.as_deref().or(namespace);
                Api::namespaced_with(
                    client.clone(),
                    ns.context("a namespaced object without namespace")?,
                    &resource,
                )
            }
        };
        let name = object.metadata.name.as_deref().context("metadata.name")?;
        api.patch(name, &params, &Patch::Apply(&object))
            .await
            .with_context(|| format!("applying {} {name} from {source}", types.kind))?;
        applied += 1;
    }
    Ok(applied)
}

/// A namespace, once the controller-manager gave it the `default`
/// ServiceAccount (without it, the ServiceAccount admission plugin refuses pods).
pub(crate) async fn namespace(client: &Client, name: &str, labels: Value) -> Result<()> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&ns),
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    eventually(&format!("ServiceAccount default in {name}"), WAIT, || {
        let accounts = accounts.clone();
        async move { Ok(accounts.get_opt("default").await?.map(|_| ())) }
    })
    .await
}

/// The project's MutatingWebhookConfiguration, as shipped, with a `url`
/// clientConfig for the local server and its real CA. Without
/// `matchConditions` it is what components/no-match-conditions installs.
pub(crate) async fn register_webhook(env: &Env, match_conditions: bool) -> Result<()> {
    let path = root().join("manifests/base/mutatingwebhookconfiguration.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut v: Value = serde_norway::from_str(&text).with_context(|| path.display().to_string())?;
    let ca = base64::engine::general_purpose::STANDARD.encode(env.injector.ca_pem()?);
    let hooks = v["webhooks"].as_array_mut().context("webhooks")?;
    ensure!(
        hooks.len() == 1,
        "expected one webhook in {}",
        path.display()
    );
    hooks[0]["clientConfig"] = json!({"url": env.injector.url(), "caBundle": ca});
    if !match_conditions {
        hooks[0]
            .as_object_mut()
            .context("webhook")?
            .remove("matchConditions");
    }
    let config: MutatingWebhookConfiguration = serde_json::from_value(v)?;
    Api::<MutatingWebhookConfiguration>::all(env.client.clone())
        .patch(
            WEBHOOK_CONFIG,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&config),
        )
        .await?;
    Ok(())
}

/// Webhook configuration changes reach the apiserver through an informer,
/// a moment later. Dry-run pods with `labels` until one create makes
/// exactly `calls` reviews.
pub(crate) async fn wait_for_calls(env: &Env, what: &str, labels: Value, calls: u32) -> Result<()> {
    let pods = runners(env);
    eventually(what, WAIT, || {
        let (pods, labels) = (pods.clone(), labels.clone());
        async move {
            let before = env.injector.metrics().await?.reviews();
            let probe = pod("probe", runner_template(labels, json!({})))?;
            pods.create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe,
            )
            .await?;
            let after = env.injector.metrics().await?.reviews();
            Ok((after - before == f64::from(calls)).then_some(()))
        }
    })
    .await
}
