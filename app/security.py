"""Security middleware: filled in by the resilience-and-safety work (issue 6)."""

from fastapi import FastAPI

from app.config import Settings


def install_security(app: FastAPI, settings: Settings) -> None:
    """Headers, access control and request checks for every route (placeholder)."""
