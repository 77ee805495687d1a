"""The analyst notebooks run headless on tiny generated data, so a broken cell fails the build.

Each notebook runs in its own kernel (the venv's ``python3``: jupyter_client starts it with this
interpreter) inside a temporary working directory, with environment variables that point it at small
data, so nothing is written into the repository. Every notebook starts one SparkSession; with no
data given, data_quality runs the validation job twice and kpi_exploration the transformation job
twice (against an in-process emulator) to make their own, so those two cost minutes, not seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

# notebook kernels start JVMs of their own
pytestmark = [pytest.mark.slow, pytest.mark.own_jvms]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
# Budget per notebook (whole notebook, not per cell). It catches a hung kernel, not a slow one: on a
# two-core machine shared with other Spark processes kpi_exploration took up to ~9 minutes. Past it
# the kernel and its JVM are killed and the test fails.
NOTEBOOK_TIMEOUT = int(os.environ.get("ECOMKPI_NB_TIMEOUT", "1200"))

# Small enough that Spark's start dominates; the notebooks read these in their parameters cell.
TINY = {
    "ECOMKPI_NB_DAYS": "3",
    "ECOMKPI_NB_ORDERS_PER_DAY": "25",
    "ECOMKPI_NB_SEED": "11",
    "SPARK_MASTER": "local[2]",
    "SPARK_SHUFFLE_PARTITIONS": "2",
}
# Inherited settings that would point a notebook at data it did not build. MPLBACKEND unset lets
# ipykernel choose matplotlib-inline: figures rendered headless by Agg and kept as PNG outputs.
NOT_INHERITED = ("AWS_ENDPOINT_URL", "LAKE_PATH", "ECOMKPI_DATA_DIR", "ECOMKPI_VALIDATION_LOGS", "MPLBACKEND")


class KernelGroup:
    """The kernel's process group: the kernel, its Spark JVM and Python workers.

    A notebook that fails or overruns must not leave a JVM behind on a shared machine, so the group
    is killed after every run (a no-op when the kernel shut down cleanly) and on timeout.
    """

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.timed_out = False

    def started(self, client: nbclient.NotebookClient) -> None:
        pgid = getattr(client.km.provisioner, "pgid", None)
        if pgid and pgid != os.getpgid(0):  # never our own group
            self.pgid = pgid

    def kill(self, timed_out: bool = False) -> None:
        self.timed_out |= timed_out
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)


def run_notebook(name: str, workdir: Path, env: dict[str, str]) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``notebooks/<name>`` in ``workdir``; raises CellExecutionError naming the failing cell."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=NOTEBOOK_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
        allow_errors=False,
    )
    group = KernelGroup()
    client.on_notebook_start = lambda **_: group.started(client)
    full_env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED} | env
    watchdog = threading.Timer(NOTEBOOK_TIMEOUT, group.kill, kwargs={"timed_out": True})
    started = time.monotonic()
    watchdog.start()
    try:
        client.execute(env=full_env)
    except Exception as exc:
        if group.timed_out:
            raise AssertionError(f"{name} did not finish within {NOTEBOOK_TIMEOUT}s") from exc
        raise
    finally:
        watchdog.cancel()
        group.kill()
    return nb, time.monotonic() - started


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(str(out.get("data", {}).get("text/plain", "")))
            parts.append(str(out.get("data", {}).get("text/html", "")))
    return "\n".join(parts)


def image_count(nb: nbformat.NotebookNode) -> int:
    return sum(
        1 for cell in nb.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})
    )


def repo_entries() -> set[str]:
    """Top-level entries of the repository that git does not ignore (the notebooks must write only
    to temp dirs; tests in the other lanes may meanwhile make ignored ones, such as out/)."""
    names = sorted(p.name for p in ROOT.iterdir())
    ignored = subprocess.run(
        ["git", "check-ignore", "--", *names], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    return set(names) - set(ignored) - {".git"}


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    before = repo_entries(), {p.name for p in NOTEBOOKS.iterdir()}
    yield tmp_path
    after = repo_entries(), {p.name for p in NOTEBOOKS.iterdir()}
    assert after == before, "a notebook left files in the repository"


def test_notebooks_are_committed_without_outputs():
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.name for p in paths} >= {"kpi_exploration.ipynb", "kpi_development.ipynb", "data_quality.ipynb"}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path


def test_kpi_development(workdir: Path):
    nb, seconds = run_notebook("kpi_development.ipynb", workdir, TINY)
    text = outputs_text(nb)
    assert "raw files in" in text  # generated data, not a lake
    assert "consistent with DailyKPIs on" in text
    assert "daily_avg_order_value matches the hand-worked example" in text
    assert image_count(nb) >= 1
    print(f"kpi_development: {seconds:.1f}s")


def test_data_quality(workdir: Path):
    nb, seconds = run_notebook("data_quality.ipynb", workdir, TINY)
    text = outputs_text(nb)
    assert "2 runs" in text
    for rule in ("sale_price is numeric", "sale_price >= 0", "file is text, not binary", "column is present"):
        assert rule in text, rule
    assert "data_docs/index.html" in text
    # The sample's dropped row, read back from the lake's quarantine table.
    assert "transformed: ok, 3 files applied" in text
    assert "status is a known order status" in text and "orders/2025-07-10/orders_part1.csv" in text
    assert image_count(nb) >= 3
    print(f"data_quality: {seconds:.1f}s")


def test_kpi_exploration(workdir: Path):
    lake = workdir / "lake"
    nb, seconds = run_notebook("kpi_exploration.ipynb", workdir, {**TINY, "LAKE_PATH": str(lake)})
    text = outputs_text(nb)
    assert (lake / "gold_daily_kpis" / "_delta_log").is_dir()  # built where LAKE_PATH pointed
    assert "date(s) changed" in text and "0 date(s) changed" not in text
    assert image_count(nb) >= 5
    print(f"kpi_exploration: {seconds:.1f}s")
