"""The EMR Serverless job runs' entry point: ``spark-submit emr_serverless_entry.py validate|transform``.

An EMR Serverless job run ends SUCCESS or FAILED, not with an exit code, and Step Functions' ``.sync``
fails the state for FAILED. The jobs' exit codes say more (0 passed, 2 data rejected, 1 broken), and
a rejection must not be retried or alerted as a broken job. So this wrapper runs the job, writes
``{"TaskArn", "ExitCodes": [code], ...}`` to ``s3://$S3_BUCKET/$ECOMKPI_RESULT_KEY`` (the state machine
reads it right after the run), and ends the run SUCCESS for 0 and 2, FAILED (exit 1) otherwise, or
when the result cannot be written. docs/design.md "EMR Serverless job outcome".

It is uploaded beside the ``jobs`` zip (``--py-files``), which also carries ``expectations/``: a
validation run without ``ECOMKPI_EXPECTATIONS_DIR`` gets the suites extracted from the zip.
Only the standard library, boto3 and ``jobs`` are imported (the EMR image has no ``ecomkpi``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path

COMMANDS = ("validate", "transform")
RESULT_KEY_ENV = "ECOMKPI_RESULT_KEY"
JOB_RUN_NAME_ENV = "ECOMKPI_JOB_RUN_NAME"
# Exit codes that are an answer about the data, not a broken run: the run ends SUCCESS.
ANSWERS = (0, 2)


def _expectations_from_zip() -> None:
    """Point the validation at the suites shipped inside the ``--py-files`` zip."""
    if os.environ.get("ECOMKPI_EXPECTATIONS_DIR", "").strip():
        return
    for entry in sys.path:
        if not entry.endswith(".zip") or not os.path.isfile(entry):
            continue
        with zipfile.ZipFile(entry) as zf:
            members = [n for n in zf.namelist() if n.startswith("expectations/") and n.endswith(".json")]
            if not members:
                continue
            target = Path(tempfile.mkdtemp(prefix="ecomkpi-expectations-"))
            zf.extractall(target, members)
        os.environ["ECOMKPI_EXPECTATIONS_DIR"] = str(target / "expectations")
        return


def _job(command: str) -> Callable[[], int | None]:
    if command == "validate":
        _expectations_from_zip()
        from jobs.validation.job import main as validate

        return validate
    from jobs.transformation.job import main as transform

    return transform


def run(command: str) -> int:
    """The job's own exit code (an exception or a non-integer exit counts as 1)."""
    try:
        code = _job(command)()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        traceback.print_exc()
        code = 1
    return int(code or 0)


def outcome(command: str, code: int) -> dict[str, object]:
    return {
        "version": 1,
        "TaskArn": os.environ.get(JOB_RUN_NAME_ENV, "") or f"emr-serverless {command}",
        "ExitCodes": [code],
        "command": command,
        "run_id": os.environ.get("RUN_ID", ""),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_outcome(result: dict[str, object]) -> None:
    import boto3

    bucket, key = os.environ["S3_BUCKET"], os.environ[RESULT_KEY_ENV]
    boto3.client("s3").put_object(
        Bucket=bucket, Key=key, Body=json.dumps(result).encode("utf-8"), ContentType="application/json"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMMANDS:
        print(f"usage: emr_serverless_entry.py {'|'.join(COMMANDS)}", file=sys.stderr)
        return 64
    if not os.environ.get(RESULT_KEY_ENV) or not os.environ.get("S3_BUCKET"):
        print(f"emr_serverless_entry: S3_BUCKET and {RESULT_KEY_ENV} are required", file=sys.stderr)
        return 1
    command = args[0]
    code = run(command)
    result = outcome(command, code)
    try:
        write_outcome(result)
    except Exception:
        traceback.print_exc()
        print("emr_serverless_entry: the outcome could not be written; the run fails", file=sys.stderr)
        return 1
    print(
        f"emr_serverless_entry: {command} exited {code}; outcome at {os.environ[RESULT_KEY_ENV]}", flush=True
    )
    return 0 if code in ANSWERS else 1


if __name__ == "__main__":
    sys.exit(main())
