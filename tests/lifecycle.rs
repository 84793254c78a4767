//! The lifecycle protocol with real processes and real signals: `supervise`
//! and `sidecar` as siblings in a simulated pod (see `common/procs.rs`).

mod common;

use std::ops::Deref;
use std::time::Duration;

use common::procs::Pod;

/// A fake runner: records the signals it gets (a shell traps them only if
/// they were not ignored when it started), then exits 130/143 like a
/// program killed by them. `$1`: what to do (`exit N`, `worker SECS`, `wait`).
const RUNNER: &str = r#"#!/bin/sh
event() { echo "$(date +%s.%N) $*" >> "$T/events"; }
read -r _ < /dev/null
# Builtins only: while the shell waits for a child it blocks signals itself.
while read -r k v; do
  case $k in SigIgn:|SigBlk:) echo "$k $v" >> "$T/runner.sigstate" ;; esac
done < /proc/$$/status
echo $$ > "$T/runner.pid"
trap 'echo INT >> "$T/runner.signals"; event runner-INT; exit 130' INT
trap 'echo TERM >> "$T/runner.signals"; event runner-TERM; exit 143' TERM
event runner-start
case "$1" in
  exit) sleep "${3:-0.3}"; exit "$2" ;;
  worker) "$T/Runner.Worker" "$2" & ;;
  orphan)
    # A grandchild whose parent exits at once: re-parented to the subreaper.
    ( sh -c 'sleep 0.5; read -r l < /proc/$$/stat; set -- $l; echo "$4" > "$T/orphan.ppid"' & )
    sleep 1.5
    : > "$T/zombies"
    for d in /proc/[0-9]*; do
      read -r l < "$d/stat" 2>/dev/null || continue
      set -- $l
      [ "$3" = Z ] && echo "$l" >> "$T/zombies"
    done
    exit 0 ;;
esac
while :; do sleep 60 & wait $!; done
"#;

/// A fake job: `Runner.Worker SECS` works, then checks that Docker still
/// answers (a real TLS request to the fake daemon) and records the end.
const WORKER: &str = r#"#!/bin/sh
event() { echo "$(date +%s.%N) $*" >> "$T/events"; }
trap 'event worker-INT; exit 130' INT
trap 'event worker-TERM; exit 143' TERM
event worker-start
sleep "$1" & wait $!
if curl -sf --cacert "$CERTS/client/ca.pem" --cert "$CERTS/client/cert.pem" \
     --key "$CERTS/client/key.pem" "https://127.0.0.1:$PORT/_ping" >/dev/null; then
  event worker-docker-answered
fi
event worker-done
"#;

/// One pod's story: what the kubelet does, step by step (the script that
/// runs as PID 1 of the simulated pod, with the helpers of
/// `common/procs.rs`), then [`Ran`] to check what came of it.
struct Scenario {
    pod: Pod,
    steps: Vec<String>,
}

impl Scenario {
    /// A pod with the fake runner and the fake job in it.
    fn new(name: &str) -> Self {
        let pod = Pod::new(name);
        pod.script("runner.sh", RUNNER);
        pod.script("Runner.Worker", WORKER);
        Self {
            pod,
            steps: Vec::new(),
        }
    }

    /// The `dind` container starts: `sidecar FLAGS -- <fake dockerd>`.
    fn dind(self, flags: &str) -> Self {
        self.then(&format!("start_sidecar {flags}"))
    }

    /// The runner container starts: `supervise FLAGS -- runner.sh ACTION`
    /// (`exit N`, `worker SECS`, `wait`, `orphan`).
    fn runner(self, flags: &str, action: &str) -> Self {
        self.then(&format!(
            r#"start_supervise {flags} -- "$T/runner.sh" {action}"#
        ))
    }

    /// Waits (at most 10 s) until `event` has been recorded.
    fn once(self, event: &str) -> Self {
        self.then(&format!(
            r#"i=0; until grep -q {event} "$T/events" 2>/dev/null || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done"#
        ))
    }

