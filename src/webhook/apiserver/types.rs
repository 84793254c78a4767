//! The parts of the apiserver's answers that the call sites read; every
//! other field is skipped, not built.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A list answer (one page of it).
#[derive(Deserialize)]
pub struct List<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(default)]
    pub metadata: ListMeta,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
    pub resource_version: Option<String>,
}

/// An object's metadata, or all of a metadata-only answer
/// (`PartialObjectMetadata`).
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub name: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub resource_version: Option<String>,
}

/// A reference by name (`imagePullSecrets[]`, a volume's `configMap`).
#[derive(Deserialize)]
pub struct Name {
    #[serde(default)]
    pub name: String,
}

/// Just the metadata of an object.
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Object {
    #[serde(default)]
    pub metadata: Meta,
}

/// One line of a watch.
#[derive(Deserialize)]
pub struct WatchLine<T> {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: T,
}

/// A watch's `ERROR` event carries a Status.
#[derive(Deserialize, Default, Debug)]
pub struct ErrorStatus {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
}

/// `Accept` for metadata-only lists and watches of any kind.
pub const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
pub const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
