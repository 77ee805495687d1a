"""``arn:aws:states:::emr-serverless:startJobRun.sync`` on this machine: a job run is a ``spark-submit``.

What an EMR Serverless application gives a job run, a ``LocalApplication`` gives it here: the release's
Spark (the compat venv's Spark 4.0, ``make compat``, as ``emr-spark-8.0.0`` ships 4.0.2), its S3A jars
on the driver's class path (EMR's image has hadoop-aws and the AWS SDK; locally the Spark 4.0 jar
cache's), its Python, a master (``local[N]``: one machine stands in for the application's workers)
and the application's runtime configuration. The job run's own request is the one the stack sends,
unchanged: ``EntryPoint`` and ``--jars``/``--py-files``/``--files`` in ``SparkSubmitParameters`` are
``s3://`` URIs, fetched from the emulated bucket into the run's directory as EMR fetches them;
``spark.emr-serverless.driverEnv.*`` properties become the driver's environment.

The request is checked against the API's limits before anything runs (AWS refuses it at
``StartJobRun``: ``EMRServerless.ValidationException``), and a run goes through the API's states:
SUBMITTED, SCHEDULED, RUNNING, then SUCCESS (exit 0), FAILED (any other exit) or CANCELLED
(``ExecutionTimeoutMinutes`` passed, the state timed out or the execution stopped). FAILED or
CANCELLED fails the state with ``States.TaskFailed`` and the job run's description as its cause, as the
other ``.sync`` integrations do. Every run is kept in ``runs`` with its state history.

Kept whole: one service integration, from the request's checks to the job run's states, and the
artifact upload its tests and the stack share; nothing in it is used without the rest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecomkpi.process_lines import read_lines, start_process, stop_group
from ecomkpi.sfn_local.callbacks import TaskCancelled
from ecomkpi.sfn_local.definition import EMR_SERVERLESS_START_JOB_RUN_SYNC
from ecomkpi.sfn_local.errors import TASK_FAILED, StatesError
from ecomkpi.sfn_local.tasks import ContainerOutput, TaskContext

__all__ = [
    "EMR_SERVERLESS_START_JOB_RUN_SYNC",
    "EmrJobRun",
    "LocalApplication",
    "StartJobRunHandler",
]

# StartJobRun's request fields (API reference, PascalCase as the Step Functions integration takes them).
_PARAMETERS = frozenset(
    {
        "ApplicationId",
        "ClientToken",
        "ExecutionRoleArn",
        "JobDriver",
        "ConfigurationOverrides",
        "Tags",
        "ExecutionTimeoutMinutes",
        "Name",
        "Mode",
        "RetryPolicy",
        "ExecutionIamPolicy",
    }
)
# The API's limits (EMR Serverless API reference: StartJobRun, SparkSubmit, Configuration).
MAX_ENTRY_POINT = 256
MAX_ENTRY_POINT_ARGUMENT = 10280
MAX_SPARK_SUBMIT_PARAMETERS = 102400
MAX_NAME = 256
MAX_PROPERTIES = 100
MAX_PROPERTY_KEY = 1024
MAX_PROPERTY_VALUE = 1024
MAX_EXECUTION_TIMEOUT_MINUTES = 1_000_000
DEFAULT_EXECUTION_TIMEOUT_MINUTES = 720
_APPLICATION_ID = re.compile(r"^[0-9a-z]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z0-9-]*:iam::\d{12}:role(/[!-~]+/|/)[\w+=,.@-]+$")
_NOT_BLANK = re.compile(r".*\S.*", re.DOTALL)
DRIVER_ENV = "spark.emr-serverless.driverEnv."
# Options whose values are files EMR fetches from S3 before the driver starts.
_FILE_OPTIONS = ("--jars", "--py-files", "--files")


@dataclass(frozen=True)
class LocalApplication:
    """The local stand-in of one ``AWS::EMRServerless::Application``."""

    application_id: str
    spark_submit: str  # the release's spark-submit (the compat venv's)
    python: str  # the image's Python (PYSPARK_PYTHON)
    master: str = "local[2]"
    class_path: tuple[str, ...] = ()  # the image's jars on the driver's class path (S3A)
    # The application's runtime configuration: spark-defaults properties, driverEnv included.
    properties: Mapping[str, str] = field(default_factory=dict)
    # What the job runtime role and the network give the run (endpoint, credentials, region).
    environment: Mapping[str, str] = field(default_factory=dict)
    release_label: str = "emr-spark-8.0.0"


@dataclass
class EmrJobRun:
    """One job run, as ``GetJobRun`` would describe it, plus what ran locally."""

    application_id: str
    job_run_id: str
    arn: str
    name: str
    execution_name: str
    state_name: str
    attempt: int
    argv: tuple[str, ...] = ()
    driver_env: dict[str, str] = field(default_factory=dict)
    states: list[tuple[str, float]] = field(default_factory=list)
    state_details: str = ""
    exit_code: int | None = None
    log_path: Path | None = None

    @property
    def state(self) -> str:
        return self.states[-1][0] if self.states else ""

    def move(self, state: str, details: str = "") -> None:
        self.states.append((state, time.time()))
        if details:
            self.state_details = details

    def describe(self, release_label: str, role_arn: str) -> dict[str, Any]:
        """The job run in the API's (camelCase) shape, times in epoch seconds."""
        return {
            "applicationId": self.application_id,
            "jobRunId": self.job_run_id,
            "arn": self.arn,
            "name": self.name,
            "state": self.state,
            "stateDetails": self.state_details,
            "releaseLabel": release_label,
            "executionRole": role_arn,
            "createdAt": self.states[0][1] if self.states else None,
            "updatedAt": self.states[-1][1] if self.states else None,
        }


