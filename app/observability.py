"""Metrics and structured logs: filled in by the production work (issue 7)."""

from fastapi import FastAPI

from app.config import Settings


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Prometheus /metrics, request IDs and structured logs (placeholder)."""
