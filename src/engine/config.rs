//! The injector's configuration: one YAML file, every field defaulted.
//!
//! Parsing rejects unknown fields (a typo must not silently fall back to a
//! default) and [`Config::validate`] checks what types cannot express, with
//! errors that name the field, the value and what was expected.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contract::{self, cmdline};
use crate::engine::{quantity, shared};

/// Slack the pod needs after the drain ends: the runner stops on SIGINT, then
/// the sidecar stops dockerd (SIGTERM, bounded wait, SIGKILL).
pub const STOP_MARGIN_SECONDS: u32 = 30;

/// Upper bound for every seconds field: a week. Larger values are typos.
pub const MAX_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// `classic` (a regular sidecar container), `native` (an init container
    /// with `restartPolicy: Always`, Kubernetes ≥ 1.29) or `auto` (decided by
    /// whoever runs the engine: the server asks the cluster, offline `inject`
    /// uses classic).
    pub sidecar_mode: SidecarMode,
    /// Pods with `hostNetwork: true` would put the daemon's port on the node;
    /// they are denied unless this is set.
    pub allow_host_network: bool,
    /// Pods get at least this `terminationGracePeriodSeconds` (never lowered).
    pub min_termination_grace_period_seconds: u32,
    pub injector: InjectorConfig,
    /// The Docker daemon's settings: the profile named `default`.
    pub dind: DindConfig,
    /// Named variants of the `dind` section, picked per pod by the
    /// `dind-injector.io/profile` annotation (or the namespace's). Each
    /// field a profile sets replaces that whole field of `dind`; the others
    /// are `dind`'s. Kept as written and resolved by [`Config::profiles`],
    /// so that a profile is checked exactly like `dind` is.
    pub profiles: BTreeMap<String, Map<String, Value>>,
    /// The profile of pods whose annotation (and namespace) names none.
    pub default_profile: String,
    /// Whether `serve` reads the `dind-injector.io/profile` annotation of
    /// namespaces (a watched cache; RBAC `list` and `watch` on namespaces).
    pub namespace_profiles: bool,
    pub runner: RunnerConfig,
    /// Commands for runner containers that rely on their image's ENTRYPOINT.
    pub known_images: Vec<KnownImage>,
    /// Reading a command-less runner's ENTRYPOINT and CMD from its image's
    /// registry (the webhook only; `inject` never reads a registry).
    pub registry: RegistryConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Look the command up at all.
    pub enabled: bool,
    /// How long one review may wait for a registry; then the pod is
    /// admitted with the fallback and the look-up finishes for the next.
    pub budget_milliseconds: u32,
    /// Images (and, separately, image configs) kept.
    pub cache_entries: u32,
    /// How long a tag's answer is trusted (a tag may be pushed again).
    pub cache_ttl_seconds: u32,
    /// How long a failed look-up is remembered (a missing image, a registry
    /// that does not answer) before it is tried again.
    pub failure_ttl_seconds: u32,
    /// Read the pod's imagePullSecrets and its ServiceAccount's when
    /// anonymous access is refused (needs `get` on Secrets and
    /// ServiceAccounts: the chart's `registry.readPullSecrets`).
    pub read_pull_secrets: bool,
    /// PEM file of CA certificates trusted besides the system's (a private
    /// registry's CA; the image has no system certificates of its own).
    pub ca_file: Option<String>,
    /// Registries (`host` or `host:port`, as images name them) reached over
    /// plain HTTP, like containerd's `plain_http` hosts: anonymous only, a
    /// pull secret is never sent in clear. Every other registry is HTTPS.
    pub plain_http_registries: Vec<String>,
}

/// The webhook's default timeout is 10 s; the look-up must leave the rest
/// of the review and the apiserver's own margin well inside it.
pub const MAX_REGISTRY_BUDGET_MS: u32 = 5000;

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            budget_milliseconds: 2000,
            cache_entries: 1000,
            cache_ttl_seconds: 3600,
            failure_ttl_seconds: 60,
            read_pull_secrets: false,
            ca_file: None,
            plain_http_registries: Vec::new(),
        }
    }
}

/// The name of the profile that is the `dind` section itself.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SidecarMode {
    Classic,
    Native,
    #[default]
    Auto,
}

