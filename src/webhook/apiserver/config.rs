//! Where the apiserver is and how to prove who we are: a kubeconfig
//! (`KUBECONFIG`, else `~/.kube/config`) if there is one, else the pod's
//! ServiceAccount — the order kube-rs' `Config::infer` and kubectl use.
//!
//! The kubeconfig subset read is what clusters hand out today: the current
//! context's server, its CA (file or data), and a user's token, token file,
//! client certificate (file or data) or exec plugin (EKS, GKE, AKS, OIDC
//! helpers). Anything else that changes how to connect (`auth-provider`,
//! which kubectl itself dropped in 1.26, basic auth, `proxy-url`,
//! `tls-server-name`, `insecure-skip-tls-verify`) is an error that names
//! it: connecting without it would fail later, less clearly, or connect
//! less safely than the file asks.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::webhook::https::certificates;
use serde::{Deserialize, Deserializer};

use super::exec::{self, ExecConfig};
use super::ConfigError;

/// The ServiceAccount's files in every pod that mounts its token.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What a client needs: the base URL, whom to trust, and who we are.
pub struct Config {
    /// `https://host:port`, without a trailing slash.
    pub server: String,
    pub roots: rustls::RootCertStore,
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    pub auth: Auth,
    /// Where it came from, for errors and logs.
    pub source: String,
}

/// The bearer token, and where it comes from.
pub enum Auth {
    None,
    Token(String),
    /// Read at each request: the kubelet rotates bound ServiceAccount
    /// tokens (hourly by default) by rewriting the file.
    TokenFile(PathBuf),
    /// Run again when the apiserver answers 401.
    Exec(ExecConfig),
}

/// The environment [`Config::infer`] reads, passed in so tests need not
/// change the process's.
pub struct Env {
    pub kubeconfig: Option<String>,
    pub home: Option<PathBuf>,
    pub service_host: Option<String>,
    pub service_port: Option<String>,
    pub service_account_dir: PathBuf,
}

impl Env {
    pub fn of_process() -> Env {
        Env {
            kubeconfig: std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()),
            home: std::env::var_os("HOME").map(PathBuf::from),
            // Empty is unset, as for KUBECONFIG.
            service_host: std::env::var("KUBERNETES_SERVICE_HOST")
                .ok()
                .filter(|v| !v.is_empty()),
            service_port: std::env::var("KUBERNETES_SERVICE_PORT")
                .ok()
                .filter(|v| !v.is_empty()),
            service_account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
        }
    }
}

impl Config {
    /// The kubeconfig if there is one (a broken one is an error, not a
    /// reason to try something else), else the in-cluster account.
    pub fn infer(env: &Env) -> Result<Config, ConfigError> {
        let files: Vec<PathBuf> = match &env.kubeconfig {
            Some(list) => std::env::split_paths(list).filter(|p| p.exists()).collect(),
            None => env
                .home
                .iter()
                .map(|home| home.join(".kube").join("config"))
                .filter(|p| p.exists())
                .collect(),
        };
        if !files.is_empty() {
            return from_kubeconfig(&files);
        }
        match (&env.service_host, &env.service_port) {
            (Some(host), Some(port)) => in_cluster(host, port, &env.service_account_dir),
            (None, None) => Err(ConfigError::None {
                kubeconfig: env.kubeconfig.clone(),
            }),
            (host, _) => {
                let (set, unset) = match host {
                    Some(_) => ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"),
                    None => ("KUBERNETES_SERVICE_PORT", "KUBERNETES_SERVICE_HOST"),
                };
                Err(ConfigError::Invalid {
                    origin: "in-cluster environment".into(),
                    message: format!("{set} is set but {unset} is not"),
                })
            }
        }
    }
}

