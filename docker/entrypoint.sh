#!/bin/sh
# Container command of the ecomkpi image, and what the local Step Functions executor runs as the
# "container" on a laptop: the same environment (task definition + overrides) gives the same run.
#
#   entrypoint.sh validate  [args...]   -> exec $PYTHON -m jobs.validation [args...]
#   entrypoint.sh transform [args...]   -> exec $PYTHON -m jobs.transformation [args...]
#   entrypoint.sh worker    [args...]   -> exec $PYTHON -m hosts.worker [args...]
#                                          (TaskMode worker: the long-running ECS service that takes
#                                          both jobs from the work queue; WORK_QUEUE_URL required)
#   entrypoint.sh driver    [args...]   -> exec spark-submit --deploy-mode client [args...]
#   entrypoint.sh executor              -> exec java ... KubernetesExecutorBackend
#                                          (the two roles Spark's Kubernetes scheduler starts the
#                                          image's containers with; see "Spark on Kubernetes" below)
#
# Before exec'ing a job it sizes Spark for the task it runs in (never overriding what is set):
#   SPARK_DRIVER_MEMORY      ~75% (SPARK_DRIVER_MEMORY_PERCENT) of the task memory, in MiB ("6144m")
#                            task memory = $TASK_MEMORY_MIB (set by the task definition), else
#                            Limits.Memory of $ECS_CONTAINER_METADATA_URI_V4/task, else unset (the
#                            job then runs with Spark's own default)
#   SPARK_MASTER             local[N] with N = vCPUs from $TASK_CPU (CPU units, 1024 = 1 vCPU); empty
#                            counts as unset (the stack always sets it from SparkMaster, empty by default)
#   SPARK_SHUFFLE_PARTITIONS 4 x vCPUs (at least 4), from $TASK_CPU
#   SPARK_LOCAL_IP           127.0.0.1 (local mode: the driver never needs to be reachable). With a
#                            cluster SPARK_MASTER (spark://..., k8s://...) the executors must reach the
#                            driver, so a loopback SPARK_LOCAL_IP (the image's default) is replaced by
#                            this container's address on the route to the master.
# The worker is sized the same way, once, for every batch it serves.
#
# Spark on Kubernetes (the scheduler sets the SPARK_* variables; this mirrors Spark's own
# resource-managers/kubernetes/docker/src/main/dockerfiles/spark/entrypoint.sh, with the image's
# Spark: pyspark's SPARK_HOME, and the jar cache $ECOMKPI_JARS_DIR appended to the class path):
#   driver    spark-submit --conf spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS --deploy-mode
#             client [args...]; the jar cache joins the driver's class path via SPARK_DIST_CLASSPATH
#   executor  java $SPARK_JAVA_OPT_0.. -Xms/-Xmx$SPARK_EXECUTOR_MEMORY -cp <conf:spark jars:jar cache>
#             org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend --driver-url
#             $SPARK_DRIVER_URL --executor-id $SPARK_EXECUTOR_ID --cores $SPARK_EXECUTOR_CORES
#             --app-id $SPARK_APPLICATION_ID --hostname $SPARK_EXECUTOR_POD_IP --resourceProfileId
#             $SPARK_RESOURCE_PROFILE_ID [--podName $SPARK_EXECUTOR_POD_NAME]
#   Both use the pod's IP for SPARK_LOCAL_IP when it is the image's loopback default.
# Exit codes: those of the job (0 ok, 2 data rejected, 1 broken; the worker 0 when it recycles itself)
# or of Spark's process for driver/executor; 64 (EX_USAGE) on a bad command or, for executor, a
# missing scheduler variable.
set -eu

PY="${PYTHON:-python}"

log() { printf 'entrypoint: %s\n' "$*" >&2; }

usage() {
  cat >&2 <<'EOF'
usage: entrypoint.sh validate|transform|worker|driver|executor [args...]
  validate   run the validation job      (python -m jobs.validation)
  transform  run the transformation job  (python -m jobs.transformation)
  worker     serve both jobs from the work queue until recycled (python -m hosts.worker;
             needs WORK_QUEUE_URL; WORKER_MAX_BATCHES, WORKER_MAX_HEAP_FRACTION,
             WORKER_MAX_COALESCE, WORKER_HEARTBEAT_SECONDS tune it)
  driver     Spark on Kubernetes driver pod: spark-submit --deploy-mode client [args...]
  executor   Spark on Kubernetes executor pod: KubernetesExecutorBackend from the SPARK_*
             variables the scheduler sets (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, ...)
Spark sizing comes from TASK_MEMORY_MIB / TASK_CPU (or the ECS task metadata endpoint) unless
SPARK_DRIVER_MEMORY / SPARK_MASTER / SPARK_SHUFFLE_PARTITIONS are set; PYTHON picks the interpreter;
SPARK_HOME defaults to pyspark's, ECOMKPI_JARS_DIR (the jar cache) to /opt/ecomkpi/jars.
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
  reachable_local_ip
}

is_loopback() {
  case "${1:-}" in
    '' | 127.* | localhost | ::1) return 0 ;;
    *) return 1 ;;
  esac
}

