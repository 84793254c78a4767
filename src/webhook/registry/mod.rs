//! Runners without a command run their image's ENTRYPOINT and CMD; this
//! reads them from the image's registry for the engine (issue 16).
//!
//! The engine stays pure: it asks through a lookup ([`Resolver::cached`])
//! that only reads this cache. When it had to answer "unknown", the review
//! path calls [`Resolver::resolve`], which waits at most the configured
//! budget for the registry and reviews again if it answered; a look-up
//! still running then finishes in the background and fills the cache for
//! the next pod. Concurrent reviews of one image share one look-up.
//! Failures are cached too (shorter), so a silent registry costs one
//! budget per image and TTL, not one per pod.

pub mod auth;
pub mod client;
pub mod reference;
mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::engine::config::RegistryConfig;
use crate::engine::{ImageCommand, Platform, Query};
use auth::Credentials;
use client::{Client, FetchError, Fetched};
use reference::Reference;

/// A background look-up never runs longer than this (connect timeouts
/// and body limits bound each request; this bounds them all).
const LOOKUP_CAP: Duration = Duration::from_secs(30);

/// What [`Resolver::resolve`] found for one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// In the cache now (a command, or a cached failure).
    Known,
    /// The budget ran out; the look-up goes on in the background.
    Pending,
}

/// The cache's first key: an image reference as the pod wrote it, for one platform.
type Key = (String, Platform);

#[derive(Debug, Clone)]
enum Entry {
    /// The image's config digest (the second key).
    Found {
        config: String,
        until: Instant,
    },
    Failed {
        error: String,
        until: Instant,
    },
}

impl Entry {
    fn until(&self) -> Instant {
        match self {
            Entry::Found { until, .. } | Entry::Failed { until, .. } => *until,
        }
    }
}

/// Bounded: by reference (tag → config digest, expires) and by config
/// digest (immutable content; expires too, so that the map stays bounded
/// by what is in use). The entry that expires first goes when full.
#[derive(Default)]
struct Cache {
    by_ref: HashMap<Key, Entry>,
    by_digest: HashMap<String, (ImageCommand, Instant)>,
}

impl Cache {
    fn get(&self, key: &Key, now: Instant) -> Option<&Entry> {
        self.by_ref.get(key).filter(|e| e.until() > now)
    }

    fn command(&self, digest: &str, now: Instant) -> Option<&ImageCommand> {
        self.by_digest
            .get(digest)
            .filter(|(_, until)| *until > now)
            .map(|(c, _)| c)
    }

