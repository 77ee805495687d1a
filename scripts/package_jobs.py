"""Zip the ``jobs`` package for ``spark-submit --py-files`` (cluster deploy mode, EMR, Kubernetes).

The driver imports ``jobs`` from the zip; executors never import it (the jobs use no Python UDFs),
so the zip only has to carry the Python sources, plus ``expectations/*.json``: where the repository is
not on the driver (EMR Serverless), scripts/emr_serverless_entry.py extracts the suites from it.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(out: Path = ROOT / "dist" / "ecomkpi_jobs.zip") -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ROOT / "jobs").rglob("*.py")):
            zf.write(path, path.relative_to(ROOT).as_posix())
        for path in sorted((ROOT / "expectations").glob("*.json")):
            zf.write(path, path.relative_to(ROOT).as_posix())
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist" / "ecomkpi_jobs.zip"))
