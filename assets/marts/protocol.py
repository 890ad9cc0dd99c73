"""How a mart is declared. Every mart shares one protocol, applied here and nowhere else:
the `marts/` key prefix and group, the `warehouse` pool (DuckDB allows one writer per
file), the lake's tables attached as views, an atomic replace of the table (or, for a mart
declared `scoped`, of the rows of the vehicles new data touched: `build_state.py`; its full
build runs in batches of vehicles, committed to a staging table), its GX suite run as a
Dagster asset check whose severity follows from `blocking`, the result kept on disk, and
the metadata (row count, grain, a Markdown preview).

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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import polars as pl

from assets.marts.dictionary import declared_schema
from assets.marts.build_state import (LakeState, MartScope, code_version, fingerprint, forget_mart_builds,
                                      record_state, recorded_state, touched_since)
from assets.marts.warehouse_io import (MART_SCHEMA, add_rows, attach_lake, drop_staging, mart_result,
                                       replace_with_staging, staging_name, transaction, write_table)
from quality.gx_validation import validate
from quality.results import check_result
from storage.memory import release_freed_memory
from storage.resources import LakeResource, WarehouseResource

if TYPE_CHECKING:  # GX is imported on first use (quality.gx_validation.gx_context)
    import great_expectations as gx

MART_POOL = "warehouse"  # DuckDB allows one writer per file: every mart asset runs in this pool
MART_GROUP = "marts"
SCOPE_VIEW = "mart_scope"  # the vehicles a build recomputes (`vehicle_id`), registered on its connection
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

    suite: "Callable[[], gx.ExpectationSuite] | None"
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
    # Whether a build may recompute only some vehicles' rows: the mart's rows for a vehicle
    # depend on that vehicle's data alone (its grain starts with `vehicle_id`).
    scoped: bool = False
    # For a scoped mart whose rows before a vehicle's new data cannot change: the column of
    # its rows and the scope's bound on it (`since` or `since_day`) from which rows are rebuilt.
    window: tuple[str, str] | None = None

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
    attached as views, the run config (if the mart declares one), the log, and the scope:
    the vehicles to recompute (all of them on a full build; `scope.select` filters a frame
    to them, and SQL reads them from the view `mart_scope`)."""

    lake: LakeResource
    con: duckdb.DuckDBPyConnection
    config: Any
    log: Any
    scope: MartScope
    # the warehouse's: at most how many vehicles, and how many of their deliveries, a batch holds
    batch_vehicles: int
    batch_deliveries: int


@dataclass(frozen=True)
class Built:
    """A mart's content, rows or a SELECT, with metadata to show beside it."""

    content: pl.DataFrame | str
    metadata: dict = field(default_factory=dict)


def _store(build: MartBuild, spec: MartSpec, output: "pl.DataFrame | str | Built", how: str,
           table: str) -> tuple[int, Built]:
    """Write a mart's content to `marts.<table>` (inside a transaction): `how` is "whole"
    (the table replaced), "vehicles" (the rows of the scope's vehicles replaced) or "add"
    (the rows of the scope's vehicles added: a batch of a full build)."""
    built = output if isinstance(output, Built) else Built(output)
    view = f"{spec.name}_frame"
    select = f"SELECT * FROM {view}" if isinstance(built.content, pl.DataFrame) else built.content
    if isinstance(built.content, pl.DataFrame):
        build.con.register(view, built.content)
    try:
        if how == "add":
            rows = add_rows(build.con, table, select, SCOPE_VIEW)
        else:
            rows = write_table(build.con, table, select, SCOPE_VIEW if how == "vehicles" else None, spec.window)
    finally:
        if isinstance(built.content, pl.DataFrame):
            build.con.unregister(view)
    return rows, built


