"""What one thread prints, line by line, to a handler of its own; other threads print as before.

The local stack runs code written for a process of its own in threads of one process: the Lambda
handler (its prints are its CloudWatch log) and, optionally, the warm worker (its prints are a
container's output). ``contextlib.redirect_stdout`` swaps ``sys.stdout`` for every thread, so two
of them overlapping restore each other's stream in the wrong order and catch each other's lines.
Here ``sys.stdout`` becomes one router while any thread is routed; it sends each write by the
writing thread.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

_lock = threading.Lock()


class _Router(io.TextIOBase):
    def __init__(self, real: TextIO) -> None:
        super().__init__()
        self.real = real
        self.routes: dict[int, Callable[[str], None]] = {}
        self.partial: dict[int, str] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        ident = threading.get_ident()
        handler = self.routes.get(ident)
        if handler is None:
            return self.real.write(text)
        *lines, rest = (self.partial.pop(ident, "") + text).split("\n")
        if rest:
            self.partial[ident] = rest
        for line in lines:
            del self.routes[ident]  # what the handler prints itself goes out as usual
            try:
                handler(line)
            finally:
                self.routes[ident] = handler
        return len(text)

    def flush(self) -> None:
        self.real.flush()


@contextmanager
def lines_of_this_thread(handler: Callable[[str], None]) -> Iterator[None]:
    """Within the block, every line this thread prints goes to ``handler`` instead of stdout."""
    ident = threading.get_ident()
    with _lock:
        router = sys.stdout if isinstance(sys.stdout, _Router) else _Router(sys.stdout)
        sys.stdout = router
        router.routes[ident] = handler
    try:
        yield
    finally:
        with _lock:
            router.routes.pop(ident, None)
            rest = router.partial.pop(ident, "")
            if not router.routes and sys.stdout is router:
                sys.stdout = router.real
        if rest:
            handler(rest)
