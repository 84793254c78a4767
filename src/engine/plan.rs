//! Decides *what* to inject into one pod, before anything is built.
//!
//! The plan resolves config, annotations and the pod's own fields into plain
//! values (mode, runner, command, grace period, volume names), so that the
//! builder has no decisions left to make and every denial happens before the
//! first change.

use std::sync::Arc;

use super::entrypoint::{self, CommandSource, ImageCommand, Query};
use super::overrides::Overrides;
use super::view::{Container, Mount, PodView};
use super::{Denial, DenyReason, Mode};
use crate::contract::{annotation, volume};
use crate::contract::{RUNNER_ENV, RUNNER_RESERVED_PATHS};
use crate::engine::config::{max_drain, Config, DindConfig, STOP_MARGIN_SECONDS};

/// The runner container's usual name (the one [`runner_index`] prefers).
const DEFAULT_RUNNER: &str = "runner";
use crate::engine::shared;

/// Kubernetes' default when a pod does not set `terminationGracePeriodSeconds`.
const KUBERNETES_DEFAULT_GRACE: i64 = 30;

pub struct Plan {
    /// What the added objects are built from (see [`Shape`]).
    pub shape: Shape,
    pub runner_index: usize,
    /// What the supervisor wraps; `None` when the runner's command is unknown
    /// (image ENTRYPOINT, no known entrypoint, no annotation, no registry answer).
    pub wrapped_command: Option<Vec<String>>,
    /// `args` to add: the image's CMD, when the command came from the
    /// registry and the pod has no args of its own.
    pub added_args: Option<Vec<String>>,
    /// How the command was found.
    pub command_source: CommandSource,
    /// What the caller could look up for the next pod: set when the command
    /// had to come from the image and the lookup knew nothing.
    pub unresolved: Option<Query>,
    pub set_share_process_namespace: bool,
    /// New `terminationGracePeriodSeconds`, when the pod's is too short.
    pub raise_grace_to: Option<u32>,
    pub drain_timeout: u32,
    /// Passed to the supervisor: 0 in native mode (the kubelet waits).
    pub docker_wait: u32,
    /// The externals directory to copy from the runner image, when we add it.
    pub externals_copy: Option<String>,
    /// Docker variables the runner already sets itself (left as they are).
    pub env_kept: Vec<&'static str>,
    pub warnings: Vec<String>,
}

/// Everything the added volumes, the init container, `dind` and the runner's
/// mounts are built from. Most pods share one of a few shapes, so the engine
/// builds those once and clones them (`Engine::new`); the type makes sure
/// nothing else can influence what is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub native: bool,
    /// How the sidecar learns that the runner has ended.
    pub sidecar: SidecarRole,
    /// How long Docker may take to come up (the native postStart hook's bound).
    pub docker_wait_budget: u32,
    /// The pod's Docker settings: its profile, with its own resources and
    /// storage size applied.
    pub dind: Arc<DindConfig>,
    pub volumes: VolumeNames,
    pub work: Option<SharedDir>,
    pub externals: Option<SharedDir>,
}

impl Shape {
    pub fn shared_dirs(&self) -> impl Iterator<Item = &SharedDir> {
        self.work.iter().chain(self.externals.iter())
    }

    /// The shapes of pods with profile `dind` that collide with none of our
    /// names and set no override: classic with the supervisor, classic
    /// standalone (the policy delivery's unsupervised runner), native, and
    /// classic watching an unsupervised runner named `runner`. The policy
    /// delivery reads them by position (all but classic standalone).
    pub fn defaults(config: &Config, dind: &Arc<DindConfig>) -> Vec<Shape> {
        let mut names = NameAllocator::new(Vec::new());
        let volumes = VolumeNames::allocate(&mut names, dind);
        let mut dir = |path: &Option<String>, volume: &str| {
            path.clone().map(|path| SharedDir::Added {
                volume: names.name(volume),
                path,
            })
        };
        let work = dir(&config.runner.work_dir, volume::WORK);
        let externals = dir(&config.runner.externals_dir, volume::EXTERNALS);
        let watch = SidecarRole::WatchRunner(DEFAULT_RUNNER.into());
        [
            (false, SidecarRole::Protocol),
            (false, SidecarRole::Standalone),
            (true, SidecarRole::Standalone),
            (false, watch),
        ]
        .into_iter()
        .map(|(native, sidecar)| Shape {
            native,
            sidecar,
            docker_wait_budget: config.runner.docker_wait_seconds,
            dind: dind.clone(),
            volumes: volumes.clone(),
            work: work.clone(),
            externals: externals.clone(),
        })
        .collect()
    }
}

