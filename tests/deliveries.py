"""Builders for Smartcar webhook deliveries (payload version 4.0), for tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def signal(code: str, body: dict | None, at: str | None = "2026-09-01T08:00:00.000Z", *,
           retrieved: str | None = None, status: dict | str | None = None) -> dict:
    name = code.split("-", 1)[1].title()
    meta = {}
    if at is not None:
        meta["oemUpdatedAt"] = at
    if retrieved is not None:
        meta["retrievedAt"] = retrieved
    out = {"code": code, "name": name, "group": code.split("-")[0].title(),
           "status": status if status is not None else {"value": "SUCCESS"}, "meta": meta}
    if body is not None:
        out["body"] = body
    return out


def delivery(event_id: str, vehicle_id: str = "veh-1", signals: list[dict] | None = None, *,
             delivered_at: int | str = 1756713600000, event_type: str = "VEHICLE_STATE",
             errors: list[dict] | None = None, make: str = "TESLA", model: str = "Model 3",
             year: int = 2022) -> dict:
    data: dict = {"user": {"id": "user-1"}, "vehicle": {"id": vehicle_id, "make": make, "model": model, "year": year}}
    if event_type == "VEHICLE_STATE":
        data["signals"] = signals or []
    if event_type == "VEHICLE_ERROR":
        data["errors"] = errors or []
    return {
        "eventId": event_id, "eventType": event_type, "data": data,
        "triggers": [{"type": "SIGNAL_UPDATED", "signal": "odometer-traveleddistance"}],
        "meta": {"version": "4.0", "deliveryId": f"d-{event_id}", "deliveredAt": delivered_at,
                 "webhookId": "wh-1", "mode": "TEST"},
    }


def odometer(value: float, at: str, unit: str = "km") -> dict:
    return signal("odometer-traveleddistance", {"value": value, "unit": unit}, at)


def write_landing(path: Path, lines: list[dict | str]) -> Path:
    """One landing file; dict lines are serialised, str lines are written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path