impl SidecarMode {
    pub const ACCEPTED: &'static str = "classic, native or auto";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "classic" => Some(Self::Classic),
            "native" => Some(Self::Native),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }

    /// [`SidecarMode::parse`] for a command-line flag: the error names the
    /// value and what is accepted.
    pub fn parse_arg(s: &str) -> Result<Self, String> {
        Self::parse(s)
            .ok_or_else(|| format!("{s:?} is not a sidecar mode: expected {}", Self::ACCEPTED))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectorConfig {
    /// Image of the `dind-injector-init` container (this project's image).
    pub image: String,
    pub image_pull_policy: PullPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DindConfig {
    pub image: String,
    pub image_pull_policy: PullPolicy,
    /// Requests and limits of the `dind` container, as Kubernetes quantities.
    pub resources: Resources,
    /// `sizeLimit` of the `/var/lib/docker` emptyDir; unset means unbounded.
    pub storage_size_limit: Option<String>,
    /// Extra dockerd flags. Each must be a flag: `dockerd-entrypoint.sh` adds
    /// its host and TLS defaults only when every argument is one.
    pub dockerd_args: Vec<String>,
    /// Registry mirrors, each becomes `--registry-mirror=URL`.
    pub registry_mirrors: Vec<String>,
    /// What `/var/lib/docker` is: an emptyDir, or a generic ephemeral volume
    /// (its size is `storageSizeLimit`).
    pub storage: Storage,
    /// A ConfigMap key mounted read-only as `/etc/docker/daemon.json`.
    pub daemon_config: Option<DaemonConfig>,
    /// CA certificates of private registries, mounted read-only as
    /// `/etc/docker/certs.d/<registry>/ca.crt` (where dockerd looks).
    pub registry_certificates: Vec<RegistryCertificate>,
    /// Extra environment variables of the `dind` container.
    pub env: Vec<EnvVar>,
    /// Extra volumes mounted into the `dind` container.
    pub extra_mounts: Vec<ExtraMount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Storage {
    #[serde(rename = "type")]
    pub kind: StorageKind,
    /// `Memory`: a tmpfs (emptyDir only; counts against the pod's memory).
    pub medium: Option<StorageMedium>,
    /// The claim's storage class (ephemeral only); unset = the cluster's default.
    pub storage_class_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StorageKind {
    #[default]
    EmptyDir,
    /// A generic ephemeral volume: a PVC made for the pod and deleted with it.
    Ephemeral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StorageMedium {
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonConfig {
    pub config_map: String,
    #[serde(default = "default_daemon_config_key")]
    pub key: String,
}

fn default_daemon_config_key() -> String {
    "daemon.json".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryCertificate {
    /// `host` or `host:port`, as images name the registry.
    pub registry: String,
    /// Exactly one of `configMap` and `secret` holds the certificate.
    pub config_map: Option<String>,
    pub secret: Option<String>,
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtraMount {
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    /// A Kubernetes volume source, one key (`configMap: {name: x}`,
    /// `hostPath: {…}`, …); the engine names the volume.
    pub volume: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RunnerConfig {
    /// The runner's work directory, mounted at the same path in `dind` so
    /// that the daemon resolves bind mounts to the same files. `null` disables.
    pub work_dir: Option<String>,
    /// The runner image's externals (node for JavaScript actions), copied to
    /// a shared volume and mounted at the same path in `dind`. `null` disables.
    pub externals_dir: Option<String>,
    /// Where the work and externals directories may be (annotations
    /// included); empty: anywhere that covers none of the daemon's own
    /// directories ([`crate::engine::shared::DAEMON_DIRS`]).
    pub allowed_dir_prefixes: Vec<String>,
    /// A process of this name among the runner's descendants means a job runs.
    pub drain_process: String,
    /// How long a running job may finish after SIGTERM before the runner is
    /// asked to stop. Must leave [`STOP_MARGIN_SECONDS`] of the grace period.
    pub drain_timeout_seconds: u32,
    /// How long the supervisor waits for Docker before starting the runner
    /// (classic mode; in native mode the kubelet orders the start).
    pub docker_wait_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KnownImage {
    /// An image repository, or a repository prefix ending in `*`.
    pub image: String,
    /// The command that image runs (its ENTRYPOINT followed by its CMD).
    pub entrypoint: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sidecar_mode: SidecarMode::Auto,
            allow_host_network: false,
            min_termination_grace_period_seconds: 3600,
            injector: InjectorConfig::default(),
            dind: DindConfig::default(),
            profiles: BTreeMap::new(),
            default_profile: DEFAULT_PROFILE.into(),
            namespace_profiles: false,
            runner: RunnerConfig::default(),
            known_images: vec![KnownImage {
                image: "ghcr.io/actions/actions-runner".into(),
                entrypoint: vec!["/home/runner/run.sh".into()],
            }],
            registry: RegistryConfig::default(),
        }
    }
}

impl Default for InjectorConfig {
    fn default() -> Self {
        Self {
            image: contract::DEFAULT_INJECTOR_IMAGE.into(),
            image_pull_policy: PullPolicy::IfNotPresent,
        }
    }
}

impl Default for DindConfig {
    fn default() -> Self {
        Self {
            image: contract::DEFAULT_DIND_IMAGE.into(),
            image_pull_policy: PullPolicy::IfNotPresent,
            resources: Resources {
                requests: BTreeMap::from([
                    ("cpu".into(), "100m".into()),
                    ("memory".into(), "256Mi".into()),
                ]),
                limits: BTreeMap::new(),
            },
            storage_size_limit: None,
            dockerd_args: Vec::new(),
            registry_mirrors: Vec::new(),
            storage: Storage::default(),
            daemon_config: None,
            registry_certificates: Vec::new(),
            env: Vec::new(),
            extra_mounts: Vec::new(),
        }
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            work_dir: Some("/home/runner/_work".into()),
            externals_dir: Some("/home/runner/externals".into()),
            allowed_dir_prefixes: Vec::new(),
            drain_process: cmdline::DEFAULT_DRAIN_PROCESS.into(),
            drain_timeout_seconds: cmdline::DEFAULT_DRAIN_TIMEOUT.0,
            docker_wait_seconds: cmdline::DEFAULT_DOCKER_WAIT.0,
        }
    }
}

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("config field {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// What the offline commands (`inject`, `policy`) work from: the file
    /// when one is given, else every default; `mode` overrides `sidecarMode`.
    pub fn load_or_default(
        path: Option<&Path>,
        mode: Option<SidecarMode>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => Self::load(path)?,
            None => Self::default(),
        };
        if let Some(mode) = mode {
            config.sidecar_mode = mode;
        }
        Ok(config)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: shown,
                message,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text. An empty document is the default config.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
                path: "<text>".into(),
                message: e.to_string(),
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_image("injector.image", &self.injector.image)?;
        self.runner.validate()?;
        self.profiles()?;
        self.validate_durations()?;
        for (i, known) in self.known_images.iter().enumerate() {
            known.validate(&format!("knownImages[{i}]"))?;
        }
        self.registry.validate()
    }

    /// Every seconds field in range, and the drain inside the grace period
    /// with [`STOP_MARGIN_SECONDS`] to spare.
    fn validate_durations(&self) -> Result<(), ConfigError> {
        let grace = self.min_termination_grace_period_seconds;
        let drain = self.runner.drain_timeout_seconds;
        check_seconds("minTerminationGracePeriodSeconds", grace, 1)?;
        check_seconds("runner.drainTimeoutSeconds", drain, 0)?;
        check_seconds(
            "runner.dockerWaitSeconds",
            self.runner.docker_wait_seconds,
            0,
        )?;
        let Some(max) = max_drain(grace) else {
            return Err(invalid(
                "minTerminationGracePeriodSeconds",
                format!(
                    "{grace} is too short: the runner and Docker need at least {STOP_MARGIN_SECONDS}s to stop"
                ),
            ));
        };
        if drain > max {
            return Err(invalid(
                "runner.drainTimeoutSeconds",
                format!(
                    "{drain} leaves less than {STOP_MARGIN_SECONDS}s of \
                     minTerminationGracePeriodSeconds ({grace}) to stop the runner and Docker; \
                     use at most {max}"
                ),
            ));
        }
        Ok(())
    }

    /// Every profile, resolved and checked: `default` (the `dind` section)
    /// and the named ones. The configured default profile must be one.
    pub fn profiles(&self) -> Result<BTreeMap<String, DindConfig>, ConfigError> {
        self.dind.validate("dind", &self.runner)?;
        let mut out = BTreeMap::from([(DEFAULT_PROFILE.to_string(), self.dind.clone())]);
        let base = serde_json::to_value(&self.dind).map_err(|e| invalid("dind", e.to_string()))?;
        for (name, fields) in &self.profiles {
            let at = format!("profiles.{name}");
            if name == DEFAULT_PROFILE {
                return Err(invalid(
                    at,
                    "the profile named default is the dind section; set the fields there",
                ));
            }
            if !is_dns_label(name) {
                return Err(invalid(
                    at,
                    "a profile name is a DNS label (lowercase letters, digits, '-', at most 63)",
                ));
            }
            let mut merged = base.clone();
            for (key, value) in fields {
                merged[key.as_str()] = value.clone();
            }
            let dind: DindConfig =
                serde_json::from_value(merged).map_err(|e| invalid(&at, e.to_string()))?;
            dind.validate(&at, &self.runner)?;
            out.insert(name.clone(), dind);
        }
        if !out.contains_key(&self.default_profile) {
            return Err(invalid(
                "defaultProfile",
                format!(
                    "{:?} is not a profile: expected one of {}",
                    self.default_profile,
                    out.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(out)
    }

    /// The known entrypoint for `image`, first matching entry wins.
    pub fn entrypoint_for(&self, image: &str) -> Option<&[String]> {
        self.known_images
            .iter()
            .find(|k| crate::engine::image::matches(&k.image, image))
            .map(|k| k.entrypoint.as_slice())
    }
}

impl RegistryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let budget = self.budget_milliseconds;
        if !(1..=MAX_REGISTRY_BUDGET_MS).contains(&budget) {
            return Err(invalid(
                "registry.budgetMilliseconds",
                format!("{budget} is out of range: expected 1 to {MAX_REGISTRY_BUDGET_MS} (the webhook's timeout is 10 s)"),
            ));
        }
        if self.cache_entries == 0 || self.cache_entries > 100_000 {
            return Err(invalid(
                "registry.cacheEntries",
                format!(
                    "{} is out of range: expected 1 to 100000",
                    self.cache_entries
                ),
            ));
        }
        check_seconds("registry.cacheTtlSeconds", self.cache_ttl_seconds, 1)?;
        check_seconds("registry.failureTtlSeconds", self.failure_ttl_seconds, 1)?;
        if self.ca_file.as_deref().is_some_and(|f| !f.starts_with('/')) {
            return Err(invalid("registry.caFile", "must be an absolute path"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, host) in self.plain_http_registries.iter().enumerate() {
            let field = format!("registry.plainHttpRegistries[{i}]");
            if !is_registry_host(host) {
                return Err(invalid(
                    field,
                    format!("{host:?} is not a registry host or host:port"),
                ));
            }
            if !seen.insert(host.as_str()) {
                return Err(invalid(field, format!("{host:?} is listed twice")));
            }
        }
        Ok(())
    }
}

impl DindConfig {
    /// `at` is where the settings were written (`dind`, `profiles.NAME`):
    /// every error names the field under it.
    fn validate(&self, at: &str, runner: &RunnerConfig) -> Result<(), ConfigError> {
        check_image(&format!("{at}.image"), &self.image)?;
        for (kind, map) in [
            ("requests", &self.resources.requests),
            ("limits", &self.resources.limits),
        ] {
            for (name, value) in map {
                if !quantity::is_valid(value) {
                    return Err(invalid(
                        format!("{at}.resources.{kind}.{name}"),
                        format!("{value:?} is not a Kubernetes quantity (e.g. 500m, 2Gi)"),
                    ));
                }
            }
        }
        for resource in ["cpu", "memory"] {
            let request = self.resources.requests.get(resource);
            let limit = self.resources.limits.get(resource);
            if let (Some(request), Some(limit)) = (request, limit) {
                if quantity::value(request) > quantity::value(limit) {
                    return Err(invalid(
                        format!("{at}.resources.requests.{resource}"),
                        format!("{request} is above the limit {limit}"),
                    ));
                }
            }
        }
        if let Some(limit) = &self.storage_size_limit {
            if !quantity::is_valid(limit) {
                return Err(invalid(
                    format!("{at}.storageSizeLimit"),
                    format!("{limit:?} is not a Kubernetes quantity (e.g. 20Gi)"),
                ));
            }
        }
        self.validate_storage(at)?;
        for (i, arg) in self.dockerd_args.iter().enumerate() {
            check_dockerd_arg(&format!("{at}.dockerdArgs[{i}]"), arg)?;
        }
        for (i, url) in self.registry_mirrors.iter().enumerate() {
            check_url(&format!("{at}.registryMirrors[{i}]"), url)?;
        }
        if let Some(daemon) = &self.daemon_config {
            check_object_name(&format!("{at}.daemonConfig.configMap"), &daemon.config_map)?;
            check_key(&format!("{at}.daemonConfig.key"), &daemon.key)?;
        }
        self.validate_registry_certificates(at)?;
        let mut names = std::collections::HashSet::new();
        for (i, var) in self.env.iter().enumerate() {
            let field = format!("{at}.env[{i}].name");
            check_env_name(&field, &var.name)?;
            if !names.insert(var.name.as_str()) {
                return Err(invalid(field, format!("{:?} is set twice", var.name)));
            }
        }
        self.validate_extra_mounts(at, runner)
    }

    fn validate_storage(&self, at: &str) -> Result<(), ConfigError> {
        let storage = &self.storage;
        match storage.kind {
            StorageKind::EmptyDir => {
                if storage.storage_class_name.is_some() {
                    return Err(invalid(
                        format!("{at}.storage.storageClassName"),
                        "applies to type: ephemeral only",
                    ));
                }
            }
            StorageKind::Ephemeral => {
                if storage.medium.is_some() {
                    return Err(invalid(
                        format!("{at}.storage.medium"),
                        "applies to type: emptyDir only",
                    ));
                }
                if self.storage_size_limit.is_none() {
                    return Err(invalid(
                        format!("{at}.storageSizeLimit"),
                        "is required with storage type ephemeral: it is the size the claim requests",
                    ));
                }
                if let Some(class) = &storage.storage_class_name {
                    check_object_name(&format!("{at}.storage.storageClassName"), class)?;
                }
            }
        }
        Ok(())
    }

    fn validate_registry_certificates(&self, at: &str) -> Result<(), ConfigError> {
        let mut registries = std::collections::HashSet::new();
        for (i, cert) in self.registry_certificates.iter().enumerate() {
            let field = format!("{at}.registryCertificates[{i}]");
            if !is_registry_host(&cert.registry) {
                return Err(invalid(
                    format!("{field}.registry"),
                    format!("{:?} is not a registry host or host:port", cert.registry),
                ));
            }
            if !registries.insert(cert.registry.as_str()) {
                return Err(invalid(
                    format!("{field}.registry"),
                    format!("{:?} is listed twice", cert.registry),
                ));
            }
            match (&cert.config_map, &cert.secret) {
                (Some(name), None) => check_object_name(&format!("{field}.configMap"), name)?,
                (None, Some(name)) => check_object_name(&format!("{field}.secret"), name)?,
                _ => return Err(invalid(field, "set exactly one of configMap and secret")),
            }
            check_key(&format!("{field}.key"), &cert.key)?;
        }
        Ok(())
    }

    fn validate_extra_mounts(&self, at: &str, runner: &RunnerConfig) -> Result<(), ConfigError> {
        let taken: Vec<&str> = RESERVED_DIND_PATHS
            .iter()
            .copied()
            .chain(runner.work_dir.as_deref())
            .chain(runner.externals_dir.as_deref())
            .collect();
        let mut paths = std::collections::HashSet::new();
        for (i, extra) in self.extra_mounts.iter().enumerate() {
            let field = format!("{at}.extraMounts[{i}]");
            let path = extra.mount_path.trim_end_matches('/');
            check_mount_path(&extra.mount_path)
                .map_err(|m| invalid(format!("{field}.mountPath"), m))?;
            if taken.contains(&path) || !paths.insert(path) {
                return Err(invalid(
                    format!("{field}.mountPath"),
                    format!("{path} is already mounted in dind"),
                ));
            }
            if extra.volume.len() != 1 || extra.volume.contains_key("name") {
                return Err(invalid(
                    format!("{field}.volume"),
                    "expected one volume source such as configMap: {name: x} (no name: the engine names it)",
                ));
            }
            check_volume_source(&format!("{field}.volume"), &extra.volume)?;
        }
        Ok(())
    }
}

/// Paths the injection itself mounts in `dind`.
const RESERVED_DIND_PATHS: &[&str] = &[
    contract::path::CERTS_DIR,
    contract::path::DOCKER_DATA,
    contract::path::RUN_DIR,
    contract::path::BIN_DIR,
    contract::path::DAEMON_CONFIG,
    contract::path::REGISTRY_CERTS_DIR,
];

/// A volume source is checked by reading it as Kubernetes' `Volume`: a
/// field that reading drops (a typo, another release's field) is refused,
/// because it would be dropped from the pod too.
fn check_volume_source(field: &str, source: &Map<String, Value>) -> Result<(), ConfigError> {
    let mut volume = source.clone();
    volume.insert("name".into(), Value::String("x".into()));
    let volume = Value::Object(volume);
    let typed: k8s_openapi::api::core::v1::Volume = serde_json::from_value(volume.clone())
        .map_err(|e| invalid(field, format!("not a Kubernetes volume source: {e}")))?;
    let back = serde_json::to_value(&typed).map_err(|e| invalid(field, e.to_string()))?;
    if back != volume {
        return Err(invalid(
            field,
            format!(
                "{} has fields Kubernetes' volume does not know",
                Value::Object(source.clone())
            ),
        ));
    }
    Ok(())
}

/// A ConfigMap, Secret or StorageClass name: a DNS subdomain.
fn check_object_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label);
    if !ok {
        return Err(invalid(
            field,
            format!("{name:?} is not an object name (lowercase letters, digits, '-', '.')"),
        ));
    }
    Ok(())
}

/// A DNS label (RFC 1123): what profile names and name parts must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What ConfigMap keys and environment variable names are made of.
fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// A ConfigMap or Secret key.
fn check_key(field: &str, key: &str) -> Result<(), ConfigError> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key.bytes().all(is_key_byte);
    if !ok {
        return Err(invalid(
            field,
            format!("{key:?} is not a ConfigMap or Secret key (letters, digits, '-', '_', '.')"),
        ));
    }
    Ok(())
}

fn check_env_name(field: &str, name: &str) -> Result<(), ConfigError> {
    let ok =
        name.bytes().next().is_some_and(|b| !b.is_ascii_digit()) && name.bytes().all(is_key_byte);
    if !ok {
        return Err(invalid(
            field,
            format!("{name:?} is not an environment variable name"),
        ));
    }
    if name == contract::DIND_TLS_ENV {
        return Err(invalid(
            field,
            format!("{name} is set by dind-injector (the TLS certificates' directory)"),
        ));
    }
    Ok(())
}

/// `host` or `host:port` as dockerd names `certs.d` directories: it becomes
/// a path, so no '/', no '..' and nothing a path could misread.
fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

impl RunnerConfig {
    /// The shared directories and the drain process (the seconds are
    /// checked with the grace period, in [`Config::validate`]).
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, prefix) in self.allowed_dir_prefixes.iter().enumerate() {
            check_mount_path(prefix)
                .map_err(|m| invalid(format!("runner.allowedDirPrefixes[{i}]"), m))?;
        }
        for (field, dir) in [
            ("runner.workDir", &self.work_dir),
            ("runner.externalsDir", &self.externals_dir),
        ] {
            if let Some(dir) = dir {
                check_mount_path(dir).map_err(|m| invalid(field, m))?;
                shared::check_path(dir, &self.allowed_dir_prefixes)
                    .map_err(|m| invalid(field, format!("expected {m}")))?;
            }
        }
        if let (Some(work), Some(ext)) = (&self.work_dir, &self.externals_dir) {
            if work == ext {
                return Err(invalid(
                    "runner.externalsDir",
                    format!("{ext:?} is also runner.workDir; they must differ"),
                ));
            }
        }
        if self.drain_process.is_empty() || self.drain_process.contains('/') {
            return Err(invalid(
                "runner.drainProcess",
                format!(
                    "{:?} is not a process name (non-empty, no '/')",
                    self.drain_process
                ),
            ));
        }
        Ok(())
    }
}

impl KnownImage {
    fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let repo = self.image.strip_suffix('*').unwrap_or(&self.image);
        if self.image.is_empty()
            || repo.contains('*')
            || repo.contains('@')
            || crate::engine::image::repository(repo) != repo
        {
            return Err(invalid(
                format!("{field}.image"),
                format!(
                    "{:?} is not an image repository (no tag or digest) or a prefix ending in '*'",
                    self.image
                ),
            ));
        }
        check_command(&format!("{field}.entrypoint"), &self.entrypoint)
    }
}

fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(invalid(
            field,
            format!("{url:?} is not an http:// or https:// URL"),
        )),
    }
}

/// The longest drain that still leaves [`STOP_MARGIN_SECONDS`] of `grace`.
pub fn max_drain(grace: u32) -> Option<u32> {
    grace.checked_sub(STOP_MARGIN_SECONDS)
}

fn check_seconds(field: &str, value: u32, min: u32) -> Result<(), ConfigError> {
    if value < min || value > MAX_SECONDS {
        return Err(invalid(
            field,
            format!("{value} is out of range: expected {min} to {MAX_SECONDS} seconds"),
        ));
    }
    Ok(())
}

fn check_image(field: &str, image: &str) -> Result<(), ConfigError> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            format!("{image:?} is not an image reference"),
        ));
    }
    Ok(())
}

