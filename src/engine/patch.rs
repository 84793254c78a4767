//! Builds the JSON Patch against the incoming pod, and applies it.
//!
//! The engine never serialises typed structs over what came in: it describes
//! its change as RFC 6902 operations on the pod as the apiserver sent it.
//! [`Builder`] checks every operation against that original (a parent must
//! exist; an `add` into an array that does not exist yet creates the array;
//! only the [`REPLACEABLE`] fields are ever replaced) without copying it —
//! the webhook needs only the patch. [`apply`] turns a pod and a patch into
//! the injected pod for `inject` and the tests; the tests check it against a
//! strict third-party implementation.

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

/// The only fields (the last path token) that may be replaced; everything
/// else is only ever added to.
pub const REPLACEABLE: &[&str] = &[
    "command",
    "terminationGracePeriodSeconds",
    "shareProcessNamespace",
];

/// Escapes one reference token (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

pub struct Builder<'a> {
    original: &'a Value,
    ops: Vec<PatchOperation>,
    /// Arrays and objects this patch creates, by path: later operations may
    /// add into them although the original does not have them.
    created: Vec<String>,
}

impl<'a> Builder<'a> {
    pub fn new(original: &'a Value) -> Self {
        Self {
            original,
            ops: Vec::new(),
            created: Vec::new(),
        }
    }

    /// What is at `path` before this patch: `Some(true)` for a non-null
    /// value, `Some(false)` for absent or null, `None` if `path`'s parent is
    /// not an object (nothing can be set there).
    fn state(&self, parent: &str, key: &str) -> Option<bool> {
        if self.created.iter().any(|c| c == parent) {
            return Some(false);
        }
        let obj = self.original.pointer(parent)?.as_object()?;
        Some(obj.get(key).is_some_and(|v| !v.is_null()))
    }

    /// Sets an object member: `add` when absent or null, `replace` (only for
    /// the [`REPLACEABLE`] fields) when it holds a value.
    pub fn set(&mut self, parent: &str, key: &str, value: Value) -> Result<(), EngineBug> {
        let path = format!("{parent}/{}", escape(key));
        let existed = self
            .state(parent, key)
            .ok_or_else(|| EngineBug(format!("{parent} is not an object")))?;
        if existed && !REPLACEABLE.contains(&key) {
            return Err(EngineBug(format!(
                "would replace {path}, which is add-only"
            )));
        }
        if value.is_array() || value.is_object() {
            self.created.push(path.clone());
        }
        let path = pointer(&path)?;
        self.ops.push(if existed {
            PatchOperation::Replace(ReplaceOperation { path, value })
        } else {
            PatchOperation::Add(AddOperation { path, value })
        });
        Ok(())
    }

    /// Appends to the array at `parent/key`, creating it when it is missing
    /// or null (an `add` into a missing array is an error in RFC 6902).
    pub fn extend(&mut self, parent: &str, key: &str, values: Vec<Value>) -> Result<(), EngineBug> {
        if values.is_empty() {
            return Ok(());
        }
        let path = format!("{parent}/{}", escape(key));
        let is_array = self.created.contains(&path)
            || self
                .original
                .pointer(parent)
                .and_then(|p| p.get(key))
                .is_some_and(Value::is_array);
        if !is_array {
            return match self.state(parent, key) {
                Some(false) => self.set(parent, key, Value::Array(values)),
                _ => Err(EngineBug(format!("{path} is not an array"))),
            };
        }
        let path = pointer(&format!("{path}/-"))?;
        self.ops.extend(values.into_iter().map(|value| {
            PatchOperation::Add(AddOperation {
                path: path.clone(),
                value,
            })
        }));
        Ok(())
    }

    pub fn finish(self) -> Patch {
        Patch(self.ops)
    }
}