def _outcomes(build: MartBuild, spec: MartSpec, built: Built, table: str) -> list[dict]:
    """The mart's GX suite on the rows just written (those of the scope's vehicles on a
    scoped build: the others passed when they were written, and a failed check makes the
    next build a full one)."""
    scoped = spec.scoped and not build.scope.full
    if isinstance(built.content, pl.DataFrame):
        frame = build.scope.select(built.content) if scoped else built.content
    else:
        where = f" WHERE vehicle_id IN (SELECT vehicle_id FROM {SCOPE_VIEW})" if scoped else ""
        frame = build.con.sql(f"SELECT * FROM {MART_SCHEMA}.{table}{where}").pl()
    checked = spec.check.prepare(frame) if spec.check.prepare else frame
    # GX's pandas source cannot compare list cells; no expectation is about them.
    checked = checked.select([c for c, t in checked.schema.items() if not isinstance(t, pl.List)])
    return [o.as_dict() for o in validate(checked, spec.check.suite())]


def _report(build: MartBuild, spec: MartSpec, rows: int, metadata: dict, outcomes: dict[str, list[dict]],
            build_kind: str, batches: int) -> Iterator:
    """The materialization of a mart just written, and its check's result (`outcomes` by
    scope, or the check's own `evaluate` of the build)."""
    total = build.con.sql(f"SELECT count(*) FROM {MART_SCHEMA}.{spec.name}").fetchall()[0][0]
    result = mart_result(build.con, spec.name, total, **metadata)
    scoped = build_kind == "vehicles" and spec.scoped
    yield dg.MaterializeResult(asset_key=spec.key, metadata={
        **result.metadata, "grain": ", ".join(spec.grain), "build": build_kind if spec.scoped else "full",
        "rows_written": rows, **({"vehicles_rebuilt": len(build.scope.vehicles or ())} if scoped else {}),
        **({"batches": batches} if spec.scoped else {})})
    if spec.check is not None and spec.check.evaluate is not None:
        yield check_result(build.lake, spec.check_spec(), spec.check.evaluate(build))
    elif spec.check is not None:
        yield check_result(build.lake, spec.check_spec(), outcomes)


# A full build of scoped marts (rows for a vehicle that depend on that vehicle's data) runs
# in batches of whole vehicles bounded by the warehouse's `batch_vehicles` and
# `batch_deliveries`, each read, computed, checked and committed to a staging table on its
# own, which then replaces the mart in one transaction: memory follows the batch, not the
# fleet nor its history (DuckDB holds what one transaction wrote until it ends).
def bounded_batches(weights: Sequence[tuple[str, int]], most_items: int, most_weight: int) -> list[frozenset[str]]:
    """Consecutive batches of the items (name, weight), each of at most `most_items` items
    and, unless it is one item heavier than that alone, at most `most_weight` in all."""
    batches: list[frozenset[str]] = []
    batch: list[str] = []
    weight = 0
    for item, item_weight in weights:
        if batch and (len(batch) >= most_items or weight + item_weight > most_weight):
            batches.append(frozenset(batch))
            batch, weight = [], 0
        batch.append(item)
        weight += item_weight
    return batches + [frozenset(batch)] if batch else batches


def vehicle_batches(build: MartBuild, share: float = 1.0) -> list[frozenset[str]]:
    """The build's vehicles (every vehicle of the lake on a full build), in sorted batches
    of at most the build's `batch_vehicles` and `batch_deliveries` (times `share`): a
    vehicle's history, which a batch reads whole, grows with the days it covers, and its
    deliveries measure it."""
    counts = dict(build.con.sql("SELECT vehicle_id, count(*) FROM deliveries WHERE vehicle_id IS NOT NULL "
                                "GROUP BY vehicle_id").fetchall())
    weights = [(v, counts.get(v, 0)) for v in sorted(counts if build.scope.full else build.scope.vehicles or ())]
    return bounded_batches(weights, max(int(build.batch_vehicles * share), 1),
                           max(int(build.batch_deliveries * share), 1))


# A mart's rows replaced vehicle by vehicle cost about 1.4 times a new table's per vehicle
# (maintenance: 2.4 s for 200 of 201 vehicles against 1.4 s for all), so a build with new data
# for most of the fleet's vehicles is a full one.
FULL_BUILD_SHARE = 0.75


