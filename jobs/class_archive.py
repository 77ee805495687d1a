"""Where a session finds the class-data-sharing (AppCDS) archive of the Spark driver's classes.

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
``python -m hosts.jvm_archive`` builds it (``make setup`` and the image do), and a session whose
archive is absent starts as before. ``SPARK_CLASS_ARCHIVE=off`` disables it; a path selects a
directory other than ``<jar cache>/../cds``.

This module only finds an archive (the session factory puts it on the driver's command line); the
builder is a host program, ``hosts/jvm_archive.py``, which runs a warm-up batch to train it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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
