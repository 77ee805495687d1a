#!/bin/sh
# Container command of the ecomkpi image, and what the local Step Functions executor runs as the
# "container" on a laptop: the same environment (task definition + overrides) gives the same run.
#
#   entrypoint.sh validate  [args...]   -> exec $PYTHON -m jobs.validation [args...]
#   entrypoint.sh transform [args...]   -> exec $PYTHON -m jobs.transformation [args...]
#   entrypoint.sh worker    [args...]   -> exec $PYTHON -m jobs.worker [args...]
#                                          (TaskMode worker: the long-running ECS service that takes
#                                          both jobs from the work queue; WORK_QUEUE_URL required)
#
# Before exec'ing the job it sizes Spark for the task it runs in (never overriding what is set):
#   SPARK_DRIVER_MEMORY      ~75% (SPARK_DRIVER_MEMORY_PERCENT) of the task memory, in MiB ("6144m")
#                            task memory = $TASK_MEMORY_MIB (set by the task definition), else
#                            Limits.Memory of $ECS_CONTAINER_METADATA_URI_V4/task, else unset (the
#                            job then runs with Spark's own default)
#   SPARK_MASTER             local[N] with N = vCPUs from $TASK_CPU (CPU units, 1024 = 1 vCPU)
#   SPARK_SHUFFLE_PARTITIONS 4 x vCPUs (at least 4), from $TASK_CPU
#   SPARK_LOCAL_IP           127.0.0.1 (local mode: the driver never needs to be reachable)
# The worker is sized the same way, once, for every batch it serves.
# Exit codes: those of the job (0 ok, 2 data rejected, 1 broken; the worker 0 when it recycles itself);
# 64 (EX_USAGE) on a bad command.
set -eu

PY="${PYTHON:-python}"

log() { printf 'entrypoint: %s\n' "$*" >&2; }

usage() {
  cat >&2 <<'EOF'
usage: entrypoint.sh validate|transform|worker [args...]
  validate   run the validation job      (python -m jobs.validation)
  transform  run the transformation job  (python -m jobs.transformation)
  worker     serve both jobs from the work queue until recycled (python -m jobs.worker;
             needs WORK_QUEUE_URL; WORKER_MAX_BATCHES, WORKER_MAX_HEAP_FRACTION,
             WORKER_HEARTBEAT_SECONDS tune it)
Spark sizing comes from TASK_MEMORY_MIB / TASK_CPU (or the ECS task metadata endpoint) unless
SPARK_DRIVER_MEMORY / SPARK_MASTER / SPARK_SHUFFLE_PARTITIONS are set; PYTHON picks the interpreter.
EOF
}

is_uint() {
  case "${1:-}" in
    '' | *[!0-9]*) return 1 ;;
    *) return 0 ;;
  esac
}

# Task memory (MiB) from the ECS task metadata endpoint v4; prints nothing when unavailable.
metadata_memory_mib() {
  [ -n "${ECS_CONTAINER_METADATA_URI_V4:-}" ] || return 0
  "$PY" -c '
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/task", timeout=2) as r:
        mem = (json.load(r).get("Limits") or {}).get("Memory")
    if mem:
        print(int(mem))
except Exception:
    pass
' "$ECS_CONTAINER_METADATA_URI_V4" 2>/dev/null || true
}

size_spark() {
  if [ -z "${SPARK_DRIVER_MEMORY:-}" ]; then
    mem="${TASK_MEMORY_MIB:-}"
    source_="TASK_MEMORY_MIB"
    if [ -n "$mem" ] && ! is_uint "$mem"; then
      log "ignoring TASK_MEMORY_MIB=$mem (not a whole number of MiB)"
      mem=""
    fi
    if [ -z "$mem" ]; then
      mem="$(metadata_memory_mib)"
      source_="task metadata"
    fi
    pct="${SPARK_DRIVER_MEMORY_PERCENT:-75}"
    is_uint "$pct" && [ "$pct" -ge 10 ] && [ "$pct" -le 90 ] || pct=75
    if is_uint "$mem" && [ "$mem" -gt 0 ]; then
      driver=$((mem * pct / 100))
      [ "$driver" -ge 512 ] || driver=512
      SPARK_DRIVER_MEMORY="${driver}m"
      export SPARK_DRIVER_MEMORY
      log "task memory ${mem} MiB ($source_) -> SPARK_DRIVER_MEMORY=$SPARK_DRIVER_MEMORY (${pct}%)"
    else
      log "task memory unknown: SPARK_DRIVER_MEMORY left to Spark's default"
    fi
  fi

  cpu="${TASK_CPU:-}"
  if is_uint "$cpu" && [ "$cpu" -gt 0 ]; then
    vcpus=$((cpu / 1024))
    [ "$vcpus" -ge 1 ] || vcpus=1
    if [ -z "${SPARK_MASTER:-}" ]; then
      SPARK_MASTER="local[$vcpus]"
      export SPARK_MASTER
    fi
    if [ -z "${SPARK_SHUFFLE_PARTITIONS:-}" ]; then
      parts=$((vcpus * 4))
      [ "$parts" -ge 4 ] || parts=4
      SPARK_SHUFFLE_PARTITIONS="$parts"
      export SPARK_SHUFFLE_PARTITIONS
    fi
  fi

  : "${SPARK_LOCAL_IP:=127.0.0.1}"
  export SPARK_LOCAL_IP
}

if [ "$#" -lt 1 ]; then
  usage
  exit 64
fi
cmd="$1"
shift

case "$cmd" in
  validate | validation) module="jobs.validation" ;;
  transform | transformation) module="jobs.transformation" ;;
  worker) module="jobs.worker" ;;
  worker) module="jobs.worker" ;;
  -h | --help | help)
    usage
    exit 0
    ;;
  *)
    log "unknown command: $cmd"
    usage
    exit 64
    ;;
esac

size_spark
log "exec $PY -m $module (SPARK_MASTER=${SPARK_MASTER:-default} SPARK_DRIVER_MEMORY=${SPARK_DRIVER_MEMORY:-default})"
exec "$PY" -m "$module" "$@"