/// How the sidecar learns that the runner has ended (see `inpod::sidecar`).
#[derive(Debug, Clone, PartialEq)]
pub enum SidecarRole {
    /// Classic mode, supervised runner: the run directory's protocol.
    Protocol,
    /// Classic mode, unsupervised runner (no command known): the runner
    /// container (this name) is found by its marker variable and watched by
    /// its cgroup, so the daemon stops and the pod completes when it ends.
    WatchRunner(String),
    /// Native mode (the kubelet stops the sidecar after the runner), or the
    /// policy delivery's unsupervised runner: nothing to wait for.
    Standalone,
}

/// Names of the volumes the engine adds, unique within the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeNames {
    pub certs: String,
    pub storage: String,
    pub run: String,
    pub bin: String,
    /// Only when the profile has a daemon configuration.
    pub daemon_config: Option<String>,
    /// Only when the profile has registry certificates.
    pub registry_certs: Option<String>,
    /// One per extra mount of the profile, in its order.
    pub extra: Vec<String>,
}

impl VolumeNames {
    /// The base names, or the first free `-N` variants, in this order.
    fn allocate(names: &mut NameAllocator, dind: &DindConfig) -> Self {
        Self {
            certs: names.name(volume::CERTS),
            storage: names.name(volume::STORAGE),
            run: names.name(volume::RUN),
            bin: names.name(volume::BIN),
            daemon_config: dind
                .daemon_config
                .as_ref()
                .map(|_| names.name(volume::DAEMON_CONFIG)),
            registry_certs: (!dind.registry_certificates.is_empty())
                .then(|| names.name(volume::REGISTRY_CERTS)),
            extra: dind
                .extra_mounts
                .iter()
                .map(|_| names.name(volume::EXTRA))
                .collect(),
        }
    }

    /// Every name, in the order the volumes are added.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        [&self.certs, &self.storage, &self.run, &self.bin]
            .into_iter()
            .chain(self.daemon_config.iter())
            .chain(self.registry_certs.iter())
            .chain(self.extra.iter())
    }
}

/// A directory the runner and the daemon must see at the same path.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedDir {
    /// A new emptyDir, mounted in both.
    Added { volume: String, path: String },
    /// The runner already mounts something there; the daemon gets a copy of
    /// that mount (same volume, same subPath), its JSON text as it came.
    Existing { mount: String },
}

/// Picks names not used by the pod nor by each other: `base`, `base-1`, …
/// Lists, not hash sets: a pod has a handful of volumes and we name at
/// most eight, so a scan is cheaper than hashing (this runs per review).
struct NameAllocator<'a> {
    taken: Vec<&'a str>,
    ours: Vec<String>,
}

impl<'a> NameAllocator<'a> {
    fn new(taken: Vec<&'a str>) -> Self {
        Self {
            taken,
            ours: Vec::new(),
        }
    }

    fn name(&mut self, base: &str) -> String {
        let free = |n: &str| !self.taken.contains(&n) && !self.ours.iter().any(|o| o == n);
        let name = if free(base) {
            base.to_string()
        } else {
            (1..)
                .map(|i| format!("{base}-{i}"))
                .find(|n| free(n))
                .unwrap_or_else(|| base.to_string())
        };
        self.ours.push(name.clone());
        name
    }
}

