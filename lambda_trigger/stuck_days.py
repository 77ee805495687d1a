"""Days that wait too long: one routable alert per wait, from the scheduled sweep.

A day waits when its files are not all there: the manifest names parts that never came, the
products master never arrived, or only orders (or only items) did. Nothing fails, so no execution
alerts; the day just never runs, and a dashboard shows yesterday as missing. The sweep already reads
every open day; a day that has not run, still waits, and has had no new upload for
``STUCK_AFTER_MINUTES`` (default 120) gets one SNS message to the alerts topic with attributes
``kind=stuck_day``, ``severity=warning``, ``day`` and ``waiting_for`` (``parts``, ``products``,
``orders``, ``order_items``), so a subscription filter can route it like the workflow's alerts
(docs/alerts.md).

One alert per wait, not per sweep: the tracker item records which wait was announced
(``stuck_alerted_for`` = the time of the last upload), with a conditional write made before the
publish; a new upload starts a new wait, which may alert again if it stalls too. A publish that
fails takes the mark back, so the next sweep tries again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jobs.aws import sns_attributes
from lambda_trigger import log
from lambda_trigger.states import BatchStatus
from lambda_trigger.tracker import BatchFileTracker, BatchState

if TYPE_CHECKING:
    from types_boto3_sns import SNSClient

KIND = "stuck_day"
DEFAULT_AFTER_MINUTES = 120.0
WAITING = (BatchStatus.PENDING, BatchStatus.WAITING_FOR_PRODUCTS)
LISTED_KEYS = 20  # missing parts named in the message; the rest are counted


def waiting_for(state: BatchState) -> str:
    """What the day lacks, the most specific first."""
    if state.missing_keys:
        return "parts"
    if not state.orders_files_arrived:
        return "orders"
    if not state.order_items_files_arrived:
        return "order_items"
    return "products"


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class StuckDays:
    tracker: BatchFileTracker
    sns: SNSClient
    topic_arn: str
    clock: Callable[[], datetime]
    after_minutes: float = DEFAULT_AFTER_MINUTES

    def check(self, batch_id: str) -> bool:
        """Alert if ``batch_id`` is stuck and its wait was not announced yet; True if it alerted."""
        state = self.tracker.get(batch_id)
        if state is None or state.running or state.status not in WAITING or not state.waiting_since:
            return False
        since = _parse(state.waiting_since)
        if since is None or self.clock() - since < timedelta(minutes=self.after_minutes):
            return False
        if state.stuck_alerted_for == state.waiting_since:
            return False
        if not self.tracker.mark_stuck_alerted(batch_id, state.waiting_since):
            return False  # another sweep announced it, or an upload moved the wait on
        try:
            self._publish(state)
        except Exception:
            self.tracker.unmark_stuck_alerted(batch_id, state.waiting_since)
            raise
        log.warn(
            f"Daily Batch ID {batch_id} has waited since {state.waiting_since} for {waiting_for(state)}."
        )
        return True

    def _publish(self, state: BatchState) -> None:
        lacking = waiting_for(state)
        missing = sorted(state.missing_keys)
        lines = {
            "parts": f"The manifest {state.manifest_key} names {len(missing)} part(s) that have not arrived:\n"
            + "".join(f"- {k}\n" for k in missing[:LISTED_KEYS])
            + (f"- and {len(missing) - LISTED_KEYS} more\n" if len(missing) > LISTED_KEYS else ""),
            "orders": "No orders file has arrived for the day.\n",
            "order_items": "No order items file has arrived for the day.\n",
            "products": "The products master data (raw/products/) has never arrived.\n",
        }
        self.sns.publish(
            TopicArn=self.topic_arn,
            Subject=f"ecomkpi: day {state.batch_id} is waiting for {lacking.replace('_', ' ')}"[:100],
            Message=(
                f"Day {state.batch_id} has not run: it is still {state.status} since its last upload at "
                f"{state.waiting_since} (over {self.after_minutes:g} minutes).\n\n{lines[lacking]}\n"
                f"Orders files: {len(state.orders_keys)}, order items files: {len(state.order_items_keys)}.\n"
                "Upload what is missing (or a corrected manifest) and the day runs; the tracker item "
                f"BatchId={state.batch_id} holds the day's state.\n"
            ),
            MessageAttributes=sns_attributes(
                kind=KIND, severity="warning", day=state.batch_id, waiting_for=lacking
            ),
        )
