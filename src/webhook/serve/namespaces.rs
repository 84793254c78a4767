//! `namespaceProfiles`: each namespace's `dind-injector.io/profile`, from a
//! watched cache, so that a review never waits for the apiserver.
//!
//! One list of the namespaces' metadata, then a watch from its
//! resourceVersion; a watch that ends is started again from the last
//! version seen, and one that expired (410) or failed lists again. This is
//! what kube-rs' `runtime` reflector does, written out in the few lines this
//! one map needs: the `runtime` feature would add kube-runtime and its own
//! dependencies to every cold build for it. Until the first list has
//! answered, `serve` answers no review (see `server::start_namespace_watch`);
//! after that a failing apiserver leaves the last known annotations in
//! force, and the log says so.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use tokio::sync::oneshot;

use crate::contract::annotation;

/// Seconds a watch request lasts before the apiserver ends it (it is then
/// started again from the last version): under its 30 min default, so a
/// silently lost connection is noticed.
const WATCH_SECONDS: u32 = 290;
/// Waits between failed attempts: doubled from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The profile each namespace names; namespaces without the annotation
/// are absent.
#[derive(Debug, Default)]
pub struct NamespaceProfiles(RwLock<HashMap<String, String>>);

impl NamespaceProfiles {
    pub fn get(&self, namespace: &str) -> Option<String> {
        let map = match self.0.read() {
            Ok(guard) => guard,
            // A panic while replacing a HashMap leaves a whole map.
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(namespace).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
        match self.0.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The state of a complete list: what is not in it is gone.
    fn replace(&self, namespaces: &[PartialObjectMeta<Namespace>]) {
        let map = namespaces.iter().filter_map(profile_of).collect();
        *self.write() = map;
    }

    /// One watched change; the namespace and its new profile (`None`:
    /// none) when the change is one for us.
    fn apply(
        &self,
        event: &WatchEvent<PartialObjectMeta<Namespace>>,
    ) -> Option<(String, Option<String>)> {
        let (name, profile) = match event {
            WatchEvent::Added(ns) | WatchEvent::Modified(ns) => (
                ns.metadata.name.clone().unwrap_or_default(),
                profile_of(ns).map(|(_, p)| p),
            ),
            WatchEvent::Deleted(ns) => (ns.metadata.name.clone()?, None),
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => return None,
        };
        let mut map = self.write();
        let before = match &profile {
            Some(p) => map.insert(name.clone(), p.clone()),
            None => map.remove(&name),
        };
        (before != profile).then_some((name, profile))
    }
}

fn profile_of(ns: &PartialObjectMeta<Namespace>) -> Option<(String, String)> {
    let name = ns.metadata.name.clone()?;
    let profile = ns.metadata.annotations.as_ref()?.get(annotation::PROFILE)?;
    Some((name, profile.clone()))
}

/// Keeps `cache` up to date until `stop`; `synced` fires after the first
/// complete list.
pub async fn run(
    cache: Arc<NamespaceProfiles>,
    synced: oneshot::Sender<()>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut synced = Some(synced);
    let mut wait = RETRY_FIRST;
    let mut last_problem = String::new();
    loop {
        let attempt = async {
            let client = kube::Client::try_default().await.map_err(|e| {
                format!("no Kubernetes client configuration (in-cluster or KUBECONFIG): {e}")
            })?;
            let api: Api<Namespace> = Api::all(client);
            let list = api.list_metadata(&ListParams::default()).await.map_err(|e| {
                format!("cannot list namespaces (the ServiceAccount needs list and watch on namespaces): {e}")
            })?;
            cache.replace(&list.items);
            tracing::info!(
                namespaces = list.items.len(),
                "namespaceProfiles: namespaces listed"
            );
            if let Some(synced) = synced.take() {
                let _ = synced.send(());
            }
            let version = list.metadata.resource_version.unwrap_or_default();
            watch(&api, &cache, version).await
        };
        let problem = tokio::select! {
            () = &mut stop => return,
            problem = attempt => problem,
        };
        let problem = match problem {
            Ok(never) => match never {},
            Err(problem) => problem,
        };
        // Once per change of problem, not at every retry.
        if problem != last_problem {
            tracing::warn!(%problem, retry_ms = wait.as_millis() as u64,
                "namespaceProfiles: the namespace cache is not being updated; the last known annotations stay in force");
            last_problem = problem;
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Follows the namespaces from `version` on; returns only with the reason
/// a new list is needed.
async fn watch(
    api: &Api<Namespace>,
    cache: &NamespaceProfiles,
    mut version: String,
) -> Result<std::convert::Infallible, String> {
    loop {
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        let stream = api
            .watch_metadata(&params, &version)
            .await
            .map_err(|e| format!("cannot watch namespaces: {e}"))?;
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| format!("namespace watch failed: {e}"))?;
            if let WatchEvent::Error(status) = &event {
                return Err(format!(
                    "namespace watch ended by the apiserver ({}): {}",
                    status.code, status.message
                ));
            }
            if let Some((namespace, profile)) = cache.apply(&event) {
                tracing::info!(
                    %namespace,
                    profile = profile.as_deref().unwrap_or(""),
                    "namespaceProfiles: a namespace's default profile changed"
                );
            }
            let seen = match &event {
                WatchEvent::Added(ns) | WatchEvent::Modified(ns) | WatchEvent::Deleted(ns) => {
                    ns.metadata.resource_version.clone()
                }
                WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
                WatchEvent::Error(_) => None,
            };
            if let Some(seen) = seen {
                version = seen;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn ns(name: &str, profile: Option<&str>) -> PartialObjectMeta<Namespace> {
        let annotations = profile.map(|p| BTreeMap::from([(annotation::PROFILE.into(), p.into())]));
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations,
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn a_list_replaces_and_events_change_one_namespace() {
        let cache = NamespaceProfiles::default();
        cache.replace(&[ns("ci", Some("big")), ns("web", None), ns("old", Some("x"))]);
        assert_eq!(cache.get("ci").as_deref(), Some("big"));
        assert_eq!(cache.get("web"), None);
        cache.replace(&[ns("ci", Some("big"))]);
        assert_eq!(
            cache.get("old"),
            None,
            "a namespace gone from the list is gone"
        );

        let changed = cache.apply(&WatchEvent::Added(ns("web", Some("small"))));
        assert_eq!(changed, Some(("web".into(), Some("small".into()))));
        assert_eq!(cache.get("web").as_deref(), Some("small"));
        assert_eq!(
            cache.apply(&WatchEvent::Modified(ns("web", Some("small")))),
            None
        );
        cache.apply(&WatchEvent::Modified(ns("web", None)));
        assert_eq!(cache.get("web"), None, "an annotation removed is removed");
        assert_eq!(cache.apply(&WatchEvent::Modified(ns("other", None))), None);
        cache.apply(&WatchEvent::Deleted(ns("ci", Some("big"))));
        assert_eq!(cache.get("ci"), None);
    }
}
