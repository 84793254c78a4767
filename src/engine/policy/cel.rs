//! JSON built by the engine, written as CEL literals for a
//! MutatingAdmissionPolicy.
//!
//! The apiserver's CEL environment enforces homogeneous aggregate literals,
//! so a JSON object cannot be written as a plain CEL map (its values have
//! different types). It is written as an object initializer instead, whose
//! type name is the field path from the root (`Object.spec.containers.
//! securityContext{…}`): the mutating policy plugin checks exactly that
//! naming (`CheckTypeNamesMatchFieldPathNames` in k8s.io/apiserver
//! `pkg/cel/mutation/dynamic`). List items keep their list's path. Fields
//! that are maps in the Kubernetes API (resource quantities) stay CEL maps:
//! their values are all strings.

use serde_json::Value;

/// Fields whose value is a map in the Kubernetes API, not an object.
const MAP_FIELDS: &[&str] = &["requests", "limits", "labels", "annotations"];

/// A Rust value the engine built, with holes: any string equal to a key of
/// `holes` is written as that CEL expression instead of a literal, and a
/// string containing one as a concatenation around it (a flag's value).
pub struct Holes<'a>(pub &'a [(&'a str, &'a str)]);

/// `value` as a CEL literal of type `type_path` (e.g. `Object.spec.volumes`).
pub fn literal(value: &Value, type_path: &str) -> String {
    literal_with(value, type_path, &Holes(&[]))
}

/// Like [`literal`], with the strings of `holes` replaced by expressions.
pub fn literal_with(value: &Value, type_path: &str, holes: &Holes) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => filled(s, holes),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| literal_with(v, type_path, holes))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let field = type_path.rsplit('.').next().unwrap_or_default();
            if MAP_FIELDS.contains(&field) {
                let entries: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{}: {}", string(k), literal_with(v, type_path, holes)))
                    .collect();
                return format!("{{{}}}", entries.join(", "));
            }
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        literal_with(v, &format!("{type_path}.{k}"), holes)
                    )
                })
                .collect();
            format!("{type_path}{{{}}}", fields.join(", "))
        }
    }
}

/// `s` as a CEL string expression, its holes filled.
fn filled(s: &str, holes: &Holes) -> String {
    for (hole, expression) in holes.0 {
        if let Some((before, after)) = s.split_once(hole) {
            let parts = [
                (!before.is_empty()).then(|| string(before)),
                Some((*expression).to_string()),
                (!after.is_empty()).then(|| filled(after, holes)),
            ];
            return parts.into_iter().flatten().collect::<Vec<_>>().join(" + ");
        }
    }
    string(s)
}

/// A CEL string literal. JSON's escapes (`\"`, `\\`, `\n`, `\uXXXX`) are
/// CEL's too, so serde_json writes it.
pub fn string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// A CEL list of string literals.
pub fn strings<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_initializers_named_by_their_path_and_maps_stay_maps() {
        let v = json!({"name": "dind", "securityContext": {"privileged": true},
                       "resources": {"requests": {"cpu": "100m"}},
                       "volumeMounts": [{"name": "a", "readOnly": true}], "n": 3});
        assert_eq!(
            literal(&v, "Object.spec.containers"),
            "Object.spec.containers{name: \"dind\", \
             securityContext: Object.spec.containers.securityContext{privileged: true}, \
             resources: Object.spec.containers.resources{requests: {\"cpu\": \"100m\"}}, \
             volumeMounts: [Object.spec.containers.volumeMounts{name: \"a\", readOnly: true}], n: 3}"
        );
    }

    #[test]
    fn strings_are_escaped_and_holes_are_filled() {
        let v = json!(["say \"hi\"\n", "IMAGE", "--watch=NAME", "NAME:NAME"]);
        assert_eq!(
            literal_with(
                &v,
                "x",
                &Holes(&[("IMAGE", "variables.runner.image"), ("NAME", "n")])
            ),
            r#"["say \"hi\"\n", variables.runner.image, "--watch=" + n, n + ":" + n]"#
        );
    }
}
