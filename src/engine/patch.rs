//! The JSON Patch the engine writes against the incoming pod, and its
//! application.
//!
//! The engine never serialises typed structs over what came in: it describes
//! its change as RFC 6902 operations on the pod as the apiserver sent it.
//! [`Changes`] holds those operations with their values as JSON text: the
//! prebuilt objects of the engine borrowed, never cloned, and the objects
//! copied from the pod as their raw text. [`Changes::write_json`] writes the
//! patch straight into the answer; [`Changes::to_patch`] gives the
//! `json_patch::Patch` of the `Value` API. Whether a field exists (so `add`
//! or `replace`, append or create a list) is known from the view before any
//! operation is written; only the [`REPLACEABLE`] fields are ever replaced.
//! [`apply`] turns a pod and a patch into the injected pod for `inject` and
//! the tests; the tests check it against a strict third-party implementation.

use std::borrow::Cow;
use std::io::Write;

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
pub fn escape(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// `parent/key/tail` with `key` escaped, allocated once at its length:
/// `format!` went through fmt's machinery and grew each path in steps, a
/// quarter of the engine's instructions (47.9k → 36.4k a review, 121 → 100
/// allocations: `make bench-instructions`, seventh round).
fn child_path(parent: &str, key: &str, tail: &str) -> String {
    let key = escape(key);
    let mut path = String::with_capacity(parent.len() + 1 + key.len() + tail.len());
    path.push_str(parent);
    path.push('/');
    path.push_str(&key);
    path.push_str(tail);
    path
}

/// One JSON value of the patch, as text.
pub type Json<'a> = Cow<'a, str>;

/// An operation's value: one JSON text, or a list made of several.
#[derive(Debug, Clone, PartialEq)]
enum Item<'a> {
    One(Json<'a>),
    List(Vec<Json<'a>>),
}

#[derive(Debug, Clone, PartialEq)]
struct Op<'a> {
    replace: bool,
    path: String,
    value: Item<'a>,
}

/// The engine's patch: `add` operations, plus `replace` of the
/// [`REPLACEABLE`] fields, each value kept as JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes<'a> {
    ops: Vec<Op<'a>>,
}

impl<'a> Changes<'a> {
    /// Room for `ops` operations (an injection makes 16 to 20).
    pub fn with_capacity(ops: usize) -> Self {
        Self {
            ops: Vec::with_capacity(ops),
        }
    }

    /// Sets an object member: `add` when it is absent or null, `replace`
    /// (only for the [`REPLACEABLE`] fields) when it holds a value.
    pub fn set(
        &mut self,
        parent: &str,
        key: &str,
        exists: bool,
        value: Json<'a>,
    ) -> Result<(), EngineBug> {
        let path = child_path(parent, key, "");
        if exists && !REPLACEABLE.contains(&key) {
            return Err(EngineBug(format!(
                "would replace {path}, which is add-only"
            )));
        }
        self.ops.push(Op {
            replace: exists,
            path,
            value: Item::One(value),
        });
        Ok(())
    }

    /// Appends to the list at `parent/key`, or creates it when it is absent
    /// or null (an `add` into a missing list is an error in RFC 6902).
    pub fn extend(&mut self, parent: &str, key: &str, exists: bool, values: Vec<Json<'a>>) {
        if values.is_empty() {
            return;
        }
        if !exists {
            self.ops.push(Op {
                replace: false,
                path: child_path(parent, key, ""),
                value: Item::List(values),
            });
            return;
        }
        let path = child_path(parent, key, "/-");
        self.ops.extend(values.into_iter().map(|value| Op {
            replace: false,
            path: path.clone(),
            value: Item::One(value),
        }));
    }

    /// The patch as JSON, written into `out` (the answer's base64 encoder,
    /// say): byte for byte what serde_json writes for [`Changes::to_patch`]
    /// when the copied objects came in as serde_json writes them.
    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(b"[")?;
        for (i, op) in self.ops.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(if op.replace {
                b"{\"op\":\"replace\",\"path\":"
            } else {
                b"{\"op\":\"add\",\"path\":"
            })?;
            write_json_str(out, &op.path)?;
            out.write_all(b",\"value\":")?;
            match &op.value {
                Item::One(v) => out.write_all(v.as_bytes())?,
                Item::List(items) => {
                    out.write_all(b"[")?;
                    for (j, v) in items.iter().enumerate() {
                        if j > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(v.as_bytes())?;
                    }
                    out.write_all(b"]")?;
                }
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"]")
    }

    /// The patch as `json_patch` operations (the `Value` API: `inject`, tests).
    pub fn to_patch(&self) -> Result<Patch, EngineBug> {
        let parse = |v: &str| serde_json::from_str::<Value>(v).map_err(EngineBug::from);
        self.ops
            .iter()
            .map(|op| {
                let value = match &op.value {
                    Item::One(v) => parse(v)?,
                    Item::List(items) => {
                        Value::Array(items.iter().map(|v| parse(v)).collect::<Result<_, _>>()?)
                    }
                };
                let path = pointer(&op.path)?;
                Ok(if op.replace {
                    PatchOperation::Replace(ReplaceOperation { path, value })
                } else {
                    PatchOperation::Add(AddOperation { path, value })
                })
            })
            .collect::<Result<_, _>>()
            .map(Patch)
    }
}

