"""The validation job (container task ``ValidateData``): a verdict for every incoming file.

``run(config, spark=None) -> ValidationResult`` is the in-process API (tests, notebooks);
``main() -> int`` the container entry point (``python -m jobs.validation``,
``spark-submit jobs/validation/__main__.py``). See README.md in this package for the rules, the
report format and the exit codes.
"""

from __future__ import annotations

import os

# Great Expectations must never try to phone home: the Fargate tasks run without internet egress.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from jobs.validation.job import main, run
from jobs.validation.outcomes import EXIT_BROKEN, EXIT_OK, EXIT_REJECTED, FileOutcome, ValidationResult

__all__ = ["EXIT_BROKEN", "EXIT_OK", "EXIT_REJECTED", "FileOutcome", "ValidationResult", "main", "run"]
