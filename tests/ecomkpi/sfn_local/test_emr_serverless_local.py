"""The emr-serverless rendering on the local executor: the job runs' API limits and states, and the
job outcome's path through the workflow (a rejection is a rejection, a broken run is retried).

``spark-submit`` is a stand-in here (a Python script that runs the staged entry point with the
staged ``--py-files`` on its path, as spark-submit would), and so is the ``jobs`` package in the
zip (its jobs exit with a chosen code): the real entry point, the handler, the definition, moto's S3,
SNS and DynamoDB are real. The real jobs on Spark 4.0 run in tests/compat/ (``make compat``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecomkpi.sfn_local import Executor, default_handlers
from ecomkpi.sfn_local import emr_serverless as emr
from ecomkpi.sfn_local.callbacks import TaskCancelled
from ecomkpi.sfn_local.errors import StatesError
from ecomkpi.sfn_local.tasks import TaskContext
from ecomkpi.workflow_modes import EMR_DEFINITION
from tests.support.emr_artifacts import entry_point_uri, spark_submit_parameters

REPO = Path(__file__).resolve().parents[3]
APP = "00testapp"
ROLE = "arn:aws:iam::123456789012:role/ecomkpi-emr-job"
BATCH = "2025-07-10"

# spark-submit's stand-in: records its argv and driver environment, then runs the entry point (the
# first argument after the options) with the --py-files entries on sys.path, as the driver would.
STAND_IN_SPARK_SUBMIT = """\
import json, os, runpy, sys
args = sys.argv[1:]
record = os.environ.get("STAND_IN_RECORD")
if record:
    with open(record, "a") as f:
        f.write(json.dumps({"argv": args, "env": dict(os.environ)}) + "\\n")
i, py_files = 0, []
while i < len(args) and args[i].startswith("--"):
    if args[i] == "--py-files":
        py_files = args[i + 1].split(",")
    i += 2
