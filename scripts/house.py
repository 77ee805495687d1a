"""The house's imports: which package (room) imports which, and the rules they must keep.

``python scripts/house.py`` prints the arrows between rooms, counted as import statements (at module
level or inside a function), then any rule broken, any import circle between modules and any module
over 450 lines that does not say why it is one file; it exits 1 when there is one. docs/architecture.md draws its picture from this table, and
tests/test_house.py keeps the rules.
"""

from __future__ import annotations

import ast
import collections
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobs", "hosts", "lambda_trigger", "kpi_api", "ecomkpi", "bench")
SPLIT = ("jobs.validation", "jobs.transformation", "ecomkpi.sfn_local")

# Who may import whom: the rooms a room may import as a whole (it may always import itself) ...
MAY_IMPORT: dict[str, set[str]] = {
    "jobs": set(),
    "jobs.validation": {"jobs"},
    "jobs.transformation": {"jobs"},
    "hosts": {"jobs", "jobs.validation", "jobs.transformation"},
    "lambda_trigger": set(),
    "kpi_api": set(),
    "ecomkpi.sfn_local": set(),
    "ecomkpi": {*PACKAGES, *SPLIT} - {"bench"},
    "bench": {*PACKAGES, *SPLIT},
}
# ... and the single modules it may import besides. The two Lambdas' zips carry jobs/aws.py (and the
# package's __init__) and nothing else of the project. The local Step Functions executor knows
# nothing of the pipeline. The transformation reads an accepted file without staging rows as
# validation would have staged it, so it applies validation's drop rules and nothing else of it.
ALSO_MAY_IMPORT: dict[str, set[str]] = {
    "jobs.transformation": {"jobs.validation.rule_counts"},
    "lambda_trigger": {"jobs", "jobs.aws"},
    "kpi_api": {"jobs", "jobs.aws"},
    "ecomkpi.sfn_local": {"jobs", "jobs.aws", "ecomkpi.process_lines"},
}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def room(module: str) -> str:
    two = ".".join(module.split(".")[:2])
    return two if two in SPLIT else module.split(".")[0]


def imports(path: Path) -> Iterator[str]:
    """The project modules ``path`` imports, once per statement: ``from a.b import c`` names a.b
    and, when c is a module, a.b.c (importing it runs a.b's ``__init__`` first)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    mods = modules(root)
    return {m: {i for i in imports(p) if i in mods and i != m} for m, p in mods.items()}


def arrows(edges: dict[str, set[str]]) -> collections.Counter[tuple[str, str]]:
    """(importer's room, imported room) -> how many module-to-module imports cross that way."""
    return collections.Counter(
        (room(src), room(dst)) for src, dsts in edges.items() for dst in dsts if room(src) != room(dst)
    )


def broken_rules(edges: dict[str, set[str]]) -> list[str]:
    def allowed(src: str, dst: str) -> bool:
        home = room(src)
        return room(dst) in {home, *MAY_IMPORT[home]} or dst in ALSO_MAY_IMPORT.get(home, set())

    return sorted(f"{src} -> {dst}" for src, dsts in edges.items() for dst in dsts if not allowed(src, dst))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


LONG_MODULE_LINES = 450
KEPT_WHOLE = "Kept whole:"


def long_modules(root: Path = ROOT, limit: int = LONG_MODULE_LINES) -> list[str]:
    """Modules over ``limit`` lines whose docstring does not say why they are one file (a paragraph
    starting ``Kept whole:``): a long file is split along its seams, or it says why it has none."""
    unexplained = []
    for module, path in sorted(modules(root).items()):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) <= limit:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.startswith(KEPT_WHOLE) for line in doc.splitlines()):
            unexplained.append(module)
    return unexplained


def main() -> int:
    edges = graph()
    for (src, dst), n in sorted(arrows(edges).items()):
        print(f"{src:20} -> {dst:22} {n}")
    problems = [f"rule broken: {b}" for b in broken_rules(edges)]
    problems += [f"import circle: {' -> '.join(c)}" for c in circles(edges)]
    problems += [
        f"{m}: over {LONG_MODULE_LINES} lines, and its docstring does not say why ({KEPT_WHOLE})"
        for m in long_modules()
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
