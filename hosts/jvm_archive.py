"""Builds the class-data-sharing (AppCDS) archive of the Spark driver's classes, once per class path.

``jobs/class_archive.py`` says why and where an archive lives, and finds it for every session; this
host program makes it: a training JVM runs the warm-up batch (``hosts/warmup.py``) with
``-XX:ArchiveClassesAtExit``, and the archive is renamed into place when that JVM exits.
``python -m hosts.jvm_archive`` (``make setup``, the image's build) builds it when missing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from jobs.class_archive import ARCHIVE_ENV, OFF, PREFIX, archive_path


def _train(dump_to: str) -> None:
    """The workload whose classes go into the archive: the warm-up batch (both jobs on local disk)
    and one s3a round trip through the embedded emulator (the AWS SDK is a large part of the path)."""
    from hosts.warmup import WarmUp
    from jobs import aws
    from jobs.config import PipelineConfig
    from jobs.spark_session import get_spark

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
            aws.client("s3", config).create_bucket(Bucket="class-archive")
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
        [sys.executable, "-m", "hosts.jvm_archive", "--train", str(partial)],
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
    parser = argparse.ArgumentParser(prog="python -m hosts.jvm_archive", description=__doc__.splitlines()[0])
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
