"""Heartbeats: for the tasks a run serves (``Heartbeat``) and for those still waiting (``QueueKeeper``).

A worker-mode Task state fails with ``States.HeartbeatTimeout`` when no beat comes for
``HeartbeatSeconds``: that is how a dead worker is noticed. So a live worker must beat for every task
it holds, and also for the tasks queued behind its run, which would otherwise time out unseen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hosts.worker.log import log
from hosts.worker.messages import TaskMessage, Unreadable, parse
from hosts.worker.queue import make_visible

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef
    from types_boto3_stepfunctions import SFNClient

# What Step Functions answers for a token whose state no longer waits (timed out, retried, ended).
STALE_TOKEN_ERRORS = ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist")


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return (response or {}).get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


class QueueKeeper:
    """Heartbeats the tasks still waiting in the work queue while this worker is busy.

    The heartbeat clock of a task starts when the workflow sends it, so a task queued behind other
    batches (ten days landing at once on one worker) would time out without ever having run. While
    any worker lives, it keeps them alive: it receives the waiting messages for a moment, beats
    each token, and makes them visible again at once, so another worker (scaling out) can still
    take them. A message whose attempt already ended is deleted: its retry has a message of its own.
    """

    def __init__(
        self, sqs: SQSClient, sfn: SFNClient, queue_url: str, hold_seconds: int = 30, limit: int = 100
    ) -> None:
        self.sqs, self.sfn, self.queue_url = sqs, sfn, queue_url
        self.hold_seconds, self.limit = hold_seconds, limit

    def keep(self) -> int:
        """One pass; returns how many waiting tasks were kept alive."""
        held: dict[str, MessageTypeDef] = {}
        while len(held) < self.limit:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=self.hold_seconds,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in held]
            held.update((m["MessageId"], m) for m in messages)
            if not fresh:
                break
        kept, release = 0, []
        for message in held.values():
            parsed = parse(message.get("Body", ""))
            token = parsed.token if isinstance(parsed, TaskMessage | Unreadable) else None
            try:
                if token:
                    self.sfn.send_task_heartbeat(taskToken=token)
                    kept += 1
                release.append(message)
            except Exception as exc:
                if error_code(exc) in STALE_TOKEN_ERRORS:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    release.append(message)
        make_visible(self.sqs, self.queue_url, release)
        return kept


class Heartbeat(threading.Thread):
    """Beats for the tasks of one run until stopped; tells ``on_lost`` once when every state gave up
    on its token (a coalesced run goes on while any of its tasks is still waited for).

    With a ``keeper`` each beat also keeps the tasks waiting in the queue alive.
    """

    def __init__(
        self,
        sfn: SFNClient,
        tokens: Sequence[str],
        interval: float,
        on_lost: Callable[[str], None],
        keeper: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(name="worker-heartbeat", daemon=True)
        self.sfn, self.tokens, self.interval, self.on_lost = sfn, list(tokens), interval, on_lost
        self.keeper = keeper
        self.done = threading.Event()
        self.lost_tokens: set[str] = set()
        # Held while one token's beat is sent: release() waits for it, so no beat follows an answer.
        self._sending = threading.Lock()

    @property
    def lost(self) -> bool:
        return bool(self.tokens) and all(t in self.lost_tokens for t in self.tokens)

    def release(self, token: str) -> None:
        """Stop beating ``token`` (it is about to be answered); the others keep beating meanwhile.

        A run's tasks are answered one after the other: when an answer is slow (a busy emulator took
        5 s), the tasks not answered yet must not miss their heartbeat. A beat sent after the answer
        would find the token closed, so the token leaves the list before its answer goes out.
        """
        with self._sending:
            if token in self.tokens:
                self.tokens.remove(token)

    def abandon_all(self) -> list[str]:
        """Stop beating every task and count each as given up (its answer is not sent): the tokens."""
        with self._sending:
            tokens, self.tokens = list(self.tokens), []
            self.lost_tokens.update(tokens)
        return tokens

    def run(self) -> None:
        while not self.done.wait(self.interval):
            for token in list(self.tokens):
                with self._sending:
                    if token in self.lost_tokens or token not in self.tokens:
                        continue
                    try:
                        self.sfn.send_task_heartbeat(taskToken=token)
                        continue
                    except Exception as exc:
                        code, error = error_code(exc), f"{type(exc).__name__}: {exc}"
                    if code in STALE_TOKEN_ERRORS:
                        self.lost_tokens.add(token)
                        if not self.lost:
                            continue
                if code in STALE_TOKEN_ERRORS:
                    self.on_lost(code)
                    return
                log("heartbeat.error", level="WARN", error=error)
            if self.keeper is not None and not self.done.is_set():
                try:
                    self.keeper()
                except Exception as exc:
                    log("queue.keep.error", level="WARN", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
