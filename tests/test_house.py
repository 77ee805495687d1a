"""The house's rules (scripts/house.py, docs/architecture.md): every import runs down the floors or
is a named exception, and no modules import each other in a circle. Static: the code is parsed,
not imported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def house() -> ModuleType:
    spec = importlib.util.spec_from_file_location("house", ROOT / "scripts" / "house.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["house"] = module
    spec.loader.exec_module(module)
    return module


def test_the_code_keeps_the_rules_and_has_no_import_circle(house: ModuleType) -> None:
    edges = house.graph()
    assert {"jobs.kpis", "hosts.worker.loop", "lambda_trigger.handler"} <= set(edges)
    assert house.broken_rules(edges) == []
    assert house.circles(edges) == []
    assert house.long_modules() == []


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_an_upward_import_and_a_circle_are_found(house: ModuleType, tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "jobs/__init__.py": "",
            "jobs/aws.py": "",
            "jobs/kpis.py": "def f():\n    from hosts.worker import loop\n",  # ground reaching up
            "jobs/validation/__init__.py": "from jobs.validation.job import run\n",
            "jobs/validation/job.py": "from jobs.validation import locations\nrun = 1\n",
            "jobs/validation/locations.py": "",
            "hosts/__init__.py": "",
            "hosts/worker/__init__.py": "",
            "hosts/worker/loop.py": "from jobs.validation.job import run\n",
            "lambda_trigger/__init__.py": "",
            "lambda_trigger/handler.py": "from jobs import aws\nfrom jobs.kpis import f\n",
        },
    )
    edges = house.graph(tmp_path)
    assert house.broken_rules(edges) == [
        "jobs.kpis -> hosts.worker",  # importing loop runs the package's __init__ first
        "jobs.kpis -> hosts.worker.loop",
        "lambda_trigger.handler -> jobs.kpis",
    ]
    # The package's __init__ imports job, which imports the package (for locations): a circle.
    assert house.circles(edges) == [["jobs.validation", "jobs.validation.job"]]
    arrows = house.arrows(edges)
    assert arrows["hosts", "jobs.validation"] == 1 and arrows["jobs", "hosts"] == 2


def test_a_long_module_must_say_why_it_is_one_file(house: ModuleType, tmp_path: Path) -> None:
    body = "x = 1\n" * 30
    _tree(
        tmp_path,
        {
            "jobs/__init__.py": "",
            "jobs/long.py": '"""Many things."""\n' + body,
            "jobs/explained.py": '"""Many things.\n\nKept whole: one table, one class."""\n' + body,
            "jobs/short.py": '"""Few things."""\n',
        },
    )
    assert house.long_modules(tmp_path, limit=20) == ["jobs.long"]
