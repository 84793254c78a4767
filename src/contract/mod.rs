//! Names and paths that form the public contract of an injected pod.
//!
//! Users, dashboards, the in-pod helpers and the tests all rely on these
//! strings; change one and every injected pod in every cluster changes with
//! it. They live in one place so that the engine, the helpers and the docs
//! cannot drift apart.

pub mod cmdline;

/// Pods are selected by this label (the webhook's objectSelector matches it
/// too; the engine re-checks it because offline `inject` has no selector).
pub const RUNNER_LABEL: &str = "runner";
/// The only value of [`RUNNER_LABEL`] that selects a pod.
pub const RUNNER_LABEL_VALUE: &str = "true";

/// Every annotation the injector reads or writes starts with this prefix.
pub const ANNOTATION_PREFIX: &str = "dind-injector.io/";

/// Annotation keys, read from the pod (overrides) or written to it (status).
pub mod annotation {
    /// `"false"` opts a pod out; `"true"` is the default.
    pub const INJECT: &str = "dind-injector.io/inject";
    /// Written on injection; its presence marks a pod as already injected.
    pub const STATUS: &str = "dind-injector.io/status";
    /// `classic`, `native` or `auto`.
    pub const SIDECAR_MODE: &str = "dind-injector.io/sidecar-mode";
    /// Name of the container that runs the CI runner.
    pub const RUNNER_CONTAINER: &str = "dind-injector.io/runner-container";
    /// The runner's command when its container relies on the image ENTRYPOINT.
    pub const ENTRYPOINT: &str = "dind-injector.io/entrypoint";
    /// Minimum `terminationGracePeriodSeconds` for this pod.
    pub const TERMINATION_GRACE_PERIOD: &str = "dind-injector.io/termination-grace-period";
    /// How long the supervisor lets a running job finish on SIGTERM.
    pub const DRAIN_TIMEOUT: &str = "dind-injector.io/drain-timeout";
    /// How long the supervisor waits for Docker before starting the runner.
    pub const DOCKER_WAIT: &str = "dind-injector.io/docker-wait";
    /// `sizeLimit` of the Docker storage emptyDir.
    pub const STORAGE_SIZE_LIMIT: &str = "dind-injector.io/storage-size-limit";
    /// The runner's work directory, shared with the daemon at the same path.
    pub const WORK_DIR: &str = "dind-injector.io/work-dir";
    /// The runner's externals directory, shared with the daemon at the same path.
    pub const EXTERNALS_DIR: &str = "dind-injector.io/externals-dir";
    /// The configuration profile of the Docker daemon. Read from the pod,
    /// and (when enabled) from its namespace as the namespace's default.
    pub const PROFILE: &str = "dind-injector.io/profile";
    /// The `dind` container's CPU request, a quantity.
    pub const CPU_REQUEST: &str = "dind-injector.io/cpu-request";
    /// The `dind` container's CPU limit, a quantity.
    pub const CPU_LIMIT: &str = "dind-injector.io/cpu-limit";
    /// The `dind` container's memory request, a quantity.
    pub const MEMORY_REQUEST: &str = "dind-injector.io/memory-request";
    /// The `dind` container's memory limit, a quantity.
    pub const MEMORY_LIMIT: &str = "dind-injector.io/memory-limit";

    /// Every key the injector understands; any other key with the prefix is
    /// a typo and is denied rather than silently ignored.
    pub const ALL: &[&str] = &[
        INJECT,
        STATUS,
        SIDECAR_MODE,
        RUNNER_CONTAINER,
        ENTRYPOINT,
        TERMINATION_GRACE_PERIOD,
        DRAIN_TIMEOUT,
        DOCKER_WAIT,
        STORAGE_SIZE_LIMIT,
        WORK_DIR,
        EXTERNALS_DIR,
        PROFILE,
        CPU_REQUEST,
        CPU_LIMIT,
        MEMORY_REQUEST,
        MEMORY_LIMIT,
    ];
}

/// On the admission policies `dind-injector policy` renders: the
/// configuration they were rendered from (JSON, sidecar mode resolved), so
/// that a deployer holding a configuration — the Helm chart — can refuse a
/// rendering made from another one instead of installing it silently.
pub const POLICY_CONFIG_ANNOTATION: &str = "dind-injector.io/config";

/// Value written to [`annotation::STATUS`].
pub const STATUS_INJECTED: &str = "injected";

