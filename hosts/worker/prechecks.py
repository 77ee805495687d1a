"""Prechecks: parts validated as they land, before their day is complete; nobody waits for them.

The trigger sends one message per part that lands before its day is complete. Validating it then
(verdict and staging rows recorded, nothing placed) leaves the day's own ValidateData only the
placing, so a day's last upload waits for its last part alone. A broken precheck is only logged: the
day's own run validates the part again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hosts.worker.answers import EXIT_BROKEN
from hosts.worker.heartbeat import Heartbeat, QueueKeeper
from hosts.worker.log import log
from hosts.worker.messages import PRECHECK, PRECHECK_LISTS, Precheck, TaskMessage, parse
from hosts.worker.queue import delete_all, hold, make_visible, waiting
from hosts.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef
    from types_boto3_stepfunctions import SFNClient

GATHER_LIMIT = 100  # messages one precheck run may take
# attempt(command, environments) -> (exit code, error): the worker's run of a job (hosts.worker.loop)
Attempt = Callable[[str, Sequence[Mapping[str, str]]], tuple[int, str]]
Validations = list[tuple[Mapping[str, str], str]]  # waiting validation tasks: (environment, execution)


@dataclass
class PrecheckDay:
    """The prechecks of one day taken together: one run with their key lists merged."""

    lead: Precheck
    lists: dict[str, list[str]] = field(default_factory=dict)
    receipts: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str | None]:
        return self.lead.day

    def add(self, precheck: Precheck, receipt: str) -> None:
        self.receipts.append(receipt)
        for name in PRECHECK_LISTS:
            keys = self.lists.setdefault(name, [])
            keys += [k for k in precheck.key_list(name) if k not in keys]

    def environment(self) -> dict[str, str]:
        """The first message's environment with every message's key lists."""
        merged = dict(self.lead.environment)
        merged.update({name: json.dumps(keys) for name, keys in self.lists.items() if keys})
        return merged


class Prechecks:
    """Serves a precheck message and the others waiting with it, one run per day."""

    def __init__(
        self,
        settings: WorkerSettings,
        sqs: SQSClient,
        sfn: SFNClient,
        base_env: Mapping[str, str],
        attempt: Attempt,
        stopping: threading.Event,
    ) -> None:
        self.settings, self.sqs, self.sfn, self.base_env = settings, sqs, sfn, base_env
        self.attempt, self.stopping = attempt, stopping

    def serve(self, lead: Precheck, receipt: str, queue_url: str) -> None:
        """The other prechecks waiting in the same queue join this one: one run per day, the lead's
        day first (one set of per-run costs per day, and nothing handed back to the queue, whose
        receive count then counts attempts). A day whose own ValidateData already waits in the work
        queue is dropped: that task validates every part of the day in one run anyway.

        Unlike a task's, the messages are deleted when their day's precheck is over (whatever its
        outcome; a stop gives the days not begun back to the queue): until then they stay in flight,
        held by each beat, so a worker that dies meanwhile leaves them to the next one, and on a
        precheck queue of its own a part that kills every worker ends in that queue's DLQ after its
        maxReceiveCount. The tasks waiting in the work queue are kept alive meanwhile, as during a
        task: a backlog of prechecks must not time out the tasks behind it.
        """
        days, validations = self._gather(lead, receipt, queue_url)
        seconds = max(60, int(3 * self.settings.heartbeat_seconds))
        in_flight = [r for day in days for r in day.receipts]
        lock = threading.Lock()
        keeper = QueueKeeper(self.sqs, self.sfn, self.settings.queue_url)

        def keep() -> int:
            with lock:
                hold(self.sqs, queue_url, in_flight, seconds)
            return keeper.keep()

        # Held at once, for three beats: received with the queue's (or waiting()'s) 30 s, the
        # messages would become visible to another worker before the first beat held them, and the
        # same parts would run twice into the same staging folder.
        hold(self.sqs, queue_url, in_flight, seconds)
        beat = Heartbeat(self.sfn, [], self.settings.heartbeat_seconds, lambda _code: None, keep)
        beat.start()
        try:
            for day in days:
                if self.stopping.is_set():  # told to stop: the days not begun go back to the queue
                    break
                try:
                    self._run_day(day, validations)
                finally:
                    with lock:
                        delete_all(self.sqs, queue_url, day.receipts)
                        in_flight[:] = [r for r in in_flight if r not in day.receipts]
        finally:
            beat.stop()
            hold(self.sqs, queue_url, in_flight, 0)  # not begun: visible again for any worker

    def _run_day(self, day: PrecheckDay, validations: Validations) -> None:
        """One day's precheck run, or none when a waiting validation task covers the day.

        A waiting ValidateData of any day covers a precheck of the products master alone: every
        day's validation checks the master first."""
        started = time.perf_counter()
        environment = day.environment()
        batch = environment.get("BATCH_ID")
        covered_by = next(
            (ex for env, ex in validations if (env.get("S3_BUCKET"), env.get("BATCH_ID")) == day.key), None
        )
        if covered_by is None and not any(day.lists.values()):  # the products master alone
            covered_by = next(
                (
                    ex
                    for env, ex in validations
                    if env.get("S3_BUCKET") == day.key[0]
                    and env.get("PRODUCTS_KEY") == environment.get("PRODUCTS_KEY")
                ),
                None,
            )
        if covered_by is not None:
            log(
                "precheck.skipped",
                batch=batch,
                messages=len(day.receipts),
                reason=f"{covered_by} waits to validate the day",
            )
            return
        keys = {k: v for k, v in environment.items() if k.endswith(("_KEY", "_KEYS"))}
        log("precheck.start", batch=batch, messages=len(day.receipts), **keys)
        exit_code, error = self.attempt(PRECHECK, [environment])
        log(
            "precheck.end",
            level="WARN" if exit_code == EXIT_BROKEN else "INFO",
            batch=batch,
            exit_code=exit_code,
            seconds=round(time.perf_counter() - started, 3),
            **({"error": error, "note": "the day's own validation will check the part"} if error else {}),
        )

    def _gather(self, lead: Precheck, receipt: str, queue_url: str) -> tuple[list[PrecheckDay], Validations]:
        """(the prechecks taken, by day, the lead's first; the validation tasks waiting). Other
        messages of ``queue_url`` are made visible again at once."""
        first = PrecheckDay(lead)
        first.add(lead, receipt)
        days = {first.key: first}
        taken = [1]
        validations: Validations = []
        release: list[MessageTypeDef] = []
        for message in waiting(self.sqs, queue_url, lambda: taken[0] >= GATHER_LIMIT):
            other = parse(message.get("Body", ""))
            if isinstance(other, Precheck):
                days.setdefault(other.day, PrecheckDay(other)).add(other, message["ReceiptHandle"])
                taken[0] += 1
                continue
            release.append(message)
            validations += self._validation_of(other)
        make_visible(self.sqs, queue_url, release)
        if queue_url != self.settings.queue_url:  # the validation tasks in the work queue, given back
            tasks = list(waiting(self.sqs, self.settings.queue_url, lambda: False))
            make_visible(self.sqs, self.settings.queue_url, tasks)
            for message in tasks:
                validations += self._validation_of(parse(message.get("Body", "")))
        return list(days.values()), validations

    def _validation_of(self, message: object) -> Validations:
        """[(its environment, its execution)] for a validation task, else []."""
        if not isinstance(message, TaskMessage) or message.command != "validate":
            return []
        return [({**self.base_env, **message.environment}, message.execution or "a validation task")]
