"""Configuration from the environment (WEBUG_*), validated once at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The BMDB's protobuf columns and their messages (the schema says which: sql/migrations/).
DEFAULT_PROTO_COLUMNS = {
    "hardware_report_raw": "cloud.bmaas.server.api.AgentHardwareReport",
    "os_installation_request_raw": "cloud.bmaas.server.api.OSInstallationRequest",
    "os_installation_report_raw": "cloud.bmaas.server.api.OSInstallationReport",
}


def _default_demo_dir() -> Path:
    return Path(platformdirs.user_cache_dir("webug")) / "demo-postgres"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEBUG_", frozen=True)

    dsn: str | None = Field(
        None, description="BMDB connection string; unset = embedded demo PostgreSQL"
    )
    schema_refresh_seconds: float = Field(3600.0, gt=0, description="re-reflection interval")
    statement_timeout_ms: int = Field(5000, gt=0, description="per-statement timeout")
    strict_consistency: bool = Field(
        False, description="CockroachDB: strict reads instead of follower reads"
    )
    pool_max_size: int = Field(10, ge=1, le=200, description="max BMDB connections")
    pool_idle_seconds: float = Field(
        60.0, gt=0, le=86400, description="a pooled BMDB connection idle this long is closed"
    )
    provider_console_urls: dict[str, str] = Field(
        default_factory=lambda: {
            "Equinix": "https://console.equinix.com/devices/{provider_id}/overview"
        },
        description="provider -> console URL template (JSON), {provider_id} is replaced",
    )
    # Production (issue 7): image, logs, protobuf field names.
    workers: int = Field(
        1, ge=1, le=64, description="uvicorn worker processes (read by the container's command)"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per log line, with the request ID"
    )
    proto_descriptors: FilePath | None = Field(
        None,
        description="binary FileDescriptorSet (`protoc --include_imports --descriptor_set_out`)"
        " to decode protobuf columns with field names",
    )
    proto_columns: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_PROTO_COLUMNS),
        description="column -> fully qualified protobuf message type (JSON)",
    )

    @field_validator("proto_columns")
    @classmethod
    def _message_type_names(cls, value: dict[str, str]) -> dict[str, str]:
        for column, type_name in value.items():
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", type_name.removeprefix(".")):
                raise ValueError(f"{column}: {type_name!r} is not a protobuf message type name")
        return {column: type_name.removeprefix(".") for column, type_name in value.items()}

    demo_machines: int = Field(500, ge=1, le=1_000_000, description="demo fleet size")
    demo_data_dir: Path = Field(
        default_factory=_default_demo_dir, description="embedded PostgreSQL data dir"
    )
    demo_simulate: bool = Field(True, description="run the fleet simulator in demo mode")
    # Access and safety (app/http/security.py, app/http/resilience.py).
    auth_token: SecretStr | None = Field(
        None, description="require `Authorization: Bearer <token>` (every route but /healthz)"
    )
    basic_auth: SecretStr | None = Field(
        None, description="require HTTP basic auth, `user:password` (every route but /healthz)"
    )
    trusted_user_header: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z0-9-]+$",
        description="behind an authenticating proxy: the header naming the user; required",
    )
    allowed_hosts: str = Field(
        "",
        description="Host names accepted besides localhost, 127.0.0.1, [::1] (comma-separated;"
        " `*` accepts any)",
    )
    pool_wait_seconds: float = Field(
        10.0, gt=0, le=600, description="a page waits this long for a BMDB connection, then 503"
    )
    count_cache_seconds: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="list totals and facets and the overview's counts scan the fleet: each is"
        " reused this long by every poll and watcher (0: count on every request)",
    )
    csv_row_cap: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="rows of a ?format=csv download at most (stated in its X-Webug-Row-Cap"
        " header and next to the download link)",
    )
    # Fleet-wide reads of work_history (failure signatures, activity): the table has no
    # index on its timestamp, so each is a scan of the whole table (app/bmdb/history_reads.py).
    history_cache_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="failure groups and the activity chart scan work_history: each is"
        " computed at most once per this interval and shared by every page (0: every request)",
    )
    history_timeout_ms: int = Field(
        15000,
        gt=0,
        le=600_000,
        description="time budget of one fleet-wide work_history read (its own connection's"
        " statement_timeout); past it, the page says so and webug retries after the interval."
        " The fleet gauges' statements have the same budget",
    )

    workflows: FilePath | None = Field(
        None,
        description="JSON, TOML or YAML file of workflows to add to the built-in ones"
        " (docs/workflows.md)",
    )
    # Fleet gauges on /metrics (app/fleet/), alert links, the forecast (issue 22).
    fleet_stats_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="the fleet gauges of /metrics are collected this often, in the background"
        " (0: no fleet gauges)",
    )
    external_url: str | None = Field(
        None,
        max_length=500,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="webug's address as operators reach it (https://webug.example.com):"
        " exported as webug_external_url_info{url}, which alerts and dashboards link from",
    )
    heartbeat_late_seconds: float = Field(
        120.0,
        gt=0,
        le=86400,
        description="/forecast: a heartbeat older than this is late, and its machine's"
        " recovery is forecast",
    )

    @field_validator("external_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value is not None else None

    # Set but empty would mean no access control (an empty token) or a guessable login:
    # refused, as a typo in a deployment's secret should not open webug to everyone.
    @field_validator("auth_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (unset it for no token)")
        return value

    @field_validator("basic_auth")
    @classmethod
    def _user_colon_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        user, colon, password = value.get_secret_value().partition(":")
        if not colon:
            raise ValueError("must be user:password")
        if not user.strip() or not password.strip():
            raise ValueError("must be user:password, neither of them empty")
        return value

    @property
    def demo(self) -> bool:
        return self.dsn is None


SECRETS = frozenset({"auth_token", "basic_auth"})  # never echoed in error messages


def load_settings() -> Settings:
    """Settings from the environment; invalid ones end the process with one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"WEBUG_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            f" (got {'(hidden)' if err['loc'][0] in SECRETS else repr(err.get('input'))})"
            for err in exc.errors()
        )
        raise SystemExit(f"webug: invalid configuration: {problems}") from None
