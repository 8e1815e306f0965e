"""End-to-end: a real uvicorn serving webug, driven by a real (Debian) Chromium.

The server reads its own database: migrated and seeded once per run on the test
PostgreSQL (`WEBUG_TEST_DSN` when set, else an embedded one). Tests may write to
it through `e2e_db_dsn` (e.g. insert a work row and watch it appear live) but
must leave the seeded fleet they did not create alone.

Chromium comes from Debian (`/usr/bin/chromium`, or `WEBUG_E2E_CHROMIUM`);
Playwright's own browser download is never used. Without it the e2e tests fail: `make
install` provides it. Only a developer who is not root (and not in CI) may go without,
and then every e2e test is skipped with a warning and a banner in the summary.

Every test that uses `page` leaves a full-page screenshot of its final state in
`artifacts/screenshots/<test-name>.png`; `screenshot(page, name)` saves more.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from e2e.e2e_db import Db
from tests.support import cloned_database, free_port, run_sync, skip_loudly

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"

E2E_MACHINES = 200
E2E_RNG_SEED = 11
STARTUP_TIMEOUT_S = 30.0

CHROMIUM = os.environ.get("WEBUG_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home, and this closed network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _test_name(node: pytest.Item) -> str:
    """The test's name for file names, without pytest-playwright's `[chromium]` (if loaded)."""
    name = node.name
    browser = getattr(getattr(node, "callspec", None), "params", {}).get("browser_name")
    if browser:
        name = re.sub(rf"\[{browser}\]$|(?<=\[){browser}-|-{browser}(?=\]$)", "", name)
    return _safe_name(name)


# --------------------------------------------------------------------- database


@pytest.fixture(scope="session")
def e2e_db_dsn(pg_server_dsn: str, migrated_template: str) -> Iterator[str]:
    """DSN of the database the e2e server reads: migrated, seeded with 200 machines."""
    from app.demo.seed import seed_fleet

    with cloned_database(pg_server_dsn, migrated_template) as dsn:
        run_sync(seed_fleet(dsn, E2E_MACHINES, rng_seed=E2E_RNG_SEED))
        yield dsn


# ----------------------------------------------------------------------- server


@pytest.fixture(scope="session")
def e2e_server(e2e_db_dsn: str) -> Iterator[str]:
    """Base URL (no trailing slash) of a uvicorn subprocess serving webug on e2e_db_dsn."""
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "e2e-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUG_")}
    env.update(WEBUG_DSN=e2e_db_dsn, PYTHONUNBUFFERED="1")
    base_url = f"http://127.0.0.1:{port}"

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        problem = _wait_healthy(proc, base_url + "/healthz", STARTUP_TIMEOUT_S)
        if problem:
            output = log_path.read_text(errors="replace")
            print(f"--- e2e server output ({log_path}) ---\n{output}", file=sys.stderr)
            pytest.fail(
                f"e2e server did not become healthy: {problem}\n{output[-4000:]}", pytrace=False
            )
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(proc: subprocess.Popen, url: str, timeout: float) -> str | None:
    """None once `url` answers 200; otherwise why not (process died, or timeout)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"uvicorn exited with code {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return None
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    return f"no 200 from {url} within {timeout:.0f} s (last: {last})"


# ---------------------------------------------------------------------- browser


class ChromiumMissingWarning(UserWarning):
    """The e2e tests were skipped: no Chromium, and nobody here can install it."""


def missing_chromium(path: str, *, root: bool, ci: bool) -> tuple[str, str] | None:
    """None when Chromium is at `path`; else ("fail" or "skip", what to do about it).

    Root (where `make install` installs it) and CI must run the e2e tests: they fail.
    A developer who is not root may lack it: the tests are skipped, loudly.
    """
    if os.access(path, os.X_OK):
        return None
    if root or ci:
        return "fail", (
            f"{path} not found: run `make install` (it installs Debian's chromium), "
            "or point WEBUG_E2E_CHROMIUM at a Chromium"
        )
    return "skip", (
        f"E2E TESTS SKIPPED: {path} not found and we are not root: install Debian's "
        "chromium package (or run `make install` as root), or set WEBUG_E2E_CHROMIUM"
    )


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium through Playwright's sync API."""
    verdict = missing_chromium(CHROMIUM, root=os.geteuid() == 0, ci=bool(os.environ.get("CI")))
    if verdict is not None:
        action, message = verdict
        if action == "fail":
            pytest.fail(message, pytrace=False)
        skip_loudly(message, ChromiumMissingWarning)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught JavaScript errors and failed requests seen by `page`: a 5xx, or a 404 for
    one of webug's own files (its favicon included)."""
    return []


@pytest.fixture
def context_options() -> dict[str, Any]:
    """More options for `page`'s browser context: a module overrides this fixture to run
    its tests in, say, another time zone (`timezone_id`)."""
    return {}


@pytest.fixture
def page(
    browser,
    e2e_server: str,
    page_errors: list[str],
    context_options: dict[str, Any],
    request: pytest.FixtureRequest,
):
    """A fresh browser tab whose relative URLs go to the e2e server.

    At teardown its final state is saved to artifacts/screenshots/<test-name>.png.
    """
    context = browser.new_context(
        base_url=e2e_server, viewport={"width": 1280, "height": 800}, **context_options
    )
    context.set_default_timeout(10_000)
    p = context.new_page()
    p.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))

    def on_failed(req) -> None:
        # A navigation cancels the tab's icon still loading: the next page loads it again.
        if not (req.url.endswith("/favicon.svg") and req.failure == "net::ERR_ABORTED"):
            page_errors.append(f"requestfailed: {req.method} {req.url}: {req.failure}")

    p.on("requestfailed", on_failed)

    def on_response(resp) -> None:
        if resp.status >= 500 or (resp.status == 404 and "/static/" in resp.url):
            page_errors.append(f"HTTP {resp.status}: {resp.url}")

    p.on("response", on_response)
    try:
        yield p
    finally:
        with contextlib.suppress(Exception):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            p.screenshot(path=SCREENSHOTS / f"{_test_name(request.node)}.png", full_page=True)
        context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """`screenshot(page, name)`: full-page PNG at artifacts/screenshots/<test-name>--<name>.png."""

    def shoot(p, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{_test_name(request.node)}--{_safe_name(name)}.png"
        p.screenshot(path=path, full_page=True)
        return path

    return shoot


# The windows pages are checked at: a laptop's, and a phone's (nothing may scroll sideways).
VIEWPORTS = {"wide": (1440, 900), "narrow": (390, 844)}


def fits_the_window(page: Any, path: str, name: str, viewport: str) -> None:
    """Open `path` in the `viewport` (of VIEWPORTS), check that the page is no wider than
    the window, and save the window as artifacts/screenshots/<name>-<width>x<height>.png."""
    from playwright.sync_api import expect

    width, height = VIEWPORTS[viewport]
    page.set_viewport_size({"width": width, "height": height})
    page.goto(path)
    expect(page.locator("main table.grid").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-{width}x{height}.png")


@pytest.fixture
def db(e2e_db_dsn: str) -> Iterator[Db]:
    d = Db(e2e_db_dsn)
    try:
        yield d
    finally:
        d.run_cleanups()
