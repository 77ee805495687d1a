"""CPU seconds per test, for the suite's cost: ``pytest -p tests.support.cpu_time --cpu-durations=25``.

`make test` runs three pytest processes on two cores and keeps both busy (99 % for the whole run,
measured with /proc/stat on 2026-12-07), so a test's wall time says more about the other lanes than
about the test. What it costs the machine is the CPU its process tree burns: this process (and the
shared JVM, its child) plus every process it started, live or reaped. Processes that leave the tree
(podman's containers, daemonised servers) are not counted; the report says so.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

_TICK = os.sysconf("SC_CLK_TCK")
_costs: list[tuple[float, str]] = []


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after its closing one
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_seconds(root: int | None = None) -> float:
    """utime + stime of ``root`` and its live descendants, plus what their reaped children used."""
    root = root or os.getpid()
    parents: dict[int, int] = {}
    fields: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = int(stat[1])
                fields[int(entry)] = stat
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(children)
        frontier.extend(children)
    # fields after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based here
    ticks = sum(sum(int(x) for x in fields[pid][11:15]) for pid in tree if pid in fields)
    return ticks / _TICK


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-durations", type=int, default=25, help="list the N tests whose process tree used most CPU"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    before = tree_cpu_seconds()
    yield
    _costs.append((tree_cpu_seconds() - before, item.nodeid))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    count = terminalreporter.config.getoption("--cpu-durations")
    total = sum(c for c, _ in _costs)
    terminalreporter.section(f"CPU seconds of the process tree, top {count} (all tests: {total:.0f} s)")
    for cost, nodeid in sorted(_costs, reverse=True)[:count]:
        terminalreporter.write_line(f"{cost:8.1f}s  {nodeid}")
    terminalreporter.write_line(
        "(setup of module fixtures counts for the module's first test; containers not counted)"
    )
