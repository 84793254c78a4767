#!/bin/sh
# run.sh of the e2e runner image (localhost/e2e/runner:1): behaves like the
# GitHub Actions runner as far as the node tests can observe it. Every line
# it and its worker print starts with the wall-clock time (seconds since the
# epoch, microseconds), e.g. `1795993944.512922 runner: started`.
#
# Driven by the environment:
#   RUNNER_DOCKER_CHECK=1     run `docker version` once at start and print
#                             `runner: docker ready` or `runner: docker NOT ready`
#                             (no retry: Docker must be up before the first command)
#   RUNNER_JOB=1              run one job (0: an idle runner, no worker)
#   JOB_COMMANDS=             shell snippet the job runs in $WORK_DIR (in bin/Runner.Worker),
#                             with the helpers load_job_image and
#                             job_container SCRIPT (bin/lib.sh); output
#                             lines are prefixed `job: `
#   JOB_SECONDS=0             then the job stays busy this long
#   JOB_DOCKER_EVERY=         while busy, check `docker version` and `docker ps`
#                             every N seconds: `worker: docker ok at Ts` or
#                             `worker: docker FAILED at Ts: <error>`
#   RUNNER_MEMORY_HOG=        after the job, non-empty and not 0: this shell
#                             allocates memory until it is killed (only
#                             under a memory limit!)
#   RUNNER_WAIT_FOR_SIGNAL=0  after the job, 1: wait for SIGINT/SIGTERM
#   RUNNER_EXIT_CODE=0        otherwise exit with this code
#   WORK_DIR=$RUNNER_HOME/_work, JOB_IMAGE_TAR=$RUNNER_HOME/job-image.tar,
#   JOB_IMAGE=localhost/e2e/job:1, RUNNER_HOME=this script's directory
#
# Signals, as the real runner: SIGINT prints `runner: SIGINT`, cancels a
# running job (the worker prints `worker: cancelled by the runner` and ends
# with rc 1) and exits 0 once the worker has ended; SIGTERM prints `runner: SIGTERM` and
# exits 143 at once. `dind-injector supervise` turns SIGTERM into SIGINT, so
# the log shows which one arrived. The last line is always `runner: exit N`
# unless the process was killed.
. "$(cd "$(dirname "$0")" && pwd)/bin/lib.sh"

stopping=
finish() {
  log "runner: exit $1"
  exit "$1"
}
worker=
on_int() {
  log "runner: SIGINT"
  stopping=1
  [ -z "$worker" ] || kill -USR1 "$worker" 2> /dev/null
}
trap on_int INT
trap 'log "runner: SIGTERM"; finish 143' TERM

log "runner: started"

if [ "${RUNNER_DOCKER_CHECK:-1}" = 1 ]; then
  if docker_quiet version; then
    log "runner: docker ready"
  else
    log "runner: docker NOT ready: $docker_err"
  fi
fi

if [ "${RUNNER_JOB:-1}" = 1 ] && [ -z "$stopping" ]; then
  "$RUNNER_HOME/bin/Runner.Worker" &
  worker=$!
  # `wait` returns early when a trapped signal arrives; the worker is only
  # gone once kill -0 fails (a zombie still answers, the next wait reaps it).
  while :; do
    wait "$worker"
    job_rc=$?
    kill -0 "$worker" 2> /dev/null || break
  done
  worker=
  log "runner: job done rc=$job_rc"
fi
[ -z "$stopping" ] || finish 0

case "${RUNNER_MEMORY_HOG:-0}" in
  0) ;;
  *)
    log "runner: allocating memory until killed"
    # In this very process, not a subshell or a child: on cgroup v1 the OOM
    # killer takes one process, and it must be the container's runner. No
    # logging (no fork) while growing: a forked child shares the pages and
    # could be picked instead.
    hog=0123456789abcdef
    while [ -z "$stopping" ]; do hog=$hog$hog; done
    hog=
    finish 0
    ;;
esac

if [ "${RUNNER_WAIT_FOR_SIGNAL:-0}" = 1 ]; then
  log "runner: waiting for a signal"
  while [ -z "$stopping" ]; do
    sleep 3600 &
    nap=$!
    wait "$nap"
    kill "$nap" 2> /dev/null
  done
  finish 0
fi

finish "${RUNNER_EXIT_CODE:-0}"
