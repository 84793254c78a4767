//! The injector's configuration: one YAML file, every field defaulted.
//!
//! Parsing rejects unknown fields (a typo must not silently fall back to a
//! default) and [`Config::validate`] checks what types cannot express, with
//! errors that name the field, the value and what was expected.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
    pub dind: DindConfig,
    pub runner: RunnerConfig,
    /// Commands for runner containers that rely on their image's ENTRYPOINT.
    pub known_images: Vec<KnownImage>,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
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
            runner: RunnerConfig::default(),
            known_images: vec![KnownImage {
                image: "ghcr.io/actions/actions-runner".into(),
                entrypoint: vec!["/home/runner/run.sh".into()],
            }],
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
        check_image("dind.image", &self.dind.image)?;
        self.dind.validate()?;
        self.runner.validate()?;
        self.validate_durations()?;
        for (i, known) in self.known_images.iter().enumerate() {
            known.validate(&format!("knownImages[{i}]"))?;
        }
        Ok(())
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

    /// The known entrypoint for `image`, first matching entry wins.
    pub fn entrypoint_for(&self, image: &str) -> Option<&[String]> {
        self.known_images
            .iter()
            .find(|k| crate::engine::image::matches(&k.image, image))
            .map(|k| k.entrypoint.as_slice())
    }
}

impl DindConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (kind, map) in [
            ("requests", &self.resources.requests),
            ("limits", &self.resources.limits),
        ] {
            for (name, value) in map {
                if !quantity::is_valid(value) {
                    return Err(invalid(
                        format!("dind.resources.{kind}.{name}"),
                        format!("{value:?} is not a Kubernetes quantity (e.g. 500m, 2Gi)"),
                    ));
                }
            }
        }
        if let Some(limit) = &self.storage_size_limit {
            if !quantity::is_valid(limit) {
                return Err(invalid(
                    "dind.storageSizeLimit",
                    format!("{limit:?} is not a Kubernetes quantity (e.g. 20Gi)"),
                ));
            }
        }
        for (i, arg) in self.dockerd_args.iter().enumerate() {
            check_dockerd_arg(&format!("dind.dockerdArgs[{i}]"), arg)?;
        }
        for (i, url) in self.registry_mirrors.iter().enumerate() {
            check_url(&format!("dind.registryMirrors[{i}]"), url)?;
        }
        Ok(())
    }
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
