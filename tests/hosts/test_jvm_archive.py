"""The driver's class archive: used only for the class path and JVM it was built for, never a condition.

Building one takes a minute (a warm-up batch in a fresh JVM), so ``make setup`` does it once and
these tests check what decides whether a session uses it, plus the JVM's own fallback on an archive
that does not fit (the property that makes a stale or damaged archive harmless).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hosts import jvm_archive
from jobs import class_archive
from jobs.config import PipelineConfig
from jobs.spark_session import BASE_JVM_OPTIONS, session_conf


@pytest.fixture
def jars(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache" / "jars"
    cache.mkdir(parents=True)
    paths = [cache / "delta-spark.jar", cache / "hadoop-aws.jar"]
    for p in paths:
        p.write_bytes(b"PK jar")
    return [str(p) for p in paths]


def test_the_archive_sits_beside_the_jar_cache_unless_configured(jars: list[str], tmp_path: Path) -> None:
    default = class_archive.archive_path(jars)
    assert default is not None and default.parent == tmp_path / "cache" / "cds"
    assert default.name.startswith(class_archive.PREFIX) and default.suffix == ".jsa"
    elsewhere = class_archive.archive_path(jars, str(tmp_path / "other"))
    assert elsewhere is not None and elsewhere.parent == tmp_path / "other"
    assert elsewhere.name == default.name
    assert class_archive.archive_path(jars, "off") is None
    assert class_archive.archive_path(jars, " OFF ") is None


def test_another_jar_set_or_a_changed_jar_is_another_archive(jars: list[str]) -> None:
    before = class_archive.archive_path(jars)
    assert class_archive.archive_path(jars[:1]) != before
    Path(jars[0]).write_bytes(b"PK a newer build of the jar")
    assert class_archive.archive_path(jars) != before
    os.utime(jars[1], ns=(1, 1))  # same bytes, another time: the JVM would refuse it, so do we
    assert class_archive.archive_path(jars) not in (before, None)


def test_a_session_maps_the_archive_only_when_it_exists(jars: list[str], tmp_path: Path) -> None:
    config = PipelineConfig.from_env({"SPARK_MASTER": "local[2]", "SPARK_CLASS_ARCHIVE": str(tmp_path / "a")})
    assert config.class_archive == str(tmp_path / "a")
    assert session_conf(config, jars)["spark.driver.extraJavaOptions"] == BASE_JVM_OPTIONS
    path = class_archive.archive_path(jars, config.class_archive)
    assert path is not None
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    options = session_conf(config, jars, short_lived=True)["spark.driver.extraJavaOptions"]
    assert options.split() == [
        *BASE_JVM_OPTIONS.split(),
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-XX:SharedArchiveFile={path}",
    ]
    off = config.with_(class_archive="off")
    assert "SharedArchiveFile" not in session_conf(off, jars)["spark.driver.extraJavaOptions"]


def test_missing_jars_or_java_mean_no_archive_rather_than_a_failed_start(
    jars: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert class_archive.archive_path(["/nowhere/delta-spark.jar"]) is None
    monkeypatch.setenv("JAVA_HOME", "/nowhere")
    assert class_archive.archive_path(jars) is None
    assert class_archive.java_options(jars) == ""


def test_the_jvm_starts_without_sharing_when_the_archive_does_not_fit(tmp_path: Path) -> None:
    """What makes an archive safe to leave behind: the JVM ignores one that is damaged or was built
    for another class path instead of refusing to start (-Xshare:auto, the default)."""
    java = class_archive.java_binary()
    assert java is not None
    damaged = tmp_path / "damaged.jsa"
    damaged.write_bytes(os.urandom(64 * 1024))
    done = subprocess.run(
        [str(java), f"-XX:SharedArchiveFile={damaged}", "-version"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JAVA_TOOL_OPTIONS": ""},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "version" in done.stderr


def test_building_is_skipped_when_disabled_or_present(jars: list[str], tmp_path: Path) -> None:
    assert jvm_archive.build(jars, "off") is None
    path = class_archive.archive_path(jars, str(tmp_path / "a"))
    assert path is not None
    path.parent.mkdir(parents=True)
    path.write_bytes(b"archive")
    assert jvm_archive.build(jars, str(tmp_path / "a")) == path  # no JVM started: it is there


def test_a_new_archive_keeps_the_newest_others(
    jars: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checkouts on one machine (two class paths) must not remove each other's archive; archives
    of jar sets nobody uses any more go, oldest first. The training JVM is stood in for (a minute of
    Spark): it leaves its dump at the path it was given, as -XX:ArchiveClassesAtExit does."""
    folder = tmp_path / "cds"
    folder.mkdir()
    olds = []
    for n in range(4):
        old = folder / f"{class_archive.PREFIX}old{n}.jsa"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 + n, 1_000_000 + n))
        olds.append(old)

    def train(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        Path(command[-1]).write_bytes(b"new archive")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(jvm_archive.subprocess, "run", train)
    built = jvm_archive.build(jars, str(folder))
    assert built is not None and built.read_bytes() == b"new archive"
    kept = sorted(p.name for p in folder.glob("*.jsa"))
    assert kept == sorted([built.name, *(p.name for p in olds[-(jvm_archive.KEEP - 1) :])])