/// dockerd flags the contract depends on: the injected TLS endpoint and the
/// certificates come from `dockerd-entrypoint.sh` and must not be overridden.
const RESERVED_DOCKERD_FLAGS: &[&str] = &[
    "-H",
    "--host",
    "--tls",
    "--tlsverify",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
];

fn check_dockerd_arg(field: &str, arg: &str) -> Result<(), ConfigError> {
    if !arg.starts_with('-') {
        return Err(invalid(
            field,
            format!(
                "{arg:?} is not a flag; dockerd-entrypoint.sh adds its TLS defaults only when \
                 every argument is a flag (write --flag=value)"
            ),
        ));
    }
    let name = arg.split_once('=').map_or(arg, |(name, _)| name);
    if RESERVED_DOCKERD_FLAGS.contains(&name) {
        return Err(invalid(
            field,
            format!(
                "{name} is set by dind-injector (TLS on port {})",
                contract::DOCKER_TLS_PORT
            ),
        ));
    }
    Ok(())
}

/// A container path that can be a mount point (shared by config and annotations).
pub fn check_mount_path(dir: &str) -> Result<(), String> {
    if !dir.starts_with('/') || dir == "/" || dir.contains(':') || dir.split('/').any(|p| p == "..")
    {
        return Err(format!(
            "{dir:?} is not an absolute path below / (no '..', no ':')"
        ));
    }
    Ok(())
}

