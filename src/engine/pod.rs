//! Read-only views of the incoming pod, and the shape check that guards them.
//!
//! The pod arrives as untyped JSON and may be anything. [`check_shape`] runs
//! once before any mutation; after it, the fields the engine touches are known
//! to have the types the engine expects, and every other field is left alone
//! whatever it holds (it may come from a Kubernetes release newer than us).

use serde_json::{Map, Value};

/// `spec.containers` or `spec.initContainers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    pub fn key(self) -> &'static str {
        match self {
            Self::Containers => "containers",
            Self::InitContainers => "initContainers",
        }
    }
}

/// The pod's metadata field `key` as a string map (labels, annotations).
pub fn string_map<'a>(pod: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    pod.get("metadata")?.get(key)?.as_object()
}

pub fn label<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    string_map(pod, "labels")?.get(key)?.as_str()
}

pub fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    string_map(pod, "annotations")?.get(key)?.as_str()
}

pub fn spec(pod: &Value) -> Option<&Map<String, Value>> {
    pod.get("spec")?.as_object()
}

pub fn spec_bool(pod: &Value, key: &str) -> bool {
    spec(pod)
        .and_then(|s| s.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The containers of one list; empty when the list is absent or null.
pub fn containers(pod: &Value, list: ContainerList) -> &[Value] {
    spec(pod)
        .and_then(|s| s.get(list.key()))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Both lists, init containers first.
pub fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    containers(pod, ContainerList::InitContainers)
        .iter()
        .chain(containers(pod, ContainerList::Containers))
}

pub fn name(container: &Value) -> &str {
    container.get("name").and_then(Value::as_str).unwrap_or("")
}

/// A string-list field (`command`, `args`) of a container.
pub fn strings<'a>(container: &'a Value, key: &str) -> Option<Vec<&'a str>> {
    container
        .get(key)?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect()
}

/// A list-of-objects field (`env`, `volumeMounts`) of a container.
pub fn objects<'a>(container: &'a Value, key: &str) -> &'a [Value] {
    container
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Names of all pod volumes.
pub fn volume_names(pod: &Value) -> Vec<&str> {
    spec(pod)
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(name)
        .collect()
}

/// Checks the types of every field the engine reads or extends. The message
/// names the field as a user would write it (`spec.containers[1].env`).
pub fn check_shape(pod: &Value) -> Result<(), String> {
    let Some(_) = pod.as_object() else {
        return Err(format!("the pod is {}, expected an object", kind_of(pod)));
    };
    let metadata = pod.get("metadata");
    expect_object("metadata", metadata, true)?;
    for key in ["labels", "annotations"] {
        let field = format!("metadata.{key}");
        let map = metadata.and_then(|m| m.get(key));
        expect_object(&field, map, false)?;
        if let Some(Value::Object(map)) = map {
            if let Some((k, v)) = map.iter().find(|(_, v)| !v.is_string()) {
                return Err(format!("{field}.{k} is {}, expected a string", kind_of(v)));
            }
        }
    }
    let spec = pod.get("spec");
    expect_object("spec", spec, true)?;
    let spec = spec.and_then(Value::as_object).ok_or("spec is missing")?;
    for key in ["terminationGracePeriodSeconds"] {
        if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
            if v.as_i64().is_none() {
                return Err(format!("spec.{key} is {}, expected an integer", kind_of(v)));
            }
        }
    }
    for key in ["shareProcessNamespace", "hostPID", "hostNetwork"] {
        if let Some(v) = spec.get(key).filter(|v| !v.is_null()) {
            if !v.is_boolean() {
                return Err(format!(
                    "spec.{key} is {}, expected true or false",
                    kind_of(v)
                ));
            }
        }
    }
    check_named_list("spec.volumes", spec.get("volumes"), false)?;
    for list in [ContainerList::InitContainers, ContainerList::Containers] {
        let field = format!("spec.{}", list.key());
        let required = list == ContainerList::Containers;
        check_named_list(&field, spec.get(list.key()), required)?;
        for (i, c) in spec
            .get(list.key())
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .enumerate()
        {
            check_container(&format!("{field}[{i}]"), c)?;
        }
    }
    Ok(())
}

