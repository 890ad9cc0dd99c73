"""Smartcar's management API, for what the application itself asks of Smartcar: removing a
vehicle's connection when its owner asks Fleetlake to forget it (`fleetlake erase
--disconnect`). `DELETE /v2.0/management/connections?vehicle_id=...` (or `user_id=...`, or
both: that vehicle for that user) with `Authorization: Basic base64("default:" + the
application management token)`; the answer lists the connections removed."""

import base64

import requests

DEFAULT_MANAGEMENT_ORIGIN = "https://management.smartcar.com"


class DisconnectRefused(RuntimeError):
    """Smartcar did not remove the connection (the message has the status, never the token)."""


def delete_connections(origin: str, management_token: str, *, vehicle_id: str | None = None,
                       user_id: str | None = None, timeout_s: float = 30.0) -> list[dict]:
    """Remove the vehicle's connections (or all of a user's). Returns what Smartcar removed."""
    params = {k: v for k, v in (("vehicle_id", vehicle_id), ("user_id", user_id)) if v}
    if not params:
        raise ValueError("a vehicle id or a user id is needed")
    auth = base64.b64encode(f"default:{management_token}".encode()).decode()
    # The ids go as query parameters (requests encodes them): never into the path.
    response = requests.delete(f"{origin.rstrip('/')}/v2.0/management/connections", params=params,
                               headers={"Authorization": f"Basic {auth}"}, timeout=timeout_s)
    if response.status_code >= 400:
        raise DisconnectRefused(f"Smartcar's management API answered {response.status_code}")
    try:
        return list(response.json().get("connections") or [])
    except ValueError:
        return []