    /// The kubelet runs the native `dind` container's postStart hook
    /// (`wait-docker FLAGS`) and waits for it; its code goes to `hook.code`.
    fn post_start_hook(self, flags: &str) -> Self {
        self.then(&format!(
            r#""$BIN" wait-docker --run-dir "$RUN" {flags} >>"$T/hook.log" 2>&1
echo $? > "$T/hook.code""#
        ))
    }

    /// The kubelet stops a classic pod: SIGTERM to every container at once.
    fn kubelet_stops_the_pod(self) -> Self {
        self.then("event kubelet-TERM\nkill -TERM \"$SUP\" \"$SIDECAR\"")
    }

    /// Any other step, as shell lines.
    fn then(mut self, lines: &str) -> Self {
        self.steps.push(lines.trim().to_string());
        self
    }

    /// Runs the pod to its end (`finish` waits for both containers and lists
    /// what is left), within a minute.
    fn run(self) -> Ran {
        self.run_then("")
    }

    /// Like [`Scenario::run`], with `after` run once both containers ended.
    fn run_then(self, after: &str) -> Ran {
        let script = format!("{}\nfinish\n{after}", self.steps.join("\n"));
        let out = self.pod.run(&script, Duration::from_secs(60));
        Ran {
            pod: self.pod,
            elapsed: out.elapsed,
        }
    }
}

/// A pod that has run; reads as the [`Pod`] it was.
struct Ran {
    pod: Pod,
    elapsed: Duration,
}

impl Deref for Ran {
    type Target = Pod;
    fn deref(&self) -> &Pod {
        &self.pod
    }
}

impl Ran {
    /// The exit code the kubelet saw for `who` (`supervise`, `sidecar`).
    fn exits(&self, who: &str, code: i32, why: &str) {
        let got = self.code(who);
        self.check(
            got == Some(code),
            &format!("{who} exit {code} ({why}), got {got:?}"),
        );
    }

    /// Seconds from the first `from` event to the first `to` event.
    fn seconds(&self, from: &str, to: &str) -> f64 {
        self.event_time(to) - self.event_time(from)
    }

    /// `who`'s log (`supervise`, `sidecar`) says `text`.
    fn log_says(&self, who: &str, text: &str, what: &str) {
        let log = self.read(&format!("{who}.log")).unwrap_or_default();
        self.check(log.contains(text), what);
    }
}

#[test]
fn runner_exits_0_then_sidecar_stops_the_daemon_and_exits_0() {
    let p = Scenario::new("exit0")
        .dind("")
        .runner("--docker-wait=30", "exit 0")
        .run();
    p.exits("supervise", 0, "the runner's code");
    p.exits("sidecar", 0, "the Job completes");
    p.check(p.has_event("daemon-TERM"), "daemon got SIGTERM");
    p.check(
        p.read("run/runner.exit").as_deref() == Some("0\n"),
        "runner.exit 0",
    );
    p.check(p.read("run/runner.pid").is_some(), "runner.pid written");
    p.check(
        !p.path("run/docker.ready").exists(),
        "docker.ready removed after stop",
    );
    p.check(p.read("runner.signals").is_none(), "runner got no signal");
    let args = p.read("daemon.args").unwrap_or_default();
    p.check(
        args.contains("--fake-flag --mtu=1400 --default-network-opt=bridge=com.docker.network.driver.mtu=1400"),
        "MTU flags appended to the daemon's arguments",
    );
    p.log_says(
        "supervise",
        "Docker is ready",
        "runner waited for docker.ready",
    );
    p.check(
        p.event_time("daemon-start") < p.event_time("runner-start"),
        "the runner started after the daemon answered",
    );
    p.assert_no_leftovers();
}

#[test]
fn runner_exits_3_then_supervisor_exits_3() {
    let p = Scenario::new("exit3")
        .dind("")
        .runner("--docker-wait=30", "exit 3")
        .run();
    p.exits("supervise", 3, "the runner's code");
    p.check(
        p.read("run/runner.exit").as_deref() == Some("3\n"),
        "runner.exit 3",
    );
    p.exits("sidecar", 0, "the daemon is stopped all the same");
    p.check(p.has_event("daemon-TERM"), "daemon stopped");
    p.assert_no_leftovers();
}

