//! Decides *what* to inject into one pod, before anything is built.
//!
//! The plan resolves config, annotations and the pod's own fields into plain
//! values (mode, runner, command, grace period, volume names), so that the
//! builder has no decisions left to make and every denial happens before the
//! first change.

use std::collections::HashSet;

use serde_json::Value;

use super::build::{RUNNER_ENV, RUNNER_RESERVED_PATHS};
use super::overrides::Overrides;
use super::pod::{self, ContainerList};
use super::Mode;
use crate::config::{max_drain, Config, SidecarMode};
use crate::contract::{annotation, volume};

/// Kubernetes' default when a pod does not set `terminationGracePeriodSeconds`.
const KUBERNETES_DEFAULT_GRACE: i64 = 30;

pub struct Plan {
    /// What the added objects are built from (see [`Shape`]).
    pub shape: Shape,
    pub runner_index: usize,
    /// What the supervisor wraps; `None` when the runner's command is unknown
    /// (image ENTRYPOINT, no known entrypoint, no annotation).
    pub wrapped_command: Option<Vec<String>>,
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
    /// The sidecar must not wait for a runner that never writes `runner.pid`
    /// (no supervisor), nor in native mode (the kubelet orders the stop).
    pub standalone_sidecar: bool,
    /// How long Docker may take to come up (the native postStart hook's bound).
    pub docker_wait_budget: u32,
    pub storage_size_limit: Option<String>,
    pub volumes: VolumeNames,
    pub work: Option<SharedDir>,
    pub externals: Option<SharedDir>,
}

impl Shape {
    pub fn shared_dirs(&self) -> impl Iterator<Item = &SharedDir> {
        self.work.iter().chain(self.externals.iter())
    }

    /// The shapes of pods that collide with none of our names and set no
    /// override: classic with the supervisor, classic without, native.
    pub fn defaults(config: &Config) -> Vec<Shape> {
        let dir = |path: &Option<String>, volume: &str| {
            path.clone().map(|path| SharedDir::Added {
                volume: volume.to_string(),
                path,
            })
        };
        [(false, false), (false, true), (true, true)]
            .into_iter()
            .map(|(native, standalone_sidecar)| Shape {
                native,
                standalone_sidecar,
                docker_wait_budget: config.runner.docker_wait_seconds,
                storage_size_limit: config.dind.storage_size_limit.clone(),
                volumes: VolumeNames {
                    certs: volume::CERTS.into(),
                    storage: volume::STORAGE.into(),
                    run: volume::RUN.into(),
                    bin: volume::BIN.into(),
                },
                work: dir(&config.runner.work_dir, volume::WORK),
                externals: dir(&config.runner.externals_dir, volume::EXTERNALS),
            })
            .collect()
    }
}

/// Names of the volumes the engine adds, unique within the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeNames {
    pub certs: String,
    pub storage: String,
    pub run: String,
    pub bin: String,
}

/// A directory the runner and the daemon must see at the same path.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedDir {
    /// A new emptyDir, mounted in both.
    Added { volume: String, path: String },
    /// The runner already mounts something there; the daemon gets a copy of
    /// that mount (same volume, same subPath).
    Existing { mount: Value },
}

/// Picks names not used by the pod nor by each other: `base`, `base-1`, …
struct NameAllocator<'a> {
    taken: HashSet<&'a str>,
    ours: HashSet<String>,
}

impl<'a> NameAllocator<'a> {
    fn new(taken: Vec<&'a str>) -> Self {
        Self {
            taken: taken.into_iter().collect(),
            ours: HashSet::new(),
        }
    }

    fn name(&mut self, base: &str) -> String {
        let free = |n: &str, ours: &HashSet<String>| !self.taken.contains(n) && !ours.contains(n);
        let name = std::iter::once(base.to_string())
            .chain((1..).map(|i| format!("{base}-{i}")))
            .find(|n| free(n, &self.ours))
            .unwrap_or_else(|| base.to_string());
        self.ours.insert(name.clone());
        name
    }
}