def _invalid(message: str) -> StatesError:
    return StatesError("EMRServerless.ValidationException", message)


def _check_string(value: Any, where: str, maximum: int, minimum: int = 1) -> str:
    if not isinstance(value, str) or not minimum <= len(value) <= maximum:
        raise _invalid(f"{where} must be a string of {minimum} to {maximum} characters")
    return value


def parse_s3_uri(uri: str) -> tuple[str, str]:
    match = re.match(r"^s3a?://([^/]+)/(.+)$", uri)
    if not match:
        raise _invalid(f"not an S3 URI: {uri!r}")
    return match.group(1), match.group(2)


class StartJobRunHandler:
    """Runs each job run as ``spark-submit`` of the application's Spark (see the module docstring)."""

    parameter_names = _PARAMETERS

    def __init__(
        self,
        applications: Mapping[str, LocalApplication],
        *,
        fetch: Callable[[str, str, Path], None],
        work_dir: str | Path,
        on_output: Callable[[ContainerOutput], None] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        kill_grace_seconds: float = 5.0,
        minutes: float = 60.0,
    ) -> None:
        """``fetch(bucket, key, dest)`` copies one object (the emulated S3); ``minutes``: seconds per
        ``ExecutionTimeoutMinutes`` minute (tests shorten it)."""
        self.applications = dict(applications)
        self.fetch = fetch
        self.work_dir = Path(work_dir)
        self.on_output = on_output
        self.region = region
        self.account_id = account_id
        self.kill_grace_seconds = kill_grace_seconds
        self.minutes = minutes
        self.runs: list[EmrJobRun] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the request

    def _application(self, parameters: dict[str, Any]) -> LocalApplication:
        app_id = parameters.get("ApplicationId")
        if not isinstance(app_id, str) or not _APPLICATION_ID.match(app_id):
            raise _invalid("ApplicationId must be 1 to 64 characters of [0-9a-z]")
        application = self.applications.get(app_id)
        if application is None:
            raise StatesError(
                "EMRServerless.ResourceNotFoundException", f"Application {app_id} does not exist"
            )
        return application

    @staticmethod
    def _properties(parameters: dict[str, Any]) -> dict[str, str]:
        overrides = parameters.get("ConfigurationOverrides", {})
        if not isinstance(overrides, dict):
            raise _invalid("ConfigurationOverrides must be an object")
        unknown = set(overrides) - {"ApplicationConfiguration", "MonitoringConfiguration"}
        if unknown:
            raise _invalid(f"ConfigurationOverrides fields not supported locally: {sorted(unknown)}")
        properties: dict[str, str] = {}
        for config in overrides.get("ApplicationConfiguration", []):
            if not isinstance(config, dict) or config.get("Classification") != "spark-defaults":
                raise _invalid("only the spark-defaults classification is supported locally")
            props = config.get("Properties", {})
            if not isinstance(props, dict) or len(props) > MAX_PROPERTIES:
                raise _invalid(f"Properties must be a map of at most {MAX_PROPERTIES} entries")
            for key, value in props.items():
                _check_string(key, "a property key", MAX_PROPERTY_KEY)
                if (
                    not isinstance(value, str)
                    or len(value) > MAX_PROPERTY_VALUE
                    or not _NOT_BLANK.match(value)
                ):
                    raise _invalid(
                        f"property {key!r}: the value must be a non-blank string of at most "
                        f"{MAX_PROPERTY_VALUE} characters"
                    )
                properties[key] = value
        return properties

    def _check(self, parameters: Any) -> tuple[LocalApplication, dict[str, Any], dict[str, str], int]:
        if not isinstance(parameters, dict):
            raise _invalid("the parameters of emr-serverless:startJobRun must be an object")
        application = self._application(parameters)
        role = parameters.get("ExecutionRoleArn")
        if not isinstance(role, str) or not _ROLE_ARN.match(role):
            raise _invalid(f"ExecutionRoleArn must be an IAM role ARN, got {role!r}")
        if "Name" in parameters:
            _check_string(parameters["Name"], "Name", MAX_NAME)
        timeout = parameters.get("ExecutionTimeoutMinutes", DEFAULT_EXECUTION_TIMEOUT_MINUTES)
        if not isinstance(timeout, int) or not 0 <= timeout <= MAX_EXECUTION_TIMEOUT_MINUTES:
            raise _invalid(f"ExecutionTimeoutMinutes must be 0 to {MAX_EXECUTION_TIMEOUT_MINUTES}")
        driver = parameters.get("JobDriver")
        if not isinstance(driver, dict) or set(driver) != {"SparkSubmit"}:
            raise _invalid("JobDriver must hold SparkSubmit (Hive jobs are not supported locally)")
        submit = driver["SparkSubmit"]
        if not isinstance(submit, dict):
            raise _invalid("JobDriver.SparkSubmit must be an object")
        unknown = set(submit) - {"EntryPoint", "EntryPointArguments", "SparkSubmitParameters"}
        if unknown:
            raise _invalid(f"unknown SparkSubmit fields: {sorted(unknown)}")
        _check_string(submit.get("EntryPoint"), "SparkSubmit.EntryPoint", MAX_ENTRY_POINT)
        arguments = submit.get("EntryPointArguments", [])
        if not isinstance(arguments, list):
            raise _invalid("EntryPointArguments must be an array of strings")
        for argument in arguments:
            _check_string(argument, "an entry point argument", MAX_ENTRY_POINT_ARGUMENT)
        if "SparkSubmitParameters" in submit:
            _check_string(
                submit["SparkSubmitParameters"], "SparkSubmitParameters", MAX_SPARK_SUBMIT_PARAMETERS
            )
        return application, submit, self._properties(parameters), timeout

    # ------------------------------------------------------------------ the run

    def _stage(self, uri: str, run_dir: Path) -> str:
        """An ``s3://`` file fetched into the run's directory (EMR does the same before the driver starts)."""
        if not uri.startswith(("s3://", "s3a://")):
            return uri
        bucket, key = parse_s3_uri(uri)
        dest = run_dir / "deps" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fetch(bucket, key, dest)
        except Exception as exc:
            raise _StagingFailed(f"could not fetch {uri}: {exc}") from exc
        return str(dest)

    def _argv(
        self, application: LocalApplication, submit: dict[str, Any], properties: dict[str, str], run_dir: Path
    ) -> tuple[list[str], dict[str, str]]:
        argv = [application.spark_submit, "--master", application.master, "--deploy-mode", "client"]
        conf = {**application.properties, **properties}
        if application.class_path:
            conf.setdefault("spark.driver.extraClassPath", os.pathsep.join(application.class_path))
        words = shlex.split(submit.get("SparkSubmitParameters", ""))
        user: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            if word in _FILE_OPTIONS and i + 1 < len(words):
                staged = [self._stage(uri, run_dir) for uri in words[i + 1].split(",") if uri]
                user += [word, ",".join(staged)]
                i += 2
            elif word == "--conf" and i + 1 < len(words):
                key, _, value = words[i + 1].partition("=")
                conf[key] = value
                i += 2
            elif word in ("--master", "--deploy-mode"):
                raise _invalid(f"{word} is chosen by EMR Serverless, not by SparkSubmitParameters")
            else:
                user.append(word)
                i += 1
        driver_env = {k[len(DRIVER_ENV) :]: v for k, v in conf.items() if k.startswith(DRIVER_ENV)}
        for key, value in conf.items():
            if not key.startswith(DRIVER_ENV):
                argv += ["--conf", f"{key}={value}"]
        argv += user
        argv.append(self._stage(submit["EntryPoint"], run_dir))
        argv += list(submit.get("EntryPointArguments", []))
        return argv, driver_env

    def __call__(self, parameters: Any, context: TaskContext) -> dict[str, Any]:
        application, submit, properties, timeout = self._check(parameters)
        job_run_id = uuid.uuid4().hex[:16]
        run = EmrJobRun(
            application_id=application.application_id,
            job_run_id=job_run_id,
            arn=f"arn:aws:emr-serverless:{self.region}:{self.account_id}:/applications/"
            f"{application.application_id}/jobruns/{job_run_id}",
            name=parameters.get("Name", job_run_id),
            execution_name=context.execution_name,
            state_name=context.state_name,
            attempt=context.attempt,
        )
        run.move("SUBMITTED")
        with self._lock:
            self.runs.append(run)
        run_dir = self.work_dir / context.execution_name / f"{context.state_name}-{context.attempt + 1}"
        run_dir.mkdir(parents=True, exist_ok=True)
        run.log_path = run_dir / "driver.log"
        run.move("SCHEDULED")
        try:
            argv, driver_env = self._argv(application, submit, properties, run_dir)
        except _StagingFailed as exc:
            run.move("FAILED", str(exc))
            raise StatesError(TASK_FAILED, self._cause(run, application, parameters)) from exc
        run.argv, run.driver_env = tuple(argv), driver_env
        env = {**os.environ, **application.environment, **driver_env}
        env.setdefault("PYSPARK_PYTHON", application.python)
        env.setdefault("PYSPARK_DRIVER_PYTHON", application.python)
        run.move("RUNNING")
        deadline = time.monotonic() + timeout * self.minutes if timeout else None
        code = self._run(argv, env, run, context, deadline, str(run_dir))
        run.exit_code = code
        if code is None:
            run.move("CANCELLED", f"Job run exceeded ExecutionTimeoutMinutes ({timeout}) and was cancelled")
        elif code != 0:
            run.move("FAILED", f"Job failed, the driver exited with code {code}")
        else:
            run.move("SUCCESS")
        if run.state in ("FAILED", "CANCELLED"):
            raise StatesError(TASK_FAILED, self._cause(run, application, parameters))
        return {"ApplicationId": application.application_id, "JobRunId": job_run_id, "Arn": run.arn}

    def _cause(self, run: EmrJobRun, application: LocalApplication, parameters: dict[str, Any]) -> str:
        return json.dumps({"jobRun": run.describe(application.release_label, parameters["ExecutionRoleArn"])})

    def _run(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        run: EmrJobRun,
        context: TaskContext,
        deadline: float | None,
        cwd: str,
    ) -> int | None:
        """The driver's exit code; None when ExecutionTimeoutMinutes passed (the run was killed)."""
        assert run.log_path is not None
        lock = threading.Lock()
        with run.log_path.open("a", encoding="utf-8") as log:
            log.write(f"[spark-submit] {shlex.join(argv)}\n")

            def on_line(stream: str, line: str) -> None:
                with lock:
                    log.write(f"[{stream}] {line}\n")
                    log.flush()
                if self.on_output:
                    self.on_output(
                        ContainerOutput(
                            context.execution_name,
                            context.state_name,
                            "emr-serverless",
                            stream,
                            line,
                            run.arn,
                        )
                    )

            try:
                proc = start_process(argv, env, cwd)
            except OSError as exc:
                log.write(f"[stderr] cannot start spark-submit: {exc}\n")
                return 127
            readers = read_lines(proc, on_line)
            try:
                while True:
                    try:
                        code = proc.wait(timeout=0.1)
                        break
                    except subprocess.TimeoutExpired:
                        if context.cancel.is_set():
                            self._kill(proc)
                            run.move(
                                "CANCELLED",
                                "Job run cancelled (the state timed out or the execution stopped)",
                            )
                            raise TaskCancelled(run.arn) from None
                        if deadline is not None and time.monotonic() > deadline:
                            self._kill(proc)
                            return None
            finally:
                for reader in readers:
                    reader.join(timeout=5)
        return code if code >= 0 else 128 - code

    def _kill(self, proc: subprocess.Popen[str]) -> None:
        stop_group(proc, self.kill_grace_seconds)