# Prints the address this container uses to reach the master of a cluster SPARK_MASTER (UDP
# connect: resolves and routes, sends nothing); prints nothing when there is none or it fails.
master_route_ip() {
  "$PY" -c '
import socket, sys, urllib.parse
master = sys.argv[1]
if master.startswith("spark://"):
    first = master[len("spark://"):].split(",")[0]
    host, _, port = first.rpartition(":")
    target = (host.strip("[]"), int(port or 7077))
elif master.startswith("k8s://"):
    rest = master[len("k8s://"):]
    url = urllib.parse.urlsplit(rest if "://" in rest else "https://" + rest)
    target = (url.hostname, url.port or 443)
else:
    sys.exit(0)
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(target)
        print(s.getsockname()[0])
except (OSError, ValueError, TypeError):
    pass
' "$1" 2>/dev/null || true
}

# A driver in this container with executors elsewhere (SPARK_MASTER spark://... or k8s://...) must
# be reachable by them; the image's SPARK_LOCAL_IP=127.0.0.1 would make it advertise loopback.
reachable_local_ip() {
  case "${SPARK_MASTER:-}" in
    spark://* | k8s://*) ;;
    *) return 0 ;;
  esac
  is_loopback "${SPARK_LOCAL_IP:-}" || return 0
  ip="$(master_route_ip "$SPARK_MASTER")"
  if [ -n "$ip" ]; then
    SPARK_LOCAL_IP="$ip"
    export SPARK_LOCAL_IP
    log "cluster master $SPARK_MASTER -> SPARK_LOCAL_IP=$SPARK_LOCAL_IP (the executors connect back to the driver)"
  else
    log "cluster master $SPARK_MASTER: no route found; SPARK_LOCAL_IP stays ${SPARK_LOCAL_IP:-unset} and executors may not reach the driver"
  fi
}

# ---- Spark on Kubernetes roles -------------------------------------------------------------

find_spark_home() {
  if [ -n "${SPARK_HOME:-}" ]; then
    printf '%s\n' "$SPARK_HOME"
    return 0
  fi
  "$PY" -c 'import os, pyspark; print(os.path.dirname(os.path.realpath(pyspark.__file__)))'
}

# The pod's IP replaces the image's loopback SPARK_LOCAL_IP (an explicit other value is kept).
pod_local_ip() {
  if [ -n "${1:-}" ] && is_loopback "${SPARK_LOCAL_IP:-}"; then
    SPARK_LOCAL_IP="$1"
    export SPARK_LOCAL_IP
  fi
}

# The jar cache (Delta, hadoop-aws, AWS SDK) after Spark's own jars, for the driver's launcher
# (spark-submit adds SPARK_DIST_CLASSPATH) and the executor's -cp alike.
add_jar_cache() {
  jars="${ECOMKPI_JARS_DIR:-/opt/ecomkpi/jars}"
  if [ -d "$jars" ]; then
    SPARK_DIST_CLASSPATH="${SPARK_DIST_CLASSPATH:+$SPARK_DIST_CLASSPATH:}$jars/*"
    export SPARK_DIST_CLASSPATH
  else
    log "no jar cache at $jars: Delta and s3a must come from --jars"
  fi
}

run_driver() {
  spark_home="$(find_spark_home)"
  SPARK_HOME="$spark_home"
  export SPARK_HOME
  pod_local_ip "${SPARK_DRIVER_BIND_ADDRESS:-}"
  add_jar_cache
  if [ -n "${SPARK_DRIVER_BIND_ADDRESS:-}" ]; then
    set -- --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS" --deploy-mode client "$@"
  else
    log "SPARK_DRIVER_BIND_ADDRESS is not set (not started by Spark's Kubernetes scheduler?)"
    set -- --deploy-mode client "$@"
  fi
  log "exec $SPARK_HOME/bin/spark-submit (driver, client mode)"
  exec "$SPARK_HOME/bin/spark-submit" "$@"
}

run_executor() {
  missing=""
  for name in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_EXECUTOR_MEMORY \
    SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || missing="$missing $name"
  done
  if [ -n "$missing" ]; then
    log "executor: not set:$missing (set by Spark's Kubernetes scheduler)"
    exit 64
  fi
  spark_home="$(find_spark_home)"
  SPARK_HOME="$spark_home"
  export SPARK_HOME
  pod_local_ip "$SPARK_EXECUTOR_POD_IP"
  add_jar_cache

  cp="${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$SPARK_HOME/jars/*"
  [ -z "${SPARK_EXTRA_CLASSPATH:-}" ] || cp="$cp:$SPARK_EXTRA_CLASSPATH"
  [ -z "${HADOOP_CONF_DIR:-}" ] || cp="$HADOOP_CONF_DIR:$cp"
  cp="${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$cp"
  [ -z "${SPARK_DIST_CLASSPATH:-}" ] || cp="$cp:$SPARK_DIST_CLASSPATH"

  # The scheduler passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in that order.
  names="$(env | sed -n 's/^\(SPARK_JAVA_OPT_[0-9][0-9]*\)=.*/\1/p' | sort -u -t_ -k4,4n)"
  set --
  for name in $names; do
    eval "value=\${$name}"
    set -- "$@" "$value"
  done
  set -- "$@" "-Xms$SPARK_EXECUTOR_MEMORY" "-Xmx$SPARK_EXECUTOR_MEMORY" -cp "$cp" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" \
    --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
    --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}"
  [ -z "${SPARK_EXECUTOR_POD_NAME:-}" ] || set -- "$@" --podName "$SPARK_EXECUTOR_POD_NAME"
  java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  log "exec $java KubernetesExecutorBackend (executor $SPARK_EXECUTOR_ID of $SPARK_APPLICATION_ID)"
  exec "$java" "$@"
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
  worker) module="hosts.worker" ;;
  driver) run_driver "$@" ;;
  executor) run_executor ;;
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
