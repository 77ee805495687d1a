"""The session factory: Delta and s3a load from the jar cache without copying it per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.spark_session import JarsMissingError, find_jars, jar_conf


def test_local_mode_puts_the_jars_on_the_class_path_and_a_cluster_ships_them() -> None:
    jars = ["/c/delta-spark.jar", "/c/hadoop-aws.jar"]
    assert jar_conf("local[2]", jars) == {
        "spark.driver.extraClassPath": "/c/delta-spark.jar:/c/hadoop-aws.jar"
    }
    assert jar_conf("local[*]", jars) == jar_conf("local", jars)
    assert jar_conf("local-cluster[2,1,1024]", jars) == {"spark.jars": "/c/delta-spark.jar,/c/hadoop-aws.jar"}
    assert jar_conf("spark://host:7077", jars) == {"spark.jars": "/c/delta-spark.jar,/c/hadoop-aws.jar"}


def test_an_empty_cache_names_the_script_that_fills_it(tmp_path: Path) -> None:
    (tmp_path / "delta-spark_2.13-4.0.0.jar").write_bytes(b"")
    with pytest.raises(JarsMissingError, match=r"hadoop-aws.*scripts/fetch_jars\.sh"):
        find_jars(tmp_path)


def test_the_shared_session_loads_delta_and_s3a_with_nothing_shipped(spark: Any) -> None:
    jvm = spark.sparkContext._jvm
    for cls in ("io.delta.tables.DeltaTable", "org.apache.hadoop.fs.s3a.S3AFileSystem"):
        assert jvm.java.lang.Class.forName(cls, False, jvm.Thread.currentThread().getContextClassLoader())
    assert spark.sparkContext._jsc.sc().listJars().size() == 0  # nothing for the file server to copy
    assert spark.sql("SELECT 1 AS one").collect()[0].one == 1
