"""``python -m jobs.validation`` and ``spark-submit jobs/validation/__main__.py``.

spark-submit runs this file as a script: ``__package__`` is empty and sys.path starts with this
directory, not the repository root, so ``import jobs`` would fail (and sibling modules would be
importable under bare names). The fix-up below swaps that entry for the root; under ``-m`` it does
nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    _here = Path(__file__).resolve().parent
    _root = str(_here.parents[1])
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    if _root not in sys.path:
        sys.path.insert(0, _root)

from jobs.validation.job import main

if __name__ == "__main__":
    sys.exit(main())
