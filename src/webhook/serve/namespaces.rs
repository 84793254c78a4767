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

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::contract::annotation;
use crate::webhook::apiserver::types::{
    ErrorStatus, List, Object, WatchLine, METADATA, METADATA_LIST,
};
use crate::webhook::apiserver::{self, ApiError};

/// Seconds a watch request lasts before the apiserver ends it (it is then
/// started again from the last version): under its 30 min default, so a
/// silently lost connection is noticed.
const WATCH_SECONDS: u32 = 290;
/// A watch silent this much longer than it was asked to last has lost
/// its connection.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 30);
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
    fn replace(&self, namespaces: &[Object]) {
        let map = namespaces.iter().filter_map(profile_of).collect();
        *self.write() = map;
    }

    /// One watched change; the namespace and its new profile (`None`:
    /// none) when the change is one for us.
    fn apply(&self, event: &Event) -> Option<(String, Option<String>)> {
        let (name, profile) = match event {
            Event::Added(ns) | Event::Modified(ns) => (
                ns.metadata.name.clone().unwrap_or_default(),
                profile_of(ns).map(|(_, p)| p),
            ),
            Event::Deleted(ns) => (ns.metadata.name.clone()?, None),
            Event::Bookmark(_) | Event::Error(_) => return None,
        };
        let mut map = self.write();
        let before = match &profile {
            Some(p) => map.insert(name.clone(), p.clone()),
            None => map.remove(&name),
        };
        (before != profile).then_some((name, profile))
    }
}

fn profile_of(ns: &Object) -> Option<(String, String)> {
    let name = ns.metadata.name.clone()?;
    let profile = ns.metadata.annotations.get(annotation::PROFILE)?;
    Some((name, profile.clone()))
}

/// One watched change of a namespace (its metadata only).
#[derive(Debug)]
enum Event {
    Added(Object),
    Modified(Object),
    Deleted(Object),
    Bookmark(Object),
    Error(ErrorStatus),
}

impl Event {
    fn parse(line: WatchLine<Box<RawValue>>) -> Result<Event, String> {
        let object = || {
            serde_json::from_str::<Object>(line.object.get())
                .map_err(|e| format!("a {} event: {e}", line.kind))
        };
        Ok(match line.kind.as_str() {
            "ADDED" => Event::Added(object()?),
            "MODIFIED" => Event::Modified(object()?),
            "DELETED" => Event::Deleted(object()?),
            "BOOKMARK" => Event::Bookmark(object()?),
            "ERROR" => Event::Error(serde_json::from_str(line.object.get()).unwrap_or_default()),
            other => return Err(format!("an event of unknown type {other:?}")),
        })
    }
}

/// The namespaces' metadata, no more.
const NAMESPACES: &str = "/api/v1/namespaces";

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
        let mut listed = false;
        let attempt = async {
            let client = apiserver::Client::infer()
                .await
                .map_err(|e| e.to_string())?;
            let list: List<Object> = client.get_as(NAMESPACES, METADATA_LIST).await.map_err(|e| {
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
            listed = true;
            let version = list.metadata.resource_version.unwrap_or_default();
            watch(&client, &cache, version).await
        };
        let problem = tokio::select! {
            () = &mut stop => return,
            problem = attempt => problem,
        };
        let problem = match problem {
            Ok(never) => match never {},
            Err(problem) => problem,
        };
        // A list that worked ends a run of failures: the next failure (a
        // 410 after hours of watching) waits the first step, not the last.
        if listed {
            wait = RETRY_FIRST;
        }
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
    client: &apiserver::Client,
    cache: &NamespaceProfiles,
    mut version: String,
) -> Result<std::convert::Infallible, String> {
    loop {
        let path = format!(
            "{NAMESPACES}?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            crate::webhook::percent::encode(&version)
        );
        let mut events = client
            .watch(&path, METADATA, WATCH_IDLE)
            .await
            .map_err(|e| format!("cannot watch namespaces: {e}"))?;
        while let Some(line) = events.next::<WatchLine<Box<RawValue>>>().await {
            let failed = |e: ApiError| format!("namespace watch failed: {e}");
            let event = Event::parse(line.map_err(failed)?)
                .map_err(|e| format!("namespace watch failed: {e}"))?;
            if let Event::Error(status) = &event {
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
                Event::Added(ns)
                | Event::Modified(ns)
                | Event::Deleted(ns)
                | Event::Bookmark(ns) => ns.metadata.resource_version.clone(),
                Event::Error(_) => None,
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
    use crate::webhook::apiserver::types::Meta;
    use std::collections::BTreeMap;

    fn ns(name: &str, profile: Option<&str>) -> Object {
        let annotations = profile
            .map(|p| BTreeMap::from([(annotation::PROFILE.into(), p.into())]))
            .unwrap_or_default();
        Object {
            metadata: Meta {
                name: Some(name.into()),
                annotations,
                resource_version: None,
            },
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

        let changed = cache.apply(&Event::Added(ns("web", Some("small"))));
        assert_eq!(changed, Some(("web".into(), Some("small".into()))));
        assert_eq!(cache.get("web").as_deref(), Some("small"));
        assert_eq!(
            cache.apply(&Event::Modified(ns("web", Some("small")))),
            None
        );
        cache.apply(&Event::Modified(ns("web", None)));
        assert_eq!(cache.get("web"), None, "an annotation removed is removed");
        assert_eq!(cache.apply(&Event::Modified(ns("other", None))), None);
        cache.apply(&Event::Deleted(ns("ci", Some("big"))));
        assert_eq!(cache.get("ci"), None);
    }

    #[test]
    fn watch_lines_are_read_as_the_apiserver_writes_them() {
        let parse = |line: &str| Event::parse(serde_json::from_str(line).unwrap());
        let added = parse(
            r#"{"type":"ADDED","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1",
                "metadata":{"name":"ci","resourceVersion":"42","annotations":{"dind-injector.io/profile":"big"}}}}"#,
        )
        .unwrap();
        let Event::Added(object) = &added else {
            panic!("{added:?}")
        };
        assert_eq!(object.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(profile_of(object), Some(("ci".into(), "big".into())));
        let error = parse(r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}"#)
            .unwrap();
        assert!(matches!(error, Event::Error(ErrorStatus { code: 410, .. })));
        assert!(parse(r#"{"type":"SIDEWAYS","object":{}}"#)
            .unwrap_err()
            .contains("SIDEWAYS"));
    }
}
