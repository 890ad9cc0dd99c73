"""Fast JSON-line building for Smartcar webhook deliveries (payload version 4.0).

Lines are concatenated column-wise with Polars from precompiled fragments; every
number is formatted by Polars from an already-rounded float, which is valid JSON.
"""
from __future__ import annotations

import json

import polars as pl

from .catalog import SIGNALS

TRIGGER_CODES = (
    "odometer-traveleddistance",
    "charge-ischargingcableconnected",
    "charge-ischarging",
    "tractionbattery-stateofcharge",
    "lowvoltagebattery-stateofcharge",
    "internalcombustionengine-fuellevel",
)
TRIGGER_OBJ = tuple(
    '{"type":"SIGNAL_UPDATED","signal":{"code":"%s","name":"%s","group":"%s"}}' % (c, *SIGNALS[c])
    for c in TRIGGER_CODES
)
TRIGGER_STR = tuple('{"type":"SIGNAL_UPDATED","signal":"%s"}' % c for c in TRIGGER_CODES)


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def vehicle_fragment(user_id: str, vehicle_id: str, make: str, model: str, year: int, vin: str | None) -> str:
    veh = {"id": vehicle_id, "make": make, "model": model, "year": int(year)}
    if vin:
        veh["vin"] = vin
    return '"user":' + dumps({"id": user_id}) + ',"vehicle":' + dumps(veh)


def _head(code: str) -> str:
    name, group = SIGNALS[code]
    return '{"code":"%s","name":"%s","group":"%s"' % (code, name, group)


def _s(x: str) -> pl.Expr:
    return pl.lit(x, dtype=pl.String)


def _signal(code: str, body: list, include: pl.Expr, noem: str | None = None,
            err: str | None = None) -> pl.Expr:
    head = _head(code)
    meta = pl.col("meta_ret") if noem == "always" else (
        pl.when(pl.col(noem)).then(pl.col("meta_ret")).otherwise(pl.col("meta_full"))
        if noem else pl.col("meta_full"))
    normal = pl.concat_str([_s(head + ',"body":'), *body, _s(',"status":{"value":"SUCCESS"}'), meta])
    if err is not None:
        normal = (pl.when(pl.col(err).is_not_null())
                  .then(pl.concat_str([_s(head + ',"status":'), pl.col(err), pl.col("meta_ret")]))
                  .otherwise(normal))
    return pl.when(include).then(normal)


def _num_body(col: str, unit: str | None = None, unit_col: str | None = None) -> list:
    parts = [_s('{"value":'), pl.col(col)]
    if unit is not None:
        parts.append(_s(',"unit":"%s"}' % unit))
    elif unit_col is not None:
        parts += [_s(',"unit":"'), pl.col(unit_col), _s('"}')]
    else:
        parts.append(_s("}"))
    return parts