#[test]
fn sigterm_to_every_container_while_a_job_runs_drains_first() {
    let p = Scenario::new("drain")
        .dind("")
        .runner("--docker-wait=30 --drain-timeout=60", "worker 3")
        .once("worker-start")
        .kubelet_stops_the_pod()
        .run();
    let t = |e: &str| p.event_time(e);
    p.exits("supervise", 0, "130 after our SIGINT is a clean stop");
    p.exits("sidecar", 0, "the daemon stopped after the runner");
    p.check(
        p.read("runner.signals").as_deref() == Some("INT\n"),
        "runner got SIGINT only",
    );
    p.check(
        p.has_event("worker-docker-answered"),
        "Docker answered the job after SIGTERM",
    );
    p.check(
        !p.has_event("worker-INT") && !p.has_event("worker-TERM"),
        "the job was not interrupted",
    );
    p.check(
        t("kubelet-TERM") < t("worker-done"),
        "SIGTERM came while the job ran",
    );
    p.check(
        t("worker-done") <= t("runner-INT"),
        "the job finished before the runner got SIGINT",
    );
    p.check(
        t("runner-INT") <= t("daemon-TERM"),
        "the daemon stopped after the runner",
    );
    p.check(
        p.read("run/runner.exit").as_deref() == Some("0\n"),
        "runner.exit 0",
    );
    p.log_says("sidecar", "held back", "sidecar says it held SIGTERM back");
    p.assert_no_leftovers();
}

#[test]
fn drain_timeout_expiry_stops_the_runner_anyway() {
    let p = Scenario::new("draintimeout")
        .dind("")
        .runner("--docker-wait=30 --drain-timeout=2", "worker 30")
        .once("worker-start")
        .kubelet_stops_the_pod()
        .run();
    let waited = p.seconds("kubelet-TERM", "runner-INT");
    p.check(
        (1.9..4.0).contains(&waited),
        &format!("SIGINT {waited:.2}s after SIGTERM, expected ~2s"),
    );
    p.check(!p.has_event("worker-done"), "the job was cut short");
    p.exits("supervise", 0, "a clean stop");
    p.exits("sidecar", 0, "the daemon stopped after the runner");
    p.log_says(
        "supervise",
        "drain timeout (2s) expired",
        "supervise says the drain timed out",
    );
    p.assert_no_leftovers();
}

#[test]
fn runner_sigkilled_then_sidecar_stops_the_daemon_within_two_seconds() {
    let p = Scenario::new("oomkill")
        .dind("")
        .runner("--docker-wait=30", "wait")
        .then(
            r#"
wait_file "$T/runner.pid"; sleep 0.3
event kill-KILL
# The OOM killer takes the whole container: supervisor and runner.
kill -KILL "$SUP" -"$(cat "$T/runner.pid")"
"#,
        )
        .run();
    let stopped_after = p.seconds("kill-KILL", "daemon-TERM");
    p.check(
        stopped_after < 2.0,
        &format!("daemon stopped {stopped_after:.2}s after the kill"),
    );
    p.exits("supervise", 137, "killed");
    p.exits("sidecar", 0, "the Job completes");
    p.check(
        !p.path("run/runner.exit").exists(),
        "no runner.exit after SIGKILL",
    );
    p.log_says("sidecar", "gone without runner.exit", "sidecar says why");
    p.assert_no_leftovers();
}

#[test]
fn runner_that_exited_before_the_sidecar_watched_is_not_missed() {
    let p = Scenario::new("early")
        .runner("--docker-wait=0", "exit 0 0")
        .then(
            r#"
wait "$SUP"; echo $? > "$T/supervise.code"; SUP=
event sidecar-start
start_sidecar --runner-start-timeout=600
wait "$SIDECAR"; echo $? > "$T/sidecar.code"; SIDECAR=
event sidecar-end
"#,
        )
        .run();
    let stopped_after = p.seconds("sidecar-start", "sidecar-end");
    p.check(
        stopped_after < 2.0,
        &format!("daemon stopped {stopped_after:.2}s after the sidecar started"),
    );
    p.exits("sidecar", 0, "the runner had ended");
    p.assert_no_leftovers();
}

