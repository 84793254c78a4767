//! The pod's pull credentials: its `imagePullSecrets` and its
//! ServiceAccount's, read from the API only when `readPullSecrets` is on
//! (the chart then grants `get` on Secrets and ServiceAccounts).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde::Deserialize;

use super::auth::{self, Credentials};
use super::reference::Reference;
use crate::engine::Query;
use crate::webhook::apiserver::{self, types::Name};
use crate::webhook::percent::encode;

#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "imagePullSecrets", default)]
    image_pull_secrets: Vec<Name>,
}

#[derive(Deserialize)]
struct Secret {
    #[serde(default)]
    data: BTreeMap<String, ByteString>,
}

/// Every credential for `image`'s registry, in the pod's order, then the
/// ServiceAccount's. A Secret that cannot be read or parsed is logged and
/// skipped: the look-up then goes on with the others.
pub async fn credentials(
    client: &apiserver::Client,
    namespace: &str,
    query: &Query,
    image: &Reference,
) -> Vec<Credentials> {
    let mut names = query.pull_secrets.clone();
    let path = |kind: &str, name: &str| {
        format!(
            "/api/v1/namespaces/{}/{kind}/{}",
            encode(namespace),
            encode(name)
        )
    };
    match client
        .get_opt::<ServiceAccount>(&path("serviceaccounts", &query.service_account))
        .await
    {
        Ok(Some(sa)) => names.extend(
            sa.image_pull_secrets
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty()),
        ),
        Ok(None) => {}
        Err(error) => tracing::warn!(%namespace, service_account = %query.service_account, %error,
            "registry: cannot read the ServiceAccount's imagePullSecrets"),
    }
    let mut found = Vec::new();
    for name in names {
        let secret = match client.get_opt::<Secret>(&path("secrets", &name)).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%namespace, secret = %name, %error, "registry: cannot read the pull secret");
                continue;
            }
        };
        let data = secret.data;
        let Some(json) = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
        else {
            continue;
        };
        match auth::from_docker_config(&json.0, image) {
            Ok(Some(c)) if !found.contains(&c) => found.push(c),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%namespace, secret = %name, %error, "registry: unreadable pull secret")
            }
        }
    }
    found
}
