//! Records a JSON Patch while applying it to a working copy of the pod.
//!
//! The engine never serialises typed structs over what came in: it edits the
//! pod as `serde_json::Value` through this recorder, which both changes the
//! copy and writes down the RFC 6902 operation that makes the same change.
//! The recorder applies its own operations (it does not call a JSON Patch
//! library), so the tests can check its patch against a strict
//! implementation independently.

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

/// The only paths (relative to a container or to the pod spec) that may be
/// replaced; everything else is only ever added to.
pub const REPLACEABLE: &[&str] = &[
    "command",
    "terminationGracePeriodSeconds",
    "shareProcessNamespace",
];

pub struct Recorder {
    doc: Value,
    ops: Vec<PatchOperation>,
}

/// Escapes one reference token (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Recorder {
    pub fn new(doc: Value) -> Self {
        Self {
            doc,
            ops: Vec::new(),
        }
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Sets an object member, adding it or replacing it. `replace` is only
    /// used for the [`REPLACEABLE`] fields when they already hold a value.
    pub fn set(&mut self, parent: &str, key: &str, value: Value) -> Result<(), EngineBug> {
        let path = format!("{parent}/{}", escape(key));
        let obj = self.object_mut(parent)?;
        let existed = obj.get(key).is_some_and(|v| !v.is_null());
        if existed && !REPLACEABLE.contains(&key) {
            return Err(EngineBug(format!(
                "would replace {path}, which is add-only"
            )));
        }
        obj.insert(key.to_string(), value.clone());
        let path = pointer(&path)?;
        self.ops.push(if existed {
            PatchOperation::Replace(ReplaceOperation { path, value })
        } else {
            PatchOperation::Add(AddOperation { path, value })
        });
        Ok(())
    }

    /// Appends to the array at `parent/key`, creating the array when it is
    /// missing or null (an `add` into a missing array is an error in RFC 6902).
    pub fn extend(&mut self, parent: &str, key: &str, values: Vec<Value>) -> Result<(), EngineBug> {
        if values.is_empty() {
            return Ok(());
        }
        let path = format!("{parent}/{}", escape(key));
        let items = match self.object_mut(parent)?.get_mut(key) {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => return self.set(parent, key, Value::Array(values)),
            Some(_) => return Err(EngineBug(format!("{path} is not an array"))),
        };
        items.extend(values.iter().cloned());
        let path = pointer(&format!("{path}/-"))?;
        self.ops.extend(values.into_iter().map(|value| {
            PatchOperation::Add(AddOperation {
                path: path.clone(),
                value,
            })
        }));
        Ok(())
    }

    pub fn finish(self) -> (Value, Patch) {
        (self.doc, Patch(self.ops))
    }

    /// The object at `parent`. The engine only names parents it has checked
    /// to be objects (see `pod::check_shape`), so anything else is a bug.
    fn object_mut(
        &mut self,
        parent: &str,
    ) -> Result<&mut serde_json::Map<String, Value>, EngineBug> {
        self.doc
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| EngineBug(format!("{parent} is not an object")))
    }
}

/// Something the engine should never have done (an operation on a path the
/// shape check ruled out, say). Surfaces as an internal error for that one
/// request instead of a panic or a wrong patch.
#[derive(Debug, thiserror::Error)]
#[error("internal error in the injection engine: {0}")]
pub struct EngineBug(String);

impl From<serde_json::Error> for EngineBug {
    fn from(e: serde_json::Error) -> Self {
        EngineBug(format!("cannot serialise an injected object: {e}"))
    }
}

fn pointer(path: &str) -> Result<PointerBuf, EngineBug> {
    PointerBuf::parse(path).map_err(|e| EngineBug(format!("bad pointer {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply_strictly(original: &Value, patch: &Patch) -> Value {
        let mut doc = original.clone();
        json_patch::patch(&mut doc, patch).expect("patch applies");
        doc
    }

    #[test]
    fn creates_missing_arrays_then_appends() {
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let mut r = Recorder::new(original.clone());
        r.extend(
            "/spec",
            "volumes",
            vec![json!({"name": "v1"}), json!({"name": "v2"})],
        )
        .unwrap();
        r.extend("/spec", "volumes", vec![json!({"name": "v3"})])
            .unwrap();
        r.extend("/spec/containers/0", "env", vec![]).unwrap();
        let (doc, patch) = r.finish();
        assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(3));
        assert!(doc["spec"]["containers"][0].get("env").is_none());
        assert_eq!(apply_strictly(&original, &patch), doc);
    }

    #[test]
    fn null_arrays_are_replaced_by_an_add() {
        let original = json!({"spec": {"volumes": null}});
        let mut r = Recorder::new(original.clone());
        r.extend("/spec", "volumes", vec![json!({"name": "v"})])
            .unwrap();
        let (doc, patch) = r.finish();
        assert!(matches!(patch.0[0], PatchOperation::Add(_)));
        assert_eq!(apply_strictly(&original, &patch), doc);
    }

    #[test]
    fn keys_with_slashes_are_escaped() {
        let original = json!({"metadata": {"annotations": {"a~b": "1"}}});
        let mut r = Recorder::new(original.clone());
        r.set(
            "/metadata/annotations",
            "dind-injector.io/status",
            json!("injected"),
        )
        .unwrap();
        let (doc, patch) = r.finish();
        let text = serde_json::to_string(&patch).unwrap();
        assert!(text.contains("dind-injector.io~1status"), "{text}");
        assert_eq!(apply_strictly(&original, &patch), doc);
    }

    #[test]
    fn existing_scalars_are_replaced() {
        let original = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        let mut r = Recorder::new(original.clone());
        r.set("/spec", "terminationGracePeriodSeconds", json!(3600))
            .unwrap();
        let (doc, patch) = r.finish();
        assert!(matches!(patch.0[0], PatchOperation::Replace(_)));
        assert_eq!(apply_strictly(&original, &patch), doc);
    }

    #[test]
    fn add_only_fields_are_never_replaced() {
        let mut r = Recorder::new(json!({"spec": {"hostPID": true, "volumes": "x"}}));
        assert!(r.set("/spec", "hostPID", json!(false)).is_err());
        assert!(r.extend("/spec", "volumes", vec![json!(1)]).is_err());
        assert!(r.set("/nope", "a", json!(1)).is_err());
    }
}