#[test]
fn runner_never_starts_then_sidecar_exits_after_the_start_timeout() {
    let p = Scenario::new("nostart")
        .then("event sidecar-start")
        .dind("--runner-start-timeout=2")
        .run();
    let stopped_after = p.seconds("sidecar-start", "daemon-TERM");
    p.check(
        (1.9..3.5).contains(&stopped_after),
        &format!("stopped after {stopped_after:.2}s, expected ~2s"),
    );
    p.exits("sidecar", 0, "the pod's work is done");
    p.check(p.elapsed < Duration::from_secs(10), "pod ended");
    p.log_says("sidecar", "no runner started within 2s", "sidecar says why");
    p.assert_no_leftovers();
}

#[test]
fn a_reused_pid_is_not_mistaken_for_the_runner() {
    let p = Scenario::new("pidreuse")
        .then(
            r#"
# An unrelated process now holds the PID recorded in runner.pid, but it
# started at another time: the runner is gone.
sleep 30 & OTHER=$!
read -r l < /proc/$OTHER/stat; set -- $l; START=${22}
echo "$OTHER $((START + 1))" > "$RUN/runner.pid"
event sidecar-start
start_sidecar --runner-start-timeout=600
wait "$SIDECAR"; echo $? > "$T/sidecar.code"; SIDECAR=
event sidecar-end
# Control: the same PID with its real start time is a live runner.
echo "$OTHER $START" > "$RUN/runner.pid"
rm -f "$T/sidecar.log"
start_sidecar --runner-start-timeout=600
sleep 1.5
if kill -0 "$SIDECAR" 2>/dev/null; then event sidecar-kept-waiting; fi
kill "$OTHER"; wait "$OTHER"
event other-ended
wait "$SIDECAR"; echo $? > "$T/sidecar2.code"; SIDECAR=
"#,
        )
        .run();
    let d = p.seconds("sidecar-start", "sidecar-end");
    p.check(
        d < 2.0,
        &format!("reused PID: daemon stopped after {d:.2}s"),
    );
    p.exits("sidecar", 0, "the recorded runner is gone");
    p.check(
        p.has_event("sidecar-kept-waiting"),
        "a live runner keeps the daemon up",
    );
    p.exits("sidecar2", 0, "once the live process ended");
    p.assert_no_leftovers();
}

#[test]
fn orphans_are_reaped_by_the_supervisor() {
    let p = Scenario::new("zombies")
        .dind("")
        .runner("--docker-wait=30", "orphan")
        .run();
    let sup_pid = p.read("run/runner.pid").unwrap_or_default();
    let sup_pid = sup_pid.split_whitespace().next().unwrap_or("?").to_string();
    let orphan_parent = p.read("orphan.ppid").unwrap_or_default();
    p.check(
        orphan_parent.trim() == sup_pid,
        &format!("orphan re-parented to the supervisor {sup_pid}, got {orphan_parent}"),
    );
    let zombies = p.read("zombies").unwrap_or_else(|| "(not written)".into());
    p.check(zombies.trim().is_empty(), &format!("zombies: {zombies}"));
    p.exits("supervise", 0, "the runner's code");
    p.assert_no_leftovers();
}

#[test]
fn command_not_found_or_not_executable_gets_a_distinct_code() {
    let scenario = Scenario::new("notfound")
        .dind("")
        .then("start_supervise --docker-wait=30 -- /no/such/runner --flag");
    std::fs::write(scenario.pod.path("not-executable"), "#!/bin/sh\n").expect("write");
    let p = scenario.run_then(
        r#"
"$BIN" supervise --run-dir "$RUN" --docker-wait=0 -- "$T/not-executable" 2> "$T/noexec.log"
echo $? > "$T/noexec.code"
"#,
    );
    p.exits("supervise", 127, "not found");
    p.check(
        p.read("run/runner.exit").as_deref() == Some("126\n"),
        "runner.exit of the last run: 126",
    );
    p.exits("noexec", 126, "not executable");
    p.log_says(
        "supervise",
        "\"/no/such/runner\": command not found",
        "clear message",
    );
    p.log_says("noexec", "not executable", "clear message for 126");
    p.exits("sidecar", 0, "it stopped the daemon");
    p.check(p.has_event("daemon-TERM"), "daemon stopped");
    p.assert_no_leftovers();
}

