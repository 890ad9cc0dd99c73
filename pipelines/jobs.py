"""Jobs: the three stages a build runs in, each a selection of assets with their checks."""

import dagster as dg

from assets.raw import raw_deliveries
from assets.readings import readings

ingest_job = dg.define_asset_job(
    "ingest_job", selection=dg.AssetSelection.assets(raw_deliveries),
    description="Ingest new landing files into raw deliveries.")

readings_job = dg.define_asset_job(
    "readings_job", selection=dg.AssetSelection.assets(readings),
    description="Rebuild readings for the given day partitions (days that are unchanged are skipped).")

marts_job = dg.define_asset_job(
    "marts_job", selection=dg.AssetSelection.groups("marts"),
    description="Rebuild the DuckDB marts from the lake.")
