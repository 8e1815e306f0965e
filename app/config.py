"""Configuration from the environment (WEBUG_*), validated once at start."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    provider_console_urls: dict[str, str] = Field(
        default_factory=lambda: {
            "Equinix": "https://console.equinix.com/devices/{provider_id}/overview"
        },
        description="provider -> console URL template (JSON), {provider_id} is replaced",
    )
    demo_machines: int = Field(500, ge=1, le=1_000_000, description="demo fleet size")
    demo_data_dir: Path = Field(
        default_factory=_default_demo_dir, description="embedded PostgreSQL data dir"
    )
    demo_simulate: bool = Field(True, description="run the fleet simulator in demo mode")

    @property
    def demo(self) -> bool:
        return self.dsn is None


def load_settings() -> Settings:
    """Settings from the environment; invalid ones end the process with one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"WEBUG_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            f" (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise SystemExit(f"webug: invalid configuration: {problems}") from None
