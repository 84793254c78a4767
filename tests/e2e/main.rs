//! End to end against a real cluster: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and a kubelet built from the
//! Kubernetes Go modules (tests/e2e/controlplane), containerd built from its
//! module (`make e2e` builds and caches both), the real `dind-injector
//! serve`, and the project's own manifests (RBAC, webhook configuration,
//! config file). The whole suite runs in namespaces of its own (sandbox.rs).
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
mod helm;
mod injector;
mod node;
mod on_node;
mod pki;
mod pods;
mod policy;
mod procs;
mod profiles;
mod pull_secrets;
mod runs;
mod sandbox;
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
use node::Node;
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
    images: node::Images,
    // Drop order: the node, the webhook, then the control plane.
    node: Node,
    injector: Injector,
    cp: ControlPlane,
}

type Scenario = for<'a> fn(&'a mut Env) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

macro_rules! scenarios {
    ($($module:ident :: $name:ident),* $(,)?) => {
        [$((stringify!($name), (|env| Box::pin($module::$name(env))) as Scenario)),*]
    };
}

fn main() -> ExitCode {
    let Some(dir) = sandbox::inside() else {
        let dir = std::env::temp_dir().join(format!("dind-injector-e2e-{}", std::process::id()));
        return sandbox::run_outside(&dir);
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bench = std::env::args().any(|a| a == "--bench");
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let started = Instant::now();
    let outcome = (|| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        sandbox::prepare_inside(&dir)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(&dir, &filters, bench))
    })();
    // Inside the run's PID namespace only tini (PID 1) and the suite itself
    // may be left.
    let leftovers = procs::others();
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
        scenarios::auto_mode_picks_native,
        scenarios::job_pods_injected,
        scenarios::replicaset_pods_injected,
        scenarios::bare_pods_classic_and_native,
        scenarios::unselected_pods_untouched,
        scenarios::invalid_annotation_rejected,
        scenarios::dry_run_stores_nothing,
        scenarios::reinvocation_keeps_one_dind,
        scenarios::webhook_down_fails_closed,
        scenarios::certificate_rotation_loses_nothing,
        scenarios::webhook_requires_a_client_certificate,
        scenarios::pod_security_baseline_refuses_dind,
        scenarios::own_deployment_passes_restricted,
        scenarios::shipped_manifests_accepted,
        scenarios::auto_mode_follows_old_nodes,
        pull_secrets::pull_secrets_read_through_the_apiserver,
        policy::policy_objects_accepted,
        policy::policy_pods_match_webhook,
        policy::policy_invalid_annotations_refused,
        policy::policy_dry_run_stores_nothing,
        policy::policy_reinvocation_keeps_one_dind,
        policy::node_policy_job_completes,
        on_node::node_docker_ready_before_runner,
        on_node::node_job_runs_docker,
        on_node::node_runner_exit_code,
        on_node::node_runner_without_command_completes,
        on_node::node_scale_down_drains,
        on_node::node_killed_runner_ends_pod,
        on_node::node_unlabelled_pod_runs_untouched,
        helm::helm_install_upgrade_uninstall,
        profiles::node_profiles_take_effect,
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
    let inputs = setup::Inputs::from_env(bin)?;
    inputs.print_versions()?;
    let mut env = setup::start(dir, &inputs).await?;
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
            .and_then(|()| env.node.check_alive())
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
