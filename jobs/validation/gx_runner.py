"""Running the suites with Great Expectations 1.x on Spark frames, offline, and building Data Docs.

Cost matters more than it seems: GX turns every expectation into Spark jobs, and collecting samples
(``BASIC``) for every expectation of every file roughly triples the jobs. So each file is validated
twice at most: once with ``BOOLEAN_ONLY`` (pass/fail of every rule, few jobs), then only the failed
expectations again with ``BASIC`` to get counts and sample values for the report. A valid file costs
the first pass only. The two results are merged into one per file, which is what Data Docs render.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import great_expectations as gx
from great_expectations.core.result_format import ResultFormat
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from pyspark.sql import DataFrame

SOURCE_NAME = "ecomkpi"
DOCS_SITE = "validation_run"
DETAIL_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 20}
# GX's site also ships tutorial animations of several MB; a run's docs do not need them.
MAX_DOCS_ASSET_BYTES = 300 * 1024

logging.getLogger("great_expectations").setLevel(logging.WARNING)


def docs_label(rel_key: str) -> str:
    """GX store keys may not contain '/', so a file's Data Docs page is named by its flattened key."""
    return rel_key.replace("/", "__")


def _identity(cfg: Any) -> str:
    """An expectation's identity across suites: its type and arguments (GX adds ids and batch ids)."""
    kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    return json.dumps([cfg.type, kwargs], sort_keys=True, default=str)


def _unbound(cfg: Any) -> Any:
    """A copy of a suite's expectation that may join another suite (GX refuses bound ones)."""
    expectation = cfg.to_domain_obj()
    expectation.id = None
    return expectation


class GxRunner:
    """One ephemeral GX context per job run: the suites, one Spark dataframe asset per dataset."""

    def __init__(self, suites: dict[str, Any], run_name: str) -> None:
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        # persist=False: the job caches each file's frame itself, for its own passes and GX's.
        source = self.context.data_sources.add_spark(SOURCE_NAME, persist=False)
        self.suites = {name: self.context.suites.add(suite) for name, suite in suites.items()}
        self.batch_definitions = {
            name: source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            for name in suites
        }
        self.run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
        self.validated = 0

    def validate(self, dataset: str, frame: DataFrame, rel_key: str) -> ExpectationSuiteValidationResult:
        """Validate one file's frame; failed expectations come back with counts and samples."""
        suite = self.suites[dataset]
        batch = self.batch_definitions[dataset].get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=ResultFormat.BOOLEAN_ONLY)
        failed = [r.expectation_config for r in result.results if not r.success]
        if failed:
            detail_suite = gx.ExpectationSuite(
                name=f"{dataset}__failed", expectations=[_unbound(cfg) for cfg in failed]
            )
            detailed = {
                _identity(r.expectation_config): r
                for r in batch.validate(detail_suite, result_format=DETAIL_FORMAT).results
            }
            result.results = [
                r if r.success else detailed.get(_identity(r.expectation_config), r) for r in result.results
            ]
        # GX types ``meta`` as a TypedDict of its own keys; Data Docs read the run from it and the
        # report's page is found by ``file``, which GX's TypedDict does not list: a plain dict here.
        meta = cast("dict[str, Any]", result.meta)
        meta.update(run_id=self.run_id, validation_time=self.run_id.run_time, file=rel_key)
        suite_id = ExpectationSuiteIdentifier(name=suite.name)
        self.context.validation_results_store.store_validation_results(
            result,
            ValidationResultIdentifier(
                expectation_suite_identifier=suite_id,
                run_id=self.run_id,
                batch_identifier=docs_label(rel_key),
            ),
            suite_id,
        )
        self.validated += 1
        return result

    def build_docs(self, directory: Path) -> Path:
        """Render this run's results as a static Data Docs site in ``directory``; returns index.html."""
        self.context.add_data_docs_site(
            site_name=DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(directory),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self.context.build_data_docs(site_names=[DOCS_SITE])
        for path in list(directory.rglob("*")):
            if path.is_file() and path.suffix != ".html" and path.stat().st_size > MAX_DOCS_ASSET_BYTES:
                path.unlink()
        return directory / "index.html"
