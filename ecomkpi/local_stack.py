"""The whole pipeline on one machine: moto server for AWS, the local Step Functions executor,
a dispatcher that plays Lambda, and the warm worker.

Only endpoints change between this and AWS: the Lambda handler, the workflow definition and the
container entrypoint are the deployed ones. S3 sends real event notifications to SQS (moto does
this itself), the dispatcher feeds them to ``lambda_handler`` as the SQS event source mapping
would, the handler's ``StartExecution`` reaches the local executor through boto3
(``AWS_ENDPOINT_URL_SFN``). In worker mode (the default) the tasks go through the work queue to one
``docker/entrypoint.sh worker`` process kept alive by ``WorkerSupervisor`` (the ECS service); in
ecs mode each task runs ``docker/entrypoint.sh validate|transform`` as a fresh local process; in
emr-serverless mode each task is a job run of the local EMR Serverless application: a ``spark-submit``
of the compat venv's Spark 4.0 (``ecomkpi/sfn_local/emr_serverless.py``, ``make compat``).

Kept whole: the stack's start and stop are one ordered sequence over the pieces above (each in a
module of its own), with the emulated resources it creates for them; the order is the design.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3

from ecomkpi.dispatcher import Dispatcher
from ecomkpi.inprocess_worker import InProcessWorker
from ecomkpi.log_sink import CloudWatchSink
from ecomkpi.sfn_local import emr_serverless as emr
from ecomkpi.sfn_local.executor import Executor, execution_status_change_event
from ecomkpi.sfn_local.http_api import StepFunctionsServer, serve
from ecomkpi.sfn_local.tasks import ContainerCommand, ContainerOutput, RunTaskHandler, default_handlers
from ecomkpi.stack_template import load_template, resource_environment, state_machine_substitutions
from ecomkpi.worker_supervisor import WorkerSupervisor
from ecomkpi.workflow_modes import HEARTBEAT_SECONDS, definition_path
from hosts.worker.status import STATUS_FILE_VARIABLE
from lambda_trigger import handler as trigger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ecomkpi.container_runtime import ContainerTask
    from jobs.aws import ServiceName

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO_ROOT / "docker" / "entrypoint.sh"
ACCOUNT = "123456789012"
# The emulator accepts any credentials; these are given to every client of the stack, so a
# developer's real ones (environment, profile) are never sent to it.
EMULATOR_KEY = "local"
RECONCILE_EVENT = {"ecomkpi": "reconcile"}
LOCAL_EMR_APPLICATION = "00ecomkpilocal"


def host_environment() -> dict[str, str]:
    """What a child process of the stack inherits from this one: everything but AWS's settings (a
    developer's session token, profile or service endpoints), which the stack gives it instead."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


@dataclass(frozen=True)
class StackSettings:
    """Names of the local resources (the same defaults as the CloudFormation stack's tables)."""

    bucket: str = "ecomkpi-local"
    region: str = "us-east-1"
    tracker_table: str = "BatchFileTracker"
    daily_table: str = "DailyKPIs"
    category_table: str = "CategoryKPIs"
    quality_table: str = "DataQuality"
    topic_name: str = "ecommerce-pipeline-alerts"
    queue_name: str = "ecomkpi-raw-events"
    dlq_name: str = "ecomkpi-raw-events-dlq"
    work_dir: Path = field(default_factory=lambda: Path("out") / ".stack")
    lake_path: str | None = None  # default: s3a://<bucket>/lake on the emulator
    spark_master: str = "local[2]"
    # The workflow waits 30 s, then 60 s, between task retries; locally that is scaled down (the
    # requested delays still appear in the execution history).
    retry_delay_scale: float = 0.05
    port: int = 0
    # "worker": one warm worker process serves both tasks through the work queue (the default, as
    # in the stack); "ecs": a fresh process per task, like the per-batch Fargate tasks;
    # "emr-serverless": an EMR Serverless job run per task, a spark-submit of the compat venv's Spark.
    task_mode: str = "worker"
    # emr-serverless mode: the release's Spark (the compat venv, `make compat`) and its jar cache.
    emr_venv: Path = field(default_factory=lambda: REPO_ROOT / ".venv-compat")
    emr_jars_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("ECOMKPI_COMPAT_JARS_DIR", "")
            or Path.home() / ".cache" / "ecomkpi" / "jars-spark4.0"
        )
    )
    work_queue_name: str = "ecomkpi-work"
    # Worker mode: the trigger sends each part that lands before its day is complete to the worker,
    # which validates it at once (lambda_trigger/prechecks.py), as the stack's trigger does.
    prechecks: bool = True
    # The worker-mode states wait HeartbeatSeconds (300) for a heartbeat before retrying on another
    # worker. That clock also runs while a task waits in the queue behind other batches, so it is not
    # scaled down by default (ten days landing at once queue ~2 minutes on one worker); tests that
    # kill the worker shorten it. The worker beats at least 6 times per HeartbeatSeconds.
    heartbeat_scale: float = 1.0
    # The stack's schedule rule sends the trigger {"ecomkpi": "reconcile"} every few minutes (the
    # sweep that repairs batches whose events were lost); locally every minute. 0 turns it off.
    reconcile_seconds: float = 60.0
    # "process": each task (or the worker) is a local process of this checkout; "container": a
    # container of the pipeline image (ecomkpi.container_runtime), configured by the stack template's
    # task definitions, as on Fargate. `make image` builds the image.
    task_runtime: str = "process"
    image: str = "localhost/ecomkpi:dev"

    @property
    def lake(self) -> str:
        return self.lake_path or f"s3a://{self.bucket}/lake"


