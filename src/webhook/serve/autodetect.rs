//! `sidecarMode: auto`: asks the cluster whether it has native sidecars.
//!
//! At start and then periodically, the apiserver's version and every node's
//! kubelet version are read with the webhook's own ServiceAccount (RBAC:
//! `get` on `/version`, `list` on nodes — nothing else). The decision is
//! [`crate::webhook::detect::decide`]'s; without API access, or on any error, the
//! answer is classic, which works on every version, and the log says why.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::server::EngineHandle;
use crate::engine::Mode;
use crate::webhook::apiserver::{self, types::List};
use crate::webhook::detect::{self, Detected};
use crate::webhook::percent::encode;

/// Nodes per list call; large clusters are read in pages.
const PAGE: u32 = 500;

/// How one detection went, for the log and the engine.
#[derive(Debug)]
pub enum Detection {
    Decided(Detected),
    /// No answer from the cluster: classic, and why.
    Unavailable(String),
}

impl Detection {
    pub fn mode(&self) -> Mode {
        match self {
            Detection::Decided(Detected::Native { .. }) => Mode::Native,
            _ => Mode::Classic,
        }
    }
}

#[derive(Deserialize)]
struct Version {
    #[serde(rename = "gitVersion")]
    git_version: String,
}

/// A node: its kubelet's version, nothing else.
#[derive(Deserialize)]
struct Node {
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Deserialize, Default)]
struct NodeStatus {
    #[serde(rename = "nodeInfo", default)]
    node_info: NodeInfo,
}

#[derive(Deserialize, Default)]
struct NodeInfo {
    #[serde(rename = "kubeletVersion", default)]
    kubelet_version: String,
}

/// Reads the versions and decides; never fails (classic with a reason).
pub async fn detect(client: &apiserver::Client) -> Detection {
    let info: Version = match client.get("/version").await {
        Ok(info) => info,
        Err(e) => return Detection::Unavailable(format!("cannot read the apiserver version: {e}")),
    };
    let mut kubelets = Vec::new();
    let mut path = format!("/api/v1/nodes?limit={PAGE}");
    loop {
        let page: List<Node> = match client.get(&path).await {
            Ok(page) => page,
            Err(e) => {
                return Detection::Unavailable(format!(
                    "cannot list nodes (the ServiceAccount needs `list` on nodes): {e}"
                ))
            }
        };
        kubelets.extend(
            page.items
                .into_iter()
                .map(|n| n.status.node_info.kubelet_version),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => path = format!("/api/v1/nodes?limit={PAGE}&continue={}", encode(&token)),
            None => break,
        }
    }
    let kubelets: Vec<&str> = kubelets.iter().map(String::as_str).collect();
    Detection::Decided(detect::decide(&info.git_version, &kubelets))
}

fn log(detection: &Detection) {
    match detection {
        Detection::Decided(Detected::Native {
            apiserver,
            oldest_kubelet,
        }) => tracing::info!(
            mode = "native",
            %apiserver,
            oldest_kubelet = %oldest_kubelet.map_or("none".into(), |v| v.to_string()),
            "sidecarMode auto: the cluster has native sidecars"
        ),
        Detection::Decided(Detected::Classic { reason }) => {
            tracing::info!(mode = "classic", %reason, "sidecarMode auto: classic")
        }
        Detection::Unavailable(reason) => tracing::warn!(
            mode = "classic",
            %reason,
            "sidecarMode auto: no answer from the Kubernetes API; using classic"
        ),
    }
}

/// Runs the detection now and every `every` until `stop`, switching the
/// engine's `auto` when the answer changes. `first` fires once the first
/// answer (or the lack of one) is in force.
pub async fn run(
    engine: Arc<EngineHandle>,
    metrics: Arc<Metrics>,
    every: Duration,
    first: oneshot::Sender<()>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let client = match apiserver::Client::infer().await {
        Ok(client) => Some(client),
        Err(e) => {
            log(&Detection::Unavailable(e.to_string()));
            None
        }
    };
    let Some(client) = client else {
        engine.set_auto_mode(Mode::Classic);
        metrics.set_sidecar_mode(Mode::Classic.as_str());
        let _ = first.send(());
        return;
    };
    let mut first = Some(first);
    let mut last: Option<String> = None;
    loop {
        let detection = detect(&client).await;
        // Log when the answer (or its reason) changes, not at every check.
        let summary = format!("{detection:?}");
        if last.as_deref() != Some(&summary) {
            log(&detection);
            last = Some(summary);
        }
        let mode = detection.mode();
        engine.set_auto_mode(mode);
        metrics.set_sidecar_mode(mode.as_str());
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
