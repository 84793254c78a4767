//! Scenarios on the node: injected runner pods scheduled and run by a real
//! kubelet, each in classic and native mode at the same time. They show what
//! only a kubelet can: Docker up before the runner, Jobs that complete,
//! scale-downs that drain, killed runners that do not leave a pod hanging.
//!
//! The runner is the e2e image's run.sh (tests/e2e/images/runner), driven by
//! env; the timeline comes from the kubelet's own log timestamps.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::node::POD_MTU;
use crate::pods::{check_injected, check_injected_unsupervised, Mode};
use crate::runs::{now, watch_until, Recording};
use crate::scenarios::runners;
use crate::{Env, RUNNERS};

/// A pod on this node starts in seconds; a minute means it is stuck.
pub(crate) const RUN: Duration = Duration::from_secs(90);
pub(crate) const RUNNER: &str = "runner";
const DIND: &str = dind_injector::contract::container::DIND;

/// A Job's work: load an image from a tarball in the work directory, run it
/// with the work directory bind-mounted, read back the file it wrote, and
/// report the MTU the job container got from the inner daemon.
const DOCKER_JOB: &str = "load_job_image > /dev/null \
    && job_container 'echo from-the-job > out; echo mtu=$(cat /sys/class/net/eth0/mtu)' \
    && echo file=$(cat \"$WORK_DIR/out\")";

/// A runner pod template for the node: the e2e runner image and its run.sh,
/// the mode by annotation, run.sh's behaviour from `vars`.
pub(crate) fn template(
    env: &Env,
    mode: Mode,
    labels: Value,
    vars: &[(&str, &str)],
    limits: Value,
) -> Value {
    let env_list: Vec<Value> = vars
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "metadata": {
            "labels": labels,
            "annotations": {dind_injector::contract::annotation::SIDECAR_MODE: mode.as_str()}
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": RUNNER,
                "image": env.images.runner,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/home/runner/run.sh"],
                "env": env_list,
                "resources": {"limits": limits},
            }]
        }
    })
}

pub(crate) fn runner_labels(run: &str) -> Value {
    json!({"runner": "true", "e2e-run": run})
}

/// The one pod with `e2e-run=<run>`, once it exists.
pub(crate) async fn pod_of(api: &Api<Pod>, run: &str) -> Result<String> {
    crate::procs::eventually(&format!("the pod of {run}"), RUN, || {
        let api = api.clone();
        async move {
            let list = api
                .list(&ListParams::default().labels(&format!("e2e-run={run}")))
                .await?;
            Ok(list.items.first().and_then(|p| p.metadata.name.clone()))
        }
    })
    .await
}

/// The pod has ended and none of its containers runs any more (a native
/// sidecar still stopping would show as running).
pub(crate) fn terminal(rec: &Recording) -> bool {
    matches!(rec.phase(), "Succeeded" | "Failed") && rec.running().is_empty()
}

/// Seconds between two instants, for the timelines.
fn secs(from: f64, to: f64) -> String {
    format!("{:.2} s", to - from)
}

/// When the Job `name` was seen with `condition` true.
pub(crate) async fn job_condition(jobs: &Api<Job>, name: &str, condition: &str) -> Result<f64> {
    crate::procs::eventually(&format!("Job {name}: {condition}"), RUN, || async move {
        let job = jobs.get(name).await?;
        let done = job
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == condition && c.status == "True");
        Ok(done.then(now))
    })
    .await
}

/// Creates the Job `run` in `ns` from a pod template, checks its pod as
/// stored with `check`, and watches the pod until it has ended, Succeeded
/// with the runner's exit 0: the recording, and when it ended.
async fn job_succeeds(
    env: &Env,
    ns: &str,
    run: &str,
    template: Value,
    check: impl FnOnce(&Pod) -> Result<()>,
) -> Result<(Recording, f64)> {
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": run},
        "spec": {"backoffLimit": 0, "template": template}
    }))?;
    Api::<Job>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await?;
    let api: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let name = pod_of(&api, run).await?;
    check(&api.get(&name).await?)?;
    let mut rec = Recording::default();
    let ended = watch_until(&api, &name, &mut rec, RUN, "terminal", terminal).await?;
    ensure!(
        rec.phase() == "Succeeded",
        "phase {}:\n{}",
        rec.phase(),
        rec.dump()
    );
    ensure!(
        rec.exit_code(RUNNER)? == 0,
        "runner exit code:\n{}",
        rec.dump()
    );
    Ok((rec, ended))
}