/// Builds the plan, or the denial that names what is wrong. Each resolver
/// below settles one question; they run in the order their denials are
/// checked (runner, mounts, drain, shared directories).
pub fn plan(
    pod: &PodView,
    config: &Config,
    dind: Arc<DindConfig>,
    overrides: Overrides,
    auto_mode: Mode,
    lookup: &Lookup<'_>,
) -> Result<Plan, Denial> {
    let mut warnings = Vec::new();
    let mode = Mode::resolve(
        overrides.sidecar_mode.unwrap_or(config.sidecar_mode),
        auto_mode,
    );
    let native = mode == Mode::Native;

    let runner_index = runner_index(pod, overrides.runner_container.as_deref())?;
    let runner = &pod.containers()[runner_index];
    let runner_name = &*runner.name;
    check_reserved_mounts(runner)?;

    let Command {
        wrapped: wrapped_command,
        added_args,
        source: command_source,
        unresolved,
    } = command(pod, runner, config, &overrides, lookup);
    if wrapped_command.is_none() {
        warnings.push(unsupervised_warning(runner_name));
    }
    let grace = Grace::resolve(pod, config, &overrides);
    let drain_timeout = drain_timeout(config, &overrides, grace.effective)?;
    let docker_wait_budget = overrides
        .docker_wait
        .unwrap_or(config.runner.docker_wait_seconds);

    // The lifecycle protocol runs only between a supervisor and a classic
    // sidecar; without a supervisor the classic sidecar watches the runner
    // container's processes. Both need the PID namespace shared (hostPID
    // shares it already).
    let sidecar = match (native, &wrapped_command) {
        (true, _) => SidecarRole::Standalone,
        (false, Some(_)) => SidecarRole::Protocol,
        (false, None) => SidecarRole::WatchRunner(runner_name.to_string()),
    };
    let set_share_process_namespace =
        !native && !pod.spec_bool(|s| s.host_pid) && !pod.spec_bool(|s| s.share_process_namespace);
    // An explicit `false` is overridden (the lifecycle needs it, and the
    // privileged daemon sees the node anyway), but never silently.
    let explicit_false = pod.spec().and_then(|s| s.share_process_namespace) == Some(false);
    if set_share_process_namespace && explicit_false {
        warnings.push(format!(
            "spec.shareProcessNamespace: false replaced by true: the runner and the Docker \
             sidecar coordinate through shared PIDs; use {}: native to keep it false",
            annotation::SIDECAR_MODE
        ));
    }

    let mut names = NameAllocator::new(pod.volume_names());
    let volumes = VolumeNames::allocate(&mut names, &dind);
    let (work, externals) = shared_dirs(pod, runner, config, &overrides, &mut names)?;
    let externals_copy = match &externals {
        Some(SharedDir::Added { path, .. }) => Some(path.clone()),
        _ => None,
    };

    let env_kept = env_kept(runner);
    if !env_kept.is_empty() {
        warnings.push(format!(
            "container {runner_name:?} sets {} itself; kept as is",
            env_kept.join(", ")
        ));
    }

    Ok(Plan {
        shape: Shape {
            native,
            sidecar,
            docker_wait_budget,
            dind,
            volumes,
            work,
            externals,
        },
        runner_index,
        wrapped_command,
        added_args,
        command_source,
        unresolved,
        set_share_process_namespace,
        raise_grace_to: grace.raise_to,
        drain_timeout,
        // Native: the kubelet starts the runner only after the startup probe.
        docker_wait: if native { 0 } else { docker_wait_budget },
        externals_copy,
        env_kept,
        warnings,
    })
}

/// What a pod whose runner's command is unknown loses, and how to get it
/// back. Short: the apiserver drops warnings over 120 characters.
fn unsupervised_warning(runner: &str) -> String {
    format!(
        "runner {runner:?} unsupervised (command unknown): no drain, SIGINT or Docker wait; set {}",
        annotation::ENTRYPOINT
    )
}

/// The annotated container, else the one named `runner`, else the first.
fn runner_index(pod: &PodView, wanted: Option<&str>) -> Result<usize, Denial> {
    let containers = pod.containers();
    let Some(wanted) = wanted else {
        return Ok(containers
            .iter()
            .position(|c| &*c.name == DEFAULT_RUNNER)
            .unwrap_or(0));
    };
    containers
        .iter()
        .position(|c| &*c.name == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = containers.iter().map(|c| &*c.name).collect();
            Denial::new(
                DenyReason::RunnerNotFound,
                format!(
                    "annotation {}: no container named {wanted:?} in the pod (containers: {})",
                    annotation::RUNNER_CONTAINER,
                    names.join(", ")
                ),
            )
        })
}

/// The runner must leave us the paths of its client certificates, the run
/// dir and the bin dir.
fn check_reserved_mounts(runner: &Container) -> Result<(), Denial> {
    for m in runner.mounts() {
        let at = &*m.mount_path;
        if RUNNER_RESERVED_PATHS.contains(&at.trim_end_matches('/')) {
            return Err(Denial::new(
                DenyReason::ReservedMountPath,
                format!(
                    "container {:?} already mounts {at}, which dind-injector needs for \
                     Docker's client certificates, coordination and helper binary",
                    &*runner.name
                ),
            ));
        }
    }
    Ok(())
}

