"""The `fleetlake` command."""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from datetime import date
from pathlib import Path

from storage.errors import UserError
from storage.data_dir import DEFAULT_DATA_DIR, existing_data_dir, init_data_dir, usable_data_dir
from storage.files import make_owner_only


def _resources(data_dir: str) -> dict:
    from storage.resources import LakeResource, WarehouseResource

    return {"lake": LakeResource(data_dir=data_dir), "warehouse": WarehouseResource(data_dir=data_dir)}


def _print_report(report, data_dir: str) -> None:
    health = report.metadata.get("raw_deliveries", {})
    print(f"ingest: {health.get('new_files', 0)} new files, {health.get('new_landing_lines', 0)} lines "
          f"→ {health.get('new_parsed', 0)} parsed, {health.get('new_duplicates', 0)} duplicates, "
          f"{health.get('new_quarantined', 0)} quarantined; {health.get('new_files_quarantined', 0)} files quarantined "
          f"(unreadable or broken gzip, see lake/quarantine/files)")
    readings = report.metadata.get("readings", {})
    print(f"readings: {len(report.days_rebuilt)} days rebuilt, {readings.get('dagster/row_count', 0)} readings, "
          f"{readings.get('signal_errors', 0)} signal errors, {readings.get('signals_quarantined', 0)} signals quarantined")
    marts = {k: v for k, v in report.metadata.items() if k.startswith("marts/")}
    for key, meta in sorted(marts.items()):
        print(f"  {meta.get('table', key)}: {meta.get('dagster/row_count')} rows")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for name in report.failed_checks:
        why = f" — {report.check_reasons[name]}" if report.check_reasons.get(name) else ""
        print(f"FAILED: critical check {name}{why}; the build stopped here. See {data_dir}/lake/quality/",
              file=sys.stderr)
    for error in report.errors:
        print(f"FAILED: {error}", file=sys.stderr)
    if report.seconds:
        from pipelines.progress import STAGES

        stages = ", ".join(f"{STAGES.get(job, job)} {seconds:.1f} s" for job, seconds in report.seconds.items())
        print(f"time: {sum(report.seconds.values()):.1f} s ({stages})")
    if report.ok:
        print(f"warehouse: {Path(data_dir) / 'warehouse.duckdb'} (schema marts)")


def cmd_init(args) -> int:
    path, created = init_data_dir(args.dir or args.data_dir)
    if created:
        print(f"created the data directory {path}: put Smartcar deliveries (*.ndjson, *.ndjson.gz) in "
              f"{path / 'landing'}/, then run `fleetlake --data-dir {path} run`")
    else:
        print(f"{path} is a data directory already (landing files go in {path / 'landing'}/)")
    return 0


RESTARTED = "FLEETLAKE_RUN_RESTARTED"  # set when `run` goes on in a fresh process


def cmd_run(args) -> int:
    existing_data_dir(args.data_dir)  # before the imports, which take seconds
    from pipelines.build import build_everything, instance_for_cli
    from pipelines.definitions import build_definitions
    from pipelines.progress import TerminalProgress
    from pipelines.reports.next_steps import next_steps
    from rich.console import Console

    defs = build_definitions(_resources(args.data_dir))
    # Dagster's own log shows with -v; without it, the report below says what failed (and a
    # failed check is no reason for a traceback on the terminal).
    log_level = "INFO" if args.verbose else "CRITICAL"
    console = Console()
    with instance_for_cli(args.data_dir) as instance:
        if console.is_terminal and not args.verbose:  # progress on a terminal; quiet in a pipe or a log
            with TerminalProgress(console) as progress:
                report = build_everything(defs, instance, log_level=log_level, progress=progress)
        else:
            report = build_everything(defs, instance, log_level=log_level)
    if report.partitions_moved_to is not None and not os.getenv(RESTARTED):
        # Readings of days before the first partition this process loaded: the partitions are
        # fixed when the definitions load, so go on in a fresh process that loads them anew.
        print(f"readings arrived for days from {report.partitions_moved_to}, before the first partition; "
              "building them in a fresh process", flush=True)
        os.environ[RESTARTED] = "1"
        os.execv(sys.executable, [sys.executable, "-m", "pipelines.cli", "--data-dir", args.data_dir,
                                  *(["-v"] if args.verbose else []), "run"])
    if report.partitions_moved_to is not None:  # even a fresh process could not build them
        report.errors.append(f"the readings of days from {report.partitions_moved_to} are outside the partitions")
    _print_report(report, args.data_dir)
    if report.ok:
        print(next_steps(Path(args.data_dir)))
    return 0 if report.ok else 1


