"""Smartcar's configuration as a Dagster resource.

Secrets come from the environment (as Dagster `EnvVar`s, so the UI shows the variable's
name, never its value) or from an owner-only file named by `SMARTCAR_SECRETS_FILE`, with
lines `NAME=value` for the same names. The file is refused if anyone but its owner may read
it. Nothing here ever puts a secret's value into a message.
"""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import dagster as dg

from storage.errors import UserError

from pipelines.sources.smartcar.management import DEFAULT_MANAGEMENT_ORIGIN, delete_connections
from pipelines.sources.smartcar.client import (DEFAULT_IAM_ORIGIN, DEFAULT_VEHICLE_API_ORIGIN, Credentials,
                                               RetryPolicy, SmartcarClient)
from pipelines.sources.smartcar.limits import Limits, RequestBucket

SECRET_NAMES = ("SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_MANAGEMENT_TOKEN")


class SecretsError(UserError):
    """Configuration is missing or unsafe; the message names what, never a value."""


def read_secrets_file(path: str | Path) -> dict[str, str]:
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise SecretsError(f"SMARTCAR_SECRETS_FILE: cannot read {path}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or info.st_uid != os.getuid():
        raise SecretsError(f"SMARTCAR_SECRETS_FILE: {path} must be owned by you and readable by you only "
                           f"(chmod 600 {path})")
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _setting(name: str, default: str = "") -> str | dg.EnvVar:
    """An EnvVar when the variable is set (Dagster then resolves it at run time and shows only
    its name), else the default."""
    return dg.EnvVar(name) if os.getenv(name) else default


class SmartcarResource(dg.ConfigurableResource):
    """Smartcar credentials, origins and the pull's limits."""

    client_id: str = ""
    client_secret: str = ""
    management_token: str = ""
    secrets_file: str = ""
    iam_origin: str = DEFAULT_IAM_ORIGIN
    vehicle_api_origin: str = DEFAULT_VEHICLE_API_ORIGIN
    management_origin: str = DEFAULT_MANAGEMENT_ORIGIN  # SMARTCAR_MANAGEMENT_ORIGIN
    bucket_capacity: float = 120.0
    bucket_refill_per_minute: float = 2.0
    monthly_calls_per_vehicle: int = 1500
    min_interval_minutes: float = 30.0
    max_in_flight: int = 8  # vehicles read at once (see Limits)
    timeout_s: float = 30.0

    @classmethod
    def from_environment(cls) -> SmartcarResource:
        return cls(client_id=_setting("SMARTCAR_CLIENT_ID"), client_secret=_setting("SMARTCAR_CLIENT_SECRET"),
                   management_token=_setting("SMARTCAR_MANAGEMENT_TOKEN"),
                   secrets_file=_setting("SMARTCAR_SECRETS_FILE"),
                   iam_origin=_setting("SMARTCAR_IAM_ORIGIN", DEFAULT_IAM_ORIGIN),
                   vehicle_api_origin=_setting("SMARTCAR_VEHICLE_API_V3_ORIGIN", DEFAULT_VEHICLE_API_ORIGIN),
                   management_origin=_setting("SMARTCAR_MANAGEMENT_ORIGIN", DEFAULT_MANAGEMENT_ORIGIN))

    def _secret(self, name: str, value: str) -> str:
        if value:
            return value
        if self.secrets_file:
            value = read_secrets_file(self.secrets_file).get(name, "")
        if not value:
            raise SecretsError(f"{name} is not set (in the environment or SMARTCAR_SECRETS_FILE)")
        return value

    def credentials(self) -> Credentials:
        return Credentials(self._secret("SMARTCAR_CLIENT_ID", self.client_id),
                           self._secret("SMARTCAR_CLIENT_SECRET", self.client_secret))

    def webhook_key(self) -> str:
        """The application management token, which signs webhooks."""
        return self._secret("SMARTCAR_MANAGEMENT_TOKEN", self.management_token)

    def disconnect(self, vehicle_id: str | None = None, user_id: str | None = None) -> list[dict]:
        """Ask Smartcar's management API to remove the vehicle's (or the user's) connections."""
        return delete_connections(self.management_origin, self.webhook_key(), vehicle_id=vehicle_id,
                                  user_id=user_id, timeout_s=self.timeout_s)

    def client(self, retry: RetryPolicy | None = None) -> SmartcarClient:
        return SmartcarClient(self.credentials(), iam_origin=self.iam_origin,
                              vehicle_api_origin=self.vehicle_api_origin, timeout_s=self.timeout_s, retry=retry)

    def limits(self, min_interval_minutes: float | None = None, max_in_flight: int | None = None) -> Limits:
        minutes = self.min_interval_minutes if min_interval_minutes is None else min_interval_minutes
        return Limits(min_interval=timedelta(minutes=minutes), monthly_calls_per_vehicle=self.monthly_calls_per_vehicle,
                      max_in_flight=self.max_in_flight if max_in_flight is None else max_in_flight)

    def bucket(self) -> RequestBucket:
        return RequestBucket(capacity=self.bucket_capacity, refill_per_minute=self.bucket_refill_per_minute,
                             level=self.bucket_capacity)
