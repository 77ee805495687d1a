#!/usr/bin/env bash
# Deploy the ecomkpi stack (infra/ecomkpi-stack.yaml) to an AWS account: `make deploy`.
#
# What it does, in order (infra/README.md walks through it):
#   1. checks the aws CLI and the required variables below (a clear error names what is missing);
#   2. prints the image build/push commands (or runs them with ECOMKPI_PUSH_IMAGE=1 where a Docker
#      engine runs); the stack only needs the pushed image's URI (ECOMKPI_IMAGE_URI);
#   3. zips each Lambda's package into out/deploy/<package>.zip, the package dir at the zip's root:
#      lambda_trigger (handler lambda_trigger.handler.lambda_handler) and kpi_api (the KPI read API,
#      handler kpi_api.handler.lambda_handler), each with the shared boto3 client factory
#      (jobs/aws.py and the docstring-only jobs/__init__.py, nothing else of jobs/); all pure Python,
#      boto3 comes with the runtime;
#   4. `aws cloudformation package`: uploads those zips and the three workflow definitions
#      (stepfunctions/ecommerce-pipeline-workflow.asl.json for TaskMode ecs,
#      stepfunctions/ecommerce-pipeline-workflow.worker.asl.json for TaskMode worker and
#      stepfunctions/ecommerce-pipeline-workflow.emr-serverless.asl.json for TaskMode emr-serverless;
#      the template names all three, one state machine per mode) to ECOMKPI_ARTIFACTS_BUCKET and writes
#      out/deploy/ecomkpi-stack.packaged.yaml;
#   5. `aws cloudformation deploy` of the packaged template with the parameter overrides below;
#   6. TaskMode emr-serverless only: uploads what every job run starts from to s3://$ECOMKPI_BUCKET/emr/
#      (the bucket exists once the stack does): scripts/emr_serverless_entry.py, the jobs zip
#      (scripts/package_jobs.py, with expectations/) and the Delta jars of the Spark 4.0 set
#      (scripts/fetch_jars.sh with scripts/spark40-jars.pom.xml, minus the S3A jars EMR's image has);
#   7. prints the stack outputs.
#
# Required:  ECOMKPI_BUCKET              pipeline bucket to create (globally unique name)
#            ECOMKPI_IMAGE_URI           pushed image, e.g. <acct>.dkr.ecr.<region>.amazonaws.com/ecomkpi:<tag>
#            ECOMKPI_SUBNET_IDS          comma-separated subnet ids for the Fargate tasks / worker service
#            ECOMKPI_SECURITY_GROUP_IDS  comma-separated security group ids for the Fargate tasks / worker
#            ECOMKPI_ARTIFACTS_BUCKET    existing bucket for `cloudformation package` uploads
# Optional:  ECOMKPI_ENV (prod), ECOMKPI_STACK_NAME (ecomkpi-$ECOMKPI_ENV), AWS_REGION / AWS_PROFILE,
#            ECOMKPI_ECR_REPOSITORY (ecomkpi), ECOMKPI_CPU_ARCHITECTURE (X86_64|ARM64),
#            ECOMKPI_VALIDATION_CPU (1024), ECOMKPI_VALIDATION_MEMORY (4096),
#            ECOMKPI_TRANSFORMATION_CPU (2048), ECOMKPI_TRANSFORMATION_MEMORY (8192),
#            ECOMKPI_TASK_MODE (worker|ecs|emr-serverless; default worker: the warm worker service),
#            ECOMKPI_EMR_PRE_INITIALIZED_DRIVERS (0), ECOMKPI_EMR_PRE_INITIALIZED_EXECUTORS (0),
#            ECOMKPI_EMR_IMAGE_URI (none: the release's image), ECOMKPI_EMR_IDLE_TIMEOUT_MINUTES (15),
#            ECOMKPI_EMR_JARS_DIR (~/.cache/ecomkpi/jars-spark4.0, resolved when missing),
#            ECOMKPI_WORKER_CPU (2048), ECOMKPI_WORKER_MEMORY (8192),
#            ECOMKPI_WORKER_MIN_CAPACITY (1; 0 scales to zero), ECOMKPI_WORKER_MAX_CAPACITY (4),
#            ECOMKPI_WORKER_MAX_BATCHES (50), ECOMKPI_WORKER_SCALE_IN_IDLE_MINUTES (65),
#            ECOMKPI_LOG_RETENTION_DAYS (30), ECOMKPI_ALERT_EMAIL (none),
#            ECOMKPI_PUSH_IMAGE=1 (build + push the image with docker before deploying),
#            ECOMKPI_DRY_RUN=1 (print the aws commands instead of running them).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
template="$repo/infra/ecomkpi-stack.yaml"
asl="$repo/stepfunctions/ecommerce-pipeline-workflow.asl.json"
worker_asl="$repo/stepfunctions/ecommerce-pipeline-workflow.worker.asl.json"
emr_asl="$repo/stepfunctions/ecommerce-pipeline-workflow.emr-serverless.asl.json"
out="$repo/out/deploy"

die() {
  printf 'deploy: %s\n' "$*" >&2
  exit 1
}