/// The kubelet marks static pods' API mirrors with this annotation; they
/// cannot be changed by admission (the kubelet owns the spec).
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Container names added to the pod.
pub mod container {
    /// The Docker daemon (a regular container, or a native sidecar).
    pub const DIND: &str = "dind";
    /// Copies the binary and writes the TLS material.
    pub const INIT: &str = "dind-injector-init";
    /// Copies the runner image's externals into the shared volume.
    pub const EXTERNALS: &str = "dind-injector-externals";
}

/// Base names of the volumes added to the pod (made unique when taken).
pub mod volume {
    pub const CERTS: &str = "dind-certs";
    pub const STORAGE: &str = "dind-storage";
    pub const RUN: &str = "dind-run";
    pub const BIN: &str = "dind-injector-bin";
    pub const WORK: &str = "dind-work";
    pub const EXTERNALS: &str = "dind-externals";
    /// The ConfigMap holding `daemon.json` (when configured).
    pub const DAEMON_CONFIG: &str = "dind-daemon-config";
    /// The registries' CA certificates (when configured).
    pub const REGISTRY_CERTS: &str = "dind-registry-certs";
    /// Extra volumes of the profile, in their order.
    pub const EXTRA: &str = "dind-extra";
}

/// Paths inside the containers.
pub mod path {
    /// `DOCKER_TLS_CERTDIR` of the daemon: `server/` and `client/` below it.
    pub const CERTS_DIR: &str = "/certs";
    /// The client half, the only part the runner sees (`DOCKER_CERT_PATH`).
    pub const CLIENT_CERTS_DIR: &str = "/certs/client";
    /// The daemon's storage.
    pub const DOCKER_DATA: &str = "/var/lib/docker";
    /// Shared coordination directory: `runner.pid`, `runner.exit`, `docker.ready`.
    pub const RUN_DIR: &str = "/run/dind-injector";
    /// Where `init` copies the injector binary for the other containers.
    pub const BIN_DIR: &str = "/dind-injector/bin";
    /// The copied binary, the entrypoint wrapper of the runner and of `dind`.
    pub const BINARY: &str = "/dind-injector/bin/dind-injector";
    /// The binary inside the injector's own image.
    pub const IMAGE_BINARY: &str = "/usr/local/bin/dind-injector";
    /// dockerd's configuration file (its default path).
    pub const DAEMON_CONFIG: &str = "/etc/docker/daemon.json";
    /// Where dockerd looks for `<registry>/ca.crt`.
    pub const REGISTRY_CERTS_DIR: &str = "/etc/docker/certs.d";
    /// Where the externals copy is mounted inside the externals init container.
    pub const EXTERNALS_STAGING: &str = "/dind-injector/externals";
}

/// Tells `dockerd-entrypoint.sh` where the TLS material is (set on `dind`).
pub const DIND_TLS_ENV: &str = "DOCKER_TLS_CERTDIR";

/// The daemon's TLS port, on the pod's loopback (`DOCKER_HOST`).
pub const DOCKER_TLS_PORT: u16 = 2376;
/// `DOCKER_HOST` given to the runner.
pub const DOCKER_HOST: &str = "tcp://localhost:2376";

/// The variables the runner (and every `docker` it runs) needs to reach the
/// injected daemon over TLS.
pub const RUNNER_ENV: [(&str, &str); 3] = [
    ("DOCKER_HOST", DOCKER_HOST),
    ("DOCKER_TLS_VERIFY", "1"),
    ("DOCKER_CERT_PATH", path::CLIENT_CERTS_DIR),
];

/// Set on an unsupervised runner (classic mode, command unknown) to its
/// container's name: the sidecar started with `--watch-runner=NAME` finds
/// the runner container's processes by the cgroup of the process that
/// carries it (see `inpod::sidecar::container`).
pub const RUNNER_MARKER_ENV: &str = "DIND_INJECTOR_RUNNER";

/// Mount paths the runner gets from us; a runner that already uses one of
/// them cannot be injected (the apiserver refuses duplicate mount paths).
pub const RUNNER_RESERVED_PATHS: [&str; 3] = [path::CLIENT_CERTS_DIR, path::RUN_DIR, path::BIN_DIR];

/// Default image that `dind` runs. Pinned: an unpinned `docker:dind` changes
/// the daemon under every CI job on the day a new release is pushed.
pub const DEFAULT_DIND_IMAGE: &str = "docker:28.5.2-dind";
/// Default injector image: this very build, so `init` copies a binary that
/// speaks the same protocol as the webhook that injected it.
pub const DEFAULT_INJECTOR_IMAGE: &str = concat!(
    "ghcr.io/dind-injector/dind-injector:v",
    env!("CARGO_PKG_VERSION")
);
