//! The pod as the engine sees it: just the fields it decides on, borrowed
//! from the request body, nothing else materialised.
//!
//! Two ways in, one type out: [`PodView::parse`] reads JSON text directly
//! (the request path: strings borrowed from the body, every other field
//! skipped, objects that are copied into the patch kept as their raw text),
//! and [`PodView::from_value`] reads a `serde_json::Value` (`inject`, the
//! tests). The parse is strict where the engine's shape check is strict
//! (a field of the wrong type is an error, and the caller falls back to the
//! `Value` path, which names it), and lenient where the engine is lenient,
//! so both ways lead to the same decision (`tests/reqpath.rs` holds that).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A string of the pod, borrowed from the body unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> Text<'a> {
    fn borrowed(s: &'a str) -> Self {
        Text(Cow::Borrowed(s))
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

/// A string field the engine reads with "a string, else nothing" (names in
/// the log line, `imagePullPolicy`): any other JSON value is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lenient<'a>(pub Option<Text<'a>>);

impl Lenient<'_> {
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Lenient<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient(Some(Text(Cow::Borrowed(v)))))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient(Some(Text(Cow::Owned(v.to_owned())))))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Lenient(Some(Text(Cow::Owned(v)))))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Lenient(None))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor)
    }
}

/// A JSON object read into `T`. serde's derived structs also accept a JSON
/// list (fields by position); the engine's shape check does not, so neither
/// may the view.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj<T>(pub T);

impl<T> Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A string map (labels, annotations) in the pod's order; a key given twice
/// is an error here (the `Value` path keeps the last one, so the caller falls
/// back to it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairs<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl Pairs<'_> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| **k == *key).map(|(_, v)| &**v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs: Vec<(Text<'a>, Text<'a>)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    if pairs.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format_args!("duplicate key {:?}", &*k)));
                    }
                    pairs.push((k, v));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// The pod.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PodView<'a> {
    /// `None` when absent; `Some(None)` when present but not a string.
    #[serde(default, borrow, deserialize_with = "present")]
    pub kind: Option<Option<Text<'a>>>,
    #[serde(default, borrow)]
    pub metadata: Option<Obj<Meta<'a>>>,
    #[serde(default, borrow)]
    pub spec: Option<Obj<Spec<'a>>>,
}

fn present<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Text<'a>>>, D::Error> {
    Option::<Text<'a>>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta<'a> {
    #[serde(default, borrow)]
    pub labels: Option<Pairs<'a>>,
    #[serde(default, borrow)]
    pub annotations: Option<Pairs<'a>>,
    // For the log line only.
    #[serde(default, borrow)]
    pub name: Lenient<'a>,
    #[serde(default, borrow)]
    pub generate_name: Lenient<'a>,
    #[serde(default, borrow)]
    pub namespace: Lenient<'a>,
    #[serde(default, borrow)]
    pub owner_references: Option<Vec<Obj<Owner<'a>>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Owner<'a> {
    #[serde(default, borrow)]
    pub kind: Lenient<'a>,
    #[serde(default, borrow)]
    pub name: Lenient<'a>,
    #[serde(default)]
    pub controller: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    #[serde(default, borrow)]
    pub containers: Option<Vec<Obj<Container<'a>>>>,
    #[serde(default, borrow)]
    pub init_containers: Option<Vec<Obj<Container<'a>>>>,
    #[serde(default, borrow)]
    pub volumes: Option<Vec<Obj<Named<'a>>>>,
    #[serde(default, rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(default)]
    pub host_network: Option<bool>,
    #[serde(default)]
    pub share_process_namespace: Option<bool>,
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
    /// What an image look-up needs (see [`crate::engine::Query::of_view`]),
    /// kept as JSON text: read only for the rare runner without a command.
    #[serde(default, borrow)]
    pub image_pull_secrets: Option<Raw<'a>>,
    #[serde(default, borrow)]
    pub service_account_name: Option<Raw<'a>>,
    #[serde(default, borrow)]
    pub node_selector: Option<Raw<'a>>,
    #[serde(default, borrow)]
    pub affinity: Option<Raw<'a>>,
}

/// Any JSON value, as its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|raw| Raw(Cow::Borrowed(raw.get())))
    }
}

