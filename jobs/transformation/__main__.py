"""``python -m jobs.transformation`` and ``spark-submit jobs/transformation/__main__.py``.

spark-submit runs this file as a script (no package), so the repository root is put on the path
first; the configuration comes from the environment (docs/design.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.transformation.job import main

if __name__ == "__main__":
    raise SystemExit(main())
