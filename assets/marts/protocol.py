"""How a mart is declared. Every mart shares one protocol, applied here and nowhere else:
the `marts/` key prefix and group, the `warehouse` pool (DuckDB allows one writer per
file), the lake's tables attached as views, an atomic replace of the table, its GX suite
run as a Dagster asset check whose severity follows from `blocking`, the result kept on
disk, and the metadata (row count, grain, a Markdown preview).

Adding a mart is a function and its SQL or frame logic:

    @mart(grain=("vehicle_id", "day"), deps=[odometer_readings],
          check=MartCheck(daily_mileage_suite, "one row per vehicle and day ..."))
    def daily_mileage(build: MartBuild) -> pl.DataFrame:
        '''Vehicle × UTC day: ...'''
        return daily_mileage_frame(read_assessed(build.con))

The function returns the mart's rows (a Polars frame), a SELECT over the warehouse and the
lake's views (a string), or either wrapped in `Built` with extra metadata. `mart_family`
declares several marts computed in one pass (the charging marts). A mart names its grain
and what it reads (`deps`), which is what an incremental build needs to know.
"""

# No `from __future__ import annotations`: Dagster reads the config type from the compute
# function's annotation at definition time.

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb
import great_expectations as gx
import polars as pl

from assets.marts.dictionary import declared_schema
from assets.marts.warehouse_io import MART_SCHEMA, attach_lake, mart_result, replace_table, replace_table_from_frame
from quality.gx_validation import validate
from quality.results import check_result
from storage.resources import LakeResource, WarehouseResource

MART_POOL = "warehouse"  # DuckDB allows one writer per file: every mart asset runs in this pool
MART_GROUP = "marts"
# A mart is rebuilt once whatever it reads was updated (run by Dagster's automation sensor,
# off until turned on). Unlike `eager()` alone, reading days that hold no data (and so were
# never materialized) do not hold a mart back.
MART_AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


@dataclass(frozen=True)
class MartCheck:
    """A check run when a mart is built: a GX suite on the mart's rows (named `<mart>_suite`),
    or an `evaluate` of what was built that returns outcomes by scope (for checks that are
    about the lake rather than the rows). A failed blocking check stops what depends on the
    mart and fails `fleetlake run`; a failed non-blocking one is a warning. `prepare`
    derives the frame the suite sees (extra columns to check)."""

    suite: Callable[[], gx.ExpectationSuite] | None
    description: str
    blocking: bool = False
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    evaluate: Callable[["MartBuild"], dict[str, list[dict]]] | None = None
    name: str | None = None


@dataclass(frozen=True)
class MartSpec:
    """One mart: its table name, what one row is, what it holds, and its check."""

    name: str
    grain: tuple[str, ...]
    description: str
    check: MartCheck | None = None

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([MART_GROUP, self.name])

    def check_spec(self) -> dg.AssetCheckSpec | None:
        if self.check is None:
            return None
        return dg.AssetCheckSpec(self.check.name or f"{self.name}_suite", asset=self.key, blocking=self.check.blocking,
                                 description=self.check.description)


@dataclass(frozen=True)
class MartBuild:
    """What a mart function gets: the lake, a warehouse connection with the lake's tables
    attached as views, the run config (if the mart declares one) and the log."""

    lake: LakeResource
    con: duckdb.DuckDBPyConnection
    config: Any
    log: Any


@dataclass(frozen=True)
class Built:
    """A mart's content, rows or a SELECT, with metadata to show beside it."""

    content: pl.DataFrame | str
    metadata: dict = field(default_factory=dict)


def _write(build: MartBuild, spec: MartSpec, output: "pl.DataFrame | str | Built") -> Iterator:
    built = output if isinstance(output, Built) else Built(output)
    if isinstance(built.content, pl.DataFrame):
        rows = replace_table_from_frame(build.con, spec.name, built.content)
        frame = built.content
    else:
        rows = replace_table(build.con, spec.name, built.content)
        frame = build.con.sql(f"SELECT * FROM {MART_SCHEMA}.{spec.name}").pl() if spec.check and spec.check.suite else None
    result = mart_result(build.con, spec.name, rows, **built.metadata)
    yield dg.MaterializeResult(asset_key=spec.key, metadata={**result.metadata, "grain": ", ".join(spec.grain)})
    if spec.check is not None and spec.check.evaluate is not None:
        yield check_result(build.lake, spec.check_spec(), spec.check.evaluate(build))
    elif spec.check is not None:
        checked = spec.check.prepare(frame) if spec.check.prepare else frame
        # GX's pandas source cannot compare list cells; no expectation is about them.
        checked = checked.select([c for c, t in checked.schema.items() if not isinstance(t, pl.List)])
        outcomes = [o.as_dict() for o in validate(checked, spec.check.suite())]
        yield check_result(build.lake, spec.check_spec(), {"all": outcomes})


def _define(op_name: str, specs: Sequence[MartSpec], deps: Sequence, fn: Callable, config_type: type | None,
            kinds: set[str], description: str | None) -> dg.AssetsDefinition:
    def run(context: dg.AssetExecutionContext, config, lake: LakeResource, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            attach_lake(con, lake)
            build = MartBuild(lake=lake, con=con, config=config, log=context.log)
            outputs = fn(build)
            if len(specs) == 1 and not isinstance(outputs, dict):
                outputs = {specs[0].name: outputs}
            for spec in specs:
                yield from _write(build, spec, outputs[spec.name])

    if config_type is None:
        def compute(context: dg.AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
            yield from run(context, None, lake, warehouse)
    else:
        def compute(context: dg.AssetExecutionContext, config: config_type, lake: LakeResource,  # type: ignore[valid-type]
                    warehouse: WarehouseResource):
            yield from run(context, config, lake, warehouse)

    compute.__name__ = op_name
    return dg.multi_asset(
        name=op_name, description=description, pool=MART_POOL,
        specs=[dg.AssetSpec(spec.key, group_name=MART_GROUP, deps=list(deps), kinds=kinds,
                            description=spec.description, automation_condition=MART_AUTOMATION, metadata={
                                "grain": ", ".join(spec.grain),
                                **({"dagster/column_schema": schema} if (schema := declared_schema(spec.name)) else {})})
               for spec in specs],
        check_specs=[c for c in (spec.check_spec() for spec in specs) if c is not None],
    )(compute)


def mart(*, grain: Sequence[str], deps: Sequence, check: MartCheck | None = None, config: type | None = None,
         name: str | None = None, kinds: Sequence[str] = ("duckdb",)) -> Callable[[Callable], dg.AssetsDefinition]:
    """Declare the mart `marts.<name>` (default: the function's name), described by the
    function's docstring."""
    def declare(fn: Callable) -> dg.AssetsDefinition:
        table = name or fn.__name__
        description = " ".join((fn.__doc__ or "").split())
        spec = MartSpec(table, tuple(grain), description, check)
        return _define(f"{MART_GROUP}__{table}", [spec], deps, fn, config, set(kinds), description)
    return declare


def mart_family(name: str, marts: Sequence[MartSpec], *, deps: Sequence, config: type | None = None,
                kinds: Sequence[str] = ("polars", "duckdb")) -> Callable[[Callable], dg.AssetsDefinition]:
    """Declare several marts computed in one pass by one function, which returns each
    mart's content by name."""
    def declare(fn: Callable) -> dg.AssetsDefinition:
        return _define(name, marts, deps, fn, config, set(kinds), " ".join((fn.__doc__ or "").split()))
    return declare
