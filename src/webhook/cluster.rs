//! `dind-injector inject --from-cluster`: the offline engine with the
//! configuration that is installed in the cluster, as `istioctl kube-inject`
//! does, so a GitOps pipeline renders exactly what the webhook would.
//!
//! The config file is the ConfigMap the installation ships (Helm chart or
//! kustomize, either delivery): in the given namespace, a ConfigMap labelled
//! `app.kubernetes.io/part-of=dind-injector` with a `config.yaml` key; when
//! several could be meant (kustomize leaves the ConfigMaps of earlier
//! configs behind), the one the webhook Deployment mounts, else
//! `--config-map` must name it. `sidecarMode: auto` is decided from the
//! cluster's versions by the webhook's own detection.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::engine::config::Config;
use crate::engine::inject::{self, Args};
use crate::engine::Mode;
use crate::webhook::apiserver::types::{List, Meta, Name};
use crate::webhook::apiserver::Client;
use crate::webhook::percent::encode;
use crate::webhook::serve::autodetect;

/// What the installation's objects carry (chart and kustomize base alike).
const PART_OF: &str = "app.kubernetes.io/part-of=dind-injector";
/// The config file's key in the ConfigMap.
const KEY: &str = "config.yaml";

#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// A Deployment: the ConfigMaps its pods mount, nothing else.
#[derive(Deserialize)]
struct Deployment {
    spec: DeploymentSpec,
}

#[derive(Deserialize)]
struct DeploymentSpec {
    template: PodTemplate,
}

#[derive(Deserialize)]
struct PodTemplate {
    #[serde(default)]
    spec: PodSpec,
}

#[derive(Deserialize, Default)]
struct PodSpec {
    #[serde(default)]
    volumes: Vec<Volume>,
}

#[derive(Deserialize)]
struct Volume {
    #[serde(rename = "configMap")]
    config_map: Option<Name>,
}

/// `inject`, with the config read from the cluster when asked.
pub fn inject(args: Args) -> Result<()> {
    if !args.from_cluster {
        return inject::run(args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (source, config, auto) = runtime.block_on(installed(&args))?;
    eprintln!("dind-injector: config from {source}");
    inject::run_with(&args, config, auto)
}

/// The installed config (where it came from, parsed and validated) and what
/// `auto` means in this cluster.
async fn installed(args: &Args) -> Result<(String, Config, Mode)> {
    let client = Client::infer().await.context(
        "--from-cluster: cannot reach the cluster (KUBECONFIG or the in-cluster account)",
    )?;
    let ns = &args.namespace;
    let maps = format!("/api/v1/namespaces/{}/configmaps", encode(ns));
    let candidates: Vec<String> = client
        .get::<List<ConfigMap>>(&format!("{maps}?labelSelector={}", encode(PART_OF)))
        .await
        .with_context(|| format!("--from-cluster: cannot list the ConfigMaps of namespace {ns}"))?
        .items
        .into_iter()
        .filter(|m| m.data.contains_key(KEY))
        .filter_map(|m| m.metadata.name)
        .collect();
    let mounted = if args.config_map.is_none() && candidates.len() > 1 {
        mounted_config_maps(&client, ns).await?
    } else {
        Vec::new()
    };
    let name = choose(ns, args.config_map.as_deref(), &candidates, &mounted)?;
    let map: ConfigMap = client
        .get(&format!("{maps}/{}", encode(&name)))
        .await
        .with_context(|| format!("--from-cluster: cannot read ConfigMap {ns}/{name}"))?;
    let source = format!("ConfigMap {ns}/{name}");
    let text = map
        .data
        .get(KEY)
        .with_context(|| format!("{source} has no {KEY}"))?;
    let config = Config::from_yaml(text).with_context(|| format!("{source}: {KEY}"))?;
    let detection = autodetect::detect(&client).await;
    if let autodetect::Detection::Unavailable(why) = &detection {
        // What the webhook does too, but the user should know why.
        eprintln!("dind-injector: sidecarMode auto means classic here: {why}");
    }
    Ok((source, config, detection.mode()))
}

/// The ConfigMaps the installation's Deployments mount.
async fn mounted_config_maps(client: &Client, ns: &str) -> Result<Vec<String>> {
    let path = format!(
        "/apis/apps/v1/namespaces/{}/deployments?labelSelector={}",
        encode(ns),
        encode(PART_OF)
    );
    let list: List<Deployment> = client.get(&path).await.with_context(|| {
        format!("--from-cluster: cannot list the Deployments of namespace {ns}")
    })?;
    Ok(list
        .items
        .into_iter()
        .flat_map(|d| d.spec.template.spec.volumes)
        .filter_map(|v| v.config_map.map(|c| c.name))
        .collect())
}

/// Which ConfigMap holds the installed config: the one asked for, the only
/// candidate, or the only candidate the webhook mounts.
fn choose(
    ns: &str,
    asked: Option<&str>,
    candidates: &[String],
    mounted: &[String],
) -> Result<String> {
    if let Some(name) = asked {
        if candidates.iter().any(|c| c == name) {
            return Ok(name.to_string());
        }
        bail!(
            "--from-cluster: ConfigMap {ns}/{name} does not exist, lacks the label {PART_OF} or has no {KEY} \
             (candidates: {})",
            listed(candidates)
        );
    }
    match candidates {
        [] => bail!(
            "--from-cluster: no ConfigMap in namespace {ns} is labelled {PART_OF} and has {KEY}: \
             is dind-injector installed there? (--namespace)"
        ),
        [one] => Ok(one.clone()),
        many => {
            let in_use: Vec<&String> = many.iter().filter(|c| mounted.contains(c)).collect();
            match in_use.as_slice() {
                [one] => Ok((*one).clone()),
                _ => bail!(
                    "--from-cluster: several ConfigMaps in namespace {ns} hold a {KEY} ({}); name one with --config-map",
                    listed(many)
                ),
            }
        }
    }
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_only_candidate_or_the_mounted_one_or_the_named_one() {
        let one = names(&["ci-dind-injector-config"]);
        assert_eq!(
            choose("ci", None, &one, &[]).unwrap(),
            "ci-dind-injector-config"
        );
        let kustomize = names(&["dind-injector-config-aaaa", "dind-injector-config-bbbb"]);
        let mounted = names(&["dind-injector-config-bbbb"]);
        assert_eq!(
            choose("ns", None, &kustomize, &mounted).unwrap(),
            "dind-injector-config-bbbb"
        );
        assert_eq!(
            choose("ns", Some("dind-injector-config-aaaa"), &kustomize, &[]).unwrap(),
            "dind-injector-config-aaaa"
        );
    }

    #[test]
    fn ambiguity_and_absence_are_errors_that_say_what_to_do() {
        let two = names(&["a", "b"]);
        let e = choose("ns", None, &two, &[]).unwrap_err().to_string();
        assert!(e.contains("a, b") && e.contains("--config-map"), "{e}");
        let e = choose("ns", None, &[], &[]).unwrap_err().to_string();
        assert!(
            e.contains("namespace ns") && e.contains("--namespace"),
            "{e}"
        );
        let e = choose("ns", Some("c"), &two, &[]).unwrap_err().to_string();
        assert!(e.contains("ns/c") && e.contains("candidates: a, b"), "{e}");
    }
}
