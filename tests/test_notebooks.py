"""Every analyst notebook runs top to bottom against the default simulated fleet's marts, draws
at least one chart, and prints figures that agree with the marts."""

import json
import os
import re
from pathlib import Path

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
VEGA_LITE = "application/vnd.vegalite."


def execute(path: Path, data_dir: str, started_in: Path | None = None) -> nbformat.NotebookNode:
    """Run a notebook as Jupyter does: the kernel works in the notebook's folder and inherits the
    environment (and $PWD, the directory Jupyter was started in) of the process that started it."""
    notebook = nbformat.read(path, as_version=4)
    env = {**os.environ, "FLEETLAKE_DATA_DIR": data_dir}
    if started_in is not None:
        env["PWD"] = str(started_in)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    return notebook


@pytest.fixture(scope="module")
def executed(default_fleet):
    """Each notebook executed once on the default fleet, by name."""
    cache: dict[str, nbformat.NotebookNode] = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in cache:
            cache[name] = execute(Path(__file__).parents[1] / "notebooks" / name, str(default_fleet))
        return cache[name]

    return run


def outputs(notebook):
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def printed(notebook) -> str:
    return "".join(o["text"] for o in outputs(notebook) if o.get("output_type") == "stream")


def charts(notebook) -> list[dict]:
    return [spec for o in outputs(notebook) for mime, spec in o.get("data", {}).items() if mime.startswith(VEGA_LITE)]


def mart_value(data_dir: Path, query: str, params=None):
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(query, params=params).fetchall()[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws(path, executed):
    notebook = executed(path.name)
    assert not [o for o in outputs(notebook) if o.get("output_type") == "error"]
    assert charts(notebook), f"{path.name} drew no Vega-Lite chart"
    for spec in charts(notebook):
        assert isinstance(spec, dict) and spec.get("$schema", "").startswith("https://vega.github.io/schema/vega-lite/")
    assert notebook.cells[0].cell_type == "markdown" and "warehouse.duckdb" in notebook.cells[0].source
    text = json.dumps(outputs(notebook)).lower()
    assert "latitude" not in text and "longitude" not in text, "a notebook must not show precise location"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"clear the outputs of {path.name}"


def test_insurers_period_mileage_matches_the_macro(executed, default_fleet):
    text = printed(executed("insurers_mileage.ipynb"))
    found = re.search(r"Verified distance of (\S+) from (\S+) to (\S+): ([\d.]+) km, (\w+)", text)
    assert found, text
    vehicle, start, end, distance, status = found.groups()
    expected = mart_value(default_fleet, "SELECT distance_km, status FROM marts.verified_mileage(?, ?::DATE, ?::DATE)",
                          [vehicle, start, end])
    assert float(distance) == pytest.approx(expected[0], abs=0.05)
    assert status == expected[1]
    # the default vehicle is one with an anomaly, so the statement has something to show
    assert mart_value(default_fleet, "SELECT count(*) FROM marts.odometer_anomalies WHERE vehicle_id = ?", [vehicle])[0] > 0
    review = re.search(r"Vehicle-months: (\d+), of which (\d+) need review", text)
    assert review and tuple(map(int, review.groups())) == mart_value(
        default_fleet, "SELECT count(*), count(*) FILTER (status = 'NEEDS_REVIEW') FROM marts.mileage_verification")


def test_energy_totals_match_the_sessions(executed, default_fleet):
    text = printed(executed("energy_charging.ipynb"))
    found = re.search(r"Grid energy: ([\d.]+) kWh, ([\d.]+) % of it at peak; cost ([\d.]+)", text)
    assert found, text
    grid, peak_pct, cost = map(float, found.groups())
    expected = mart_value(default_fleet, "SELECT sum(grid_energy_kwh), 100 * sum(peak_energy_kwh) / sum(grid_energy_kwh), "
                                         "sum(cost) FROM marts.charging_sessions")
    assert grid > 0
    assert (grid, peak_pct, cost) == pytest.approx(expected, abs=0.05)
    peak = re.search(r"Fleet peak load: ([\d.]+) kW", text)
    assert peak and float(peak.group(1)) == pytest.approx(mart_value(default_fleet, """
        SELECT max(kw) FROM (SELECT sum(avg_power_kw) AS kw FROM marts.charging_load_profile GROUP BY day_type, hour)""")[0],
        abs=0.05)


def test_maintenance_counts_match_the_forecast(executed, default_fleet):
    text = printed(executed("fleet_maintenance.ipynb"))
    found = re.search(r"Needing attention: (\d+) forecasts on (\d+) vehicles \((\d+) past due, (\d+) urgent, (\d+) soon\)", text)
    assert found, text
    assert tuple(map(int, found.groups())) == mart_value(default_fleet, """
        SELECT count(*), count(DISTINCT vehicle_id), count(*) FILTER (urgency = 'PAST_DUE'),
               count(*) FILTER (urgency = 'URGENT'), count(*) FILTER (urgency = 'SOON')
        FROM marts.maintenance_forecast WHERE urgency IN ('PAST_DUE', 'URGENT', 'SOON')""")


def test_a_relative_data_dir_is_taken_from_where_jupyter_was_started(default_fleet, monkeypatch):
    """FLEETLAKE_DATA_DIR=<name> with Jupyter started in the data dir's parent: the kernel works in
    notebooks/, so only the directory Jupyter was started in can resolve it."""
    monkeypatch.chdir(default_fleet.parent)
    notebook = execute(NOTEBOOKS[0].parent / "fleet_overview.ipynb", default_fleet.name, started_in=default_fleet.parent)
    assert f"warehouse: {(default_fleet / 'warehouse.duckdb').resolve()}" in printed(notebook)
    assert re.search(r"Vehicles: (\d+)", printed(notebook)).group(1) == str(
        mart_value(default_fleet, "SELECT count(*) FROM marts.vehicles")[0])


def test_the_notebooks_are_found():
    assert {p.name for p in NOTEBOOKS} >= {"fleet_overview.ipynb", "insurers_mileage.ipynb",
                                           "energy_charging.ipynb", "fleet_maintenance.ipynb"}