    fn insert(&mut self, key: Key, entry: Entry, command: Option<ImageCommand>, capacity: usize) {
        let now = Instant::now();
        self.by_ref.retain(|_, e| e.until() > now);
        self.by_digest.retain(|_, (_, until)| *until > now);
        if !self.by_ref.contains_key(&key) && self.by_ref.len() >= capacity {
            if let Some(oldest) = self
                .by_ref
                .iter()
                .min_by_key(|(_, e)| e.until())
                .map(|(k, _)| k.clone())
            {
                self.by_ref.remove(&oldest);
            }
        }
        if let (Entry::Found { config, until }, Some(command)) = (&entry, command) {
            if !self.by_digest.contains_key(config) && self.by_digest.len() >= capacity {
                if let Some(oldest) = self
                    .by_digest
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| k.clone())
                {
                    self.by_digest.remove(&oldest);
                }
            }
            self.by_digest.insert(config.clone(), (command, *until));
        }
        self.by_ref.insert(key, entry);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("registry.caFile {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("registry client TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The resolver the configuration asks for (`None` when disabled), and an
/// API client only when pull secrets are to be read (outside a cluster
/// there is none: anonymous only). `caFile` is checked here, so a bad one
/// stops the start; the CAs themselves are loaded at the first look-up
/// ([`Resolver::client`]): the system's 140-odd trust anchors held 0.35
/// MiB of a webhook whose runners all have a command, which never looks
/// anything up (docs/performance.md).
pub async fn from_config(config: &RegistryConfig) -> Result<Option<Arc<Resolver>>, SetupError> {
    if !config.enabled {
        return Ok(None);
    }
    if let Some(path) = &config.ca_file {
        ca_file(path)?;
    }
    let kube = if config.read_pull_secrets {
        match crate::webhook::apiserver::Client::infer().await {
            Ok(c) => Some(c),
            Err(error) => {
                tracing::warn!(%error, "registry: no Kubernetes API client; pull secrets cannot be read");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(ca_file = ?config.ca_file, budget_ms = config.budget_milliseconds,
        plain_http = ?config.plain_http_registries,
        read_pull_secrets = kube.is_some(), "registry: runners without a command are looked up");
    Ok(Some(Arc::new(Resolver::new(config.clone(), kube))))
}

/// The certificates of `registry.caFile`, at least one.
fn ca_file(path: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, SetupError> {
    let bad = |message: String| SetupError::CaFile {
        path: path.to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    crate::webhook::https::certificates(&pem).map_err(bad)
}

/// The system's CAs and `caFile`'s.
fn roots(config: &RegistryConfig) -> Result<rustls::RootCertStore, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (system, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = &config.ca_file {
        for cert in ca_file(path)? {
            roots.add(cert).map_err(|e| SetupError::CaFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        tracing::warn!("registry: no CA certificates (none in the system, no registry.caFile): every look-up will fail");
    }
    tracing::info!(system_cas = system, ca_file = ?config.ca_file, "registry: CAs loaded for the first look-up");
    Ok(roots)
}

pub struct Resolver {
    /// Made at the first look-up, with the CAs ([`from_config`] says why).
    client: tokio::sync::OnceCell<Client>,
    config: RegistryConfig,
    /// For imagePullSecrets, when `readPullSecrets` is on.
    kube: Option<crate::webhook::apiserver::Client>,
    cache: Mutex<Cache>,
    /// Look-ups under way: done-signal and start. A review joining one
    /// waits only what is left of the budget from that start, so a
    /// registry that does not answer costs one budget, not one per pod.
    inflight: Mutex<HashMap<Key, (watch::Receiver<bool>, Instant)>>,
}

impl Resolver {
    pub fn new(
        config: RegistryConfig,
        kube: Option<crate::webhook::apiserver::Client>,
    ) -> Resolver {
        Resolver {
            client: tokio::sync::OnceCell::new(),
            config,
            kube,
            cache: Mutex::default(),
            inflight: Mutex::default(),
        }
    }

    /// The registry client, made at the first look-up. A failure (the CA
    /// file gone or broken since the start) fails this look-up, is cached
    /// as such, and is tried again at the next.
    async fn client(&self) -> Result<&Client, FetchError> {
        self.client
            .get_or_try_init(|| async {
                let config = self.config.clone();
                let made = tokio::task::spawn_blocking(move || {
                    let roots = roots(&config)?;
                    Client::new(roots, &config.plain_http_registries).map_err(SetupError::from)
                })
                .await;
                match made {
                    Ok(result) => result.map_err(|e| FetchError::Setup(e.to_string())),
                    Err(e) => Err(FetchError::Setup(format!("loading the CAs: {e}"))),
                }
            })
            .await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Poisoned only by a panic inside a map operation: the maps are whole.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine's lookup: the cache only, never the network.
    pub fn cached(&self, query: &Query) -> Option<ImageCommand> {
        let now = Instant::now();
        let cache = self.cache();
        match cache.get(&(query.image.clone(), query.platform.clone()), now)? {
            Entry::Found { config, .. } => cache.command(config, now).cloned(),
            Entry::Failed { .. } => None,
        }
    }

    /// The cached failure for this image, if its look-up failed.
    pub fn failure(&self, query: &Query) -> Option<String> {
        match self.cache().get(
            &(query.image.clone(), query.platform.clone()),
            Instant::now(),
        )? {
            Entry::Failed { error, .. } => Some(error.clone()),
            Entry::Found { .. } => None,
        }
    }

    /// Looks `query` up (or joins the look-up under way), waiting at most
    /// the budget. `namespace` is the pod's, for its pull secrets.
    pub async fn resolve(self: &Arc<Self>, query: &Query, namespace: &str) -> Resolution {
        let key = (query.image.clone(), query.platform.clone());
        if self.cache().get(&key, Instant::now()).is_some() {
            return Resolution::Known;
        }
        let (done, started) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match inflight.get(&key) {
                Some((rx, started)) => (rx.clone(), *started),
                None => {
                    let (tx, rx) = watch::channel(false);
                    let started = Instant::now();
                    inflight.insert(key.clone(), (rx.clone(), started));
                    let this = Arc::clone(self);
                    let query = query.clone();
                    let namespace = namespace.to_string();
                    tokio::spawn(async move {
                        this.look_up(key, &query, &namespace).await;
                        let _ = tx.send(true);
                    });
                    (rx, started)
                }
            }
        };
        let budget = Duration::from_millis(u64::from(self.config.budget_milliseconds))
            .saturating_sub(started.elapsed());
        let wait = async move {
            let mut done = done;
            // An error means the look-up task is gone: it stored its result.
            let _ = done.wait_for(|d| *d).await;
        };
        match tokio::time::timeout(budget, wait).await {
            Ok(()) => Resolution::Known,
            Err(_) => Resolution::Pending,
        }
    }

    /// One look-up, stored in the cache whatever its result.
    async fn look_up(&self, key: Key, query: &Query, namespace: &str) {
        let started = Instant::now();
        let result = match tokio::time::timeout(LOOKUP_CAP, self.fetch(query, namespace)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {}s", LOOKUP_CAP.as_secs())),
        };
        let took_ms = started.elapsed().as_millis() as u64;
        let now = Instant::now();
        let (entry, command) = match result {
            Ok(Fetched {
                config_digest,
                command,
                requests,
            }) => {
                tracing::info!(image = %query.image, platform = %query.platform, config = %config_digest,
                    entrypoint = ?command.entrypoint, cmd = ?command.cmd, requests, took_ms,
                    "registry: image command found");
                let until = now + Duration::from_secs(u64::from(self.config.cache_ttl_seconds));
                (
                    Entry::Found {
                        config: config_digest,
                        until,
                    },
                    Some(command),
                )
            }
            Err(error) => {
                tracing::warn!(image = %query.image, platform = %query.platform, %error, took_ms,
                    "registry: image command not found; runners of this image are not supervised");
                let until = now + Duration::from_secs(u64::from(self.config.failure_ttl_seconds));
                (Entry::Failed { error, until }, None)
            }
        };
        self.cache().insert(
            key.clone(),
            entry,
            command,
            self.config.cache_entries as usize,
        );
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    async fn fetch(&self, query: &Query, namespace: &str) -> Result<Fetched, FetchError> {
        let image = Reference::parse(&query.image)?;
        let client = self.client().await?;
        let anonymous = client.image_command(&image, &query.platform, &[None]).await;
        let unauthorized = matches!(anonymous, Err(FetchError::Unauthorized { .. }));
        let Some(kube) = self
            .kube
            .as_ref()
            .filter(|_| unauthorized && self.config.read_pull_secrets)
        else {
            return anonymous;
        };
        let credentials: Vec<Option<Credentials>> =
            secrets::credentials(kube, namespace, query, &image)
                .await
                .into_iter()
                .map(Some)
                .collect();
        if credentials.is_empty() {
            return anonymous;
        }
        client
            .image_command(&image, &query.platform, &credentials)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(image: &str) -> Key {
        (image.to_string(), Platform::default())
    }

    fn found(config: &str, ttl: u64) -> Entry {
        Entry::Found {
            config: config.into(),
            until: Instant::now() + Duration::from_secs(ttl),
        }
    }

    fn temp_file(name: &str, contents: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!("registry-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// A bad `caFile` still stops the start, though the CAs are loaded later.
    #[tokio::test]
    async fn a_bad_ca_file_fails_the_start() {
        for (name, contents) in [
            ("empty.pem", &b""[..]),
            ("junk.pem", b"not a certificate\n"),
        ] {
            let config = RegistryConfig {
                ca_file: Some(temp_file(name, contents)),
                ..RegistryConfig::default()
            };
            let error = from_config(&config).await.err().expect(name);
            assert!(
                matches!(error, SetupError::CaFile { .. }),
                "{name}: {error}"
            );
            assert!(error.to_string().contains(name), "{error}");
        }
        let missing = RegistryConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RegistryConfig::default()
        };
        let error = from_config(&missing).await.err().expect("missing file");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }

    /// No CA is loaded until a look-up needs the client; the client is
    /// made once; a CA file broken since the start fails that look-up
    /// with the reason, and a later one tries again.
    #[tokio::test]
    async fn the_client_is_made_at_the_first_look_up() {
        let dir = std::env::temp_dir().join(format!("registry-unit-ca-{}", std::process::id()));
        crate::webhook::pki::write_dev_certs(&dir, &[], 30).unwrap();
        let ca = dir.join("ca.crt").to_string_lossy().into_owned();
        let config = RegistryConfig {
            ca_file: Some(ca.clone()),
            ..RegistryConfig::default()
        };
        let resolver = from_config(&config).await.unwrap().expect("enabled");
        assert!(resolver.client.get().is_none(), "CAs loaded at the start");

        let good = std::fs::read(&ca).unwrap();
        std::fs::write(&ca, "broken since the start").unwrap();
        let error = resolver.client().await.err().expect("broken CA file");
        assert!(matches!(error, FetchError::Setup(_)), "{error}");
        assert!(error.to_string().contains(&ca), "{error}");
        assert!(resolver.client.get().is_none());

        std::fs::write(&ca, good).unwrap();
        let first: *const Client = resolver.client().await.unwrap();
        let second: *const Client = resolver.client().await.unwrap();
        assert_eq!(first, second, "made once");
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let mut cache = Cache::default();
        let cmd = |e: &str| ImageCommand {
            entrypoint: vec![e.into()],
            cmd: vec![],
        };
        cache.insert(key("a"), found("sha256:a", 10), Some(cmd("/a")), 2);
        cache.insert(key("b"), found("sha256:b", 30), Some(cmd("/b")), 2);
        // Full: the entry that expires first (a) makes room.
        cache.insert(key("c"), found("sha256:c", 20), Some(cmd("/c")), 2);
        let now = Instant::now();
        assert!(cache.get(&key("a"), now).is_none());
        assert!(cache.get(&key("b"), now).is_some() && cache.get(&key("c"), now).is_some());
        assert_eq!(cache.by_ref.len(), 2);
        assert_eq!(cache.by_digest.len(), 2);
        assert_eq!(cache.command("sha256:c", now), Some(&cmd("/c")));
        // Two tags of one image share its config.
        cache.insert(key("c2"), found("sha256:c", 20), Some(cmd("/c")), 2);
        assert_eq!(cache.by_digest.len(), 2);
        // Expired entries are not answered, failures are remembered.
        let later = now + Duration::from_secs(25);
        assert!(cache.get(&key("c"), later).is_none());
        assert!(cache.get(&key("b"), later).is_some());
        let failed = Entry::Failed {
            error: "HTTP 404".into(),
            until: now + Duration::from_secs(5),
        };
        cache.insert(key("missing"), failed, None, 2);
        assert!(matches!(
            cache.get(&key("missing"), now),
            Some(Entry::Failed { .. })
        ));
    }
}