/// `s` as a JSON string, byte for byte as serde_json writes it: as is
/// between quotes when nothing in it needs escaping (our paths, nearly
/// always; a plain scan is several times cheaper than serde_json's
/// escaping loop, which ran for every path of every patch), else through
/// serde_json.
pub fn write_json_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return serde_json::to_writer(&mut *out, s).map_err(std::io::Error::from);
    }
    out.write_all(b"\"")?;
    out.write_all(s.as_bytes())?;
    out.write_all(b"\"")
}

/// Applies a patch made by the engine (only `add` and `replace`).
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

impl EngineBug {
    pub fn new(what: impl Into<String>) -> Self {
        EngineBug(what.into())
    }
}

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

    #[test]
    fn child_paths_escape_the_key_and_keep_the_tail() {
        assert_eq!(child_path("/spec", "volumes", ""), "/spec/volumes");
        assert_eq!(
            child_path("/metadata/annotations", "a.io/b~c", ""),
            "/metadata/annotations/a.io~1b~0c"
        );
        assert_eq!(
            child_path("/spec", "containers", "/-"),
            "/spec/containers/-"
        );
    }

    #[test]
    fn json_strings_are_written_as_serde_json_writes_them() {
        let cases = [
            "/spec/containers/0/env/-",
            "",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "~0~1/ü/€/\u{7f}",
        ];
        for s in cases {
            let mut ours = Vec::new();
            write_json_str(&mut ours, s).unwrap();
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    /// Applies the changes both ways (ours and the strict implementation),
    /// and checks that the bytes written are serde_json's for the patch.
    fn check(original: &Value, changes: &Changes) -> Value {
        let patch = changes.to_patch().expect("patch");
        let mut written = Vec::new();
        changes.write_json(&mut written).expect("write");
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(&patch).unwrap()
        );
        let ours = apply(original, &patch).expect("our apply");
        let mut strict = original.clone();
        json_patch::patch(&mut strict, &patch).expect("strict apply");
        assert_eq!(ours, strict);
        ours
    }

    fn texts(values: &[Value]) -> Vec<Json<'static>> {
        values.iter().map(|v| Cow::Owned(v.to_string())).collect()
    }

    #[test]
    fn creates_missing_arrays_then_appends() {
        let original = json!({"spec": {"containers": [{"name": "a", "env": []}]}});
        let mut c = Changes::default();
        c.extend(
            "/spec",
            "volumes",
            false,
            texts(&[json!({"name": "v1"}), json!({"name": "v2"})]),
        );
        c.extend(
            "/spec/containers/0",
            "env",
            true,
            texts(&[json!({"name": "E"})]),
        );
        c.extend("/spec/containers/0", "volumeMounts", false, vec![]);
        let doc = check(&original, &c);
        assert_eq!(doc["spec"]["volumes"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["spec"]["containers"][0]["env"][0]["name"], "E");
        assert!(doc["spec"]["containers"][0].get("volumeMounts").is_none());
    }

    #[test]
    fn null_arrays_are_replaced_by_an_add() {
        let original = json!({"spec": {"volumes": null}});
        let mut c = Changes::default();
        c.extend("/spec", "volumes", false, texts(&[json!({"name": "v"})]));
        let patch = c.to_patch().unwrap();
        assert!(matches!(patch.0[0], PatchOperation::Add(_)));
        check(&original, &c);
    }

    #[test]
    fn keys_with_slashes_are_escaped() {
        let original = json!({"metadata": {"annotations": {"a~b": "1"}}});
        let mut c = Changes::default();
        c.set(
            "/metadata/annotations",
            "dind-injector.io/status",
            false,
            Cow::Borrowed("\"injected\""),
        )
        .unwrap();
        let text = serde_json::to_string(&c.to_patch().unwrap()).unwrap();
        assert!(text.contains("dind-injector.io~1status"), "{text}");
        let doc = check(&original, &c);
        assert_eq!(
            doc["metadata"]["annotations"]["dind-injector.io/status"],
            "injected"
        );
        assert_eq!(escape("a~/b"), "a~0~1b");
    }

    #[test]
    fn existing_scalars_are_replaced() {
        let original = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        let mut c = Changes::default();
        c.set(
            "/spec",
            "terminationGracePeriodSeconds",
            true,
            Cow::Borrowed("3600"),
        )
        .unwrap();
        let patch = c.to_patch().unwrap();
        assert!(matches!(patch.0[0], PatchOperation::Replace(_)));
        check(&original, &c);
    }

    #[test]
    fn add_only_fields_are_never_replaced() {
        let mut c = Changes::default();
        assert!(c
            .set("/spec", "hostPID", true, Cow::Borrowed("false"))
            .is_err());
        assert!(c
            .set("/spec", "hostPID", false, Cow::Borrowed("false"))
            .is_ok());
    }

    #[test]
    fn values_that_are_not_json_are_a_bug_not_a_patch() {
        let mut c = Changes::default();
        c.set("/spec", "x", false, Cow::Borrowed("{not json"))
            .unwrap();
        assert!(c.to_patch().is_err());
    }
}
