"""A class-data-sharing (AppCDS) archive of the Spark driver's classes, built once per class path.

Why: a JVM this pipeline starts cold (a per-batch Fargate task, the warm worker, a notebook, the test
session) spends seconds loading and verifying the same tens of thousands of classes from ~300 jars
before its first batch. JDK 17's dynamic archive (``-XX:ArchiveClassesAtExit`` once, then
``-XX:SharedArchiveFile``) maps them pre-parsed instead: a session starts sooner and its first Delta
write and read take less; `make bench ARGS="--only latency --task-modes ecs"` measures what a cold
JVM per task costs (bench/results/LOG.md, 2026-12-01).

An archive is only valid for the JVM and the class path it was dumped with. Its file name carries a
digest of both (the java binary, pyspark's jars, the jar cache's names, sizes and times), so a new
JDK or jar set simply finds no archive; the JVM checks again itself and, if anything still differs,
runs without sharing rather than failing. The archive is an optimisation, never a condition:
``python -m jobs.jvm_archive`` builds it (``make setup`` and the image do), and a session whose
archive is absent starts as before. ``SPARK_CLASS_ARCHIVE=off`` disables it; a path selects a
directory other than ``<jar cache>/../cds``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ARCHIVE_ENV = "SPARK_CLASS_ARCHIVE"
OFF = "off"
PREFIX = "spark-classes-"


def java_binary(env: Mapping[str, str] | None = None) -> Path | None:
    """The java that Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the first on PATH."""
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def _stat_line(path: Path) -> str:
    st = path.stat()
    return f"{path}\t{st.st_size}\t{st.st_mtime_ns}"


def class_path_digest(jars: Sequence[str], java: Path) -> str:
    """What an archive depends on: the JVM (its binary and module image) and every jar on the path."""
    import pyspark

    spark_jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    lines = [_stat_line(java), pyspark.__version__]
    modules = java.parent.parent / "lib" / "modules"
    if modules.exists():
        lines.append(_stat_line(modules))
    lines += [_stat_line(p) for p in spark_jars]
    lines += [_stat_line(Path(j)) for j in jars]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def archive_dir(jars: Sequence[str], setting: str = "") -> Path | None:
    """Where archives live: ``setting`` (``SPARK_CLASS_ARCHIVE``: a directory, or ``off``), else
    beside the jar cache."""
    setting = setting.strip()
    if setting.lower() == OFF:
        return None
    if setting:
        return Path(setting)
    return Path(jars[0]).parent.parent / "cds" if jars else None


def archive_path(jars: Sequence[str], setting: str = "") -> Path | None:
    """The archive this class path and JVM would use (it may not exist yet); None when disabled."""
    directory, java = archive_dir(jars, setting), java_binary()
    if directory is None or java is None:
        return None
    try:
        return directory / f"{PREFIX}{class_path_digest(jars, java)}.jsa"
    except OSError:  # a jar vanished while we looked: no archive rather than a failed start
        return None


def java_options(jars: Sequence[str], setting: str = "") -> str:
    """``-XX:SharedArchiveFile=...`` when this class path's archive exists, else nothing."""
    path = archive_path(jars, setting)
    return f"-XX:SharedArchiveFile={path}" if path is not None and path.is_file() else ""


def _train(dump_to: str) -> None:
    """The workload whose classes go into the archive: the warm-up batch (both jobs on local disk)
    and one s3a round trip through the embedded emulator (the AWS SDK is a large part of the path)."""
    from jobs.config import PipelineConfig
    from jobs.spark_session import get_spark
    from jobs.warmup import WarmUp

    env = {
        # The jar directory of the session to archive (the image's is not the default one).
        "ECOMKPI_JARS_DIR": os.environ.get("ECOMKPI_JARS_DIR", ""),
        "SPARK_MASTER": "local[2]",
        "SPARK_SHUFFLE_PARTITIONS": "2",
        ARCHIVE_ENV: OFF,
        "SPARK_EXTRA_CONF": f"'spark.driver.extraJavaOptions=-Dlog4j2.level=WARN "
        f"-XX:ArchiveClassesAtExit={dump_to}'",
    }
    server = None
    try:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        env["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "class-archive")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "class-archive")
    except ImportError:  # the image has no emulator: its archive covers the jobs without s3a
        pass
    config = PipelineConfig.from_env(env)
    spark = get_spark(config, app_name="class-archive")
    with tempfile.TemporaryDirectory(prefix="ecomkpi-class-archive-") as tmp:
        batch = WarmUp(spark, Path(tmp), config)
        for _, step in batch.steps():
            step()
        if server is not None:
            import boto3

            boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=config.region).create_bucket(
                Bucket="class-archive"
            )
            spark.range(10).write.mode("overwrite").parquet("s3a://class-archive/probe")
            spark.read.parquet("s3a://class-archive/probe").count()
    spark.stop()
    if server is not None:
        server.stop()


KEEP = 3  # archives kept in the directory, the one just built included


def build(jars: Sequence[str], setting: str = "", force: bool = False, timeout: float = 600.0) -> Path | None:
    """Build this class path's archive unless it exists; returns its path (None when disabled).

    The dump happens when the training JVM exits, into a temporary name renamed into place, so a
    session starting meanwhile never maps a half-written file. Only the ``KEEP`` newest archives of
    the directory stay (each is ~220 MB): two checkouts on one machine (each venv is a class path of
    its own) then do not remove each other's, and archives of old jar sets go.
    """
    path = archive_path(jars, setting)
    if path is None:
        return None
    if path.is_file() and not force:
        print(f"class archive: up to date ({path})")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    started = time.perf_counter()
    print(f"class archive: building {path} (a warm-up batch in a fresh JVM, ~30 s, once per class path)")
    done = subprocess.run(
        [sys.executable, "-m", "jobs.jvm_archive", "--train", str(partial)],
        timeout=timeout,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        print(f"class archive: not built (exit {done.returncode}); sessions start without it\n{tail}")
        return None
    os.replace(partial, path)
    others = sorted(
        (p for p in path.parent.glob(f"{PREFIX}*.jsa") if p != path), key=lambda p: p.stat().st_mtime
    )
    for old in others[: max(0, len(others) - (KEEP - 1))]:
        old.unlink(missing_ok=True)
    print(
        f"class archive: built in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e6:.0f} MB"
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.jvm_archive", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the archive exists")
    parser.add_argument("--train", metavar="PATH", help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args(argv)
    if args.train:
        _train(args.train)
        return 0
    from jobs.config import PipelineConfig
    from jobs.spark_session import find_jars

    config = PipelineConfig.from_env()
    build(find_jars(config.jars_dir), config.class_archive, force=args.force)
    return 0  # a missing archive slows a start, it never breaks one: setup goes on


if __name__ == "__main__":
    sys.exit(main())