/// The pod's ServiceAccount: the `kubernetes` Service's address from the
/// environment, the cluster CA and the token file.
pub fn in_cluster(host: &str, port: &str, dir: &Path) -> Result<Config, ConfigError> {
    let source = format!("in-cluster ServiceAccount ({})", dir.display());
    let bad = |message: String| ConfigError::Invalid {
        origin: source.clone(),
        message,
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad(format!("KUBERNETES_SERVICE_PORT={port:?} is not a port")))?;
    // An IPv6 address needs brackets in a URL.
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let ca = dir.join("ca.crt");
    let roots = roots(&read(&ca).map_err(&bad)?, &ca.display().to_string()).map_err(&bad)?;
    let token = dir.join("token");
    if !token.exists() {
        return Err(bad(format!("{} does not exist", token.display())));
    }
    Ok(Config {
        server: format!("https://{host}:{port}"),
        roots,
        identity: None,
        auth: Auth::TokenFile(token),
        source,
    })
}

/// kubectl and client-go write an empty list or map as `null` (`users:
/// null`, an exec plugin's `env: null`): read as empty, as they do.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default, deserialize_with = "null_as_default")]
    clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    users: Vec<NamedUser>,
    #[serde(default, deserialize_with = "null_as_default")]
    contexts: Vec<NamedContext>,
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    user: User,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    exec: Option<ExecConfig>,
    auth_provider: Option<serde_json::Value>,
    username: Option<String>,
    /// Impersonation (`as`, `as-groups`, `as-uid`, `as-user-extra`).
    #[serde(rename = "as")]
    impersonate: Option<String>,
    as_groups: Option<serde_json::Value>,
    as_uid: Option<String>,
    as_user_extra: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

/// One file or several (`KUBECONFIG=a:b`): as kubectl merges them, the
/// first file that names a cluster, user or context wins it, and the first
/// `current-context` set is the one.
pub fn from_kubeconfig(files: &[PathBuf]) -> Result<Config, ConfigError> {
    let mut merged = Kubeconfig::default();
    for file in files {
        let text = read(file).map_err(|message| ConfigError::Invalid {
            origin: file.display().to_string(),
            message,
        })?;
        let mut one: Kubeconfig =
            serde_norway::from_str(&text).map_err(|e| ConfigError::Invalid {
                origin: file.display().to_string(),
                message: format!("not a kubeconfig: {e}"),
            })?;
        // Relative paths are relative to the file that holds them.
        let dir = file.parent().unwrap_or(Path::new("."));
        for c in &mut one.clusters {
            c.cluster.certificate_authority =
                c.cluster.certificate_authority.take().map(|p| dir.join(p));
        }
        for u in &mut one.users {
            let user = &mut u.user;
            for path in [
                &mut user.token_file,
                &mut user.client_certificate,
                &mut user.client_key,
            ] {
                *path = path.take().map(|p| dir.join(p));
            }
            if let Some(exec) = &mut user.exec {
                exec.resolve_command(dir);
            }
        }
        // An empty current-context (kubectl writes one into files without
        // contexts) leaves it to the next file.
        merged.current_context = merged
            .current_context
            .or(one.current_context.filter(|c| !c.is_empty()));
        merged.clusters.extend(one.clusters);
        merged.users.extend(one.users);
        merged.contexts.extend(one.contexts);
    }
    let source = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    resolve(merged, &source)
}