run() {
  printf '+ %s\n' "$*"
  if [ "${ECOMKPI_DRY_RUN:-0}" != "1" ]; then
    "$@"
  fi
}

# ---- 1. prerequisites
command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed or not on PATH (https://docs.aws.amazon.com/cli/); \
install it and configure credentials (aws configure / AWS_PROFILE) first"

missing=()
for var in ECOMKPI_BUCKET ECOMKPI_IMAGE_URI ECOMKPI_SUBNET_IDS ECOMKPI_SECURITY_GROUP_IDS ECOMKPI_ARTIFACTS_BUCKET; do
  [ -n "${!var:-}" ] || missing+=("$var")
done
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'deploy: missing required variable(s): %s\n' "${missing[*]}" >&2
  sed -n '/^# Required:/,/^# Optional:/p' "$0" | sed '$d; s/^#/ /' >&2
  exit 2
fi
[ -f "$asl" ] || die "state machine definition not found: $asl"
# Packaged in both modes: `cloudformation package` uploads every local path the template names.
[ -f "$worker_asl" ] || die "worker-mode state machine definition not found: $worker_asl \
(rendered from the ECS one: python -m ecomkpi.workflow_modes)"
[ -f "$emr_asl" ] || die "emr-serverless state machine definition not found: $emr_asl \
(rendered from the ECS one: python -m ecomkpi.workflow_modes)"
# The Lambda packages: the template's Code paths are out/deploy/<package>.zip.
lambda_packages=(lambda_trigger kpi_api)
# Shipped in every Lambda zip beside its package: the one boto3 client factory both handlers import.
lambda_shared=(jobs/__init__.py jobs/aws.py)
for package in "${lambda_packages[@]}"; do
  [ -f "$repo/$package/__init__.py" ] || die "$package package not found in $repo"
done
for shared in "${lambda_shared[@]}"; do
  [ -f "$repo/$shared" ] || die "$shared not found in $repo (every Lambda zip ships it)"
done

env_name="${ECOMKPI_ENV:-prod}"
stack="${ECOMKPI_STACK_NAME:-ecomkpi-$env_name}"
repository="${ECOMKPI_ECR_REPOSITORY:-ecomkpi}"
arch="${ECOMKPI_CPU_ARCHITECTURE:-X86_64}"
task_mode="${ECOMKPI_TASK_MODE:-worker}"
case "$task_mode" in
  worker | ecs | emr-serverless) ;;
  *) die "ECOMKPI_TASK_MODE must be worker, ecs or emr-serverless, got $task_mode" ;;
esac
region_args=()
if [ -n "${AWS_REGION:-${AWS_DEFAULT_REGION:-}}" ]; then
  region_args=(--region "${AWS_REGION:-$AWS_DEFAULT_REGION}")
fi
case "$arch" in
  X86_64) platform=linux/amd64 ;;
  ARM64) platform=linux/arm64 ;;
  *) die "ECOMKPI_CPU_ARCHITECTURE must be X86_64 or ARM64, got $arch" ;;
esac

# ---- 2. image
registry="${ECOMKPI_IMAGE_URI%%/*}"
cat <<EOF
== 1/4 image: build and push (docker/README.md)
  aws ecr describe-repositories --repository-names $repository ${region_args[*]} \\
    || aws ecr create-repository --repository-name $repository --image-scanning-configuration scanOnPush=true ${region_args[*]}
  aws ecr get-login-password ${region_args[*]} | docker login --username AWS --password-stdin $registry
  docker build --platform $platform -f docker/Dockerfile -t $ECOMKPI_IMAGE_URI .
  docker push $ECOMKPI_IMAGE_URI
EOF
if [ "${ECOMKPI_PUSH_IMAGE:-0}" = "1" ]; then
  command -v docker >/dev/null 2>&1 || die "ECOMKPI_PUSH_IMAGE=1 but docker is not installed"
  aws ecr get-login-password "${region_args[@]}" | docker login --username AWS --password-stdin "$registry"
  run docker build --platform "$platform" -f "$repo/docker/Dockerfile" -t "$ECOMKPI_IMAGE_URI" "$repo"
  run docker push "$ECOMKPI_IMAGE_URI"
else
  echo "  (not run: set ECOMKPI_PUSH_IMAGE=1 to run them here; the stack only needs the pushed URI)"
fi

# ---- 3. lambda packages
echo "== 2/4 lambda: zip ${lambda_packages[*]} (+ ${lambda_shared[*]}) -> out/deploy/<package>.zip"
mkdir -p "$out"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py=python3; fi
fi
for package in "${lambda_packages[@]}"; do
  "$py" - "$repo" "$package" "$out/$package.zip" "${lambda_shared[@]}" <<'EOF'
import sys
import zipfile
from pathlib import Path

