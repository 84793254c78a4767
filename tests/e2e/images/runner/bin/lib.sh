# Shared by run.sh and bin/Runner.Worker (sourced, not run). POSIX sh, so the
# scripts also run outside the image (busybox sh, dash) for local checks.

# Paths default to the image layout (/home/runner); outside it they follow
# the scripts' own location, so `WORK_DIR=/tmp/w tests/e2e/images/runner/run.sh`
# works from a checkout.
: "${RUNNER_HOME:=$(cd "$(dirname "$0")" && pwd)}"
: "${WORK_DIR:=$RUNNER_HOME/_work}"
: "${JOB_IMAGE_TAR:=$RUNNER_HOME/job-image.tar}"
: "${JOB_IMAGE:=localhost/e2e/job:1}"
export RUNNER_HOME WORK_DIR JOB_IMAGE_TAR JOB_IMAGE

# Every line gets the wall-clock time with microseconds in front, so the e2e
# harness can put container logs of several containers on one timeline.
# busybox `date` has no %N; its `ts` has %.s (gettimeofday).
if command -v ts > /dev/null 2>&1; then
  stamp() { ts '%.s'; }
else
  stamp() { busybox ts '%.s'; }
fi

log() { printf '%s\n' "$*" | stamp; }

# Prefixes every line of stdin with LABEL (and a timestamp): job output stays
# recognisable among the runner's own lines.
label() {
  while IFS= read -r line; do printf '%s: %s\n' "$1" "$line"; done | stamp
}

# Runs `docker ARGS` quietly; on failure prints nothing but sets $docker_err
# to its last line of error output.
docker_quiet() {
  docker_err=$(docker "$@" 2>&1 > /dev/null) && return 0
  set -- $?
  docker_err=$(printf '%s\n' "$docker_err" | tail -n 1)
  return "$1"
}

# --- helpers for JOB_COMMANDS (evaluated in the worker, see README.md) ---

# Copies the job image archive into the work directory (the volume shared
# with the dind container) and loads it there, as a job building or
# pulling an image would.
load_job_image() {
  mkdir -p "$WORK_DIR" && cp "$JOB_IMAGE_TAR" "$WORK_DIR/job-image.tar" &&
    docker load -i "$WORK_DIR/job-image.tar"
}

# Runs SCRIPT with the job image's sh, the work directory bind-mounted at the
# same path and as the working directory: the daemon resolves the path, so
# this only sees the runner's files when the dind container mounts the work
# directory at the same place.
job_container() {
  docker run --rm -v "$WORK_DIR:$WORK_DIR" -w "$WORK_DIR" "$JOB_IMAGE" sh -c "$1"
}