class _StagingFailed(Exception):
    """An S3 dependency of the run could not be fetched: EMR fails the run before the driver starts."""


# --------------------------------------------------------------------------- the job's files in S3
# Where scripts/deploy.sh uploads them in AWS, and LocalStack in the emulator: the same keys, so the
# stack's EmrSparkSubmitParameters (infra/ecomkpi-stack.yaml) and the local one are one string.
EMR_PREFIX = "emr"
ENTRY_POINT_FILE = "emr_serverless_entry.py"
JOBS_ZIP_FILE = "ecomkpi_jobs.zip"
# The Spark 4.0 jar set (scripts/spark40-jars.pom.xml) minus S3A, which EMR's image brings itself
# (hadoop-aws, the AWS SDK bundle and its optional SSL provider): Delta 4.4.0 for Spark 4.0 and its
# dependencies, shipped with every run as --jars.
IMAGE_PROVIDED_JARS = ("hadoop-aws-", "bundle-", "wildfly-openssl-")
EMR_JARS = (
    "commons-pool-1.6.jar",
    "delta-kernel-api-4.4.0.jar",
    "delta-kernel-defaults-4.4.0.jar",
    "delta-kernel-unitycatalog-4.4.0.jar",
    "delta-spark_4.0_2.13-4.4.0.jar",
    "delta-storage-4.4.0.jar",
    "jts-core-1.20.0.jar",
    "unitycatalog-client-0.6.0.jar",
    "unitycatalog-hadoop-0.6.0.jar",
)