/// Applies a patch made by [`Builder`] (only `add` and `replace`).
pub fn apply(pod: &Value, patch: &Patch) -> Result<Value, EngineBug> {
    let mut doc = pod.clone();
    for op in &patch.0 {
        let (path, value, replace) = match op {
            PatchOperation::Add(AddOperation { path, value }) => (path, value, false),
            PatchOperation::Replace(ReplaceOperation { path, value }) => (path, value, true),
            other => return Err(EngineBug(format!("unexpected operation {other:?}"))),
        };
        let path = path.as_str();
        let (parent, last) = path
            .rsplit_once('/')
            .ok_or_else(|| EngineBug(format!("bad path {path}")))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match doc.pointer_mut(parent) {
            Some(Value::Object(obj)) if !replace || obj.contains_key(&last) => {
                obj.insert(last, value.clone());
            }
            Some(Value::Array(items)) if last == "-" && !replace => items.push(value.clone()),
            _ => return Err(EngineBug(format!("cannot apply {op:?}"))),
        }
    }
    Ok(doc)
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

    fn check(original: &Value, patch: &Patch) -> Value {
        let ours = apply(original, patch).expect("our apply");
        let mut strict = original.clone();
        json_patch::patch(&mut strict, patch).expect("strict apply");
        assert_eq!(ours, strict);
        ours
    }

    #[test]
    fn creates_missing_arrays_then_appends() {
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let mut b = Builder::new(&original);
        b.extend(
            "/spec",
            "volumes",
            vec![json!({"name": "v1"}), json!({"name": "v2"})],
        )
        .unwrap();
        b.extend("/spec", "volumes", vec![json!({"name": "v3"})])
            .unwrap();
        b.extend("/spec/containers/0", "env", vec![]).unwrap();
        let doc = check(&original, &b.finish());
        assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(3));
        assert!(doc["spec"]["containers"][0].get("env").is_none());
    }

    #[test]
    fn null_arrays_are_replaced_by_an_add() {
        let original = json!({"spec": {"volumes": null}});
        let mut b = Builder::new(&original);
        b.extend("/spec", "volumes", vec![json!({"name": "v"})])
            .unwrap();
        let patch = b.finish();
        assert!(matches!(patch.0[0], PatchOperation::Add(_)));
        check(&original, &patch);
    }

    #[test]
    fn keys_with_slashes_are_escaped() {
        let original = json!({"metadata": {"annotations": {"a~b": "1"}}});
        let mut b = Builder::new(&original);
        b.set(
            "/metadata/annotations",
            "dind-injector.io/status",
            json!("injected"),
        )
        .unwrap();
        let patch = b.finish();
        let text = serde_json::to_string(&patch).unwrap();
        assert!(text.contains("dind-injector.io~1status"), "{text}");
        let doc = check(&original, &patch);
        assert_eq!(
            doc["metadata"]["annotations"]["dind-injector.io/status"],
            "injected"
        );
    }

    #[test]
    fn existing_scalars_are_replaced() {
        let original = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        let mut b = Builder::new(&original);
        b.set("/spec", "terminationGracePeriodSeconds", json!(3600))
            .unwrap();
        let patch = b.finish();
        assert!(matches!(patch.0[0], PatchOperation::Replace(_)));
        check(&original, &patch);
    }

    #[test]
    fn members_of_created_objects_can_be_added() {
        let original = json!({"metadata": {}});
        let mut b = Builder::new(&original);
        b.set("/metadata", "annotations", json!({})).unwrap();
        b.set("/metadata/annotations", "a", json!("1")).unwrap();
        check(&original, &b.finish());
    }

    #[test]
    fn add_only_fields_are_never_replaced() {
        let original = json!({"spec": {"hostPID": true, "volumes": "x"}});
        let mut b = Builder::new(&original);
        assert!(b.set("/spec", "hostPID", json!(false)).is_err());
        assert!(b.extend("/spec", "volumes", vec![json!(1)]).is_err());
        assert!(b.set("/nope", "a", json!(1)).is_err());
    }
}
