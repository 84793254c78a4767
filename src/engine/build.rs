//! Builds the objects the engine adds: volumes, containers, mounts, env.
//!
//! Typed k8s-openapi structs are used here, and only here, to *build* new
//! objects (a misspelt field name is then a compile error); they are turned
//! into JSON at once and never used to re-serialise what came in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, EmptyDirVolumeSource,
    EnvVar, EphemeralVolumeSource, ExecAction, KeyToPath, Lifecycle, LifecycleHandler,
    PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate, Probe, ProjectedVolumeSource,
    ResourceRequirements, SecretProjection, SecurityContext, Volume, VolumeMount, VolumeProjection,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::plan::{Shape, SharedDir, SidecarRole};
use crate::contract::cmdline::{self, Seconds};
use crate::contract::{self, container, path, RUNNER_ENV, RUNNER_MARKER_ENV};
use crate::engine::config::{Config, DindConfig, StorageKind};

/// The unprivileged user the init container runs as. emptyDirs are
/// world-writable, so it needs no privilege to fill them, and root in the
/// `dind` container reads what it wrote.
const INIT_UID: i64 = 65532;

fn empty_dir(name: &str) -> Result<Value, serde_json::Error> {
    serde_json::to_value(Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    })
}

fn mount(name: &str, mount_path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: mount_path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn quantities(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, Quantity>> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    })
}

/// The objects built from a [`Shape`] alone.
#[derive(Debug, Clone)]
pub struct Parts {
    pub volumes: Vec<Value>,
    pub init: Value,
    pub dind: Value,
    pub runner_mounts: Vec<Value>,
}

pub fn parts(config: &Config, shape: &Shape) -> Result<Parts, serde_json::Error> {
    let v = &shape.volumes;
    let mut volumes = vec![
        empty_dir(&v.certs)?,
        storage_volume(&v.storage, &shape.dind)?,
        empty_dir(&v.run)?,
        empty_dir(&v.bin)?,
    ];
    volumes.extend(profile_volumes(shape)?);
    for dir in shape.shared_dirs() {
        if let SharedDir::Added { volume, .. } = dir {
            volumes.push(empty_dir(volume)?);
        }
    }
    Ok(Parts {
        volumes,
        init: init_container(config, shape)?,
        dind: dind_container(shape)?,
        runner_mounts: runner_mounts(shape)?,
    })
}