pub(crate) async fn both<F, Fut>(f: F) -> Result<()>
where
    F: Fn(Mode) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (classic, native) = tokio::join!(f(Mode::Classic), f(Mode::Native));
    let errors: Vec<String> = [(Mode::Classic, classic), (Mode::Native, native)]
        .into_iter()
        .filter_map(|(m, r)| r.err().map(|e| format!("{}: {e:#}", m.as_str())))
        .collect();
    ensure!(errors.is_empty(), "{}", errors.join("\n"));
    Ok(())
}

/// 1 (and 6): a Job whose runner runs a container from an image loaded from
/// the work directory, with the work directory bind-mounted: it completes,
/// every container ends, and the job container got the pod network's MTU.
pub(crate) async fn node_job_runs_docker(env: &mut Env) -> Result<()> {
    let env = &*env;
    both(|mode| job_runs_docker(env, RUNNERS, mode, "job")).await
}

/// A runner Job in `ns` (`run` names it) that runs a container with the
/// work directory bind-mounted completes; whoever injected it.
pub(crate) async fn job_runs_docker(env: &Env, ns: &str, mode: Mode, run: &str) -> Result<()> {
    let run = format!("{run}-{}", mode.as_str());
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let tpl = template(
        env,
        mode,
        runner_labels(&run),
        &[("JOB_COMMANDS", DOCKER_JOB)],
        json!({}),
    );
    let created = now();
    let (rec, ended) = job_succeeds(env, ns, &run, tpl, |p| check_injected(p, mode)).await?;
    let mtu = format!("mtu={POD_MTU}");
    for needle in [
        "runner: docker ready",
        "file=from-the-job",
        mtu.as_str(),
        "worker: job finished rc=0",
    ] {
        rec.first(RUNNER, needle)?;
    }
    let complete = job_condition(&jobs, &run, "Complete").await?;
    let started = rec.first(RUNNER, "runner: started")?.at;
    let exit = rec.first(RUNNER, "runner: exit 0")?.at;
    let dind_ready = rec.first(DIND, "dockerd answers")?.at;
    println!(
        "e2e:   {} in {ns}: Job complete; pod created → runner started {}, Docker ready → runner started {}, runner exit → pod Succeeded {}, → Job Complete {}, job container MTU {POD_MTU}",
        mode.as_str(),
        secs(created, started),
        secs(dind_ready, started),
        secs(exit, ended),
        secs(exit, complete),
    );
    jobs.delete(&run, &DeleteParams::background()).await?;
    Ok(())
}

/// Issue 16: a Job whose runner image has only an ENTRYPOINT and whose pod
/// sets no command. The image's registry (`localhost`, as the webhook's pod
/// sees it) does not answer, so the webhook cannot know the command: the
/// fallback, an unsupervised runner. It still completes: in classic mode the sidecar watches
/// the runner container's processes and stops Docker when they have ended,
/// in native mode the kubelet stops the sidecar. The runner may start
/// before Docker answers (nothing holds it), so its job waits for Docker.
pub(crate) async fn node_runner_without_command_completes(env: &mut Env) -> Result<()> {
    let env = &*env;
    both(|mode| runner_without_command_completes(env, RUNNERS, mode, "entrypoint")).await
}