impl Raw<'_> {
    /// The value; `Null` if the text is not JSON (it came from a parse).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// A pod volume: its name and its type (its one key other than `name`,
/// e.g. `emptyDir`), which decides whether it may be shared with the
/// privileged daemon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named<'a> {
    pub name: Text<'a>,
    pub kind: Option<Text<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Named<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Named<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a volume")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut name, mut kind) = (None, None);
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if &*key == "name" {
                        if name.is_some() {
                            return Err(de::Error::duplicate_field("name"));
                        }
                        name = Some(map.next_value::<Text<'de>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        kind.get_or_insert(key);
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                Ok(Named { name, kind })
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(default, borrow)]
    pub image: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub image_pull_policy: Lenient<'a>,
    #[serde(default, borrow)]
    pub command: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    pub args: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    pub env: Option<Vec<Obj<EnvVar<'a>>>>,
    #[serde(default, borrow)]
    pub volume_mounts: Option<Vec<Mount<'a>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EnvVar<'a> {
    #[serde(default, borrow)]
    pub name: Lenient<'a>,
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text(Cow::Borrowed(""))
    }
}

/// A volume mount: its path, and the whole object as JSON text (copied
/// verbatim into `dind` when the runner shares it).
#[derive(Debug, Clone, PartialEq)]
pub struct Mount<'a> {
    /// The volume it mounts.
    pub name: Option<Text<'a>>,
    pub mount_path: Text<'a>,
    pub raw: Cow<'a, str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Mount<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Path<'a> {
            #[serde(default, borrow)]
            name: Option<Text<'a>>,
            #[serde(borrow)]
            mount_path: Text<'a>,
        }
        let raw = <&'de RawValue>::deserialize(d)?;
        let Obj(Path { name, mount_path }) =
            serde_json::from_str::<Obj<Path<'de>>>(raw.get()).map_err(de::Error::custom)?;
        Ok(Mount {
            name,
            mount_path,
            raw: Cow::Borrowed(raw.get()),
        })
    }
}