/// Builds the plan, or the denial message that names what is wrong.
pub fn plan(
    pod: &Value,
    config: &Config,
    overrides: Overrides,
    auto_mode: Mode,
) -> Result<Plan, String> {
    let mut warnings = Vec::new();

    let mode = match overrides.sidecar_mode.unwrap_or(config.sidecar_mode) {
        SidecarMode::Classic => Mode::Classic,
        SidecarMode::Native => Mode::Native,
        SidecarMode::Auto => auto_mode,
    };
    let native = mode == Mode::Native;

    let containers = pod::containers(pod, ContainerList::Containers);
    let runner_index = match &overrides.runner_container {
        Some(wanted) => containers
            .iter()
            .position(|c| pod::name(c) == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = containers.iter().map(pod::name).collect();
                format!(
                    "annotation {}: no container named {wanted:?} in the pod (containers: {})",
                    annotation::RUNNER_CONTAINER,
                    names.join(", ")
                )
            })?,
        None => containers
            .iter()
            .position(|c| pod::name(c) == "runner")
            .unwrap_or(0),
    };
    let runner = &containers[runner_index];
    let runner_name = pod::name(runner).to_string();

    for m in pod::objects(runner, "volumeMounts") {
        let at = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
        if RUNNER_RESERVED_PATHS.contains(&at.trim_end_matches('/')) {
            return Err(format!(
                "container {runner_name:?} already mounts {at}, which dind-injector needs for \
                 Docker's client certificates, coordination and helper binary"
            ));
        }
    }

    let image = runner.get("image").and_then(Value::as_str).unwrap_or("");
    let wrapped_command = match pod::strings(runner, "command") {
        Some(cmd) if !cmd.is_empty() => Some(cmd.into_iter().map(String::from).collect()),
        _ => overrides
            .entrypoint
            .clone()
            .or_else(|| config.entrypoint_for(image).map(<[String]>::to_vec)),
    };
    if wrapped_command.is_none() {
        warnings.push(format!(
            "container {runner_name:?} has no command: set annotation {} for drain and clean stop",
            annotation::ENTRYPOINT
        ));
    }
    let supervised = wrapped_command.is_some();

    // Grace period: the larger of the pod's own and the minimum; never lowered.
    let spec = pod::spec(pod);
    let current_grace = spec
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_i64);
    let min_grace = overrides
        .termination_grace_period
        .unwrap_or(config.min_termination_grace_period_seconds);
    let raise_grace_to = match current_grace {
        Some(g) if g >= i64::from(min_grace) => None,
        _ => Some(min_grace),
    };
    let grace = raise_grace_to.map_or_else(
        || current_grace.unwrap_or(KUBERNETES_DEFAULT_GRACE),
        i64::from,
    );
    let grace = u32::try_from(grace).unwrap_or(u32::MAX);

    let drain_timeout = overrides
        .drain_timeout
        .unwrap_or(config.runner.drain_timeout_seconds);
    let max = max_drain(grace).unwrap_or(0);
    if drain_timeout > max {
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
        return Err(format!(
            "{who}: a drain of {drain_timeout}s ({what}) does not fit a grace period of \
             {grace}s; Docker and the runner need {}s to stop, so set {} to at most {max}",
            crate::config::STOP_MARGIN_SECONDS,
            annotation::DRAIN_TIMEOUT,
        ));
    }

    let docker_wait_budget = overrides
        .docker_wait
        .unwrap_or(config.runner.docker_wait_seconds);
    let docker_wait = if native { 0 } else { docker_wait_budget };

    let host_pid = pod::spec_bool(pod, "hostPID");
    let coordinated = !native && supervised;
    let set_share_process_namespace =
        coordinated && !host_pid && !pod::spec_bool(pod, "shareProcessNamespace");

    let mut names = NameAllocator::new(pod::volume_names(pod));
    let volumes = VolumeNames {
        certs: names.name(volume::CERTS),
        storage: names.name(volume::STORAGE),
        run: names.name(volume::RUN),
        bin: names.name(volume::BIN),
    };

    let runner_mount_at = |dir: &str| {
        pod::objects(runner, "volumeMounts")
            .iter()
            .find(|m| {
                m.get("mountPath")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.trim_end_matches('/') == dir)
            })
            .cloned()
    };
    let mut shared = |dir: Option<String>, base: &str| {
        dir.map(|path| match runner_mount_at(&path) {
            Some(mount) => SharedDir::Existing { mount },
            None => SharedDir::Added {
                volume: names.name(base),
                path,
            },
        })
    };
    let work = shared(
        overrides
            .work_dir
            .unwrap_or_else(|| config.runner.work_dir.clone()),
        volume::WORK,
    );
    let externals_dir = overrides
        .externals_dir
        .unwrap_or_else(|| config.runner.externals_dir.clone());
    if let (Some(SharedDir::Added { path, .. }), Some(ext)) = (&work, &externals_dir) {
        if path == ext {
            return Err(format!(
                "annotations {} and {}: both are {path}; they must differ",
                annotation::WORK_DIR,
                annotation::EXTERNALS_DIR
            ));
        }
    }
    let externals = shared(externals_dir, volume::EXTERNALS);
    let externals_copy = match &externals {
        Some(SharedDir::Added { path, .. }) => Some(path.clone()),
        _ => None,
    };

    let env_kept: Vec<&'static str> = RUNNER_ENV
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            pod::objects(runner, "env")
                .iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(name))
        })
        .collect();
    if !env_kept.is_empty() {
        warnings.push(format!(
            "container {runner_name:?} sets {} itself; kept as is",
            env_kept.join(", ")
        ));
    }

    Ok(Plan {
        shape: Shape {
            native,
            standalone_sidecar: !coordinated,
            docker_wait_budget,
            storage_size_limit: overrides
                .storage_size_limit
                .or_else(|| config.dind.storage_size_limit.clone()),
            volumes,
            work,
            externals,
        },
        runner_index,
        wrapped_command,
        set_share_process_namespace,
        raise_grace_to,
        drain_timeout,
        docker_wait,
        externals_copy,
        env_kept,
        warnings,
    })
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
