"""tests/compat/ holds the tests of the Spark 4.0 runtime (EMR Serverless's ``emr-spark-8.0.0``):
they run where pyspark is 4.0, i.e. in ``make compat`` (the compat venv and its jar cache), and
are not collected on the pinned Spark 4.1 of ``make test``."""

from __future__ import annotations

from pathlib import Path

import pyspark


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return True if not pyspark.__version__.startswith("4.0.") else None
    return None