def covers_fleet(build: MartBuild) -> bool:
    """Whether a scoped build recomputes at least FULL_BUILD_SHARE of the vehicles the lake
    has deliveries of."""
    if build.scope.full or not build.scope.vehicles:
        return False
    fleet = build.con.sql("SELECT count(DISTINCT vehicle_id) FROM deliveries").fetchall()[0][0]
    return len(build.scope.vehicles) >= FULL_BUILD_SHARE * fleet


def _scope(con: duckdb.DuckDBPyConnection, lake: LakeResource, op_name: str, config, specs: Sequence[MartSpec]) -> MartScope:
    """What this build recomputes: every vehicle, unless each mart of the op has a vehicle
    grain and the op's last build is recorded, in which case the vehicles with new data."""
    now = LakeState.of(lake)
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = ?",
                                               [MART_SCHEMA]).fetchall()}
    if not any(s.scoped for s in specs) or any(s.name not in tables for s in specs):
        return MartScope(None, now)
    seen = recorded_state(con, op_name, fingerprint(config))
    if seen is None:
        return MartScope(None, now)
    since = touched_since(lake, seen, now)
    return MartScope(frozenset(since), now, since)


def _define(op_name: str, specs: Sequence[MartSpec], deps: Sequence, fn: Callable, config_type: type | None,
            kinds: set[str], description: str | None,
            widen_scope: Callable[[MartBuild], MartScope] | None = None,
            batches: Callable[[MartBuild], list[frozenset[str]]] | None = vehicle_batches) -> dg.AssetsDefinition:
    # Only an op whose marts are all scoped is built in batches: a batch holds whole vehicles.
    batched_op = batches is not None and all(spec.scoped for spec in specs)

    def run(context: dg.AssetExecutionContext, config, lake: LakeResource, warehouse: WarehouseResource):
        with warehouse.connect() as con:
            attach_lake(con, lake)
            scope = _scope(con, lake, op_name, config, specs)
            build = MartBuild(lake=lake, con=con, config=config, log=context.log, scope=scope,
                              batch_vehicles=warehouse.batch_vehicles, batch_deliveries=warehouse.batch_deliveries)
            con.register(SCOPE_VIEW, build.scope.frame())
            if widen_scope is not None and not scope.full:
                build = replace(build, scope=widen_scope(build))
                con.register(SCOPE_VIEW, build.scope.frame())
            if not any(spec.window for spec in specs) and covers_fleet(build):
                build = replace(build, scope=MartScope(None, scope.lake_state))
                con.register(SCOPE_VIEW, build.scope.frame())
            full = build.scope.full
            # A batched op reads and computes its vehicles (all of them on a full build) in
            # batches: a vehicle's rows may need its whole history. A full build's batches
            # go to a staging table; a scoped one's replace their vehicles' rows in place.
            found = batches(build) if batched_op else []
            parts = [replace(build, scope=build.scope.subset(vehicles)) for vehicles in found]
            parts = parts if len(parts) > 1 else [build]
            staged = full and len(parts) > 1
            in_batches = f", in {len(parts)} batches of vehicles" if len(parts) > 1 else ""
            build_kind = f"full{in_batches}" if full else "vehicles"
            context.log.info(f"{op_name}: " + (build_kind if full else
                                               f"{len(build.scope.vehicles or ())} vehicles with new data{in_batches}"))
            written = {spec.name: 0 for spec in specs}
            metadata: dict[str, dict] = {spec.name: {} for spec in specs}
            outcomes: dict[str, dict[str, list[dict]]] = {spec.name: {} for spec in specs}

            def write(part: MartBuild, first: bool) -> None:
                con.register(SCOPE_VIEW, part.scope.frame())
                outputs = fn(part)
                if len(specs) == 1 and not isinstance(outputs, dict):
                    outputs = {specs[0].name: outputs}
                for spec in specs:
                    table = staging_name(spec.name) if staged else spec.name
                    how = ("whole" if first else "add") if staged else "whole" if full or not spec.scoped else "vehicles"
                    rows, built = _store(part, spec, outputs[spec.name], how, table)
                    written[spec.name] += rows
                    for key, value in built.metadata.items():  # counts add up over batches
                        known = metadata[spec.name].get(key)
                        metadata[spec.name][key] = known + value if isinstance(known, int) else value
                    if spec.check is not None and spec.check.evaluate is None:
                        # every batch's outcomes under one scope: the mart's, as one batch reports it
                        outcomes[spec.name].setdefault("all", []).extend(_outcomes(part, spec, built, table))
                del outputs
                release_freed_memory()

            if staged:
                for spec in specs:
                    drop_staging(con, spec.name)
                for number, part in enumerate(parts):
                    with transaction(con):
                        write(part, first=number == 0)
            with transaction(con):
                if staged:
                    for spec in specs:
                        replace_with_staging(con, spec.name)
                else:
                    for part in parts:
                        write(part, first=True)
                record_state(con, op_name, fingerprint(config), scope.lake_state)
            con.register(SCOPE_VIEW, build.scope.frame())
            results = [r for spec in specs
                       for r in _report(build, spec, written[spec.name], metadata[spec.name], outcomes[spec.name],
                                        build_kind, len(parts))]
            if any(isinstance(r, dg.AssetCheckResult) and not r.passed for r in results):
                forget_mart_builds(con, op_name)  # the failing rows must be checked again, with all others
            yield from results

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
                            description=spec.description, automation_condition=MART_AUTOMATION,
                            code_version=code_version(), metadata={
                                "grain": ", ".join(spec.grain),
                                **({"dagster/column_schema": schema} if (schema := declared_schema(spec.name)) else {})})
               for spec in specs],
        check_specs=[c for c in (spec.check_spec() for spec in specs) if c is not None],
    )(compute)


