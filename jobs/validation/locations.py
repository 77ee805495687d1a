"""Every key the validation job reads or writes, in one place.

The layout is a contract with the transformation job, the local demo and people browsing the
bucket (docs/design.md): a file keeps its relative key for life and only its stage prefix changes;
everything the job records about a run lives under ``logs/validation/<batch>/<run>``.
"""

from __future__ import annotations

from jobs.keys import INVALID, PROCESSED, RAW, VALIDATED, stage_key

# Object metadata on copies in validated/ (and invalid/). CONTRACT with the transformation job,
# which orders a file's versions by arrival: do not rename.
META_RAW_ETAG = "ecomkpi-raw-etag"
META_ARRIVED_MS = "ecomkpi-arrived-ms"

LOG_ROOT = "logs/validation"
VERDICTS_PREFIX = f"{LOG_ROOT}/verdicts"
SCHEMAS_PREFIX = f"{LOG_ROOT}/schemas"  # the forms of each dataset's header seen so far (drift.py)
SUPERSEDED_PREFIX = f"{INVALID}/superseded"


def raw_key(rel: str) -> str:
    return stage_key(RAW, rel)


def validated_key(rel: str) -> str:
    return stage_key(VALIDATED, rel)


def processed_key(rel: str) -> str:
    return stage_key(PROCESSED, rel)


def invalid_key(rel: str) -> str:
    return stage_key(INVALID, rel)


def invalid_report_key(rel: str) -> str:
    return f"{invalid_key(rel)}.report.json"


def superseded_key(rel: str, etag: str) -> str:
    """Where a rejected version goes once a corrected upload of the same file has passed."""
    return f"{SUPERSEDED_PREFIX}/{rel}.{etag or 'unknown-etag'}"


def verdict_key(rel: str) -> str:
    return f"{VERDICTS_PREFIX}/{rel}.json"


def run_prefix(batch_id: str, run_id: str) -> str:
    return f"{LOG_ROOT}/{batch_id}/{run_id}"


def run_log_key(batch_id: str, run_id: str) -> str:
    return f"{LOG_ROOT}/{batch_id}/{run_id}.log"


def run_report_key(batch_id: str, run_id: str, rel: str) -> str:
    return f"{run_prefix(batch_id, run_id)}/reports/{rel}.json"


def summary_key(batch_id: str, run_id: str) -> str:
    return f"{run_prefix(batch_id, run_id)}/summary.json"


def rejections_key(batch_id: str, run_id: str) -> str:
    """Plain text naming each rejected file, its failed rules and its report: the failure alert quotes it."""
    return f"{run_prefix(batch_id, run_id)}/rejections.txt"


def data_docs_prefix(batch_id: str, run_id: str) -> str:
    return f"{run_prefix(batch_id, run_id)}/data_docs"


def data_docs_index(batch_id: str, run_id: str) -> str:
    """The Data Docs site's index (GX writes it at the top of the prefix): what reports link to."""
    return f"{data_docs_prefix(batch_id, run_id)}/index.html"
