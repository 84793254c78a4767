//! The lifecycle protocol with real processes and real signals: `supervise`
//! and `sidecar` as siblings in a simulated pod (see `common/procs.rs`).

mod common;

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

fn pod(name: &str) -> Pod {
    let pod = Pod::new(name);
    pod.script("runner.sh", RUNNER);
    pod.script("Runner.Worker", WORKER);
    pod
}

fn limit() -> Duration {
    Duration::from_secs(60)
}

#[test]
fn runner_exits_0_then_sidecar_stops_the_daemon_and_exits_0() {
    let p = pod("exit0");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 -- "$T/runner.sh" exit 0
finish
"#,
        limit(),
    );
    p.check(p.code("supervise") == Some(0), "supervise exit 0");
    p.check(
        p.code("sidecar") == Some(0),
        "sidecar exit 0 (the Job completes)",
    );
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
    let ready = p.read("supervise.log").unwrap_or_default();
    p.check(
        ready.contains("Docker is ready"),
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
    let p = pod("exit3");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 -- "$T/runner.sh" exit 3
finish
"#,
        limit(),
    );
    p.check(p.code("supervise") == Some(3), "supervise exit 3");
    p.check(
        p.read("run/runner.exit").as_deref() == Some("3\n"),
        "runner.exit 3",
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.check(p.has_event("daemon-TERM"), "daemon stopped");
    p.assert_no_leftovers();
}

#[test]
fn sigterm_to_every_container_while_a_job_runs_drains_first() {
    let p = pod("drain");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 --drain-timeout=60 -- "$T/runner.sh" worker 3
i=0; until grep -q worker-start "$T/events" 2>/dev/null || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done
event kubelet-TERM
kill -TERM "$SUP" "$SIDECAR"
finish
"#,
        limit(),
    );
    let t = |e: &str| p.event_time(e);
    p.check(
        p.code("supervise") == Some(0),
        "supervise exit 0 (130 after our SIGINT is a clean stop)",
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
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
    let log = p.read("sidecar.log").unwrap_or_default();
    p.check(
        log.contains("held back"),
        "sidecar says it held SIGTERM back",
    );
    p.assert_no_leftovers();
}

#[test]
fn drain_timeout_expiry_stops_the_runner_anyway() {
    let p = pod("draintimeout");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 --drain-timeout=2 -- "$T/runner.sh" worker 30
i=0; until grep -q worker-start "$T/events" 2>/dev/null || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done
event kubelet-TERM
kill -TERM "$SUP" "$SIDECAR"
finish
"#,
        limit(),
    );
    let term = p.event_time("kubelet-TERM");
    let int = p.event_time("runner-INT");
    p.check(
        (1.9..4.0).contains(&(int - term)),
        &format!("SIGINT {:.2}s after SIGTERM, expected ~2s", int - term),
    );
    p.check(!p.has_event("worker-done"), "the job was cut short");
    p.check(p.code("supervise") == Some(0), "supervise exit 0");
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    let log = p.read("supervise.log").unwrap_or_default();
    p.check(
        log.contains("drain timeout (2s) expired"),
        "supervise says the drain timed out",
    );
    p.assert_no_leftovers();
}

#[test]
fn runner_sigkilled_then_sidecar_stops_the_daemon_within_two_seconds() {
    let p = pod("oomkill");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 -- "$T/runner.sh" wait
wait_file "$T/runner.pid"; sleep 0.3
event kill-KILL
# The OOM killer takes the whole container: supervisor and runner.
kill -KILL "$SUP" -"$(cat "$T/runner.pid")"
finish
"#,
        limit(),
    );
    let killed = p.event_time("kill-KILL");
    let stopped = p.event_time("daemon-TERM");
    p.check(
        stopped - killed < 2.0,
        &format!("daemon stopped {:.2}s after the kill", stopped - killed),
    );
    p.check(p.code("supervise") == Some(137), "supervise killed (137)");
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.check(
        !p.path("run/runner.exit").exists(),
        "no runner.exit after SIGKILL",
    );
    let log = p.read("sidecar.log").unwrap_or_default();
    p.check(log.contains("gone without runner.exit"), "sidecar says why");
    p.assert_no_leftovers();
}