#[test]
fn runner_started_with_sigint_ignored_still_gets_sigint() {
    let p = Scenario::new("sigign")
        .dind("")
        .then(
            r#"
# A launcher that ignores SIGINT (a shell's background job does this).
( trap '' INT ALRM; grep SigIgn /proc/self/status > "$T/launcher.sigign"; exec "$BIN" supervise --run-dir "$RUN" --docker-wait=30 -- "$T/runner.sh" wait ) >>"$T/supervise.log" 2>&1 &
SUP=$!
"#,
        )
        .once("runner-start")
        .then(r#"kill -TERM "$SUP" "$SIDECAR""#)
        .run();
    let sup = p.read("launcher.sigign").unwrap_or_default();
    // SIGINT is bit 2 of the mask: ...02; the test means nothing without it.
    p.check(
        sup.trim().ends_with('2') || sup.trim().ends_with('6'),
        &format!("the supervisor is started with SIGINT ignored: {sup}"),
    );
    let state = p.read("runner.sigstate").unwrap_or_default();
    p.check(
        state.contains("SigIgn: 0000000000000000") && state.contains("SigBlk: 0000000000000000"),
        &format!("runner starts with nothing ignored or blocked: {state}"),
    );
    p.check(
        p.read("runner.signals").as_deref() == Some("INT\n"),
        "runner got SIGINT",
    );
    p.exits("supervise", 0, "a clean stop");
    p.assert_no_leftovers();
}

#[test]
fn standalone_sidecar_passes_sigterm_on() {
    let p = Scenario::new("standalone")
        .dind("--standalone")
        .once("daemon-start")
        .then(
            r#"
wait_file "$RUN/docker.ready"
[ -e "$RUN/docker.ready" ] && event ready-written
kill -TERM "$SIDECAR"
"#,
        )
        .run();
    p.check(p.has_event("daemon-TERM"), "daemon got SIGTERM at once");
    p.check(
        p.has_event("ready-written"),
        "docker.ready written in standalone mode too (native mode's hook waits for it)",
    );
    p.exits("sidecar", 0, "as the daemon did");
    p.check(
        !p.path("run/docker.ready").exists(),
        "docker.ready removed once the daemon stopped",
    );
    p.assert_no_leftovers();
}

/// Native mode: the kubelet runs the dind container's postStart hook
/// (`wait-docker`) right after starting it and starts the runner only when
/// the hook has returned. Before issue 10 a standalone sidecar wrote no
/// docker.ready, so such a hook could only time out.
#[test]
fn native_post_start_hook_returns_once_the_standalone_sidecar_wrote_docker_ready() {
    let p = Scenario::new("native-hook")
        .dind("--standalone")
        .post_start_hook("--timeout=30")
        .then(
            r#"
event hook-returned
[ -e "$RUN/docker.ready" ] && event ready-when-hook-returned
kill -TERM "$SIDECAR"
"#,
        )
        .run();
    p.exits("hook", 0, "the hook succeeded");
    p.check(
        p.has_event("ready-when-hook-returned"),
        "docker.ready existed when the hook returned",
    );
    p.log_says(
        "sidecar",
        "dockerd answers",
        "the sidecar pinged the daemon before writing docker.ready",
    );
    p.exits("sidecar", 0, "as the daemon did");
    p.check(
        !p.path("run/docker.ready").exists(),
        "docker.ready removed once the daemon stopped",
    );
    p.assert_no_leftovers();
}

/// A Docker that never answers: the hook fails at its bound, so the
/// kubelet kills and restarts dind and never starts the runner.
#[test]
fn native_post_start_hook_fails_at_its_bound_when_docker_never_answers() {
    let p = Scenario::new("native-hook-timeout")
        .post_start_hook("--timeout=1")
        .run();
    p.exits("hook", 1, "the hook failed");
    p.check(
        p.elapsed < Duration::from_secs(5),
        "within its bound, not forever",
    );
    p.log_says(
        "hook",
        "Docker did not become ready within 1s",
        "the hook says why",
    );
}

#[test]
fn rewrite_table_from_the_environment() {
    let p = Scenario::new("rewrite")
        .dind("")
        .then(r#"DIND_INJECTOR_REWRITE=TERM:TERM start_supervise --docker-wait=30 --drain-timeout=0 -- "$T/runner.sh" wait"#)
        .once("runner-start")
        .then(r#"kill -TERM "$SUP""#)
        .run();
    p.check(
        p.read("runner.signals").as_deref() == Some("TERM\n"),
        "TERM:TERM passes SIGTERM as it is",
    );
    p.exits("supervise", 0, "143 after our SIGTERM is a clean stop");
    p.exits("sidecar", 0, "the runner has ended");
    p.assert_no_leftovers();
}

/// Found on the real node: dockerd refused a flag, and the runner container
/// waited out its whole `--docker-wait` (300 s) for a daemon that was gone.
#[test]
fn a_daemon_that_dies_before_it_is_ready_ends_the_supervisor_at_once() {
    let scenario = Scenario::new("deadbeforeready").then(
        r#"
start_supervise --docker-wait=60 -- "$T/runner.sh" exit 0
"$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" --docker-host "tcp://127.0.0.1:$PORT" \
  -- "$T/crashing-dockerd" >>"$T/sidecar.log" 2>&1 &
SIDECAR=$!
wait "$SIDECAR"; echo $? > "$T/sidecar.code"; SIDECAR=
"#,
    );
    scenario
        .pod
        .script("crashing-dockerd", "#!/bin/sh\nsleep 0.5\nexit 7\n");
    let p = scenario.run();
    p.exits("sidecar", 7, "the daemon's code");
    p.exits("supervise", 125, "Docker never came");
    p.log_says(
        "supervise",
        "dockerd exited (code 7) before it was ready",
        "supervise says why",
    );
    p.check(
        p.elapsed < Duration::from_secs(20),
        &format!("the pod ended in {:?}, not after --docker-wait", p.elapsed),
    );
    p.check(
        !p.read("events")
            .unwrap_or_default()
            .contains("runner-start"),
        "the runner never started",
    );
    p.assert_no_leftovers();
}

#[test]
fn a_daemon_that_dies_by_itself_ends_the_sidecar_with_its_code() {
    let scenario = Scenario::new("daemondies")
        .runner("--docker-wait=0", "wait")
        .then(
            r#"
wait_file "$T/runner.pid"
"$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" --docker-host "tcp://127.0.0.1:$PORT" \
  -- "$T/crashing-dockerd" >>"$T/sidecar.log" 2>&1 &
SIDECAR=$!
wait "$SIDECAR"; echo $? > "$T/sidecar.code"; SIDECAR=
kill -TERM "$SUP"
"#,
        );
    scenario
        .pod
        .script("crashing-dockerd", "#!/bin/sh\nsleep 0.5\nexit 7\n");
    let p = scenario.run();
    p.exits("sidecar", 7, "the daemon's code");
    p.log_says("sidecar", "exited by itself with code 7", "sidecar says so");
    p.check(
        !p.path("run/docker.ready").exists(),
        "no docker.ready for a dead daemon",
    );
    p.assert_no_leftovers();
}

#[test]
fn docker_never_ready_fails_with_a_clear_message_and_never_starts_the_runner() {
    let p = Scenario::new("nodocker")
        .runner("--docker-wait=1", "exit 0")
        .run();
    p.exits("supervise", 125, "Docker never became ready");
    p.check(
        p.read("run/runner.exit").as_deref() == Some("125\n"),
        "runner.exit 125 (the sidecar stops dockerd)",
    );
    p.check(!p.has_event("runner-start"), "the runner was not started");
    let log = p.read("supervise.log").unwrap_or_default();
    p.check(
        log.contains("Docker did not become ready within 1s")
            && log.contains("docker.ready does not exist"),
        "clear message",
    );
    p.check(p.elapsed < Duration::from_secs(10), "bounded");
    p.assert_no_leftovers();
}

/// Issue 16: a runner whose command is unknown runs without `supervise`,
/// so nothing writes `runner.pid` or `runner.exit`. The sidecar started
/// with `--watch-runner` finds the runner container by its marker variable
/// and follows it by its cgroup (each container has its own): the daemon
/// stops when the last process of that container has ended — here a child
/// that outlives the runner's first process and does not carry the marker —
/// and not before. Each "container" is a cgroup of its own in the unified
/// hierarchy, below this test's, as the kubelet would make them.
#[test]
fn an_unsupervised_runner_s_container_ending_stops_the_daemon() {
    let p = Scenario::new("watch-runner")
        .then(
            r#"
v2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
CG=$v2$(sed -n 's/^0:://p' /proc/self/cgroup)/dind-injector-$(basename "$T")
CG=$(echo "$CG" | sed 's|//*|/|g')
mkdir -p "$CG/dind" "$CG/runner" "$CG/other"
echo "$CG" > "$T/cgroup"
# Always backgrounded: the exec makes $! the process in the cgroup.
in_cgroup() { cg=$1; shift; exec sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"; }
# Another container of the pod, which must not keep Docker up.
in_cgroup "$CG/other" sleep 600 &
OTHER=$!
DIND_INJECTOR_RUNNER=runner in_cgroup "$CG/runner" sh -c '
  env -u DIND_INJECTOR_RUNNER sh -c "sleep 2.5; echo \"\$(date +%s.%N) runner-child-end\" >> \"\$T/events\"" &
  sleep 1
  echo "$(date +%s.%N) runner-main-exit" >> "$T/events"' &
in_cgroup "$CG/dind" "$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" \
  --docker-host "tcp://127.0.0.1:$PORT" --stop-timeout 5 --mtu off --watch-runner=runner \
  -- "$T/fake/dockerd" >>"$T/sidecar.log" 2>&1 &
SIDECAR=$!
"#,
        )
        .once("daemon-TERM")
        .then(r#"kill "$OTHER"; wait "$OTHER" 2>/dev/null"#)
        .run_then(
            r#"
rmdir "$CG/dind" "$CG/runner" "$CG/other" "$CG"
"#,
        );
    p.exits("sidecar", 0, "the Job completes");
    p.check(p.has_event("daemon-TERM"), "daemon got SIGTERM");
    p.check(
        p.event_time("runner-main-exit") < p.event_time("runner-child-end")
            && p.event_time("runner-child-end") < p.event_time("daemon-TERM"),
        "the daemon stopped after the runner container's last process, not its first",
    );
    p.log_says(
        "sidecar",
        "watching the runner container \"runner\"",
        "the sidecar found the runner by its marker",
    );
    p.log_says(
        "sidecar",
        "every process of the runner container \"runner\" has ended",
        "the sidecar says why it stopped the daemon",
    );
    let cgroup = p.read("cgroup").unwrap_or_default();
    p.check(
        !std::path::Path::new(cgroup.trim()).exists(),
        "the test's cgroups are removed",
    );
    p.assert_no_leftovers();
}

/// Issue 13: a run directory that cannot be written (not a directory, or
/// one where no file can be created) ends `supervise` with its documented
/// code 125 and a message that says so; the runner is never started.
#[test]
fn an_unwritable_run_directory_ends_supervise_with_125_and_says_so() {
    let dir = common::temp_dir("unwritable-run");
    std::fs::write(dir.join("a-file"), "").expect("write");
    let marker = dir.join("runner-ran");
    for (run_dir, says) in [
        (dir.join("a-file/run"), "cannot create the run directory"),
        // procfs exists, but no file can be created in it, even by root.
        (
            std::path::PathBuf::from("/proc"),
            "cannot write /proc/runner.pid",
        ),
    ] {
        let out = std::process::Command::new(common::bin())
            .arg("supervise")
            .arg("--run-dir")
            .arg(&run_dir)
            .args(["--docker-wait=0", "--", "touch"])
            .arg(&marker)
            .output()
            .expect("run supervise");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{}: {stderr}",
            run_dir.display()
        );
        assert!(
            stderr.contains(says) && stderr.contains("the runner was not started"),
            "{stderr}"
        );
        assert!(!marker.exists(), "the runner ran");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 13: the run directory is shared with the other container, whose
/// processes may plant a symlink where the writer puts its temp file (the
/// name used to be `.NAME.tmp.PID`, and the supervisor is often PID 1): the
/// write must not go through it.
#[test]
fn write_atomic_does_not_follow_a_planted_symlink() {
    use dind_injector::inpod::rundir::write_atomic;
    let dir = common::temp_dir("planted");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("write");
    let target = dir.join("runner.pid");
    for pid in [1, std::process::id()] {
        std::os::unix::fs::symlink(&victim, dir.join(format!(".runner.pid.tmp.{pid}")))
            .expect("plant");
    }
    write_atomic(&target, b"42 1\n", 0o644).expect("write");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "42 1\n");
    // A symlink at the final name is replaced, its target left alone.
    std::fs::remove_file(&target).expect("rm");
    std::os::unix::fs::symlink(&victim, &target).expect("plant");
    write_atomic(&target, b"43 1\n", 0o644).expect("write");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!std::fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_symlink());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 13: with `/proc` mounted `hidepid=invisible` and the sidecar
/// another user than the runner, `/proc/PID` of the runner is missing to
/// the sidecar: that must not read as "the runner is gone" and stop Docker
/// under a live job. The sidecar keeps Docker until the runner really ends.
#[test]
fn a_hidden_proc_does_not_make_the_sidecar_stop_docker_under_a_live_runner() {
    let p = Scenario::new("hidepid")
        .then(
            r#"mount -o remount,hidepid=invisible /proc
touch "$T/events" && chmod -R a+rwX "$T"
start_supervise --docker-wait=0 -- "$T/runner.sh" exit 0 3
wait_file "$RUN/runner.pid"
setpriv --reuid=65534 --regid=65534 --clear-groups "$BIN" sidecar --run-dir "$RUN" \
  --certs-dir "$CERTS" --docker-host "tcp://127.0.0.1:$PORT" --stop-timeout 5 --mtu 1400 \
  -- "$T/fake/dockerd" --fake-flag >>"$T/sidecar.log" 2>&1 &
SIDECAR=$!"#,
        )
        .run();
    p.exits("supervise", 0, "the runner's code");
    p.exits("sidecar", 0, "it stopped the daemon");
    p.check(p.has_event("daemon-TERM"), "daemon stopped in the end");
    let held = p.seconds("runner-start", "daemon-TERM");
    p.check(
        held >= 2.5,
        &format!("Docker kept while the runner ran: stopped after {held:.1}s"),
    );
    p.log_says("sidecar", "cannot read /proc/", "says /proc cannot tell");
    p.assert_no_leftovers();
}

/// Issue 13: a daemon that ignores SIGTERM is killed after the sidecar's
/// stop timeout, and a job process that ignores SIGTERM after the
/// supervisor's two seconds: the pod still ends, nothing is left behind.
#[test]
fn a_daemon_and_a_job_that_ignore_sigterm_are_killed_and_the_pod_ends() {
    let scenario = Scenario::new("stubborn");
    scenario.pod.script(
        "stubborn-dockerd",
        "#!/bin/sh\ntrap '' TERM INT\necho \"$(date +%s.%N) daemon-start\" >> \"$T/events\"\nexec sleep 1000\n",
    );
    scenario.pod.script(
        "stubborn-runner.sh",
        "#!/bin/sh\nsh -c \"trap '' TERM INT HUP; exec sleep 1000\" &\n\
         echo \"$(date +%s.%N) runner-start\" >> \"$T/events\"\nsleep 0.5\nexit 0\n",
    );
    let p = scenario
        .then(
            r#""$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" --docker-host "tcp://127.0.0.1:$PORT" \
  --stop-timeout 2 --mtu 1400 -- "$T/stubborn-dockerd" >>"$T/sidecar.log" 2>&1 &
SIDECAR=$!
start_supervise --docker-wait=0 -- "$T/stubborn-runner.sh""#,
        )
        .run();
    p.exits("supervise", 0, "the runner's code");
    p.exits("sidecar", 0, "it stopped the daemon");
    p.log_says(
        "sidecar",
        "daemon still running 2s after SIGTERM: SIGKILL",
        "daemon killed",
    );
    p.check(
        p.elapsed < Duration::from_secs(15),
        &format!("bounded: {:?}", p.elapsed),
    );
    p.assert_no_leftovers();
}