impl<'a> PodView<'a> {
    /// The view of a pod given as JSON text. An error means the text holds
    /// something the view does not take (a wrong type, a key given twice):
    /// decide on the `Value` instead.
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Obj<PodView<'a>>>(json).map(|o| o.0)
    }

    /// The view of a pod given as a `Value`, read as leniently as the engine
    /// reads it: fields of another type than the engine expects are left
    /// out (the shape check, which runs on the `Value`, reports them).
    pub fn from_value(pod: &'a Value) -> Self {
        let text = |v: Option<&'a Value>| v.and_then(Value::as_str).map(Text::borrowed);
        let lenient = |v: Option<&'a Value>| Lenient(text(v));
        let pairs = |v: Option<&'a Value>| {
            v.and_then(Value::as_object).map(|m| {
                Pairs(
                    m.iter()
                        .filter_map(|(k, v)| Some((Text::borrowed(k), Text::borrowed(v.as_str()?))))
                        .collect(),
                )
            })
        };
        let list = |v: Option<&'a Value>| v.and_then(Value::as_array).map(Vec::as_slice);
        let raw = |v: Option<&'a Value>| v.map(|v| Raw(Cow::Owned(v.to_string())));
        let strings = |v: Option<&'a Value>| {
            list(v).map(|items| items.iter().filter_map(|s| text(Some(s))).collect())
        };
        let container = |c: &'a Value| {
            Obj(Container {
                name: text(c.get("name")).unwrap_or_default(),
                image: text(c.get("image")),
                image_pull_policy: lenient(c.get("imagePullPolicy")),
                command: strings(c.get("command")),
                args: strings(c.get("args")),
                env: list(c.get("env")).map(|env| {
                    env.iter()
                        .map(|e| {
                            Obj(EnvVar {
                                name: lenient(e.get("name")),
                            })
                        })
                        .collect()
                }),
                volume_mounts: list(c.get("volumeMounts")).map(|mounts| {
                    mounts
                        .iter()
                        .map(|m| Mount {
                            name: text(m.get("name")),
                            mount_path: text(m.get("mountPath")).unwrap_or_default(),
                            raw: Cow::Owned(m.to_string()),
                        })
                        .collect()
                }),
            })
        };
        let containers = |v: Option<&'a Value>| {
            list(v).map(|items| {
                items
                    .iter()
                    .filter(|c| c.is_object())
                    .map(container)
                    .collect()
            })
        };
        let meta = pod.get("metadata").filter(|m| m.is_object()).map(|m| {
            Obj(Meta {
                labels: pairs(m.get("labels")),
                annotations: pairs(m.get("annotations")),
                name: lenient(m.get("name")),
                generate_name: lenient(m.get("generateName")),
                namespace: lenient(m.get("namespace")),
                owner_references: list(m.get("ownerReferences")).map(|owners| {
                    owners
                        .iter()
                        .map(|o| {
                            Obj(Owner {
                                kind: lenient(o.get("kind")),
                                name: lenient(o.get("name")),
                                controller: o.get("controller").and_then(Value::as_bool),
                            })
                        })
                        .collect()
                }),
            })
        });
        let spec = pod.get("spec").filter(|s| s.is_object()).map(|s| {
            Obj(Spec {
                containers: containers(s.get("containers")),
                init_containers: containers(s.get("initContainers")),
                volumes: list(s.get("volumes")).map(|vs| {
                    vs.iter()
                        .map(|v| {
                            Obj(Named {
                                name: text(v.get("name")).unwrap_or_default(),
                                kind: v.as_object().and_then(|o| {
                                    o.keys().find(|k| *k != "name").map(|k| Text::borrowed(k))
                                }),
                            })
                        })
                        .collect()
                }),
                host_pid: s.get("hostPID").and_then(Value::as_bool),
                host_network: s.get("hostNetwork").and_then(Value::as_bool),
                share_process_namespace: s.get("shareProcessNamespace").and_then(Value::as_bool),
                termination_grace_period_seconds: s
                    .get("terminationGracePeriodSeconds")
                    .and_then(Value::as_i64),
                image_pull_secrets: raw(s.get("imagePullSecrets")),
                service_account_name: raw(s.get("serviceAccountName")),
                node_selector: raw(s.get("nodeSelector")),
                affinity: raw(s.get("affinity")),
            })
        });
        PodView {
            kind: pod.get("kind").map(|k| text(Some(k))),
            metadata: meta,
            spec,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.labels.as_ref()?.get(key)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations()?.get(key)
    }

    pub fn annotations(&self) -> Option<&Pairs<'a>> {
        self.metadata.as_ref()?.annotations.as_ref()
    }

    pub fn spec(&self) -> Option<&Spec<'a>> {
        self.spec.as_deref()
    }

    /// `metadata`, `spec` and at least one container: what the shape check
    /// requires beyond types (which the parse checked).
    pub fn is_complete(&self) -> bool {
        self.metadata.is_some()
            && self
                .spec()
                .and_then(|s| s.containers.as_ref())
                .is_some_and(|c| !c.is_empty())
    }

    pub fn containers(&self) -> &[Obj<Container<'a>>] {
        self.spec()
            .and_then(|s| s.containers.as_deref())
            .unwrap_or(&[])
    }

    pub fn init_containers(&self) -> &[Obj<Container<'a>>] {
        self.spec()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or(&[])
    }

    /// Both lists, init containers first.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container<'a>> {
        self.init_containers()
            .iter()
            .chain(self.containers())
            .map(Deref::deref)
    }

    pub fn volume_names(&self) -> Vec<&str> {
        self.spec()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or(&[])
            .iter()
            .map(|v| &*v.name)
            .collect()
    }

    pub fn spec_bool(&self, get: impl Fn(&Spec<'a>) -> Option<bool>) -> bool {
        self.spec().and_then(get).unwrap_or(false)
    }
}

impl<'a> Container<'a> {
    pub fn strings<'l>(list: &'l Option<Vec<Text<'a>>>) -> Option<Vec<&'l str>> {
        list.as_ref().map(|l| l.iter().map(|s| &**s).collect())
    }

    pub fn mounts(&self) -> &[Mount<'a>] {
        self.volume_mounts.as_deref().unwrap_or(&[])
    }

    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.env
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter_map(|e| e.name.as_str())
    }
}