/// A runner Job in `ns` (`run` names it) whose runner sets no command and
/// whose image's command cannot be known completes; whoever injected it
/// (the webhook, or the admission policy: issue 16).
pub(crate) async fn runner_without_command_completes(
    env: &Env,
    ns: &str,
    mode: Mode,
    run: &str,
) -> Result<()> {
    let run = format!("{run}-{}", mode.as_str());
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let commands =
        format!("until docker version > /dev/null 2>&1; do sleep 0.2; done; {DOCKER_JOB}");
    let vars = [
        ("RUNNER_DOCKER_CHECK", "0"),
        ("JOB_COMMANDS", commands.as_str()),
    ];
    let mut tpl = template(env, mode, runner_labels(&run), &vars, json!({}));
    let runner = &mut tpl["spec"]["containers"][0];
    runner["image"] = json!(env.images.runner_entrypoint);
    runner
        .as_object_mut()
        .context("runner container")?
        .remove("command");
    let (rec, ended) =
        job_succeeds(env, ns, &run, tpl, |p| check_injected_unsupervised(p, mode)).await?;
    rec.first(RUNNER, "file=from-the-job")?;
    let exit = rec.first(RUNNER, "runner: exit 0")?.at;
    if mode == Mode::Classic {
        rec.first(DIND, "watching the runner container \"runner\"")?;
        rec.first(
            DIND,
            "every process of the runner container \"runner\" has ended",
        )?;
    }
    let complete = job_condition(&jobs, &run, "Complete").await?;
    println!(
        "e2e:   {} in {ns}: runner from its image's ENTRYPOINT, unsupervised: its job ran Docker; runner exit → pod Succeeded {}, → Job Complete {}",
        mode.as_str(),
        secs(exit, ended),
        secs(exit, complete),
    );
    jobs.delete(&run, &DeleteParams::background()).await?;
    Ok(())
}

/// 2: a runner that exits 3 fails its Job's pod with the runner's code, and
/// the pod does not hang on Docker.
pub(crate) async fn node_runner_exit_code(env: &mut Env) -> Result<()> {
    let env = &*env;
    both(|mode| async move {
        let run = format!("exit3-{}", mode.as_str());
        let jobs: Api<Job> = Api::namespaced(env.client.clone(), RUNNERS);
        let vars = [("RUNNER_JOB", "0"), ("RUNNER_EXIT_CODE", "3")];
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": run},
            "spec": {"backoffLimit": 0, "template": template(env, mode, runner_labels(&run), &vars, json!({}))}
        }))?;
        jobs.create(&PostParams::default(), &job).await?;
        let api = runners(env);
        let name = pod_of(&api, &run).await?;
        let mut rec = Recording::default();
        let ended = watch_until(&api, &name, &mut rec, RUN, "terminal", terminal).await?;
        ensure!(rec.phase() == "Failed", "phase {}:\n{}", rec.phase(), rec.dump());
        ensure!(rec.exit_code(RUNNER)? == 3, "runner exit code:\n{}", rec.dump());
        let exit = rec.first(RUNNER, "runner: exit 3")?.at;
        job_condition(&jobs, &run, "Failed").await?;
        println!(
            "e2e:   {}: runner exit 3 → pod Failed {} (runner's status exit code 3, Job Failed)",
            mode.as_str(),
            secs(exit, ended)
        );
        jobs.delete(&run, &DeleteParams::background()).await?;
        Ok(())
    })
    .await
}