/// `/var/lib/docker`: an emptyDir (on the node's disk, or `medium: Memory`),
/// or a generic ephemeral volume: a claim made for the pod from the
/// template and deleted with it, for nodes whose disks are small.
fn storage_volume(name: &str, dind: &DindConfig) -> Result<Value, serde_json::Error> {
    let size = dind.storage_size_limit.as_deref();
    let storage = &dind.storage;
    if storage.kind == StorageKind::EmptyDir {
        return serde_json::to_value(Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: storage.medium.map(|_| "Memory".into()),
                size_limit: size.map(|s| Quantity(s.into())),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    serde_json::to_value(Volume {
        name: name.into(),
        ephemeral: Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: size
                            .map(|s| BTreeMap::from([("storage".into(), Quantity(s.into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

/// The volumes the profile adds: `daemon.json`, the registries' CAs (one
/// projected volume, whatever mix of ConfigMaps and Secrets holds them),
/// the extra mounts' sources under the names the plan gave them.
fn profile_volumes(shape: &Shape) -> Result<Vec<Value>, serde_json::Error> {
    let (dind, v) = (&shape.dind, &shape.volumes);
    let mut out = Vec::new();
    if let (Some(daemon), Some(name)) = (&dind.daemon_config, &v.daemon_config) {
        out.push(serde_json::to_value(Volume {
            name: name.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: daemon.config_map.clone(),
                items: Some(vec![KeyToPath {
                    key: daemon.key.clone(),
                    path: DAEMON_JSON.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })?);
    }
    if let Some(name) = &v.registry_certs {
        let sources = dind
            .registry_certificates
            .iter()
            .map(|cert| {
                let items = Some(vec![KeyToPath {
                    key: cert.key.clone(),
                    path: format!("{}/ca.crt", cert.registry),
                    ..Default::default()
                }]);
                match (&cert.config_map, &cert.secret) {
                    (Some(config_map), _) => VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: config_map.clone(),
                            items,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    (None, secret) => VolumeProjection {
                        secret: Some(SecretProjection {
                            name: secret.clone().unwrap_or_default(),
                            items,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                }
            })
            .collect();
        out.push(serde_json::to_value(Volume {
            name: name.clone(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(sources),
                ..Default::default()
            }),
            ..Default::default()
        })?);
    }
    for (extra, name) in dind.extra_mounts.iter().zip(&v.extra) {
        let mut volume = extra.volume.clone();
        volume.insert("name".into(), Value::String(name.clone()));
        out.push(Value::Object(volume));
    }
    Ok(out)
}

/// The file name dockerd reads in `/etc/docker`, and the key's path in the
/// daemon-config volume (mounted with `subPath`).
const DAEMON_JSON: &str = "daemon.json";

/// The profile's mounts in `dind`, all read-only but the extra ones that
/// say otherwise.
fn profile_mounts(shape: &Shape) -> Vec<VolumeMount> {
    let (dind, v) = (&shape.dind, &shape.volumes);
    let mut out = Vec::new();
    if let Some(name) = &v.daemon_config {
        out.push(VolumeMount {
            sub_path: Some(DAEMON_JSON.into()),
            ..mount(name, path::DAEMON_CONFIG, true)
        });
    }
    if let Some(name) = &v.registry_certs {
        out.push(mount(name, path::REGISTRY_CERTS_DIR, true));
    }
    for (extra, name) in dind.extra_mounts.iter().zip(&v.extra) {
        out.push(mount(name, &extra.mount_path, extra.read_only));
    }
    out
}

/// `dind-injector init`: copies the binary, writes the TLS material.
fn init_container(config: &Config, shape: &Shape) -> Result<Value, serde_json::Error> {
    let v = &shape.volumes;
    serde_json::to_value(Container {
        name: container::INIT.into(),
        image: Some(config.injector.image.clone()),
        image_pull_policy: Some(config.injector.image_pull_policy.as_str().into()),
        command: Some(
            cmdline::Init {
                bin_dir: path::BIN_DIR.into(),
                certs_dir: path::CERTS_DIR.into(),
            }
            .argv(path::IMAGE_BINARY),
        ),
        volume_mounts: Some(vec![
            mount(&v.bin, path::BIN_DIR, false),
            mount(&v.certs, path::CERTS_DIR, false),
        ]),
        resources: Some(ResourceRequirements {
            requests: quantities(&BTreeMap::from([
                ("cpu".into(), "10m".into()),
                ("memory".into(), "16Mi".into()),
            ])),
            limits: quantities(&BTreeMap::from([("memory".into(), "64Mi".into())])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(INIT_UID),
            run_as_group: Some(INIT_UID),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The shell script of the externals copy: copies when the runner image has
/// the directory, and says so in the container log when it has not (a runner
/// image other than actions-runner may have no externals).
const COPY_EXTERNALS: &str = r#"if [ -d "$1" ]; then exec cp -a "$1/." "$2/"; fi; echo "dind-injector: $1 is not in this image; nothing to share" >&2"#;

/// Copies the runner image's externals into the shared volume, from the
/// runner's own image (the files exist nowhere else).
pub fn externals_container(
    image: Option<&str>,
    pull_policy: Option<&str>,
    externals_dir: &str,
    volume: &str,
) -> Result<Value, serde_json::Error> {
    serde_json::to_value(externals(image, pull_policy, externals_dir, volume))
}

/// [`externals_container`] as JSON text, without a `Value` in between.
pub fn externals_json(
    image: Option<&str>,
    pull_policy: Option<&str>,
    externals_dir: &str,
    volume: &str,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&externals(image, pull_policy, externals_dir, volume))
}

/// The externals container, borrowed: it is built per review (its image is
/// the runner's), and a `k8s_openapi` `Container` of owned strings cost
/// thirteen allocations each time. Fields in the order `Container` writes
/// them (alphabetical), so the JSON is the same byte for byte (the golden
/// files hold it; the schema tests check it is a valid container).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Externals<'a> {
    command: [&'a str; 6],
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<&'a str>,
    name: &'a str,
    volume_mounts: [StagingMount<'a>; 1],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StagingMount<'a> {
    mount_path: &'a str,
    name: &'a str,
}

fn externals<'a>(
    image: Option<&'a str>,
    pull_policy: Option<&'a str>,
    externals_dir: &'a str,
    volume: &'a str,
) -> Externals<'a> {
    Externals {
        command: [
            "sh",
            "-c",
            COPY_EXTERNALS,
            container::EXTERNALS,
            externals_dir,
            path::EXTERNALS_STAGING,
        ],
        image,
        image_pull_policy: pull_policy,
        name: container::EXTERNALS,
        volume_mounts: [StagingMount {
            mount_path: path::EXTERNALS_STAGING,
            name: volume,
        }],
    }
}

/// A probe that asks the daemon itself, over its unix socket.
fn docker_probe(period: i32, failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["docker".into(), "version".into()]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

/// `dind-injector wait-docker` as the postStart hook (native mode).
fn wait_docker_hook(budget: u32) -> Lifecycle {
    Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(
                    cmdline::WaitDocker {
                        timeout: Seconds(budget.max(1)),
                    }
                    .argv(),
                ),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `dind` container: a regular sidecar (classic) or a native sidecar.
fn dind_container(shape: &Shape) -> Result<Value, serde_json::Error> {
    let (v, dind) = (&shape.volumes, &shape.dind);
    let mut daemon = vec!["dockerd-entrypoint.sh".to_string()];
    daemon.extend(dind.dockerd_args.iter().cloned());
    daemon.extend(
        dind.registry_mirrors
            .iter()
            .map(|m| format!("--registry-mirror={m}")),
    );
    let command = cmdline::Sidecar {
        standalone: shape.sidecar == SidecarRole::Standalone,
        watch_runner: match &shape.sidecar {
            SidecarRole::WatchRunner(name) => Some(name.clone()),
            _ => None,
        },
        command: daemon,
    }
    .argv();

    let mut mounts = [
        mount(&v.certs, path::CERTS_DIR, true),
        mount(&v.storage, path::DOCKER_DATA, false),
        mount(&v.run, path::RUN_DIR, false),
        mount(&v.bin, path::BIN_DIR, true),
    ]
    .into_iter()
    .chain(profile_mounts(shape))
    .map(|m| serde_json::to_value(&m))
    .collect::<Result<Vec<_>, _>>()?;
    for dir in shape.shared_dirs() {
        mounts.push(dir.daemon_mount()?);
    }

    let resources = &dind.resources;
    let native = shape.native;
    let env = std::iter::once((contract::DIND_TLS_ENV, path::CERTS_DIR))
        .chain(dind.env.iter().map(|e| (e.name.as_str(), e.value.as_str())))
        .map(|(name, value)| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        })
        .collect();
    let mut dind = serde_json::to_value(Container {
        name: container::DIND.into(),
        image: Some(dind.image.clone()),
        image_pull_policy: Some(dind.image_pull_policy.as_str().into()),
        command: Some(command),
        env: Some(env),
        resources: (!resources.requests.is_empty() || !resources.limits.is_empty()).then(|| {
            ResourceRequirements {
                requests: quantities(&resources.requests),
                limits: quantities(&resources.limits),
                ..Default::default()
            }
        }),
        // Root, whatever the pod says: dockerd cannot run as the runner's
        // user, and a pod-level runAsUser/runAsNonRoot would otherwise be
        // inherited and stop the daemon from starting.
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            ..Default::default()
        }),
        readiness_probe: Some(docker_probe(10, 3)),
        // Native sidecars gate the runner's start on "started". A postStart
        // hook that returns when the sidecar wrote docker.ready makes that
        // the moment Docker answers; a startup probe would add up to a probe
        // period and a status round trip (docs/design.md, "Native sidecar
        // start"). Bounded like the supervisor's wait in classic mode.
        lifecycle: native.then(|| wait_docker_hook(shape.docker_wait_budget)),
        restart_policy: native.then(|| "Always".into()),
        ..Default::default()
    })?;
    dind["volumeMounts"] = Value::Array(mounts);
    Ok(dind)
}

/// The runner's new command: the supervisor in front of what it ran before.
/// With an empty `command`, the prefix the policy delivery puts in front of
/// the runner's command in CEL (it ends with `--`).
pub fn supervised_command(
    drain_timeout: u32,
    docker_wait: u32,
    config: &Config,
    command: &[String],
) -> Vec<String> {
    cmdline::Supervise {
        drain_timeout: Seconds(drain_timeout),
        docker_wait: Seconds(docker_wait),
        drain_process: config.runner.drain_process.clone(),
        command: command.to_vec(),
    }
    .argv()
}

/// The Docker variables but those in `skip`, and the marker the watching
/// sidecar finds the runner container by.
pub fn runner_env(skip: &[&str], shape: &Shape) -> Result<Vec<Value>, serde_json::Error> {
    let mut env = docker_env(skip)?;
    env.extend(runner_marker(shape)?);
    Ok(env)
}

/// The Docker variables but those in `skip` (the same for every shape: the
/// engine writes them once, as text).
pub fn docker_env(skip: &[&str]) -> Result<Vec<Value>, serde_json::Error> {
    RUNNER_ENV
        .iter()
        .copied()
        .filter(|(name, _)| !skip.contains(name))
        .map(|(name, value)| env_var(name, value))
        .collect()
}

/// The marker the watching sidecar finds the runner container by, when
/// the shape has one.
pub fn runner_marker(shape: &Shape) -> Result<Option<Value>, serde_json::Error> {
    match &shape.sidecar {
        SidecarRole::WatchRunner(name) => env_var(RUNNER_MARKER_ENV, name).map(Some),
        _ => Ok(None),
    }
}

fn env_var(name: &str, value: &str) -> Result<Value, serde_json::Error> {
    serde_json::to_value(EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    })
}

fn runner_mounts(shape: &Shape) -> Result<Vec<Value>, serde_json::Error> {
    let v = &shape.volumes;
    let mut mounts = vec![
        serde_json::to_value(VolumeMount {
            sub_path: Some("client".into()),
            ..mount(&v.certs, path::CLIENT_CERTS_DIR, true)
        })?,
        serde_json::to_value(mount(&v.run, path::RUN_DIR, false))?,
        serde_json::to_value(mount(&v.bin, path::BIN_DIR, true))?,
    ];
    for dir in shape.shared_dirs() {
        if let SharedDir::Added { volume, path } = dir {
            mounts.push(serde_json::to_value(mount(volume, path, false))?);
        }
    }
    Ok(mounts)
}

impl SharedDir {
    /// The daemon mounts a shared directory exactly as the runner does.
    fn daemon_mount(&self) -> Result<Value, serde_json::Error> {
        match self {
            SharedDir::Added { volume, path } => serde_json::to_value(mount(volume, path, false)),
            SharedDir::Existing { mount } => serde_json::from_str(mount),
        }
    }
}