repo, package, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
shared = [repo / name for name in sys.argv[4:]]
files = sorted(
    {
        p for p in (repo / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    | set(shared)
)
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
    for p in files:
        # Fixed timestamps: the same code gives the same zip, so `package` uploads it only on change.
        info = zipfile.ZipInfo(str(p.relative_to(repo)), date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, p.read_bytes())
print(f"  {len(files)} files -> {dest}")
EOF
done

# ---- 4. package + deploy
packaged="$out/ecomkpi-stack.packaged.yaml"
echo "== 3/4 cloudformation package -> s3://$ECOMKPI_ARTIFACTS_BUCKET/ecomkpi/$env_name/"
run aws cloudformation package "${region_args[@]}" \
  --template-file "$template" \
  --s3-bucket "$ECOMKPI_ARTIFACTS_BUCKET" \
  --s3-prefix "ecomkpi/$env_name" \
  --output-template-file "$packaged"

params=(
  "EnvironmentName=$env_name"
  "BucketName=$ECOMKPI_BUCKET"
  "ImageUri=$ECOMKPI_IMAGE_URI"
  "EcrRepositoryName=$repository"
  "CpuArchitecture=$arch"
  "SubnetIds=$ECOMKPI_SUBNET_IDS"
  "SecurityGroupIds=$ECOMKPI_SECURITY_GROUP_IDS"
  "ValidationTaskCpu=${ECOMKPI_VALIDATION_CPU:-1024}"
  "ValidationTaskMemory=${ECOMKPI_VALIDATION_MEMORY:-4096}"
  "TransformationTaskCpu=${ECOMKPI_TRANSFORMATION_CPU:-2048}"
  "TransformationTaskMemory=${ECOMKPI_TRANSFORMATION_MEMORY:-8192}"
  "TaskMode=$task_mode"
  "WorkerTaskCpu=${ECOMKPI_WORKER_CPU:-2048}"
  "WorkerTaskMemory=${ECOMKPI_WORKER_MEMORY:-8192}"
  "WorkerMinCapacity=${ECOMKPI_WORKER_MIN_CAPACITY:-1}"
  "WorkerMaxCapacity=${ECOMKPI_WORKER_MAX_CAPACITY:-4}"
  "WorkerMaxBatches=${ECOMKPI_WORKER_MAX_BATCHES:-50}"
  "WorkerScaleInIdleMinutes=${ECOMKPI_WORKER_SCALE_IN_IDLE_MINUTES:-65}"
  "LogRetentionDays=${ECOMKPI_LOG_RETENTION_DAYS:-30}"
  "AlertEmail=${ECOMKPI_ALERT_EMAIL:-}"
  "EmrPreInitializedDrivers=${ECOMKPI_EMR_PRE_INITIALIZED_DRIVERS:-0}"
  "EmrPreInitializedExecutors=${ECOMKPI_EMR_PRE_INITIALIZED_EXECUTORS:-0}"
  "EmrIdleTimeoutMinutes=${ECOMKPI_EMR_IDLE_TIMEOUT_MINUTES:-15}"
  "EmrImageUri=${ECOMKPI_EMR_IMAGE_URI:-}"
)
echo "== 4/4 cloudformation deploy -> stack $stack (TaskMode $task_mode)"
run aws cloudformation deploy "${region_args[@]}" \
  --template-file "$packaged" \
  --stack-name "$stack" \
  --capabilities CAPABILITY_IAM \
  --no-fail-on-empty-changeset \
  --tags project=ecomkpi "environment=$env_name" \
  --parameter-overrides "${params[@]}"

# ---- 5. the EMR Serverless job's files (TaskMode emr-serverless)
if [ "$task_mode" = "emr-serverless" ]; then
  emr_jars="${ECOMKPI_EMR_JARS_DIR:-$HOME/.cache/ecomkpi/jars-spark4.0}"
  if ! ls "$emr_jars"/delta-spark_4.0_*.jar >/dev/null 2>&1; then
    "$repo/scripts/fetch_jars.sh" "$emr_jars" "$repo/scripts/spark40-jars.pom.xml"
  fi
  "$py" "$repo/scripts/package_jobs.py" "$out/ecomkpi_jobs.zip" >/dev/null
  echo "== emr-serverless: entry point, jobs zip and Delta jars -> s3://$ECOMKPI_BUCKET/emr/"
  run aws s3 cp "${region_args[@]}" "$repo/scripts/emr_serverless_entry.py" "s3://$ECOMKPI_BUCKET/emr/emr_serverless_entry.py"
  run aws s3 cp "${region_args[@]}" "$out/ecomkpi_jobs.zip" "s3://$ECOMKPI_BUCKET/emr/ecomkpi_jobs.zip"
  for jar in "$emr_jars"/*.jar; do
    case "$(basename "$jar")" in
      # S3A: EMR's image brings its own (ecomkpi/sfn_local/emr_serverless.py IMAGE_PROVIDED_JARS).
      hadoop-aws-* | bundle-* | wildfly-openssl-*) continue ;;
    esac
    run aws s3 cp "${region_args[@]}" "$jar" "s3://$ECOMKPI_BUCKET/emr/jars/$(basename "$jar")"
  done
fi

run aws cloudformation describe-stacks "${region_args[@]}" --stack-name "$stack" \
  --query "Stacks[0].Outputs[].[OutputKey,OutputValue]" --output table
echo "deploy: done. Upload data to s3://$ECOMKPI_BUCKET/raw/ to start the pipeline (infra/README.md)."