/// What a caller knows about images' commands (the webhook: its registry
/// cache; offline: nothing).
pub type Lookup<'a> = dyn Fn(&Query) -> Option<ImageCommand> + 'a;

/// The runner's command and how it was found.
struct Command {
    wrapped: Option<Vec<String>>,
    added_args: Option<Vec<String>>,
    source: CommandSource,
    unresolved: Option<Query>,
}

/// What the supervisor wraps: the runner's command, else the annotated
/// entrypoint, else the configured one for its image, else its image's
/// ENTRYPOINT and CMD if the caller knows them; `None` if unknown.
fn command(
    pod: &PodView,
    runner: &Container,
    config: &Config,
    overrides: &Overrides,
    lookup: &Lookup<'_>,
) -> Command {
    let found = |wrapped: Vec<String>, source| Command {
        wrapped: Some(wrapped),
        added_args: None,
        source,
        unresolved: None,
    };
    if let Some(cmd) = runner.command.as_ref().filter(|c| !c.is_empty()) {
        return found(
            cmd.iter().map(|s| s.to_string()).collect(),
            CommandSource::Spec,
        );
    }
    if let Some(entrypoint) = &overrides.entrypoint {
        return found(entrypoint.clone(), CommandSource::Annotation);
    }
    let image = runner.image.as_deref().unwrap_or("");
    if let Some(known) = config.entrypoint_for(image) {
        return found(known.to_vec(), CommandSource::KnownImage);
    }
    let query = Query::of_view(pod, runner);
    // Present, even empty: never replaced (only three fields ever are).
    let pod_args = runner.args.is_some();
    match lookup(&query).and_then(|image| entrypoint::from_image(&image, pod_args)) {
        Some((wrapped, added_args)) => Command {
            added_args,
            ..found(wrapped, CommandSource::Registry)
        },
        None => Command {
            wrapped: None,
            added_args: None,
            source: CommandSource::None,
            unresolved: Some(query),
        },
    }
}

/// The pod's grace period: the larger of its own and the minimum, never lowered.
struct Grace {
    /// The new `terminationGracePeriodSeconds`, when the pod's is too short.
    raise_to: Option<u32>,
    /// The grace period the pod will have.
    effective: u32,
}

impl Grace {
    fn resolve(pod: &PodView, config: &Config, overrides: &Overrides) -> Self {
        let current = pod.spec().and_then(|s| s.termination_grace_period_seconds);
        let min = overrides
            .termination_grace_period
            .unwrap_or(config.min_termination_grace_period_seconds);
        let raise_to = match current {
            Some(g) if g >= i64::from(min) => None,
            _ => Some(min),
        };
        let effective =
            raise_to.map_or_else(|| current.unwrap_or(KUBERNETES_DEFAULT_GRACE), i64::from);
        Self {
            raise_to,
            effective: u32::try_from(effective).unwrap_or(u32::MAX),
        }
    }
}

/// The drain timeout, which must leave the stop margin of the grace period;
/// the denial names the setting to change.
fn drain_timeout(config: &Config, overrides: &Overrides, grace: u32) -> Result<u32, Denial> {
    let drain_timeout = overrides
        .drain_timeout
        .unwrap_or(config.runner.drain_timeout_seconds);
    let max = max_drain(grace).unwrap_or(0);
    if drain_timeout <= max {
        return Ok(drain_timeout);
    }
    let (who, what) = match (overrides.drain_timeout, overrides.termination_grace_period) {
        (Some(_), _) => (format!("annotation {}", annotation::DRAIN_TIMEOUT), "set"),
        (None, Some(_)) => (
            format!("annotation {}", annotation::TERMINATION_GRACE_PERIOD),
            "leaves the configured drain",
        ),
        (None, None) => (
            "the pod's terminationGracePeriodSeconds".into(),
            "leaves the drain",
        ),
    };
    Err(Denial::new(
        DenyReason::DrainExceedsGrace,
        format!(
            "{who}: a drain of {drain_timeout}s ({what}) does not fit a grace period of \
             {grace}s; Docker and the runner need {}s to stop, so set {} to at most {max}",
            STOP_MARGIN_SECONDS,
            annotation::DRAIN_TIMEOUT,
        ),
    ))
}