fn resolve(config: Kubeconfig, source: &str) -> Result<Config, ConfigError> {
    let bad = |message: String| ConfigError::Invalid {
        origin: source.to_string(),
        message,
    };
    let name = config
        .current_context
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("no current-context".into()))?;
    let context = &config
        .contexts
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            bad(format!(
                "current-context {name:?} is not among its contexts"
            ))
        })?
        .context;
    let cluster = &config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .ok_or_else(|| {
            bad(format!(
                "context {name:?}: no cluster named {:?}",
                context.cluster
            ))
        })?
        .cluster;
    let user = match config.users.iter().find(|u| u.name == context.user) {
        Some(u) => &u.user,
        None if context.user.is_empty() => &User::default(),
        None => {
            return Err(bad(format!(
                "context {name:?}: no user named {:?}",
                context.user
            )))
        }
    };
    let unsupported = |what: &str| {
        bad(format!(
            "context {name:?} uses {what}, which dind-injector does not support (docs/design.md)"
        ))
    };
    if cluster.insecure_skip_tls_verify {
        return Err(unsupported("insecure-skip-tls-verify: give its CA instead"));
    }
    if cluster.tls_server_name.is_some() {
        return Err(unsupported("tls-server-name"));
    }
    if cluster.proxy_url.is_some() {
        return Err(unsupported("proxy-url"));
    }
    if user.auth_provider.is_some() {
        return Err(unsupported(
            "auth-provider (gone from kubectl since 1.26: use its exec plugin)",
        ));
    }
    if user.username.is_some() {
        return Err(unsupported("basic auth (username/password)"));
    }
    let null = |v: &Option<serde_json::Value>| v.as_ref().is_none_or(serde_json::Value::is_null);
    if user.impersonate.is_some()
        || user.as_uid.is_some()
        || !null(&user.as_groups)
        || !null(&user.as_user_extra)
    {
        return Err(unsupported(
            "impersonation (as, as-groups, as-uid, as-user-extra)",
        ));
    }
    if user.exec.as_ref().is_some_and(|e| e.provide_cluster_info) {
        return Err(unsupported("an exec plugin with provideClusterInfo"));
    }
    if !cluster.server.starts_with("https://") {
        return Err(bad(format!(
            "cluster {:?}: server {:?} is not https://",
            context.cluster, cluster.server
        )));
    }
    let ca = data_or_file(
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
        "certificate-authority",
    )
    .map_err(&bad)?;
    let roots = match ca {
        Some((pem, from)) => roots(&pem, &from),
        None => system_roots(),
    }
    .map_err(&bad)?;
    let mut identity = identity(user).map_err(&bad)?;
    let auth = if let Some(token) = user.token.clone().filter(|t| !t.is_empty()) {
        Auth::Token(token)
    } else if let Some(file) = &user.token_file {
        Auth::TokenFile(file.clone())
    } else if let Some(exec) = &user.exec {
        // A plugin may answer with a client certificate instead of a token:
        // that is needed now, for the TLS configuration.
        let credential = exec::run(exec).map_err(&bad)?;
        if let Some(pair) = credential.identity().map_err(&bad)? {
            identity = Some(pair);
        }
        exec.remember(credential);
        Auth::Exec(exec.clone())
    } else {
        Auth::None
    };
    Ok(Config {
        server: cluster.server.trim_end_matches('/').to_string(),
        roots,
        identity,
        auth,
        source: format!("{source} (context {name:?})"),
    })
}

fn identity(
    user: &User,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    let cert = data_or_file(
        &user.client_certificate_data,
        &user.client_certificate,
        "client-certificate",
    )?;
    let key = data_or_file(&user.client_key_data, &user.client_key, "client-key")?;
    match (cert, key) {
        (None, None) => Ok(None),
        (Some((cert, _)), Some((key, _))) => pem_identity(&cert, &key).map(Some),
        _ => Err("a client certificate needs both client-certificate and client-key".into()),
    }
}

/// A PEM certificate chain and its PEM key.
pub fn pem_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = certificates(cert.as_bytes()).map_err(|e| format!("client certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("client key: {e}"))?;
    Ok((chain, key))
}

/// The CAs in a PEM text, at least one.
fn roots(pem: &str, what: &str) -> Result<rustls::RootCertStore, String> {
    let certs = certificates(pem.as_bytes()).map_err(|e| format!("{what}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(roots)
}

/// A cluster without a CA in the kubeconfig has a publicly trusted one.
fn system_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err("no certificate-authority and no system CAs".into());
    }
    Ok(roots)
}

/// A kubeconfig's `X-data` (base64, first) or `X` (a file), if either,
/// with where it came from (`X-data` or the file's path) for errors.
fn data_or_file(
    data: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<(String, String)>, String> {
    let from = format!("{what}-data");
    match (data, file) {
        (Some(data), _) => Ok(Some((decode(data, &from)?, from))),
        (None, Some(path)) => Ok(Some((read(path)?, path.display().to_string()))),
        (None, None) => Ok(None),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn decode(data: &str, what: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("{what}: not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what}: not PEM text"))
}