def image_jars(jars_dir: Path) -> list[Path]:
    """The jars of a Spark 4.0 cache that EMR's image has (the local application's class path)."""
    return sorted(p for p in jars_dir.glob("*.jar") if p.name.startswith(IMAGE_PROVIDED_JARS))


def shipped_jars(jars_dir: Path) -> list[Path]:
    """The jars of a Spark 4.0 cache that every run ships (must be exactly ``EMR_JARS``)."""
    found = sorted(p for p in jars_dir.glob("*.jar") if not p.name.startswith(IMAGE_PROVIDED_JARS))
    if [p.name for p in found] != sorted(EMR_JARS):
        raise RuntimeError(
            f"the jar cache {jars_dir} holds {[p.name for p in found]}, the EMR job ships {sorted(EMR_JARS)}: "
            "update EMR_JARS and the stack's EmrSparkSubmitParameters together"
        )
    return found


def upload_artifacts(s3: Any, bucket: str, jars_dir: Path, repo_root: Path, work_dir: Path) -> None:
    """Upload the entry point, the jobs zip (with the suites) and the shipped jars, as deploy.sh does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("package_jobs", repo_root / "scripts" / "package_jobs.py")
    assert spec and spec.loader
    package_jobs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package_jobs)
    zip_path = package_jobs.build(work_dir / JOBS_ZIP_FILE)
    s3.upload_file(str(repo_root / "scripts" / ENTRY_POINT_FILE), bucket, f"{EMR_PREFIX}/{ENTRY_POINT_FILE}")
    s3.upload_file(str(zip_path), bucket, f"{EMR_PREFIX}/{JOBS_ZIP_FILE}")
    for jar in shipped_jars(jars_dir):
        s3.upload_file(str(jar), bucket, f"{EMR_PREFIX}/jars/{jar.name}")