class LocalStack:
    """Start with ``with LocalStack(settings) as stack:``; everything stops on exit."""

    def __init__(
        self,
        settings: StackSettings | None = None,
        on_event: Callable[[str], None] | None = None,
        on_container_output: Callable[[ContainerOutput], None] | None = None,
        worker_spark: SparkSession | None = None,
    ) -> None:
        """``worker_spark``: serve the work queue in this process on that session
        (``ecomkpi.inprocess_worker``) instead of a worker process."""
        self.settings = settings or StackSettings()
        self.worker_spark = worker_spark
        self.on_event = on_event or (lambda _line: None)
        self.on_container_output = on_container_output
        self.endpoint: str = ""
        self._moto: Any = None
        self._sfn_server: StepFunctionsServer | None = None
        self.executor: Executor | None = None
        self.run_task: RunTaskHandler | None = None
        self.emr: emr.StartJobRunHandler | None = None
        self.trigger_env: dict[str, str] = {}
        self.dispatcher: Dispatcher | None = None
        self.logs: CloudWatchSink | None = None
        self.worker: WorkerSupervisor | InProcessWorker | None = None
        self.topic_arn = ""
        self.queue_url = ""
        self.work_queue_url = ""
        self.precheck_queue_url = ""
        self._work_sqs: Any = None
        self.alerts_queue_url = ""
        self._stopping = threading.Event()
        self._schedule: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def account(self) -> dict[str, str]:
        """The emulator as an AWS account: the endpoint and credentials every child of the stack
        (trigger, tasks, worker) is given, explicitly; this process's own environment is left alone."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": EMULATOR_KEY,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_KEY,
            "AWS_DEFAULT_REGION": self.settings.region,
            "AWS_REGION": self.settings.region,
        }

    def _any_client(self, service: str) -> Any:
        return self.client(cast("ServiceName", service))

    def client(self, service: ServiceName) -> Any:
        """A fresh client of the emulator (its port may be reused by the next stack: no cache),
        with the emulator's credentials, whatever this process's environment holds."""
        session = boto3.session.Session(aws_access_key_id=EMULATOR_KEY, aws_secret_access_key=EMULATOR_KEY)
        return session.client(service, region_name=self.settings.region, endpoint_url=self.endpoint)

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        # The emulator's request log would drown the pipeline's own progress lines.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        s = self.settings
        s.work_dir.mkdir(parents=True, exist_ok=True)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s.port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.on_event(f"emulator: moto server on {self.endpoint}")
        self._create_resources()
        executor = self._start_workflow()
        trigger_env = self.trigger_env
        self.dispatcher = Dispatcher(
            sqs=self.client("sqs"),
            queue_url=self.queue_url,
            queue_arn=self._queue_arn(self.queue_url),
            on_event=self.on_event,
            log_sink=self.logs,
            handler=lambda event, _context: trigger.handle(event, trigger_env),
        )
        executor.on_execution_end.append(self._execution_ended)
        self.dispatcher.start()
        if self.worker:
            self.worker.start()
        if self.settings.reconcile_seconds > 0:
            self._schedule = threading.Thread(target=self._reconcile_schedule, name="reconcile", daemon=True)
            self._schedule.start()

    def _reconcile_schedule(self) -> None:
        """EventBridge schedule -> the trigger: the same constant input as the stack's rule."""
        while not self._stopping.wait(self.settings.reconcile_seconds):
            if self.dispatcher:
                self.dispatcher.submit(RECONCILE_EVENT)

    def stop(self) -> None:
        self._stopping.set()
        if self.dispatcher:
            self.dispatcher.stop()
        if self.worker:
            self.worker.stop()
        if self.executor:
            self.executor.shutdown(timeout=30)
        if self._sfn_server:
            self._sfn_server.close()
        if self.logs:
            self.logs.flush()
        if self._moto:
            self._moto.stop()

    # ------------------------------------------------------------------ resources

    def _queue_arn(self, url: str) -> str:
        attrs = self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def _queue_with_dlq(self, name: str, dlq_name: str, *, visibility: int, max_receives: int) -> str:
        sqs = self.client("sqs")
        dlq_arn = self._queue_arn(sqs.create_queue(QueueName=dlq_name)["QueueUrl"])
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
        attributes = {"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)}
        return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])

    def _create_resources(self) -> None:
        from jobs.transformation.serving import create_kpi_tables
        from jobs.validation.quality_ledger import create_quality_table
        from lambda_trigger.tracker import create_tracker_table

        s = self.settings
        s3, sqs, sns, ddb = self.client("s3"), self.client("sqs"), self.client("sns"), self.client("dynamodb")
        s3.create_bucket(Bucket=s.bucket)
        self.queue_url = self._queue_with_dlq(s.queue_name, s.dlq_name, visibility=10, max_receives=5)
        s3.put_bucket_notification_configuration(
            Bucket=s.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": self._queue_arn(self.queue_url),
                        # Removals too: a file deleted before it was processed leaves its day.
                        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}},
                    }
                ]
            },
        )
        if s.task_mode == "worker":
            # As in the stack: a busy worker re-receives the waiting messages once per heartbeat.
            self.work_queue_url = self._queue_with_dlq(
                s.work_queue_name, f"{s.work_queue_name}-dlq", visibility=60, max_receives=1000
            )
            # The prechecks' own queue (the stack's PrecheckQueue): no keeper receives it, so its
            # receive count counts attempts and a part that kills every worker is dead-lettered.
            self.precheck_queue_url = self._queue_with_dlq(
                f"{s.work_queue_name}-prechecks",
                f"{s.work_queue_name}-prechecks-dlq",
                visibility=120,
                max_receives=3,
            )
        if s.task_mode == "emr-serverless":
            # What scripts/deploy.sh uploads: the entry point, the jobs zip and the Delta jars.
            emr.upload_artifacts(self.client("s3"), s.bucket, s.emr_jars_dir, REPO_ROOT, s.work_dir)
        create_tracker_table(ddb, s.tracker_table)
        create_kpi_tables(ddb, s.daily_table, s.category_table)
        create_quality_table(ddb, s.quality_table)
        self.topic_arn = sns.create_topic(Name=s.topic_name)["TopicArn"]
        # Alerts are captured by a queue subscribed to the topic, as an operator's e-mail would be.
        self.alerts_queue_url = sqs.create_queue(QueueName=f"{s.topic_name}-inbox")["QueueUrl"]
        sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=self._queue_arn(self.alerts_queue_url),
            Attributes={"RawMessageDelivery": "false"},
        )
        self.logs = CloudWatchSink(self.client("logs"))
        self.on_event(
            f"resources: bucket {s.bucket}, queue {s.queue_name} (+DLQ), tables {s.tracker_table}/"
            f"{s.daily_table}/{s.category_table}/{s.quality_table}, topic {s.topic_name}"
        )

    def _start_workflow(self) -> Executor:
        s = self.settings
        cluster = f"arn:aws:ecs:{s.region}:{ACCOUNT}:cluster/ecomkpi-local"
        validation_td = f"arn:aws:ecs:{s.region}:{ACCOUNT}:task-definition/ecomkpi-validation:1"
        transformation_td = f"arn:aws:ecs:{s.region}:{ACCOUNT}:task-definition/ecomkpi-transformation:1"
        # The stack's DefinitionSubstitutions of this mode's state machine (infra/: one source),
        # resolved to this stack's resources.
        substitutions = state_machine_substitutions(
            load_template(),
            s.task_mode,
            {
                **self._template_names(),
                "EcsCluster.Arn": cluster,
                "ValidationTaskDefinition": validation_td,
                "TransformationTaskDefinition": transformation_td,
                "SubnetIds": ["subnet-local"],
                "SecurityGroupIds": ["sg-local"],
                "BatchTrackerTable": s.tracker_table,
                "EmrApplication.ApplicationId": LOCAL_EMR_APPLICATION,
                "EmrJobRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/ecomkpi-emr-job",
            },
        )
        # What the ECS task definitions tell the tasks of the stack (infra/, its Refs resolved to
        # this stack's resources: one source), plus the emulator endpoint and this machine's sizing.
        from ecomkpi.container_runtime import TASK_DEFINITIONS

        task_env = {
            "PYTHON": sys.executable,
            **self.account,
            **resource_environment(
                load_template(),
                [TASK_DEFINITIONS["validation"], TASK_DEFINITIONS["transformation"]],
                self._template_names(),
            ),
            "LAKE_PATH": s.lake,
            "SPARK_MASTER": s.spark_master,
            "SPARK_SHUFFLE_PARTITIONS": "4",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        containers = self._container_tasks() if s.task_runtime == "container" else {}
        commands = {}
        for arn, name, command in (
            (validation_td, "validation", "validate"),
            (transformation_td, "transformation", "transform"),
        ):
            if name in containers:
                task = containers[name]
                commands[arn] = ContainerCommand(name, task.definition.command, launcher=task)
            else:
                commands[arn] = ContainerCommand(name, (str(ENTRYPOINT), command), cwd=str(REPO_ROOT))
        self.run_task = RunTaskHandler(
            commands,
            base_env={**host_environment(), **task_env},
            inherit_env=False,
            on_output=self._container_output,
            log_dir=s.work_dir / "task-logs",
            region=s.region,
        )
        handlers = default_handlers(self.run_task, region=s.region, client_factory=self._any_client)
        if s.task_mode == "emr-serverless":
            self.emr = handlers[emr.EMR_SERVERLESS_START_JOB_RUN_SYNC] = self._emr_application(task_env)
        scale = s.retry_delay_scale
        self.executor = executor = Executor(
            definition_path(s.task_mode),
            handlers,
            substitutions=substitutions,
            region=s.region,
            sleep=(lambda seconds: time.sleep(seconds * scale)),
            heartbeat_scale=s.heartbeat_scale,
        )
        self._sfn_server = serve([self.executor])
        if s.task_mode == "worker":
            beat = min(30.0, max(0.5, HEARTBEAT_SECONDS * s.heartbeat_scale / 6))
            worker_env = {
                **host_environment(),
                **task_env,
                "AWS_ENDPOINT_URL_SFN": self._sfn_server.endpoint_url,
                # Its queues, as its task definition names them.
                **resource_environment(load_template(), [TASK_DEFINITIONS["worker"]], self._template_names()),
                "WORKER_HEARTBEAT_SECONDS": f"{beat:g}",
                "WORKER_POLL_SECONDS": "5",
                # The worker process's readiness (hosts/worker/status.py), read by its supervisor.
                STATUS_FILE_VARIABLE: str(s.work_dir / "worker-status.json"),
            }
            if "worker" in containers:
                worker_task = containers["worker"]
                worker_task.added = {
                    **worker_task.added,
                    "AWS_ENDPOINT_URL_SFN": self._sfn_server.endpoint_url,
                    "WORKER_HEARTBEAT_SECONDS": f"{beat:g}",
                    "WORKER_POLL_SECONDS": "5",
                }
                self.worker = WorkerSupervisor(
                    worker_task.definition.command,
                    {},
                    on_output=self._container_output,
                    on_event=self.on_event,
                    log_path=s.work_dir / "worker.log",
                    launcher=worker_task,
                )
            elif self.worker_spark is not None:
                self.worker = InProcessWorker(
                    self.worker_spark, worker_env, on_output=self._container_output, on_event=self.on_event
                )
            else:
                self.worker = WorkerSupervisor(
                    (str(ENTRYPOINT), "worker"),
                    worker_env,
                    cwd=str(REPO_ROOT),
                    on_output=self._container_output,
                    on_event=self.on_event,
                    log_path=s.work_dir / "worker.log",
                )
        # The trigger Lambda's environment, given to it rather than to this process.
        self.trigger_env = {
            **self.account,
            "AWS_ENDPOINT_URL_SFN": self._sfn_server.endpoint_url,
            "STEP_FUNCTION_ARN": self.executor.state_machine_arn,
            "PIPELINE_BATCH_TRACKER_TABLE": s.tracker_table,
            "ALERTS_TOPIC_ARN": self.topic_arn,  # the sweep's stuck-day alerts
            "S3_BUCKET": s.bucket,  # the trigger refuses events of other buckets, as in the stack
            "PRECHECK_QUEUE_URL": self.precheck_queue_url if s.task_mode == "worker" and s.prechecks else "",
        }
        self.on_event(
            f"workflow: {definition_path(s.task_mode).name} ({s.task_mode} mode) on the local executor "
            f"at {self._sfn_server.endpoint_url}"
        )
        return executor

    def _emr_application(self, task_env: dict[str, str]) -> emr.StartJobRunHandler:
        """The stack's EMR Serverless application, locally: its runtime configuration sets the same
        variables as the task definitions (as ``spark.emr-serverless.driverEnv.*``); the job role
        and the network give the emulator's endpoint and credentials."""
        s = self.settings
        spark_submit = s.emr_venv / "bin" / "spark-submit"
        if not spark_submit.exists():
            raise RuntimeError(f"{spark_submit} is missing: run `make compat` (the Spark 4.0 venv) first")
        process_only = {"PYTHON", "SPARK_MASTER", "PYTHONUNBUFFERED"}
        environment = {k: v for k, v in task_env.items() if k.startswith("AWS_") or k == "SPARK_LOCAL_IP"}
        properties = {
            f"{emr.DRIVER_ENV}{k}": v
            for k, v in task_env.items()
            if k not in environment and k not in process_only
        }
        properties[f"{emr.DRIVER_ENV}SPARK_CLASS_ARCHIVE"] = "off"
        application = emr.LocalApplication(
            application_id=LOCAL_EMR_APPLICATION,
            spark_submit=str(spark_submit),
            python=str(s.emr_venv / "bin" / "python"),
            master=s.spark_master,
            class_path=tuple(str(p) for p in emr.image_jars(s.emr_jars_dir)),
            properties=properties,
            environment=environment,
        )

        def fetch(bucket: str, key: str, dest: Path) -> None:
            self.client("s3").download_file(bucket, key, str(dest))

        return emr.StartJobRunHandler(
            {LOCAL_EMR_APPLICATION: application},
            fetch=fetch,
            work_dir=s.work_dir / "emr-job-runs",
            on_output=self._container_output,
            region=s.region,
        )

    def _template_names(self) -> dict[str, str]:
        """This stack's value of each template resource and pseudo parameter the tasks are told of."""
        s = self.settings
        return {
            "AWS::Region": s.region,
            "AWS::AccountId": ACCOUNT,
            "BucketName": s.bucket,
            "DailyKpisTable": s.daily_table,
            "CategoryKpisTable": s.category_table,
            "DataQualityTable": s.quality_table,
            "AlertsTopic": self.topic_arn,
            "WorkQueue": self.work_queue_url,
            "PrecheckQueue": self.precheck_queue_url,
        }

    def _container_tasks(self) -> dict[str, ContainerTask]:
        """The template's task definitions of this mode as containers of the image (by container
        name), their ``Ref``s resolved to this stack's resources; plus what Fargate gives a task
        outside its definition: here the emulator's endpoint and credentials."""
        from ecomkpi.container_runtime import (
            TASK_DEFINITIONS,
            ContainerTask,
            PodmanRuntime,
            task_definition,
            unavailable_reason,
        )

        s = self.settings
        reason = unavailable_reason(s.image)
        if reason:
            raise RuntimeError(f"--task-runtime container: {reason}")
        names = self._template_names()
        added = dict(self.account)
        if s.lake_path:
            added["LAKE_PATH"] = s.lake_path
        template = load_template()
        runtime = PodmanRuntime(s.image)
        wanted = ("worker",) if s.task_mode == "worker" else ("validation", "transformation")
        tasks = {}
        for name in wanted:
            definition = task_definition(template, TASK_DEFINITIONS[name], names)
            tasks[name] = ContainerTask(runtime, definition, dict(added))
        self.on_event(
            f"containers: {s.image} for "
            + ", ".join(
                f"{n} ({t.definition.cpu_units} CPU, {t.definition.memory_mib} MiB)" for n, t in tasks.items()
            )
        )
        return tasks

    # ------------------------------------------------------------------ events

    def _container_output(self, out: ContainerOutput) -> None:
        if self.logs:
            self.logs.add(
                f"/ecs/ecomkpi-{out.container_name}",
                f"{out.execution_name}/{out.task_arn.rsplit('/', 1)[-1]}",
                out.line,
            )
        if self.on_container_output:
            self.on_container_output(out)

    def _execution_ended(self, description: dict[str, Any]) -> None:
        self.on_event(f"execution {description['name']}: {description['status']}")
        if self.dispatcher:
            # EventBridge "Execution Status Change" → the same Lambda (late files, next generation).
            self.dispatcher.submit(execution_status_change_event(description, region=self.settings.region))

    # ------------------------------------------------------------------ waiting

    def busy(self) -> bool:
        running = self.executor.list_executions(status_filter="RUNNING") if self.executor else []
        return (
            bool(running) or (self.dispatcher is not None and self.dispatcher.busy()) or self._work_queued()
        )

    def _work_queued(self) -> bool:
        """Work or precheck messages waiting or in flight (a task's execution is RUNNING anyway)."""
        if not self.work_queue_url:
            return False
        if self._work_sqs is None:  # asked every half second while waiting for idle: one client
            self._work_sqs = self.client("sqs")
        for url in (self.work_queue_url, self.precheck_queue_url):
            attributes = self._work_sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            if any(int(v) for v in attributes.values()):
                return True
        return False

    def wait_idle(self, timeout: float = 900.0, settle: float = 2.0, worker_too: bool = False) -> bool:
        """Until no event is queued or in flight and no execution runs, for ``settle`` seconds.

        ``worker_too``: and the worker has no idle-time work left (it prepares a lake after each
        transformation, a few seconds): what a stack whose producer's parts arrive minutes apart
        has. Without it (a demo's waves), the next upload may interrupt that work, as any may.
        """
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.busy() or (worker_too and self.worker_preparing()):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return True
            time.sleep(0.5)
        return False

    def worker_preparing(self) -> bool:
        """The worker has idle-time work left (its status file says so: hosts/worker/status.py)."""
        return self.worker is not None and self.worker.preparing.is_set()

    def wait_worker_ready(self, timeout: float = 120.0) -> bool:
        """Until the worker has started Spark (what a running ``ecomkpi up`` has long done)."""
        return self.worker is None or self.worker.ready.wait(timeout)

    def alerts(self) -> list[dict[str, str]]:
        """Every alert published so far (drained from the topic's inbox queue, kept in memory)."""
        sqs = self.client("sqs")
        found = getattr(self, "_alerts", [])
        while True:
            msgs = sqs.receive_message(
                QueueUrl=self.alerts_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not msgs:
                break
            for m in msgs:
                body = json.loads(m["Body"])
                found.append({"subject": body.get("Subject") or "", "message": body.get("Message", "")})
                sqs.delete_message(QueueUrl=self.alerts_queue_url, ReceiptHandle=m["ReceiptHandle"])
        self._alerts = found
        return list(found)