def cmd_simulate(args) -> int:
    from pipelines.sources.simulator import SimulationConfig, simulate_fleet

    usable_data_dir(args.data_dir)
    try:
        config = SimulationConfig(seed=args.seed, vehicles=args.vehicles, days=args.days, start=args.start,
                                  interval_minutes=args.interval)
    except ValueError as error:  # the options' other limits, as the simulator states them
        raise UserError(f"bad simulation option: {error}") from None
    data_dir = Path(args.data_dir)
    summary = simulate_fleet(config, landing_dir=data_dir / "landing", truth_dir=data_dir / "ground_truth")
    print(f"simulated {config.vehicles} vehicles × {config.days} days at {config.interval_minutes} min: "
          f"{summary.lines:,} lines in {summary.files} files ({summary.deliveries:,} deliveries, "
          f"{summary.duplicates:,} duplicates, {summary.malformed} malformed) → {data_dir / 'landing'}; "
          f"ground truth in {data_dir / 'ground_truth'}")
    return 0


def cmd_demo(args) -> int:
    cmd_simulate(args)
    return cmd_run(args)


def cmd_maintenance(args) -> int:
    from pipelines.reports.maintenance import attention_table, needing_attention, read_forecast
    from storage.resources import WarehouseResource

    forecast = read_forecast(WarehouseResource(data_dir=args.data_dir))
    due = needing_attention(forecast, args.due_within)
    print(attention_table(due) if due.height else f"nothing needs attention within {args.due_within:g} days")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _whole(low: int, high: int | None = None):
    """An argparse type: a whole number from `low` (to `high`)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            limits = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {limits}: {text!r}")
        return value
    return parse


def _days(text: str) -> float:
    """A non-negative number of days (fractions allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of days, 0 or more: {text!r}")
    return value


def cmd_mileage(args) -> int:
    from storage.resources import WarehouseResource
    from pipelines.reports.statements import (known_vehicles, mileage_statement, status_summary, vehicle_label,
                                              write_statement)
    from storage.files import inside

    if args.all and args.vehicle_ids:
        raise UserError("give vehicle ids or --all, not both")
    with WarehouseResource(data_dir=args.data_dir).connect(read_only=True) as con:
        vehicles = sorted(known_vehicles(con)) if args.all else args.vehicle_ids
        statement = mileage_statement(con, vehicles, args.start, args.end)
    label = "all" if args.all else vehicle_label(vehicles[0]) if len(vehicles) == 1 else f"{len(vehicles)}-vehicles"
    # The default name is never a path built from data (see vehicle_label), and it stays in statements/.
    statements = Path(args.data_dir) / "statements"
    stem = Path(args.output) if args.output else inside(statements, statements / f"mileage-{args.start}-{args.end}-{label}")
    for path in write_statement(statement, stem):
        print(f"wrote {path}")
    for v in statement.vehicles:
        anomalies = ",".join(v["anomalies"]) or "-"
        print(f"{v['vehicle_id']}: {v['distance_km']} km, {v['status']} (anomalies {anomalies}, "
              f"coverage {v['coverage_pct']} %), evidence sha256 {v['evidence_sha256']}")
    if len(statement.vehicles) > 1:
        print(status_summary(statement.vehicles))
    return 0


def cmd_check_statement(args) -> int:
    import json

    from pipelines.reports.statements import StatementError, check_statement

    refused = f"not a readable mileage statement: {args.statement}"
    try:
        text = Path(args.statement).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{refused}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{refused}: {getattr(error, 'strerror', None) or error}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise UserError(f"{refused}: not JSON ({error})") from None
    try:
        altered = check_statement(document)
    except StatementError as error:
        raise UserError(f"{refused}: {error}") from None
    for vehicle_id in altered:
        print(f"ALTERED: the evidence of {vehicle_id} does not match its sha256", file=sys.stderr)
    if not altered:
        print(f"intact: the evidence of all {len(document['vehicles'])} vehicle(s) matches its sha256")
    return 1 if altered else 0


def cmd_pull(args) -> int:
    """One pull round from Smartcar into landing; exit 1 when Smartcar refuses the credentials."""
    from pipelines.sources.smartcar.client import CredentialsRejected, SmartcarError
    from pipelines.sources.smartcar.pull import pull_round
    from pipelines.sources.smartcar.resource import SmartcarResource
    from storage.layout import SmartcarLayout
    from storage.resources import LakeResource

    if args.min_interval < 0:
        raise UserError("--min-interval must be 0 or more minutes")
    if args.max_in_flight < 1:
        raise UserError("--max-in-flight must be 1 or more")
    lake = LakeResource(data_dir=args.data_dir)
    smartcar = SmartcarResource.from_environment().process_config_and_initialize()  # SecretsError is a UserError
    client = smartcar.client()
    try:
        report = pull_round(client, lake.landing, SmartcarLayout(lake), smartcar.limits(args.min_interval, args.max_in_flight),
                            smartcar.bucket())
    except CredentialsRejected as error:
        print(f"error: Smartcar refused the application's credentials ({error.status} {error.code or error.type}); "
              "check SMARTCAR_CLIENT_ID and SMARTCAR_CLIENT_SECRET", file=sys.stderr)
        return 1
    except SmartcarError as error:  # e.g. the connections could not be listed
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for line in report.lines():
        print(line)
    return 0


def cmd_serve(args) -> int:
    """The webhook receiver on uvicorn, until interrupted."""
    from pipelines.sources.smartcar.receiver import serve
    from pipelines.sources.smartcar.resource import SmartcarResource

    key = SmartcarResource.from_environment().process_config_and_initialize().webhook_key()  # SecretsError: exit 2
    print(f"receiving Smartcar webhooks on http://{args.host}:{args.port}/ (and /webhooks/smartcar) "
          f"into {Path(args.data_dir) / 'landing'}", flush=True)
    serve(Path(args.data_dir) / "landing", key, host=args.host, port=args.port)
    return 0


def cmd_erase(args) -> int:
    """Erase vehicles (or users' vehicles) everywhere in the data directory, or list the receipts."""
    existing_data_dir(args.data_dir)
    from pipelines.erasure import list_receipts

    if args.list:
        if args.vehicle_ids or args.user:
            raise UserError("--list takes no ids")
        receipts = list_receipts(Path(args.data_dir))
        for r in receipts:
            print(f"{r['completed_at']}  request {r['request']}  {len(r['requested'])} id(s)  "
                  f"{r['records_removed']} records removed, {r['files_rewritten']} files rewritten  "
                  f"hashes {', '.join(x['kind'] + ':' + x['hash'][:16] for x in r['requested'])}")
        if not receipts:
            print("no erasure receipts")
        return 0
    if not args.vehicle_ids and not args.user:
        raise UserError("name the vehicles to erase (VEHICLE_ID ...), or --user USER_ID, or --list")
    from pipelines.build import instance_for_cli
    from pipelines.erasure import build_step, erase

    smartcar = None
    if args.disconnect:  # the credentials are checked before anything is erased (SecretsError: exit 2)
        from pipelines.sources.smartcar.resource import SmartcarResource

        smartcar = SmartcarResource.from_environment().process_config_and_initialize()
        smartcar.webhook_key()
    resources = _resources(args.data_dir)
    with instance_for_cli(args.data_dir) as instance:
        outcome = erase(resources["lake"], args.vehicle_ids, args.user or [],
                        build_step(instance, resources, "INFO" if args.verbose else "CRITICAL"), instance=instance)
    r = outcome.receipt
    if r["nothing_left_to_remove"] and outcome.already_erased:
        print("already erased: nothing of it was left; history and instance checked again")
    print(f"erased {r['subjects']['vehicles']} vehicle(s) of {r['subjects']['users']} user(s): "
          f"{r['records_removed']} records removed, {r['files_rewritten']} files rewritten, {r['seconds']} s")
    print(f"receipt: {outcome.path}")
    if smartcar is not None:
        from pipelines.sources.smartcar.management import DisconnectRefused

        try:
            removed = [c for v in args.vehicle_ids for c in smartcar.disconnect(vehicle_id=v)]
            removed += [c for u in args.user or [] for c in smartcar.disconnect(user_id=u)]
        except (DisconnectRefused, OSError) as error:
            print(f"error: erased here, but Smartcar did not remove the connection: {error}", file=sys.stderr)
            return 1
        print(f"Smartcar removed {len(removed)} connection(s)")
    return 0


def cmd_export(args) -> int:
    existing_data_dir(args.data_dir)
    from pipelines.export import export_archive

    if not args.vehicle_ids and not args.user:
        raise UserError("name the vehicles to export (VEHICLE_ID ...), or --user USER_ID")
    resources = _resources(args.data_dir)
    path, counts = export_archive(resources["lake"], resources["warehouse"], args.vehicle_ids, args.user or [],
                                  Path(args.output) if args.output else None)
    print(f"wrote {path}: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return 0


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help that names each option's default, except where there is none to name."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == [] or action.required:
            return action.help
        return super()._get_help_string(action)


def _common_options(top: bool) -> argparse.ArgumentParser:
    """--data-dir and -v, accepted before the subcommand (`top`) and after it. After it they
    default to SUPPRESS, so that a value given before the subcommand is not overwritten."""
    default = os.getenv("FLEETLAKE_DATA_DIR", DEFAULT_DATA_DIR)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=default if top else argparse.SUPPRESS,
                        help="root of landing/, lake/, warehouse.duckdb and the Dagster instance (dagster/); "
                             "$FLEETLAKE_DATA_DIR, else ./data" + ("" if top else f" (default: {default})"))
    common.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show Dagster's run logs")
    return common


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fleetlake", description="Connected-vehicle fleet analytics pipeline.",
                                  parents=[_common_options(top=True)], formatter_class=_HelpWithDefaults)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common_options(top=False)

    def command(name: str, func, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, parents=[common],
                                  formatter_class=_HelpWithDefaults)
        sub.set_defaults(func=func)
        return sub

    init = command("init", cmd_init, "create a data directory: landing/ for Smartcar deliveries (*.ndjson, "
                   "*.ndjson.gz) and the Dagster instance that records the runs")
    init.add_argument("dir", nargs="?", metavar="DIR", help="the directory to create (default: the data directory)")

    command("run", cmd_run, "ingest whatever is in landing and build everything (the data directory must exist: "
            "`fleetlake init` creates one)")

    maintenance = command("maintenance", cmd_maintenance, "list what needs maintenance, soonest first "
                          "(reads the warehouse, read-only)")
    maintenance.add_argument("--due-within", type=_days, default=30.0, metavar="DAYS",
                             help="due within this many days of each vehicle's latest reading, or a fault found")

    mileage = command("mileage", cmd_mileage, "a mileage statement for a policy period: verified distance, "
                      "anomalies, coverage and the odometer readings behind it, as JSON and CSV")
    mileage.add_argument("vehicle_ids", nargs="*", metavar="VEHICLE_ID", help="one or more vehicles")
    mileage.add_argument("--all", action="store_true", help="every vehicle in the warehouse")
    mileage.add_argument("--from", dest="start", type=_day, required=True, metavar="DATE",
                         help="first day of the period (UTC, inclusive)")
    mileage.add_argument("--to", dest="end", type=_day, required=True, metavar="DATE",
                         help="last day of the period (UTC, inclusive)")
    mileage.add_argument("--output", metavar="PATH", help="write PATH.json, PATH.csv and PATH.evidence.csv "
                         "(default: <data dir>/statements/mileage-FROM-TO-<vehicle, N-vehicles or all>)")

    check = command("check-statement", cmd_check_statement, "check that a mileage statement's evidence still "
                    "matches its SHA-256 digests (exit 1 if it was altered)")
    check.add_argument("statement", metavar="STATEMENT.json", help="a statement written by `fleetlake mileage`")

    pull = command("pull", cmd_pull, "one round of pulling every connected vehicle's signals from Smartcar "
                   "(API v3) into landing, within Smartcar's limits")
    pull.add_argument("--min-interval", type=float, default=30.0, metavar="MINUTES",
                      help="skip a vehicle pulled less than this long ago (30 is Smartcar's advice; "
                           "0 pulls every connected vehicle now)")
    pull.add_argument("--max-in-flight", type=int, default=8, metavar="N",
                      help="vehicles read at once (the bucket, the budget and retry-after bound the round "
                           "whatever this is)")

    erase = command("erase", cmd_erase, "erase vehicles everywhere in the data directory (landing, lake, "
                    "marts, quality results, statements, Dagster runs), keep them erased, and write a receipt")
    erase.add_argument("vehicle_ids", nargs="*", metavar="VEHICLE_ID", help="vehicles to erase")
    erase.add_argument("--user", action="append", metavar="USER_ID", help="erase all of this user's vehicles "
                       "(may be repeated)")
    erase.add_argument("--list", action="store_true", help="list the erasure receipts")
    erase.add_argument("--disconnect", action="store_true", help="also ask Smartcar's management API to remove "
                       "the vehicles' connections (needs SMARTCAR_MANAGEMENT_TOKEN)")

    export = command("export", cmd_export, "export everything held about vehicles (or a user's vehicles) into "
                     "one archive of open formats (NDJSON, Parquet, CSV) with a README")
    export.add_argument("vehicle_ids", nargs="*", metavar="VEHICLE_ID", help="vehicles to export")
    export.add_argument("--user", action="append", metavar="USER_ID", help="all of this user's vehicles")
    export.add_argument("--output", metavar="PATH", help="the archive to write (default: "
                        "<data dir>/exports/export-<time>.zip)")

    serve = command("serve", cmd_serve, "run the Smartcar webhook receiver (POST / and /webhooks/smartcar) "
                    "into landing")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (put a TLS proxy in front)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")

    for name, func, text in [
        ("simulate", cmd_simulate, "write a simulated fleet's deliveries into landing (and its ground truth)"),
        ("demo", cmd_demo, "simulate a demo fleet into landing, then build everything"),
    ]:
        sub = command(name, func, text)
        sub.add_argument("--vehicles", type=_whole(1), default=50, metavar="N", help="vehicles in the fleet")
        sub.add_argument("--days", type=_whole(1), default=30, metavar="N", help="days of driving and charging")
        sub.add_argument("--interval", type=_whole(1, 720), default=15, metavar="MINUTES",
                         help="minutes between readings of an awake car (1-720)")
        sub.add_argument("--seed", type=_whole(0), default=7, metavar="N",
                         help="random seed: the same seed gives the same fleet")
        sub.add_argument("--start", type=_day, default=date(2026, 9, 1), metavar="DATE",
                         help="first day (UTC, YYYY-MM-DD)")
    return top


def main(argv: list[str] | None = None) -> int:
    """Exit statuses: 0 done (warnings and failed non-blocking checks are reported); 1 a
    blocking check failed or the work could not be done; 2 a user mistake (argparse's own
    errors exit 2 as well)."""
    args = parser().parse_args(argv)
    # Dagster warns, as the definitions load, of its beta parameters they use (a backfill
    # policy, sensor owners): ours to follow, nothing for whoever runs a command to act on.
    warnings.filterwarnings("ignore", message=r"Parameter `\w+` of .* is currently in beta")
    os.environ["FLEETLAKE_DATA_DIR"] = args.data_dir
    make_owner_only(Path(args.data_dir))  # before any command writes (simulator, receiver, pull, builds)
    try:
        return args.func(args)
    except UserError as error:
        print(f"fleetlake {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
