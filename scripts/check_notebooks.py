"""Fail when a committed notebook carries outputs: results belong to runs, not to git.

Fix with `.venv/bin/nbstripout notebooks/*.ipynb`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def dirty_cells(path: Path) -> list[int]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [
        i
        for i, cell in enumerate(nb.get("cells", []))
        if cell.get("cell_type") == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def main(root: str = "notebooks") -> int:
    bad = {str(p): cells for p in sorted(Path(root).glob("**/*.ipynb")) if (cells := dirty_cells(p))}
    for path, cells in bad.items():
        print(f"{path}: cells {cells} have outputs or execution counts; run nbstripout {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
