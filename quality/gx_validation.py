"""Great Expectations 1.x, wrapped for Dagster: one ephemeral GX context per process (GX has no
Dagster integration for 1.x), Polars frames validated through GX's pandas data source, and a
plain summary of the outcome that checks can report and users can read."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import great_expectations as gx


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    condition: str | None
    success: bool
    checked: int
    unexpected: int
    examples: list

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


_context_lock = threading.Lock()


def gx_context():
    """The process's GX context. GX is imported here, on first use, not with the
    definitions: its import is most of a command's start-up (about 3 s), and a build
    starts it in a thread beside ingest (`pipelines.build`), while other threads may ask
    for the context too: it is made once, under a lock."""
    with _context_lock:
        return _new_context()


@cache
def _new_context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory batch by hashing each cell, which costs as much as
    # most suites; the fingerprint is only a batch marker, which nothing here reads.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _columns_used(frame: pl.DataFrame, suite: gx.ExpectationSuite) -> pl.DataFrame:
    """The frame's columns that the suite's expectations name (all of them if one is about
    the table): GX's row conditions filter every column of the batch, a third of the cost of
    a mart's suite."""
    used: set[str] = set()
    for expectation in suite.expectations:
        kwargs = expectation.configuration.kwargs
        if expectation.expectation_type.startswith("expect_table_"):
            return frame
        used.update(c for key in ("column", "column_A", "column_B") if (c := kwargs.get(key)))
        used.update(kwargs.get("column_list") or ())
        condition = str(kwargs.get("row_condition") or "")  # text, or its parsed form
        used.update(c for c in frame.columns if re.search(rf"\b{re.escape(c)}\b", condition))
    return frame.select([c for c in frame.columns if c in used])


def validate(frame: pl.DataFrame, suite: gx.ExpectationSuite) -> list[ExpectationOutcome]:
    """Validate a frame against a suite; one outcome per expectation, in suite order."""
    context = gx_context()
    source_name = "fleetlake_frames"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
    asset_name = f"{suite.name}_frame"
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        definition = asset.get_batch_definition("whole")
    except (KeyError, ValueError, LookupError):
        definition = asset.add_batch_definition_whole_dataframe("whole")
    batch = definition.get_batch(batch_parameters={"dataframe": _columns_used(frame, suite).to_pandas()})
    result = batch.validate(suite, result_format="SUMMARY")
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        kwargs = config.kwargs
        examples = item.result.get("partial_unexpected_list") or []
        outcomes.append(ExpectationOutcome(
            expectation=config.type,
            column=kwargs.get("column") or ",".join(kwargs.get("column_list") or [])
            or ",".join(c for c in (kwargs.get("column_A"), kwargs.get("column_B")) if c) or None,
            condition=kwargs.get("row_condition"),
            success=bool(item.success),
            checked=int(item.result.get("element_count") or frame.height),
            unexpected=int(item.result.get("unexpected_count") or 0),
            examples=[str(x) for x in examples[:5]],
        ))
    return outcomes
