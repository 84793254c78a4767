//! Finds the pod inside a manifest (a Pod, or a workload's pod template) and
//! runs the engine on it, so that offline `inject` and the webhook share one
//! engine and one set of rules.

use serde_json::{json, Map, Value};

use crate::engine::{Decision, Engine, EngineBug};

/// Where the pod template of a workload kind lives; `None` for kinds that
/// have no pod (ConfigMaps, Services, …), which pass through untouched.
pub fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Job"
        | "ReplicaSet"
        | "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// `Job ci/runner` or `Pod runner-` (generateName) — how messages name a document.
pub fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("object");
    let meta = doc.get("metadata");
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let name = field("name")
        .or_else(|| field("generateName"))
        .unwrap_or("<unnamed>");
    match field("namespace") {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Runs the engine on the pod in `doc` and, when it injects, writes the
/// injected pod back in place. Returns `None` for documents without a pod.
pub fn inject_document(engine: &Engine, doc: &mut Value) -> Result<Option<Decision>, EngineBug> {
    let Some(pointer) = doc
        .get("kind")
        .and_then(Value::as_str)
        .and_then(template_pointer)
    else {
        return Ok(None);
    };
    if pointer.is_empty() {
        let decision = engine.review(doc)?;
        if let Decision::Inject(injection) = &decision {
            *doc = injection.apply(doc)?;
        }
        return Ok(Some(decision));
    }
    let Some(template) = doc.pointer_mut(pointer).filter(|t| t.is_object()) else {
        return Ok(None);
    };
    // A template is a pod without apiVersion/kind; the engine wants a pod.
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    });
    let decision = engine.review(&pod)?;
    if let Decision::Inject(injection) = &decision {
        let injected = injection.apply(&pod)?;
        for key in ["metadata", "spec"] {
            template[key] = injected[key].clone();
        }
    }
    Ok(Some(decision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Config;
    use crate::engine::Mode;

    fn engine() -> Engine {
        Engine::new(Config::default(), Mode::Classic).unwrap()
    }

    #[test]
    fn cronjob_templates_are_found_and_written_back() {
        let mut doc = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "ci"},
            "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"runner": "true"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "runner", "image": "r", "command": ["/run.sh"]}]}
            }}}}
        });
        let decision = inject_document(&engine(), &mut doc).unwrap();
        assert!(matches!(decision, Some(Decision::Inject(_))));
        let template = &doc["spec"]["jobTemplate"]["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"]["dind-injector.io/status"],
            "injected"
        );
        assert!(
            template.get("apiVersion").is_none(),
            "template must stay a template"
        );
        assert_eq!(doc["spec"]["schedule"], "0 0 * * *");
    }

    #[test]
    fn other_kinds_pass_through() {
        let mut doc = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"runner": "true"}}});
        let before = doc.clone();
        assert_eq!(inject_document(&engine(), &mut doc).unwrap(), None);
        assert_eq!(doc, before);
    }

    #[test]
    fn documents_are_named_for_messages() {
        assert_eq!(
            describe(&json!({"kind": "Job", "metadata": {"name": "j", "namespace": "ci"}})),
            "Job ci/j"
        );
        assert_eq!(
            describe(&json!({"kind": "Pod", "metadata": {"generateName": "r-"}})),
            "Pod r-"
        );
        assert_eq!(describe(&json!([])), "object <unnamed>");
    }
}