/// 3: a ReplicaSet scaled to 0 while a job runs: the job finishes (its
/// Docker calls after the SIGTERM work), then the runner gets SIGINT and
/// exits 0, then Docker stops; the pod is gone well within its grace period.
pub(crate) async fn node_scale_down_drains(env: &mut Env) -> Result<()> {
    let env = &*env;
    both(|mode| async move {
        let run = format!("rs-{}", mode.as_str());
        let sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), RUNNERS);
        let vars = [
            ("JOB_SECONDS", "10"),
            ("JOB_DOCKER_EVERY", "1"),
            ("RUNNER_WAIT_FOR_SIGNAL", "1"),
        ];
        let mut tpl = template(env, mode, runner_labels(&run), &vars, json!({}));
        tpl["spec"]["restartPolicy"] = json!("Always");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": run},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"e2e-run": run}}, "template": tpl}
        }))?;
        sets.create(&PostParams::default(), &rs).await?;
        let api = runners(env);
        let name = pod_of(&api, &run).await?;
        let mut rec = Recording::default();
        watch_until(&api, &name, &mut rec, RUN, "the job to start", |r| {
            r.has(RUNNER, "worker: job started")
        })
        .await?;
        let grace = rec
            .last
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.termination_grace_period_seconds)
            .context("grace period")?;
        let scaled = now();
        sets.patch(&run, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}})))
            .await?;
        let gone = watch_until(&api, &name, &mut rec, Duration::from_secs(120), "the pod to be gone", |r| r.gone).await?;
        let after: Vec<_> = rec
            .lines(RUNNER)
            .iter()
            .filter(|l| l.at > scaled && l.text.contains("worker: docker"))
            .collect();
        ensure!(
            !after.is_empty() && after.iter().all(|l| l.text.contains("docker ok")),
            "Docker calls after the scale-down: {after:?}\n{}",
            rec.dump()
        );
        let finished = rec.first(RUNNER, "worker: job finished rc=0")?.at;
        let sigint = rec.first(RUNNER, "runner: SIGINT")?.at;
        let exit = rec.first(RUNNER, "runner: exit 0")?.at;
        ensure!(!rec.has(RUNNER, "runner: SIGTERM"), "the runner saw SIGTERM:\n{}", rec.dump());
        ensure!(finished <= sigint && sigint <= exit, "order: job finished, SIGINT, exit:\n{}", rec.dump());
        let stopped = rec
            .lines(DIND)
            .iter()
            .find(|l| l.at >= exit && (l.text.contains("stopping the daemon") || l.text.contains("passed on to the daemon")))
            .with_context(|| format!("Docker stopped after the runner:\n{}", rec.dump()))?
            .at;
        ensure!(gone - scaled < grace as f64, "gone after {:.1} s, grace {grace} s", gone - scaled);
        println!(
            "e2e:   {}: scale-down → job finished {} ({} Docker calls after it, all ok) → runner SIGINT {} → runner exit {} → Docker stopping {} → pod gone {} (grace {grace} s)",
            mode.as_str(),
            secs(scaled, finished),
            after.len(),
            secs(scaled, sigint),
            secs(scaled, exit),
            secs(scaled, stopped),
            secs(scaled, gone),
        );
        sets.delete(&run, &DeleteParams::background()).await?;
        Ok(())
    })
    .await
}

/// 4: a runner over its memory limit (cgroup v1 kills the allocating
/// process, the runner), and a runner container killed whole with SIGKILL
/// through containerd: the pod completes, Docker stopped, within seconds.
pub(crate) async fn node_killed_runner_ends_pod(env: &mut Env) -> Result<()> {
    let env = &*env;
    both(|mode| async move {
        let api = runners(env);
        // Out of memory.
        let run = format!("oom-{}", mode.as_str());
        let vars = [("RUNNER_JOB", "0"), ("RUNNER_DOCKER_CHECK", "0"), ("RUNNER_MEMORY_HOG", "1")];
        let tpl = template(env, mode, runner_labels(&run), &vars, json!({"memory": "96Mi"}));
        let pod = crate::pods::pod(&run, tpl)?;
        api.create(&PostParams::default(), &pod).await?;
        let mut rec = Recording::default();
        let ended = watch_until(&api, &run, &mut rec, RUN, "terminal", terminal).await?;
        ensure!(rec.phase() == "Failed", "phase {}:\n{}", rec.phase(), rec.dump());
        ensure!(rec.exit_code(RUNNER)? == 137, "runner exit code:\n{}", rec.dump());
        let hog = rec.first(RUNNER, "allocating memory")?.at;
        println!(
            "e2e:   {}: runner over its memory limit → OOM kill → pod Failed {} after it started allocating, no container left running",
            mode.as_str(),
            secs(hog, ended)
        );
        // SIGKILL to every process of the runner container.
        let run = format!("kill-{}", mode.as_str());
        let vars = [("RUNNER_JOB", "0"), ("RUNNER_WAIT_FOR_SIGNAL", "1")];
        let tpl = template(env, mode, runner_labels(&run), &vars, json!({}));
        api.create(&PostParams::default(), &crate::pods::pod(&run, tpl)?).await?;
        let mut rec = Recording::default();
        // The log line reaches the node's files before the kubelet reports
        // the container's id in the pod's status: wait for both.
        watch_until(&api, &run, &mut rec, RUN, "the runner to wait", |r| {
            r.has(RUNNER, "runner: waiting for a signal")
                && r.status(RUNNER).is_ok_and(|s| s.container_id.is_some())
        })
        .await?;
        let id = rec
            .status(RUNNER)?
            .container_id
            .clone()
            .context("runner container id")?;
        let id = id.trim_start_matches("containerd://");
        let killed = now();
        env.node.ctr(&["tasks", "kill", "--all", "--signal", "SIGKILL", id])?;
        let ended = watch_until(&api, &run, &mut rec, RUN, "terminal", terminal).await?;
        ensure!(rec.phase() == "Failed", "phase {}:\n{}", rec.phase(), rec.dump());
        ensure!(rec.exit_code(RUNNER)? == 137, "runner exit code:\n{}", rec.dump());
        println!(
            "e2e:   {}: runner container SIGKILLed through containerd → pod Failed {}, no container left running",
            mode.as_str(),
            secs(killed, ended)
        );
        for name in [format!("oom-{}", mode.as_str()), run] {
            api.delete(&name, &DeleteParams::default()).await?;
        }
        Ok(())
    })
    .await
}