def mart(*, grain: Sequence[str], deps: Sequence, check: MartCheck | None = None, config: type | None = None,
         name: str | None = None, kinds: Sequence[str] = ("duckdb",), scoped: bool = False,
         window: tuple[str, str] | None = None,
         widen_scope: Callable[[MartBuild], MartScope] | None = None,
         batches: Callable[[MartBuild], list[frozenset[str]]] | None = vehicle_batches,
         ) -> Callable[[Callable], dg.AssetsDefinition]:
    """Declare the mart `marts.<name>` (default: the function's name), described by the
    function's docstring. `scoped`: its rows for a vehicle depend on that vehicle's data
    alone, so a build recomputes only the vehicles with new data (`build.scope`); `window`
    (see `MartSpec`) only their rows from their new data on; `widen_scope` adds to them (or
    makes the build a full one) where other data matters, or moves their `since`. A build
    of a scoped mart runs in the `batches` of its vehicles (None: all at once)."""
    def declare(fn: Callable) -> dg.AssetsDefinition:
        table = name or fn.__name__
        description = " ".join((fn.__doc__ or "").split())
        spec = MartSpec(table, tuple(grain), description, check, scoped, window)
        return _define(f"{MART_GROUP}__{table}", [spec], deps, fn, config, set(kinds), description, widen_scope, batches)
    return declare


def mart_family(name: str, marts: Sequence[MartSpec], *, deps: Sequence, config: type | None = None,
                kinds: Sequence[str] = ("polars", "duckdb"),
                widen_scope: Callable[[MartBuild], MartScope] | None = None,
                batches: Callable[[MartBuild], list[frozenset[str]]] | None = vehicle_batches,
                ) -> Callable[[Callable], dg.AssetsDefinition]:
    """Declare several marts computed in one pass by one function, which returns each
    mart's content by name: for a scoped mart (`MartSpec.scoped`) the rows of the scope's
    vehicles, for the others the whole table (with the rows the warehouse holds for the
    other vehicles). `widen_scope` adds the vehicles whose rows the new data changes through
    others (cars of one model share estimates); `batches` must then keep such vehicles together."""
    def declare(fn: Callable) -> dg.AssetsDefinition:
        return _define(name, marts, deps, fn, config, set(kinds), " ".join((fn.__doc__ or "").split()), widen_scope,
                       batches)
    return declare
