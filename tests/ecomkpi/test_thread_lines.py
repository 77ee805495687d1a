"""Lines printed by routed threads reach their own handlers, in any overlap; the rest stdout."""

from __future__ import annotations

import sys
import threading

import pytest

from ecomkpi.thread_lines import lines_of_this_thread


def test_overlapping_threads_keep_their_own_lines_and_stdout_comes_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdout = sys.stdout
    got: dict[str, list[str]] = {"a": [], "b": []}
    a_in, b_in, a_may_leave = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with lines_of_this_thread(got["a"].append):
            a_in.set()
            b_in.wait(5)
            print("from a")
            a_may_leave.wait(5)
        print("a after its block")

    def b() -> None:
        a_in.wait(5)
        with lines_of_this_thread(got["b"].append):
            b_in.set()
            print("from b", end="")  # no newline: handed over when the block ends
        a_may_leave.set()  # b leaves first: a must stay routed

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    b_in.wait(5)
    print("main, unrouted")
    for t in threads:
        t.join(5)
    assert got == {"a": ["from a"], "b": ["from b"]}
    assert sorted(capsys.readouterr().out.splitlines()) == ["a after its block", "main, unrouted"]
    assert sys.stdout is stdout


def test_what_a_handler_prints_goes_to_stdout_not_back_to_itself(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def handler(line: str) -> None:
        seen.append(line)
        print(f"handled {line}")

    with lines_of_this_thread(handler):
        print("one\ntwo")
    assert seen == ["one", "two"]
    assert capsys.readouterr().out.splitlines() == ["handled one", "handled two"]