/// A command list as Kubernetes would run it: non-empty, first element non-empty.
pub fn check_command(field: &str, command: &[String]) -> Result<(), ConfigError> {
    match command.first() {
        Some(first) if !first.is_empty() => Ok(()),
        _ => Err(invalid(
            field,
            "expected a non-empty list whose first element is the executable",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_and_the_default_is_valid() {
        let config = Config::from_yaml("").unwrap();
        assert_eq!(config, Config::default());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn defaults_pin_images() {
        let config = Config::default();
        for image in [&config.dind.image, &config.injector.image] {
            let tag = crate::engine::image::tag(image).unwrap_or("");
            assert!(
                !tag.is_empty() && !tag.contains("latest"),
                "{image} is not pinned"
            );
        }
    }

    #[test]
    fn partial_files_keep_other_defaults() {
        let config = Config::from_yaml("dind:\n  storageSizeLimit: 20Gi\n").unwrap();
        assert_eq!(config.dind.storage_size_limit.as_deref(), Some("20Gi"));
        assert_eq!(config.dind.image, contract::DEFAULT_DIND_IMAGE);
        assert_eq!(config.runner, RunnerConfig::default());
    }

    /// Issue 13: the configured shared directories obey the same rules as
    /// the annotations, and the prefixes must include them.
    #[test]
    fn shared_directories_cover_none_of_the_daemons_and_fit_the_prefixes() {
        for (yaml, field, says) in [
            (
                "workDir: /var/lib/docker/w",
                "runner.workDir",
                "covers /var/lib/docker",
            ),
            ("allowedDirPrefixes: [/work]", "runner.workDir", "/work"),
            (
                "allowedDirPrefixes: [relative]",
                "runner.allowedDirPrefixes[0]",
                "absolute",
            ),
        ] {
            let err = Config::from_yaml(&format!("runner:\n  {yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field) && err.contains(says), "{yaml}: {err}");
        }
        let ok = "runner:\n  allowedDirPrefixes: [/home/runner]\n";
        assert!(Config::from_yaml(ok).is_ok());
    }

    #[test]
    fn null_disables_shared_directories() {
        let config = Config::from_yaml("runner:\n  workDir: null\n  externalsDir: ~\n").unwrap();
        assert_eq!(config.runner.work_dir, None);
        assert_eq!(config.runner.externals_dir, None);
    }

    /// Each bad input must be refused with an error that names the field.
    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("sidecarMode: sometimes", "sidecarMode"),
            ("dind:\n  imagee: x", "imagee"),
            ("dind:\n  storageSizeLimit: 20GB", "dind.storageSizeLimit"),
            (
                "dind:\n  resources:\n    limits:\n      memory: lots",
                "dind.resources.limits.memory",
            ),
            ("dind:\n  dockerdArgs: [dockerd]", "dind.dockerdArgs[0]"),
            (
                "dind:\n  dockerdArgs: ['--host=tcp://0.0.0.0:2375']",
                "dind.dockerdArgs[0]",
            ),
            (
                "dind:\n  registryMirrors: [mirror.local]",
                "dind.registryMirrors[0]",
            ),
            ("runner:\n  workDir: _work", "runner.workDir"),
            ("runner:\n  drainTimeoutSeconds: -1", "drainTimeoutSeconds"),
            (
                "runner:\n  drainTimeoutSeconds: 3590",
                "runner.drainTimeoutSeconds",
            ),
            ("runner:\n  drainProcess: ''", "runner.drainProcess"),
            (
                "minTerminationGracePeriodSeconds: 10\nrunner:\n  drainTimeoutSeconds: 0",
                "minTerminationGracePeriodSeconds",
            ),
            (
                "knownImages:\n- image: 'ghcr.io/x:1'\n  entrypoint: [/run.sh]",
                "knownImages[0].image",
            ),
            (
                "knownImages:\n- image: ghcr.io/x\n  entrypoint: []",
                "knownImages[0].entrypoint",
            ),
            ("injector:\n  image: ''", "injector.image"),
            ("dind:\n  imagePullPolicy: Sometimes", "imagePullPolicy"),
            ("profiles:\n  big:\n    imagee: x", "profiles.big: unknown field `imagee`"),
            ("profiles:\n  big:\n    image: ''", "profiles.big.image"),
            (
                "profiles:\n  big:\n    resources: {limits: {memory: lots}}",
                "profiles.big.resources.limits.memory",
            ),
            ("profiles:\n  Big: {}", "profiles.Big"),
            (
                "dind:\n  resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}",
                "dind.resources.requests.memory",
            ),
            (
                "profiles:\n  big:\n    resources: {requests: {cpu: '3'}, limits: {cpu: 2500m}}",
                "profiles.big.resources.requests.cpu",
            ),
            ("profiles:\n  default: {}", "profiles.default"),
            ("defaultProfile: big", "defaultProfile"),
            (
                "dind:\n  storage: {type: ephemeral}",
                "dind.storageSizeLimit",
            ),
            (
                "dind:\n  storageSizeLimit: 5Gi\n  storage: {type: ephemeral, medium: Memory}",
                "dind.storage.medium",
            ),
            (
                "dind:\n  storage: {storageClassName: fast}",
                "dind.storage.storageClassName",
            ),
            ("dind:\n  storage: {type: pvc}", "unknown variant `pvc`"),
            (
                "dind:\n  daemonConfig: {configMap: Docker_Config}",
                "dind.daemonConfig.configMap",
            ),
            (
                "dind:\n  daemonConfig: {configMap: docker, key: 'a/b'}",
                "dind.daemonConfig.key",
            ),
            (
                "registry:\n  plainHttpRegistries: ['http://r.local:5000']",
                "registry.plainHttpRegistries[0]",
            ),
            (
                "registry:\n  plainHttpRegistries: [r.local, r.local]",
                "registry.plainHttpRegistries[1]",
            ),
            (
                "dind:\n  registryCertificates: [{registry: 'https://r.local', configMap: ca}]",
                "dind.registryCertificates[0].registry",
            ),
            (
                "dind:\n  registryCertificates: [{registry: r.local, configMap: ca, secret: ca}]",
                "dind.registryCertificates[0]",
            ),
            (
                "dind:\n  registryCertificates: [{registry: r.local, secret: ca}, {registry: r.local, secret: b}]",
                "dind.registryCertificates[1].registry",
            ),
            (
                "dind:\n  env: [{name: DOCKER_TLS_CERTDIR, value: x}]",
                "dind.env[0].name",
            ),
            ("dind:\n  env: [{name: '1X', value: x}]", "dind.env[0].name"),
            (
                "dind:\n  extraMounts: [{mountPath: /var/lib/docker, volume: {emptyDir: {}}}]",
                "dind.extraMounts[0].mountPath",
            ),
            (
                "dind:\n  extraMounts: [{mountPath: /cache, volume: {emptyDir: {}, hostPath: {path: /x}}}]",
                "dind.extraMounts[0].volume",
            ),
            (
                "dind:\n  extraMounts: [{mountPath: /cache, volume: {emptyDir: {sizeLimt: 1Gi}}}]",
                "dind.extraMounts[0].volume",
            ),
        ];
        for (yaml, field) in cases {
            let err = Config::from_yaml(yaml).expect_err(yaml).to_string();
            assert!(
                err.contains(field),
                "error for {yaml:?} does not name {field}: {err}"
            );
        }
    }

    #[test]
    fn profiles_replace_whole_fields_of_the_dind_section() {
        let config = Config::from_yaml(
            "dind:\n  registryMirrors: ['https://m.local']\n  resources: {requests: {cpu: '1'}}\n\
             profiles:\n  big:\n    resources: {limits: {memory: 8Gi}}\n    storageSizeLimit: 50Gi\n\
             defaultProfile: big\n",
        )
        .unwrap();
        let profiles = config.profiles().unwrap();
        let big = &profiles["big"];
        assert_eq!(big.registry_mirrors, ["https://m.local"]);
        assert!(
            big.resources.requests.is_empty(),
            "resources is replaced whole"
        );
        assert_eq!(big.resources.limits["memory"], "8Gi");
        assert_eq!(big.storage_size_limit.as_deref(), Some("50Gi"));
        assert_eq!(profiles[DEFAULT_PROFILE], config.dind);
    }

    #[test]
    fn missing_file_is_named() {
        let err = Config::load(Path::new("/nonexistent/dind.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dind.yaml"), "{err}");
    }

    #[test]
    fn known_images_match_by_repository() {
        let config = Config::default();
        assert_eq!(
            config.entrypoint_for("ghcr.io/actions/actions-runner:2.321.0"),
            Some(&["/home/runner/run.sh".to_string()][..])
        );
        assert_eq!(config.entrypoint_for("ubuntu:24.04"), None);
    }
}
