//! End to end against a real control plane: etcd, kube-apiserver and
//! kube-controller-manager built from the Kubernetes Go modules
//! (tests/e2e/controlplane, `make e2e` builds and caches it), the real
//! `dind-injector serve`, and the project's own manifests (RBAC, webhook
//! configuration, config file).
//!
//! One control plane serves every scenario, in order: starting it costs more
//! than all scenarios together. Each scenario works in namespaces and under
//! names of its own, so a failure is reported and the rest still run.
//! Run one by name: `make e2e E2E_ARGS=job`.
//!
//! Not a libtest harness (`harness = false`): the control plane must be torn
//! down after the last scenario, also on failure, and libtest has no place
//! for that.

mod bench;
mod cluster;
mod extra;
mod injector;
mod pki;
mod pods;
mod procs;
mod scenarios;
mod setup;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kube::Client;

use cluster::ControlPlane;
use extra::Extra;
use injector::Injector;
use pki::Ca;

/// Where runner pods are created (matched by the webhook's namespaceSelector).
const RUNNERS: &str = "e2e-runners";
/// Opted out with the documented namespace label.
const OPTED_OUT: &str = "e2e-opted-out";
const WEBHOOK_CONFIG: &str = "dind-injector";
const FIELD_MANAGER: &str = "dind-injector-e2e";
/// Controllers and the apiserver's webhook informer act within seconds; a
/// minute means something is broken.
const WAIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Env {
    dir: PathBuf,
    client: Client,
    ca: Ca,
    extra: Option<Extra>,
    // Drop order: the webhook, then the control plane.
    injector: Injector,
    cp: ControlPlane,
}

type Scenario = for<'a> fn(&'a mut Env) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), (|env| Box::pin(scenarios::$name(env))) as Scenario)),*]
    };
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bench = std::env::args().any(|a| a == "--bench");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let dir = std::env::temp_dir().join(format!("dind-injector-e2e-{}", std::process::id()));
    let started = Instant::now();
    let outcome = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(&dir, &filters, bench)),
        Err(e) => Err(e.into()),
    };
    // Every process of the run has the run's directory on its command line.
    let leftovers = procs::processes_mentioning(&dir.display().to_string());
    let failed = match outcome {
        Ok(failed) => failed,
        Err(e) => {
            eprintln!("e2e: setup failed: {e:#}");
            vec!["setup".to_string()]
        }
    };
    if !leftovers.is_empty() {
        eprintln!(
            "e2e: processes left behind after teardown:\n{}",
            leftovers.join("\n")
        );
    }
    println!("e2e: finished in {:.1} s", started.elapsed().as_secs_f64());
    if failed.is_empty() && leftovers.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        ExitCode::SUCCESS
    } else {
        let logs = if dir.exists() {
            format!(" (logs kept in {})", dir.display())
        } else {
            String::new()
        };
        eprintln!("e2e: FAILED: {}{logs}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Sets up, runs the selected scenarios (or the benchmark); the names of
/// those that failed.
async fn run(dir: &Path, filters: &[String], bench: bool) -> Result<Vec<String>> {
    let bin = PathBuf::from(std::env::var_os("DIND_E2E_CONTROLPLANE").context(
        "DIND_E2E_CONTROLPLANE is not set: run `make e2e`, which builds the control plane",
    )?);
    let all = scenarios![
        auto_mode_picks_native,
        job_pods_injected,
        replicaset_pods_injected,
        bare_pods_classic_and_native,
        unselected_pods_untouched,
        invalid_annotation_rejected,
        dry_run_stores_nothing,
        reinvocation_keeps_one_dind,
        webhook_down_fails_closed,
        certificate_rotation_loses_nothing,
        pod_security_baseline_refuses_dind,
        own_deployment_passes_restricted,
        shipped_manifests_accepted,
        auto_mode_follows_old_nodes,
    ];
    let names: Vec<&str> = all.iter().map(|(name, _)| *name).collect();
    let selected: Vec<(&str, Scenario)> = all
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if selected.is_empty() && !bench {
        bail!(
            "no scenario matches {filters:?}; the scenarios: {}",
            names.join(", ")
        );
    }
    for component in ["kube-apiserver", "kube-controller-manager", "etcd"] {
        println!(
            "e2e: {component}: {}",
            cluster::component_version(&bin, component)?
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut env = setup::start(dir, &bin).await?;
    if bench {
        return Ok(match bench::admission(&env).await {
            Ok(()) => Vec::new(),
            Err(e) => {
                println!("e2e bench: FAILED\n{e:#}");
                vec!["bench".to_string()]
            }
        });
    }

    let mut failed = Vec::new();
    for (name, scenario) in selected {
        let start = Instant::now();
        let result = match tokio::time::timeout(Duration::from_secs(240), scenario(&mut env)).await
        {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("timed out")),
        };
        let result = result
            .and_then(|()| env.cp.check_alive())
            .and_then(|()| env.injector.check_alive());
        let secs = start.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("e2e: scenario {name} ... ok ({secs:.1} s)"),
            Err(e) => {
                println!("e2e: scenario {name} ... FAILED ({secs:.1} s)\n{e:#}");
                failed.push(name.to_string());
            }
        }
    }
    Ok(failed)
}
