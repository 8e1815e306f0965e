"""Resilience: filled in by the resilience-and-safety work (issue 6)."""

from fastapi import FastAPI

from app.config import Settings


def install_resilience(app: FastAPI, settings: Settings) -> None:
    """Schema-drift retry and outage handling for every route (placeholder)."""