fn check_container(field: &str, c: &Value) -> Result<(), String> {
    for key in ["command", "args"] {
        match c.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if let Some((i, v)) = items.iter().enumerate().find(|(_, v)| !v.is_string()) {
                    return Err(format!(
                        "{field}.{key}[{i}] is {}, expected a string",
                        kind_of(v)
                    ));
                }
            }
            Some(v) => return Err(format!("{field}.{key} is {}, expected a list", kind_of(v))),
        }
    }
    if let Some(v) = c.get("image").filter(|v| !v.is_null() && !v.is_string()) {
        return Err(format!(
            "{field}.image is {}, expected a string",
            kind_of(v)
        ));
    }
    check_object_list(&format!("{field}.env"), c.get("env"))?;
    check_object_list(&format!("{field}.volumeMounts"), c.get("volumeMounts"))?;
    for (i, m) in objects(c, "volumeMounts").iter().enumerate() {
        if !m.get("mountPath").is_some_and(Value::is_string) {
            return Err(format!(
                "{field}.volumeMounts[{i}].mountPath is missing or not a string"
            ));
        }
    }
    Ok(())
}

fn check_named_list(field: &str, v: Option<&Value>, required: bool) -> Result<(), String> {
    check_object_list(field, v)?;
    let items = v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if required && items.is_empty() {
        return Err(format!("{field} is missing or empty"));
    }
    for (i, item) in items.iter().enumerate() {
        if !item.get("name").is_some_and(Value::is_string) {
            return Err(format!("{field}[{i}].name is missing or not a string"));
        }
    }
    Ok(())
}

fn check_object_list(field: &str, v: Option<&Value>) -> Result<(), String> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => match items.iter().enumerate().find(|(_, v)| !v.is_object()) {
            Some((i, v)) => Err(format!(
                "{field}[{i}] is {}, expected an object",
                kind_of(v)
            )),
            None => Ok(()),
        },
        Some(v) => Err(format!("{field} is {}, expected a list", kind_of(v))),
    }
}

fn expect_object(field: &str, v: Option<&Value>, required: bool) -> Result<(), String> {
    match v {
        Some(Value::Object(_)) => Ok(()),
        None | Some(Value::Null) if !required => Ok(()),
        None | Some(Value::Null) => Err(format!("{field} is missing")),
        Some(v) => Err(format!("{field} is {}, expected an object", kind_of(v))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_pod_has_the_right_shape() {
        let pod = json!({"metadata": {}, "spec": {"containers": [{"name": "runner"}]}});
        assert_eq!(check_shape(&pod), Ok(()));
    }

    #[test]
    fn wrong_shapes_are_named() {
        let cases = [
            (json!([]), "the pod is a list"),
            (
                json!({"spec": {"containers": [{"name": "a"}]}}),
                "metadata is missing",
            ),
            (json!({"metadata": {}, "spec": "x"}), "spec is a string"),
            (
                json!({"metadata": {}, "spec": {}}),
                "spec.containers is missing or empty",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": []}}),
                "spec.containers is missing or empty",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{}]}}),
                "spec.containers[0].name",
            ),
            (
                json!({"metadata": {"annotations": {"a": 1}}, "spec": {"containers": [{"name": "a"}]}}),
                "metadata.annotations.a is a number",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a", "command": "run.sh"}]}}),
                "spec.containers[0].command is a string",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a", "env": {}}]}}),
                "spec.containers[0].env is an object",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a", "volumeMounts": [{}]}]}}),
                "spec.containers[0].volumeMounts[0].mountPath",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a"}], "volumes": [1]}}),
                "spec.volumes[0] is a number",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a"}], "hostPID": "yes"}}),
                "spec.hostPID is a string",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a"}], "terminationGracePeriodSeconds": "30"}}),
                "spec.terminationGracePeriodSeconds is a string",
            ),
            (
                json!({"metadata": {}, "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i", "args": [1]}]}}),
                "spec.initContainers[0].args[0] is a number",
            ),
        ];
        for (pod, expected) in cases {
            let err = check_shape(&pod).expect_err(&pod.to_string());
            assert!(
                err.contains(expected),
                "{err:?} does not contain {expected:?}"
            );
        }
    }
}
