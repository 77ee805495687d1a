#!/usr/bin/env bash
# Seconds from `podman run` to the first Spark session in a container of the pipeline image, against
# the same session started outside a container from this checkout's .venv (bench/README.md, "Container
# image"). Both: the jobs' session factory (jobs.spark_session.get_spark: Delta, s3a, the class archive
# when present), local[2], the first job (spark.range(1).count()) included; the container as the task
# definitions run it (read-only root, volumes on /tmp and /home/ecomkpi, uid 10001, host network).
#
# usage: scripts/container_start.sh [runs]   (default 3; ECOMKPI_IMAGE picks the image)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${ECOMKPI_IMAGE:-localhost/ecomkpi:dev}"
runs="${1:-3}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/docker/containers.conf}"
probe='import time
from jobs.config import PipelineConfig
from jobs.spark_session import get_spark
spark = get_spark(PipelineConfig.from_env(), app_name="start-probe")
spark.range(1).count()
print(f"ready {time.time():.3f}", flush=True)
spark.stop()'
env=(SPARK_MASTER='local[2]' SPARK_LOCAL_IP=127.0.0.1)

seconds() { # $1 = start (epoch s), stdin = the probe's output
  awk -v s="$1" '/^ready / {printf "%.1f\n", $2 - s}'
}

for n in $(seq "$runs"); do
  start=$(date +%s.%N)
  inside=$(podman run --rm --network host --read-only --read-only-tmpfs=false --volume /tmp \
    --volume /home/ecomkpi --env SPARK_MASTER='local[2]' --entrypoint python "$image" -c "$probe" 2>/dev/null |
    seconds "$start")
  start=$(date +%s.%N)
  outside=$(cd "$root" && env "${env[@]}" .venv/bin/python -c "$probe" 2>/dev/null | seconds "$start")
  echo "run $n: container ${inside} s, outside ${outside} s"
done
