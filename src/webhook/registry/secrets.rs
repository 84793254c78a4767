//! The pod's pull credentials: its `imagePullSecrets` and its
//! ServiceAccount's, read from the API only when `readPullSecrets` is on
//! (the chart then grants `get` on Secrets and ServiceAccounts).

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;

use super::auth::{self, Credentials};
use super::reference::Reference;
use crate::engine::Query;

/// Every credential for `image`'s registry, in the pod's order, then the
/// ServiceAccount's. A Secret that cannot be read or parsed is logged and
/// skipped: the look-up then goes on with the others.
pub async fn credentials(
    client: &kube::Client,
    namespace: &str,
    query: &Query,
    image: &Reference,
) -> Vec<Credentials> {
    let mut names = query.pull_secrets.clone();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match accounts.get_opt(&query.service_account).await {
        Ok(Some(sa)) => names.extend(
            sa.image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty()),
        ),
        Ok(None) => {}
        Err(error) => tracing::warn!(%namespace, service_account = %query.service_account, %error,
            "registry: cannot read the ServiceAccount's imagePullSecrets"),
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut found = Vec::new();
    for name in names {
        let secret = match secrets.get_opt(&name).await {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%namespace, secret = %name, %error, "registry: cannot read the pull secret");
                continue;
            }
        };
        let data = secret.data.unwrap_or_default();
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