/// 5: Docker is ready before the runner's first command, in both modes; in
/// native mode the kubelet holds the runner back until then.
pub(crate) async fn node_docker_ready_before_runner(env: &mut Env) -> Result<()> {
    let env = &*env;
    both(|mode| async move {
        let api = runners(env);
        let run = format!("ready-{}", mode.as_str());
        let tpl = template(env, mode, runner_labels(&run), &[("RUNNER_JOB", "0")], json!({}));
        let created = now();
        api.create(&PostParams::default(), &crate::pods::pod(&run, tpl)?).await?;
        let mut rec = Recording::default();
        watch_until(&api, &run, &mut rec, RUN, "terminal", terminal).await?;
        ensure!(rec.phase() == "Succeeded", "phase {}:\n{}", rec.phase(), rec.dump());
        let dind_started = rec.lines(DIND).first().context("dind's first line")?.at;
        let ready = rec.first(DIND, "dockerd answers")?.at;
        let started = rec.first(RUNNER, "runner: started")?.at;
        rec.first(RUNNER, "runner: docker ready")?;
        ensure!(
            ready <= started,
            "the runner started before Docker was ready:\n{}",
            rec.dump()
        );
        println!(
            "e2e:   {}: pod created → dind started {} → Docker ready {} → runner started {} (Docker ready → runner {}); the runner's first docker call worked",
            mode.as_str(),
            secs(created, dind_started),
            secs(created, ready),
            secs(created, started),
            secs(ready, started),
        );
        api.delete(&run, &DeleteParams::default()).await?;
        Ok(())
    })
    .await
}

/// 7: a pod without the label runs untouched beside an injected one.
pub(crate) async fn node_unlabelled_pod_runs_untouched(env: &mut Env) -> Result<()> {
    let api = runners(env);
    let plain = "plain";
    let mut tpl = template(
        env,
        Mode::Classic,
        json!({"app": "plain"}),
        &[("RUNNER_JOB", "0"), ("RUNNER_DOCKER_CHECK", "0")],
        json!({}),
    );
    tpl["metadata"]["annotations"] = json!({});
    let runner = "beside-plain";
    let injected_tpl = template(
        env,
        Mode::Classic,
        runner_labels(runner),
        &[("RUNNER_JOB", "0")],
        json!({}),
    );
    api.create(&PostParams::default(), &crate::pods::pod(plain, tpl)?)
        .await?;
    api.create(
        &PostParams::default(),
        &crate::pods::pod(runner, injected_tpl)?,
    )
    .await?;
    let mut rec = Recording::default();
    watch_until(&api, plain, &mut rec, RUN, "terminal", terminal).await?;
    let mut beside = Recording::default();
    watch_until(&api, runner, &mut beside, RUN, "terminal", terminal).await?;
    ensure!(
        rec.phase() == "Succeeded" && beside.phase() == "Succeeded",
        "phases {} and {}",
        rec.phase(),
        beside.phase()
    );
    let stored = api.get(plain).await?;
    let spec = stored.spec.context("spec")?;
    ensure!(
        spec.containers.len() == 1
            && spec.init_containers.is_none()
            && spec.share_process_namespace.is_none(),
        "the unlabelled pod was changed: {spec:?}"
    );
    ensure!(rec.has(RUNNER, "runner: exit 0"), "{}", rec.dump());
    println!("e2e:   an unlabelled pod ran untouched (one container, no dind) beside an injected one; both Succeeded");
    for name in [plain, runner] {
        api.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}
