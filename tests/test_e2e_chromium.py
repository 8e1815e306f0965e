"""Without Chromium the e2e tests fail (root, CI: `make install` provides it); only a
developer who is not root skips them, with a warning and a banner in the summary."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.conftest import missing_chromium

REPO = Path(__file__).resolve().parents[1]
NOWHERE = "/nonexistent/chromium"
NOBODY = 65534


def test_chromium_that_is_there_is_used():
    assert missing_chromium(sys.executable, root=True, ci=True) is None


@pytest.mark.parametrize(("root", "ci"), [(True, False), (False, True), (True, True)])
def test_root_or_ci_without_chromium_fail_and_say_how_to_get_it(root, ci):
    action, message = missing_chromium(NOWHERE, root=root, ci=ci)
    assert action == "fail" and NOWHERE in message and "make install" in message


def test_a_developer_without_chromium_skips():
    action, message = missing_chromium(NOWHERE, root=False, ci=False)
    assert action == "skip" and "SKIPPED" in message and NOWHERE in message


def run_e2e_without_chromium(*, as_nobody: bool) -> subprocess.CompletedProcess:
    """One e2e test in a pytest of its own, as this user or as nobody, outside CI."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    # Third-party plugins cost seconds to load and none is needed to set up `browser`.
    env.update(WEBUG_E2E_CHROMIUM=NOWHERE, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    command += [
        "-p",
        "pytest_asyncio.plugin",
        "e2e/test_smoke.py::test_machine_list_shows_machines",
    ]
    if as_nobody:
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case needs root")
def test_e2e_run_by_root_without_chromium_fails():
    run = run_e2e_without_chromium(as_nobody=False)
    assert run.returncode == 1, run.stdout
    assert "1 error" in run.stdout and "make install" in run.stdout


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="cannot drop root here"
)
def test_e2e_run_by_a_developer_without_chromium_skips_loudly():
    run = run_e2e_without_chromium(as_nobody=os.geteuid() == 0)
    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout and "ChromiumMissingWarning" in run.stdout
    assert f"! E2E TESTS SKIPPED: {NOWHERE} not found" in run.stdout  # the banner