/// The work directory and the externals, each shared with the daemon at the
/// same path: the runner's own mount if it has one there (plain storage
/// only), else a new volume. See [`shared`] for why both are checked.
fn shared_dirs(
    pod: &PodView,
    runner: &Container,
    config: &Config,
    overrides: &Overrides,
    names: &mut NameAllocator,
) -> Result<(Option<SharedDir>, Option<SharedDir>), Denial> {
    let prefixes = &config.runner.allowed_dir_prefixes;
    for (key, dir) in [
        (annotation::WORK_DIR, &overrides.work_dir),
        (annotation::EXTERNALS_DIR, &overrides.externals_dir),
    ] {
        if let Some(Some(path)) = dir {
            if !shared::within(path, prefixes) {
                return Err(Denial::new(
                    DenyReason::SharedDirNotAllowed,
                    format!(
                        "annotation {key}: {path:?} is not under the prefixes the dind-injector \
                         configuration allows ({})",
                        prefixes.join(", ")
                    ),
                ));
            }
        }
    }
    let runner_mount_at = |dir: &str| {
        runner
            .mounts()
            .iter()
            .find(|m| m.mount_path.trim_end_matches('/') == dir)
    };
    let mut shared = |dir: Option<String>, base: &str| {
        dir.map(|path| match runner_mount_at(&path) {
            Some(mount) => {
                check_plain_storage(pod, runner, mount)?;
                Ok(SharedDir::Existing {
                    mount: mount.raw.to_string(),
                })
            }
            None => Ok(SharedDir::Added {
                volume: names.name(base),
                path,
            }),
        })
        .transpose()
    };
    let work_dir = overrides.work_dir.clone();
    let work = shared(
        work_dir.unwrap_or_else(|| config.runner.work_dir.clone()),
        volume::WORK,
    )?;
    let externals_dir = overrides
        .externals_dir
        .clone()
        .unwrap_or_else(|| config.runner.externals_dir.clone());
    if let (Some(SharedDir::Added { path, .. }), Some(ext)) = (&work, &externals_dir) {
        if path == ext {
            return Err(Denial::new(
                DenyReason::SharedDirConflict,
                format!(
                    "annotations {} and {}: both are {path}; they must differ",
                    annotation::WORK_DIR,
                    annotation::EXTERNALS_DIR
                ),
            ));
        }
    }
    let externals = shared(externals_dir, volume::EXTERNALS)?;
    Ok((work, externals))
}

/// The runner's volume at a shared directory is mounted into the privileged
/// daemon as is: only plain storage may be (a ConfigMap or a hostPath there
/// would put files of someone else's choosing into the daemon's container).
fn check_plain_storage(pod: &PodView, runner: &Container, mount: &Mount) -> Result<(), Denial> {
    let name = mount.name.as_deref().unwrap_or_default();
    let path = &*mount.mount_path;
    let volume = pod
        .spec()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[])
        .iter()
        .find(|v| &*v.name == name);
    // A mount of no volume: the apiserver refuses the pod, unless a later
    // webhook adds a volume of that name, which we would not have checked.
    let kind = match volume {
        Some(volume) => volume.kind.as_deref().unwrap_or("no volume source"),
        None => "not a volume of the pod",
    };
    if shared::PLAIN_STORAGE.contains(&kind) {
        return Ok(());
    }
    Err(Denial::new(
        DenyReason::SharedDirNotAllowed,
        format!(
            "container {:?} mounts volume {name:?} ({kind}) at {path}, which dind-injector \
             shares with the privileged Docker daemon; only {} volumes can be shared: use one, \
             or move the mount",
            &*runner.name,
            shared::PLAIN_STORAGE.join(", ")
        ),
    ))
}

/// Docker variables the runner already sets itself (left as they are).
fn env_kept(runner: &Container) -> Vec<&'static str> {
    let sets = |name: &str| runner.env_names().any(|e| e == name);
    RUNNER_ENV
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| sets(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::NameAllocator;

    #[test]
    fn names_avoid_the_pod_and_each_other() {
        let mut names = NameAllocator::new(vec!["dind-certs", "dind-certs-1", "dind-run"]);
        assert_eq!(names.name("dind-certs"), "dind-certs-2");
        assert_eq!(names.name("dind-certs"), "dind-certs-3");
        assert_eq!(names.name("dind-run"), "dind-run-1");
        assert_eq!(names.name("dind-storage"), "dind-storage");
    }
}