sys.path[:0] = py_files
sys.argv = args[i:]
runpy.run_path(args[i], run_name="__main__")
"""
# The jobs package of the stand-in zip: each job exits with the code its variable names.
STAND_IN_JOBS = {
    "jobs/__init__.py": "",
    "jobs/validation/__init__.py": "",
    "jobs/validation/job.py": "import os\ndef main():\n    return int(os.environ.get('STAND_IN_VALIDATE', '0'))\n",
    "jobs/transformation/__init__.py": "",
    "jobs/transformation/job.py": (
        "import os\ndef main():\n    return int(os.environ.get('STAND_IN_TRANSFORM', '0'))\n"
    ),
}


def s3(moto_endpoint: str) -> Any:
    return boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=moto_endpoint)


def stand_in_application(tmp_path: Path, moto_endpoint: str, **env: str) -> emr.LocalApplication:
    script = tmp_path / "spark-submit"
    script.write_text(STAND_IN_SPARK_SUBMIT)
    return emr.LocalApplication(
        application_id=APP,
        spark_submit=sys.executable,  # run as `python spark-submit ...` below
        python=sys.executable,
        properties={"spark.emr-serverless.driverEnv.FROM_APPLICATION": "yes"},
        environment={
            "AWS_ENDPOINT_URL": moto_endpoint,
            "STAND_IN_RECORD": str(tmp_path / "runs.jsonl"),
            **env,
        },
    )


class StandInHandler(emr.StartJobRunHandler):
    """The handler with ``python <stand-in>`` in front of the argv (the stand-in is not executable)."""

    def __init__(self, tmp_path: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stand_in = str(tmp_path / "spark-submit")

    def _argv(self, application, submit, properties, run_dir):  # type: ignore[no-untyped-def]
        argv, env = super()._argv(application, submit, properties, run_dir)
        return [argv[0], self.stand_in, *argv[1:]], env


def handler(tmp_path: Path, moto_endpoint: str, **env: str) -> emr.StartJobRunHandler:
    client = s3(moto_endpoint)
    return StandInHandler(
        tmp_path,
        {APP: stand_in_application(tmp_path, moto_endpoint, **env)},
        fetch=lambda bucket, key, dest: client.download_file(bucket, key, str(dest)),
        work_dir=tmp_path / "runs",
        minutes=0.5,  # ExecutionTimeoutMinutes=1 is half a second here
    )


def upload(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    client = s3(moto_endpoint)
    client.create_bucket(Bucket=bucket)
    zip_path = tmp_path / emr.JOBS_ZIP_FILE
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, text in STAND_IN_JOBS.items():
            zf.writestr(name, text)
    client.upload_file(str(REPO / "scripts" / emr.ENTRY_POINT_FILE), bucket, f"emr/{emr.ENTRY_POINT_FILE}")
    client.upload_file(str(zip_path), bucket, f"emr/{emr.JOBS_ZIP_FILE}")
    for name in emr.EMR_JARS:
        client.put_object(Bucket=bucket, Key=f"emr/jars/{name}", Body=b"PK jar stand-in")


def context(state: str = "ValidateData", cancel: threading.Event | None = None) -> TaskContext:
    return TaskContext(
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:sm:e1",
        execution_name=f"{BATCH}-g1",
        state_name=state,
        resource=emr.EMR_SERVERLESS_START_JOB_RUN_SYNC,
        attempt=0,
        cancel=cancel or threading.Event(),
    )


def request(bucket: str, command: str = "validate", **properties: str) -> dict[str, Any]:
    return {
        "ApplicationId": APP,
        "ExecutionRoleArn": ROLE,
        "Name": f"{BATCH}-g1-ValidateData",
        "ExecutionTimeoutMinutes": 30,
        "JobDriver": {
            "SparkSubmit": {
                "EntryPoint": entry_point_uri(bucket),
                "EntryPointArguments": [command],
                "SparkSubmitParameters": spark_submit_parameters(bucket),
            }
        },
        "ConfigurationOverrides": {
            "ApplicationConfiguration": [
                {
                    "Classification": "spark-defaults",
                    "Properties": {
                        "spark.emr-serverless.driverEnv.S3_BUCKET": bucket,
                        "spark.emr-serverless.driverEnv.ECOMKPI_RESULT_KEY": "control/results/x/ValidateData.json",
                        "spark.executor.memory": "2g",
                        **properties,
                    },
                }
            ]
        },
    }


# --------------------------------------------------------------------------- one job run


def test_a_run_fetches_its_files_goes_through_the_states_and_leaves_its_outcome(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    upload(moto_endpoint, names.bucket, tmp_path)
    h = handler(tmp_path, moto_endpoint, STAND_IN_VALIDATE="2")
    result = h(request(names.bucket), context())
    (run,) = h.runs
    assert result == {"ApplicationId": APP, "JobRunId": run.job_run_id, "Arn": run.arn}
    assert [s for s, _ in run.states] == ["SUBMITTED", "SCHEDULED", "RUNNING", "SUCCESS"]
    (recorded,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    argv, env = recorded["argv"], recorded["env"]
    # The release's master, the job's Spark conf; driverEnv properties became the environment.
    assert argv[:4] == ["--master", "local[2]", "--deploy-mode", "client"]
    assert "spark.executor.memory=2g" in argv
    assert not any("driverEnv" in a for a in argv)
    assert env["S3_BUCKET"] == names.bucket and env["FROM_APPLICATION"] == "yes"
    assert env["PYTHONUNBUFFERED"] == "1"  # from the stack's SparkSubmitParameters
    # Every s3:// dependency was fetched into the run's directory, byte for byte.
    jars = argv[argv.index("--jars") + 1].split(",")
    assert [Path(j).name for j in jars] == list(emr.EMR_JARS)
    assert all(Path(j).read_bytes() == b"PK jar stand-in" for j in jars)
    assert argv[-1] == "validate" and Path(argv[-2]).name == emr.ENTRY_POINT_FILE
    # Exit 2 is an answer, not a failure: SUCCESS, and the outcome names the code.
    body = s3(moto_endpoint).get_object(Bucket=names.bucket, Key="control/results/x/ValidateData.json")[
        "Body"
    ]
    outcome = json.loads(body.read())
    assert outcome["ExitCodes"] == [2] and outcome["command"] == "validate"


def test_a_broken_job_fails_the_run_with_its_description(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    upload(moto_endpoint, names.bucket, tmp_path)
    h = handler(tmp_path, moto_endpoint, STAND_IN_VALIDATE="1")
    with pytest.raises(StatesError) as failed:
        h(request(names.bucket), context())
    assert failed.value.error == "States.TaskFailed"
    cause = json.loads(failed.value.cause)["jobRun"]
    assert cause["state"] == "FAILED" and cause["applicationId"] == APP
    assert [s for s, _ in h.runs[0].states][-1] == "FAILED"


def test_timeout_and_cancel_end_in_cancelled(moto_endpoint: str, names: Any, tmp_path: Path) -> None:
    upload(moto_endpoint, names.bucket, tmp_path)
    slow = {"spark.emr-serverless.driverEnv.STAND_IN_VALIDATE": "0"}
    h = handler(tmp_path, moto_endpoint)
    # A job that outlives ExecutionTimeoutMinutes (1 "minute" = 0.5 s here) is cancelled by EMR.
    sleepy = request(names.bucket, **slow)
    sleepy["ExecutionTimeoutMinutes"] = 1
    sleepy["JobDriver"]["SparkSubmit"]["EntryPoint"] = f"s3://{names.bucket}/emr/sleep.py"
    s3(moto_endpoint).put_object(Bucket=names.bucket, Key="emr/sleep.py", Body=b"import time; time.sleep(60)")
    with pytest.raises(StatesError) as failed:
        h(sleepy, context())
    assert json.loads(failed.value.cause)["jobRun"]["state"] == "CANCELLED"
    # The state's own timeout (or StopExecution) cancels the run too.
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    sleepy["ExecutionTimeoutMinutes"] = 0  # no limit of its own
    with pytest.raises(TaskCancelled):
        h(sleepy, context(cancel=cancel))
    assert h.runs[-1].state == "CANCELLED"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r.update(ApplicationId="UPPER"), "EMRServerless.ValidationException"),
        (lambda r: r.update(ApplicationId="00other"), "EMRServerless.ResourceNotFoundException"),
        (lambda r: r.update(ExecutionRoleArn="ecomkpi-emr-job"), "EMRServerless.ValidationException"),
        (lambda r: r.update(Name="n" * 257), "EMRServerless.ValidationException"),
        (lambda r: r.update(ExecutionTimeoutMinutes=1_000_001), "EMRServerless.ValidationException"),
        (
            lambda r: r["JobDriver"]["SparkSubmit"].update(EntryPoint="s3://b/" + "e" * 251),
            "EMRServerless.ValidationException",
        ),
        (
            lambda r: r["JobDriver"]["SparkSubmit"].update(EntryPointArguments=["a" * 10281]),
            "EMRServerless.ValidationException",
        ),
        (
            lambda r: r["JobDriver"]["SparkSubmit"].update(SparkSubmitParameters="--conf a=b " * 10000),
            "EMRServerless.ValidationException",
        ),
        (
            lambda r: r["ConfigurationOverrides"]["ApplicationConfiguration"][0]["Properties"].update(
                {f"spark.p{i}": "v" for i in range(98)}
            ),
            "EMRServerless.ValidationException",
        ),
        (
            lambda r: r["ConfigurationOverrides"]["ApplicationConfiguration"][0]["Properties"].update(
                {"spark.emr-serverless.driverEnv.INPUTS_KEY": ""}
            ),
            "EMRServerless.ValidationException",
        ),
        (
            lambda r: r["ConfigurationOverrides"]["ApplicationConfiguration"][0]["Properties"].update(
                {"spark.emr-serverless.driverEnv.INPUTS_KEY": "k" * 1025}
            ),
            "EMRServerless.ValidationException",
        ),
    ],
)
def test_the_api_limits_refuse_the_request_before_anything_runs(
    moto_endpoint: str, names: Any, tmp_path: Path, change: Any, error: str
) -> None:
    h = handler(tmp_path, moto_endpoint)
    bad = request(names.bucket)
    change(bad)
    with pytest.raises(StatesError) as refused:
        h(bad, context())
    assert refused.value.error == error
    assert h.runs == [] and not (tmp_path / "runs.jsonl").exists()


def test_the_stack_and_the_local_stack_send_the_same_spark_submit_parameters() -> None:
    """infra/ecomkpi-stack.yaml builds EmrSparkSubmitParameters with !Sub; rendered for a bucket it
    is the string the local stack sends."""
    from tests.infra.test_emr_serverless_stack import rendered_spark_submit_parameters

    assert rendered_spark_submit_parameters("my-bucket") == spark_submit_parameters("my-bucket")


# --------------------------------------------------------------------------- the workflow


def run_workflow(
    moto_endpoint: str, names: Any, tmp_path: Path, validate: int, transform: int
) -> tuple[Executor, str, emr.StartJobRunHandler, Any]:
    session = boto3.session.Session(region_name="us-east-1")
    sns, sqs, ddb = (session.client(n, endpoint_url=moto_endpoint) for n in ("sns", "sqs", "dynamodb"))
    upload(moto_endpoint, names.bucket, tmp_path)
    topic = sns.create_topic(Name=f"alerts-{names.suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{names.suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    ddb.create_table(
        TableName=names.tracker_table,
        KeySchema=[{"AttributeName": "BatchId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "BatchId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(
        TableName=names.tracker_table,
        Item={"BatchId": {"S": BATCH}, "triggered_generation": {"N": "1"}, "status": {"S": "RUNNING"}},
    )
    h = handler(tmp_path, moto_endpoint, STAND_IN_VALIDATE=str(validate), STAND_IN_TRANSFORM=str(transform))
    handlers = default_handlers(endpoint_url=moto_endpoint)
    handlers[emr.EMR_SERVERLESS_START_JOB_RUN_SYNC] = h
    executor = Executor(
        EMR_DEFINITION,
        handlers,
        substitutions={
            "EmrApplicationId": APP,
            "EmrJobRoleArn": ROLE,
            "EmrEntryPoint": entry_point_uri(names.bucket),
            "EmrSparkSubmitParameters": spark_submit_parameters(names.bucket),
            "ValidationContainerName": "validation",
            "TransformationContainerName": "transformation",
            "AlertsTopicArn": topic,
            "BatchTrackerTableName": names.tracker_table,
            "DailyKpisTableName": names.daily_table,
            "CategoryKpisTableName": names.category_table,
        },
        sleep=lambda _s: None,
    )
    execution = executor.start_execution(
        f"{BATCH}-g1",
        {
            "batch_id": BATCH,
            "generation": 1,
            "bucket": names.bucket,
            "products_key": "raw/products/products.csv",
            "inputs_key": f"control/inputs/{BATCH}/g1-0123456789abcdef.json",
            "orders_count": 1,
            "order_items_count": 1,
        },
    )
    executor.wait(execution, timeout=120)
    return executor, execution, h, ddb


def entered(executor: Executor, arn: str) -> list[str]:
    return [e.details["name"] for e in executor.get_execution_history(arn) if e.type.endswith("StateEntered")]


def test_a_day_that_passes_runs_both_jobs_once_and_succeeds(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    executor, arn, h, _ = run_workflow(moto_endpoint, names, tmp_path, validate=0, transform=0)
    assert executor.describe_execution(arn)["status"] == "SUCCEEDED"
    assert [(r.state_name, r.state) for r in h.runs] == [
        ("ValidateData", "SUCCESS"),
        ("TransformData", "SUCCESS"),
    ]
    states = entered(executor, arn)
    assert states[:4] == [
        "ValidateData",
        "ReadValidateDataOutcome",
        "ValidateDataOutcome",
        "CheckValidationResult",
    ]
    env = h.runs[0].driver_env
    assert env["RUN_ID"] == f"{BATCH}-g1" and env["ECOMKPI_JOB_RUN_NAME"] == f"{BATCH}-g1-ValidateData"
    assert env["ECOMKPI_RESULT_KEY"] == f"control/results/{BATCH}/{BATCH}-g1/ValidateData.json"
    assert h.runs[1].driver_env["DAILY_KPIS_TABLE"] == names.daily_table


def test_a_rejection_is_not_retried_transforms_the_rest_and_alerts(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    executor, arn, h, ddb = run_workflow(moto_endpoint, names, tmp_path, validate=2, transform=0)
    described = executor.describe_execution(arn)
    assert described["status"] == "FAILED" and described["error"] == "Validation.DataRejected"
    # One validation run (SUCCESS: an answer), then the transformation of the files that passed.
    assert [(r.state_name, r.state) for r in h.runs] == [
        ("ValidateData", "SUCCESS"),
        ("TransformData", "SUCCESS"),
    ]
    item = ddb.get_item(TableName=names.tracker_table, Key={"BatchId": {"S": BATCH}}, ConsistentRead=True)
    assert item["Item"]["failed_state"]["S"] == "ValidateData"
    assert "NotifyFailure" in entered(executor, arn)


def test_a_broken_transformation_is_retried_then_fails(
    moto_endpoint: str, names: Any, tmp_path: Path
) -> None:
    executor, arn, h, _ = run_workflow(moto_endpoint, names, tmp_path, validate=0, transform=1)
    described = executor.describe_execution(arn)
    assert described["status"] == "FAILED" and described["error"] == "States.TaskFailed"
    assert [(r.state_name, r.state) for r in h.runs] == [("ValidateData", "SUCCESS")] + [
        ("TransformData", "FAILED")
    ] * 3  # the source's Retry: two more attempts
    assert "ReadTransformDataOutcome" not in entered(executor, arn)


def test_the_entry_point_fails_the_run_when_the_outcome_cannot_be_written(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("emr_entry", REPO / "scripts" / emr.ENTRY_POINT_FILE)
    assert spec and spec.loader
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket-for-outcomes")
    monkeypatch.setenv("ECOMKPI_RESULT_KEY", "control/results/x.json")
    monkeypatch.setattr(entry, "run", lambda command: 0)
    assert entry.main(["validate"]) == 1  # the job passed, but nobody could learn it: FAILED
    assert entry.main(["vacuum"]) == 64