def build_state_lines(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``prefix`` and ``tail`` columns: line = prefix + deliveryId + '","deliveredAt":' + n + tail.

    Expected columns (strings unless noted): eid, vfrag, ev (bool), ice_or_phev (bool),
    slow (bool), has_watt (bool), watt_unit, volt_amp (bool), has_ea (bool), oem_iso, ret_iso,
    noem_odo/noem_loc/noem_tires/noem_oil/noem_fuel/noem_lv (bool), odo_val, odo_unit,
    soc_val, nominal_val, charging, plugged, watt_val, volt_val, amp_val, eadd_val, lat, lon,
    heading, direction, t_fl, t_fr, t_rl, t_rr, tire_unit, oil_val, fuel_val, lv_val, dtc_json,
    err_loc, err_tires, err_soc, err_fuel, err_lv (nullable status JSON), trig_json,
    webhook_tail.
    """
    meta = [
        pl.concat_str([_s(',"meta":{"oemUpdatedAt":"'), pl.col("oem_iso"), _s('","retrievedAt":"'),
                       pl.col("ret_iso"), _s('"}}')]).alias("meta_full"),
        pl.concat_str([_s(',"meta":{"retrievedAt":"'), pl.col("ret_iso"), _s('"}}')]).alias("meta_ret"),
    ]
    ev = pl.col("ev")
    slow = pl.col("slow")
    sigs = [
        _signal("odometer-traveleddistance", _num_body("odo_val", unit_col="odo_unit"), pl.lit(True), "noem_odo"),
        _signal("tractionbattery-stateofcharge", _num_body("soc_val", "percent"), ev, None, "err_soc"),
        _signal("tractionbattery-nominalcapacity",
                [_s('{"capacity":'), pl.col("nominal_val"), _s(',"unit":"kWh"}')], ev & slow),
        _signal("charge-ischarging", _num_body("charging"), ev),
        _signal("charge-ischargingcableconnected", _num_body("plugged"), ev),
        _signal("charge-wattage", _num_body("watt_val", unit_col="watt_unit"), ev & pl.col("has_watt")),
        _signal("charge-voltage", _num_body("volt_val", "volts"), ev & pl.col("volt_amp")),
        _signal("charge-amperage", _num_body("amp_val", "amperes"), ev & pl.col("volt_amp")),
        _signal("charge-energyadded", _num_body("eadd_val", "kWh"), ev & pl.col("has_ea")),
        _signal("location-preciselocation",
                [_s('{"latitude":'), pl.col("lat"), _s(',"longitude":'), pl.col("lon"),
                 _s(',"heading":'), pl.col("heading"), _s(',"direction":"'), pl.col("direction"),
                 _s('","locationType":"GPS"}')], pl.lit(True), "noem_loc", "err_loc"),
        _signal("wheel-tires",
                [_s('{"values":[{"row":0,"column":0,"tirePressure":'), pl.col("t_fl"),
                 _s('},{"row":0,"column":1,"tirePressure":'), pl.col("t_fr"),
                 _s('},{"row":1,"column":0,"tirePressure":'), pl.col("t_rl"),
                 _s('},{"row":1,"column":1,"tirePressure":'), pl.col("t_rr"),
                 _s('}],"unit":"'), pl.col("tire_unit"), _s('"}')], slow, "noem_tires", "err_tires"),
        _signal("internalcombustionengine-oillife", _num_body("oil_val", "percent"),
                pl.col("ice_or_phev") & slow, "noem_oil"),
        _signal("internalcombustionengine-fuellevel", _num_body("fuel_val", "percent"),
                pl.col("ice_or_phev"), "noem_fuel", "err_fuel"),
        _signal("lowvoltagebattery-stateofcharge", _num_body("lv_val", "percent"), slow, "noem_lv", "err_lv"),
        _signal("diagnostics-dtclist", [_s('{"values":'), pl.col("dtc_json"), _s("}")], slow),
    ]
    count = (pl.lit(2, dtype=pl.Int32) + ev.cast(pl.Int32) * 3
             + (ev & slow).cast(pl.Int32)
             + (ev & pl.col("has_watt")).cast(pl.Int32)
             + (ev & pl.col("volt_amp")).cast(pl.Int32) * 2
             + (ev & pl.col("has_ea")).cast(pl.Int32)
             + slow.cast(pl.Int32) * 3
             + (pl.col("ice_or_phev") & slow).cast(pl.Int32)
             + pl.col("ice_or_phev").cast(pl.Int32))
    out = df.with_columns(meta).with_columns(
        pl.concat_str(sigs, separator=",", ignore_nulls=True).alias("signals"),
        count.alias("signal_count"),
    )
    return out.select(
        pl.concat_str([_s('{"eventId":"'), pl.col("eid"), _s('","eventType":"VEHICLE_STATE","data":{'),
                       pl.col("vfrag"), _s(',"signals":['), pl.col("signals"), _s(']},"triggers":['),
                       pl.col("trig_json"), _s('],"meta":{"version":"4.0","deliveryId":"')]).alias("prefix"),
        pl.concat_str([pl.col("webhook_tail"), _s(',"signalCount":'),
                       pl.col("signal_count").cast(pl.String), _s("}}")]).alias("tail"),
        pl.col("signal_count"),
    )


def iso_ms(ms: pl.Expr) -> pl.Expr:
    return ms.cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