#[test]
fn runner_that_exited_before_the_sidecar_watched_is_not_missed() {
    let p = pod("early");
    p.run(
        r#"
start_supervise --docker-wait=0 -- "$T/runner.sh" exit 0 0
wait "$SUP"; echo $? > "$T/supervise.code"; SUP=
event sidecar-start
start_sidecar --runner-start-timeout=600
wait "$SIDECAR"; echo $? > "$T/sidecar.code"; SIDECAR=
event sidecar-end
finish
"#,
        limit(),
    );
    let started = p.event_time("sidecar-start");
    let stopped = p.event_time("sidecar-end");
    p.check(
        stopped - started < 2.0,
        &format!(
            "daemon stopped {:.2}s after the sidecar started",
            stopped - started
        ),
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.assert_no_leftovers();
}

#[test]
fn runner_never_starts_then_sidecar_exits_after_the_start_timeout() {
    let p = pod("nostart");
    let out = p.run(
        r#"
event sidecar-start
start_sidecar --runner-start-timeout=2
finish
"#,
        limit(),
    );
    let started = p.event_time("sidecar-start");
    let stopped = p.event_time("daemon-TERM");
    p.check(
        (1.9..3.5).contains(&(stopped - started)),
        &format!("stopped after {:.2}s, expected ~2s", stopped - started),
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.check(out.elapsed < Duration::from_secs(10), "pod ended");
    let log = p.read("sidecar.log").unwrap_or_default();
    p.check(
        log.contains("no runner started within 2s"),
        "sidecar says why",
    );
    p.assert_no_leftovers();
}

#[test]
fn a_reused_pid_is_not_mistaken_for_the_runner() {
    let p = pod("pidreuse");
    p.run(
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
finish
"#,
        limit(),
    );
    let d = p.event_time("sidecar-end") - p.event_time("sidecar-start");
    p.check(
        d < 2.0,
        &format!("reused PID: daemon stopped after {d:.2}s"),
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.check(
        p.has_event("sidecar-kept-waiting"),
        "a live runner keeps the daemon up",
    );
    p.check(
        p.code("sidecar2") == Some(0),
        "second sidecar exit 0 once the process ended",
    );
    p.assert_no_leftovers();
}

#[test]
fn orphans_are_reaped_by_the_supervisor() {
    let p = pod("zombies");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 -- "$T/runner.sh" orphan
finish
"#,
        limit(),
    );
    let sup_pid = p.read("run/runner.pid").unwrap_or_default();
    let sup_pid = sup_pid.split_whitespace().next().unwrap_or("?").to_string();
    let orphan_parent = p.read("orphan.ppid").unwrap_or_default();
    p.check(
        orphan_parent.trim() == sup_pid,
        &format!("orphan re-parented to the supervisor {sup_pid}, got {orphan_parent}"),
    );
    let zombies = p.read("zombies").unwrap_or_else(|| "(not written)".into());
    p.check(zombies.trim().is_empty(), &format!("zombies: {zombies}"));
    p.check(p.code("supervise") == Some(0), "supervise exit 0");
    p.assert_no_leftovers();
}

#[test]
fn command_not_found_or_not_executable_gets_a_distinct_code() {
    let p = pod("notfound");
    std::fs::write(p.path("not-executable"), "#!/bin/sh\n").expect("write");
    p.run(
        r#"
start_sidecar
start_supervise --docker-wait=30 -- /no/such/runner --flag
finish
"$BIN" supervise --run-dir "$RUN" --docker-wait=0 -- "$T/not-executable" 2> "$T/noexec.log"
echo $? > "$T/noexec.code"
"#,
        limit(),
    );
    p.check(p.code("supervise") == Some(127), "not found: 127");
    p.check(
        p.read("run/runner.exit").as_deref() == Some("126\n"),
        "runner.exit of the last run: 126",
    );
    p.check(p.code("noexec") == Some(126), "not executable: 126");
    let log = p.read("supervise.log").unwrap_or_default();
    p.check(
        log.contains("\"/no/such/runner\": command not found"),
        "clear message",
    );
    let log = p.read("noexec.log").unwrap_or_default();
    p.check(log.contains("not executable"), "clear message for 126");
    p.check(
        p.code("sidecar") == Some(0),
        "sidecar stopped the daemon and exited 0",
    );
    p.check(p.has_event("daemon-TERM"), "daemon stopped");
    p.assert_no_leftovers();
}

#[test]
fn runner_started_with_sigint_ignored_still_gets_sigint() {
    let p = pod("sigign");
    p.run(
        r#"
start_sidecar
# A launcher that ignores SIGINT (a shell's background job does this).
( trap '' INT ALRM; grep SigIgn /proc/self/status > "$T/launcher.sigign"; exec "$BIN" supervise --run-dir "$RUN" --docker-wait=30 -- "$T/runner.sh" wait ) >>"$T/supervise.log" 2>&1 &
SUP=$!
i=0; until grep -q runner-start "$T/events" 2>/dev/null || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done
kill -TERM "$SUP" "$SIDECAR"
finish
"#,
        limit(),
    );
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
    p.check(p.code("supervise") == Some(0), "supervise exit 0");
    p.assert_no_leftovers();
}

#[test]
fn standalone_sidecar_passes_sigterm_on() {
    let p = pod("standalone");
    p.run(
        r#"
start_sidecar --standalone
i=0; until grep -q daemon-start "$T/events" 2>/dev/null || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done
wait_file "$RUN/docker.ready"
[ -e "$RUN/docker.ready" ] && event ready-written
kill -TERM "$SIDECAR"
finish
"#,
        limit(),
    );
    p.check(p.has_event("daemon-TERM"), "daemon got SIGTERM at once");
    p.check(
        p.has_event("ready-written"),
        "docker.ready written in standalone mode too (native mode's hook waits for it)",
    );
    p.check(
        p.code("sidecar") == Some(0),
        "sidecar exits as the daemon did",
    );
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
    let p = pod("native-hook");
    p.run(
        r#"
start_sidecar --standalone
"$BIN" wait-docker --run-dir "$RUN" --timeout=30 >>"$T/hook.log" 2>&1
echo $? > "$T/hook.code"
event hook-returned
[ -e "$RUN/docker.ready" ] && event ready-when-hook-returned
kill -TERM "$SIDECAR"
finish
"#,
        limit(),
    );
    p.check(p.code("hook") == Some(0), "the hook succeeded");
    p.check(
        p.has_event("ready-when-hook-returned"),
        "docker.ready existed when the hook returned",
    );
    p.check(
        p.read("sidecar.log")
            .unwrap_or_default()
            .contains("dockerd answers"),
        "the sidecar pinged the daemon before writing docker.ready",
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
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
    let p = pod("native-hook-timeout");
    let outcome = p.run(
        r#"
"$BIN" wait-docker --run-dir "$RUN" --timeout=1 >>"$T/hook.log" 2>&1
echo $? > "$T/hook.code"
finish
"#,
        limit(),
    );
    p.check(p.code("hook") == Some(1), "the hook failed (exit 1)");
    p.check(
        outcome.elapsed < Duration::from_secs(5),
        "within its bound, not forever",
    );
    p.check(
        p.read("hook.log")
            .unwrap_or_default()
            .contains("Docker did not become ready within 1s"),
        "the hook says why",
    );
}

#[test]
fn rewrite_table_from_the_environment() {
    let p = pod("rewrite");
    p.run(
        r#"
start_sidecar
DIND_INJECTOR_REWRITE=TERM:TERM start_supervise --docker-wait=30 --drain-timeout=0 -- "$T/runner.sh" wait
i=0; until grep -q runner-start "$T/events" 2>/dev/null || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done
kill -TERM "$SUP"
finish
"#,
        limit(),
    );
    p.check(
        p.read("runner.signals").as_deref() == Some("TERM\n"),
        "TERM:TERM passes SIGTERM as it is",
    );
    p.check(
        p.code("supervise") == Some(0),
        "143 after our SIGTERM is a clean stop",
    );
    p.check(p.code("sidecar") == Some(0), "sidecar exit 0");
    p.assert_no_leftovers();
}

#[test]
fn a_daemon_that_dies_by_itself_ends_the_sidecar_with_its_code() {
    let p = pod("daemondies");
    p.script("crashing-dockerd", "#!/bin/sh\nsleep 0.5\nexit 7\n");
    p.run(
        r#"
start_supervise --docker-wait=0 -- "$T/runner.sh" wait
wait_file "$T/runner.pid"
"$BIN" sidecar --run-dir "$RUN" --certs-dir "$CERTS" --docker-host "tcp://127.0.0.1:$PORT" \
  -- "$T/crashing-dockerd" >>"$T/sidecar.log" 2>&1 &
SIDECAR=$!
wait "$SIDECAR"; echo $? > "$T/sidecar.code"; SIDECAR=
kill -TERM "$SUP"
finish
"#,
        limit(),
    );
    p.check(
        p.code("sidecar") == Some(7),
        "sidecar exits with the daemon's code",
    );
    let log = p.read("sidecar.log").unwrap_or_default();
    p.check(
        log.contains("exited by itself with code 7"),
        "sidecar says so",
    );
    p.check(
        !p.path("run/docker.ready").exists(),
        "no docker.ready for a dead daemon",
    );
    p.assert_no_leftovers();
}

#[test]
fn docker_never_ready_fails_with_a_clear_message_and_never_starts_the_runner() {
    let p = pod("nodocker");
    let out = p.run(
        r#"
start_supervise --docker-wait=1 -- "$T/runner.sh" exit 0
finish
"#,
        limit(),
    );
    p.check(p.code("supervise") == Some(125), "supervise exit 125");
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
    p.check(out.elapsed < Duration::from_secs(10), "bounded");
    p.assert_no_leftovers();
}
