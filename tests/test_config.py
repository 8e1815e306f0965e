"""Configuration: invalid settings stop webug at start with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.bmdb.dsn import describe

REPO = Path(__file__).resolve().parents[1]


def test_invalid_config_fails_at_start_with_one_line_naming_each_variable():
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    env.update(WEBUG_STATEMENT_TIMEOUT_MS="-5", WEBUG_STRICT_CONSISTENCY="maybe")
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("webug: invalid configuration:")
    assert "WEBUG_STATEMENT_TIMEOUT_MS" in lines[0] and "WEBUG_STRICT_CONSISTENCY" in lines[0]
    assert "Traceback" not in result.stderr


def test_bmdb_address_is_shown_without_password():
    assert describe("postgresql://webug:s3cret@db.example:26257/bmdb") == "bmdb@db.example:26257"
    assert describe("postgresql://postgres:@/postgres?host=/tmp/pg") == "postgres@/tmp/pg"
