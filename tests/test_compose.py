"""Deployment files: compose.yaml, Dockerfile, .dockerignore, requirements.lock, documented grants.

Docker does not run here: compose.yaml and the Dockerfile are checked for structure,
not run. The read-only grants of docs/operating.md are run for real in their PostgreSQL form.

requirements.lock is the runtime closure of pyproject.toml's dependencies, pinned.
Rewrite it after changing dependencies (from the project's virtualenv):

    .venv/bin/python tests/test_compose.py --write-lock
"""

from __future__ import annotations

import re
import secrets
import shlex
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


# --- requirements.lock ---------------------------------------------------------------


def runtime_closure() -> dict[str, str]:
    """{package: installed version} for pyproject's runtime dependencies, transitively.

    Markers are evaluated for this interpreter and platform: run it on the image's Python
    (`image_python()`), on Linux.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    todo = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    seen: dict[tuple[str, frozenset[str]], str] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist.version
        extras = ["", *sorted(req.extras)]
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return {name: version for (name, _), version in sorted(seen.items())}


def write_lock() -> None:
    lines = [
        "# The runtime closure of pyproject.toml's dependencies, pinned"
        f" (CPython {image_python()}, Linux).",
        "# The Dockerfile installs exactly this with --no-deps. Regenerate after changing",
        "# dependencies: .venv/bin/python tests/test_compose.py --write-lock",
        *(f"{name}=={version}" for name, version in runtime_closure().items()),
    ]
    LOCK.write_text("\n".join(lines) + "\n")


def read_lock() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line.strip())
            assert match, f"requirements.lock: not an exact pin: {line!r}"
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_lock_pins_every_runtime_dependency_within_pyproject():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = read_lock()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for text in pyproject["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is not in requirements.lock: regenerate it ({__doc__})"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {req}"
        )


def test_lock_is_complete_for_what_it_pins():
    """Every locked package's own requirements are locked too (pip check in the image)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = read_lock()
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue  # this virtualenv has another version: its metadata says nothing
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            assert canonicalize_name(req.name) in pins, f"{name} needs {req}, not locked"


# --- compose.yaml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    import yaml  # a dev dependency (pyproject.toml): missing, the tests fail, never skip

    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_services_and_profiles(compose):
    services = compose["services"]
    assert set(services) == {"cockroach", "bmdb-init", "migrate", "webug", "simulator"}
    assert services["simulator"]["profiles"] == ["simulate"]
    for name in ("cockroach", "bmdb-init", "migrate", "webug"):
        assert "profiles" not in services[name], f"{name} must start by default"
    assert services["webug"]["build"] == "."
    assert services["simulator"]["image"] == services["webug"]["image"]


def test_cockroach_node_is_insecure_single_node_with_a_health_check(compose):
    node = compose["services"]["cockroach"]
    assert node["image"].startswith("cockroachdb/cockroach:")
    assert node["command"][:2] == ["start-single-node", "--insecure"]
    assert "127.0.0.1:26257:26257" in node["ports"]  # insecure: local only
    check = node["healthcheck"]
    assert check["test"][0] == "CMD" and "SELECT 1" in " ".join(check["test"])
    assert check["retries"] >= 10
    assert any(v.endswith(":/cockroach/cockroach-data") for v in node["volumes"])


def test_migrate_job_applies_sql_migrations_with_golang_migrate(compose):
    services = compose["services"]
    job = services["migrate"]
    assert job["image"].startswith("migrate/migrate:v4.")
    args = job["command"]
    assert "-path=/migrations" in args and args[-1] == "up"
    database = next(a.removeprefix("-database=") for a in args if a.startswith("-database="))
    assert database.startswith("cockroachdb://") and urlsplit(database).path == "/bmdb"
    assert "./sql/migrations:/migrations:ro" in job["volumes"]
    assert (ROOT / "sql" / "migrations").is_dir()
    assert job["depends_on"] == {"bmdb-init": {"condition": "service_completed_successfully"}}
    init = services["bmdb-init"]
    assert init["depends_on"] == {"cockroach": {"condition": "service_healthy"}}
    assert init["restart"] == job["restart"] == "no"


def test_webug_points_at_the_bmdb_as_its_read_only_user(compose):
    webug = compose["services"]["webug"]
    env = webug["environment"]
    dsn = urlsplit(env["WEBUG_DSN"])
    assert dsn.scheme == "postgresql" and dsn.hostname == "cockroach" and dsn.port == 26257
    assert dsn.username == "webug" and dsn.path == "/bmdb"
    assert int(env["WEBUG_WORKERS"]) >= 1
    assert env["WEBUG_LOG_FORMAT"] == "json"
    assert "127.0.0.1:8000:8000" in webug["ports"]
    assert webug["depends_on"] == {
        "cockroach": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    # Every WEBUG_* variable is one webug knows (a typo would be silently ignored).
    from app.config import Settings

    for name in env:
        assert name.removeprefix("WEBUG_").lower() in Settings.model_fields, name


def test_simulator_writes_as_a_bmdb_component_after_migrations(compose):
    sim = compose["services"]["simulator"]
    assert sim["command"][:4] == ["python", "-m", "app", "simulate"]
    dsn = next(a.removeprefix("--dsn=") for a in sim["command"] if a.startswith("--dsn="))
    assert urlsplit(dsn).username == "root"  # writes: not webug's read-only user
    assert sim["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_compose_grants_are_the_readmes(compose):
    executed = [
        a.removeprefix("--execute=")
        for a in compose["services"]["bmdb-init"]["command"]
        if a.startswith("--execute=")
    ]
    readme = _sql_block("cockroachdb-grants")
    assert [s for s in executed if not s.startswith("CREATE DATABASE")] == readme


# --- Dockerfile ----------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                           if not line.lstrip().startswith("#")))  # fmt: skip
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_non_root_with_a_health_check():
    instructions = _dockerfile()
    final_stage = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    users = [args for word, args in final_stage if word == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert any(word == "RUN" and f"--uid {user}" in args for word, args in final_stage)
    check = next(args for word, args in final_stage if word == "HEALTHCHECK")
    assert "/healthz" in check and "--timeout=" in check
    assert next(a for w, a in instructions if w == "FROM").startswith("${PYTHON_IMAGE}")


def image_python() -> str:
    """The Python version of the image's base, from the Dockerfile's PYTHON_IMAGE."""
    arg = next(a for w, a in _dockerfile() if w == "ARG" and a.startswith("PYTHON_IMAGE="))
    match = re.fullmatch(r"PYTHON_IMAGE=python:(3\.\d+)-slim(@sha256:[0-9a-f]{64})?", arg)
    assert match, f"not an official python:<version>-slim image: {arg}"
    return match[1]


def test_image_python_is_one_pyproject_allows_and_the_lock_was_made_for():
    from packaging.specifiers import SpecifierSet

    version = image_python()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(version), f"python:{version} outside {requires}"
    header = LOCK.read_text().splitlines()[0]
    assert f"(CPython {version}, Linux)" in header, f"requirements.lock is not for {version}"


def test_dockerfile_installs_exactly_the_lock():
    installs = [a for w, a in _dockerfile() if w == "RUN" and "pip install" in a]
    assert len(installs) == 1
    install = installs[0]
    for flag in ("--no-cache-dir", "--no-deps", "-r /tmp/requirements.lock", "pip check"):
        assert flag in install, flag
    assert ("COPY", "requirements.lock /tmp/requirements.lock") in _dockerfile()


def test_dockerfile_starts_uvicorn_with_configurable_workers():
    instructions = _dockerfile()
    cmd = next(a for w, a in reversed(instructions) if w == "CMD")
    import json

    argv = json.loads(cmd)
    assert argv[:2] == ["sh", "-c"]
    script = argv[2]
    uvicorn = shlex.split(script[script.index("exec uvicorn") :])
    assert uvicorn[:3] == ["exec", "uvicorn", "app.main:app"]
    assert uvicorn[uvicorn.index("--workers") + 1] == "$WEBUG_WORKERS"
    assert uvicorn[uvicorn.index("--host") + 1] == "0.0.0.0"
    assert "PROMETHEUS_MULTIPROC_DIR" in script  # metrics add up over workers
    env = " ".join(a for w, a in instructions if w == "ENV")
    assert "WEBUG_WORKERS=1" in env
    assert ("EXPOSE", "8000") in instructions


def test_dockerignore_lets_in_only_what_the_image_copies():
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # an allow-list
    allowed = {r.removeprefix("!").rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for word, args in _dockerfile():
        if word == "COPY" and not args.startswith("--from"):
            copied.update(args.split()[:-1])
    assert {c.rstrip("/").removeprefix("./") for c in copied} <= allowed
    for needed in allowed:
        assert (ROOT / needed).exists(), needed


# --- docs/operating.md: the read-only grants ----------------------------------------------------


def _sql_block(name: str) -> list[str]:
    """Statements of docs/operating.md's ```sql block that follows `<!-- name -->`."""
    operating = (ROOT / "docs" / "operating.md").read_text()
    match = re.search(rf"<!-- {name} -->\s*```sql\n(.*?)```", operating, re.S)
    assert match, f"docs/operating.md has no sql block marked <!-- {name} -->"
    body = "\n".join(re.sub(r"\s*--.*$", "", line) for line in match[1].splitlines())
    return [" ".join(s.split()) for s in body.split(";") if s.strip()]


def _as_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))


def test_documented_postgresql_grants_give_a_working_read_only_user(migrated_db_dsn):
    """The PostgreSQL grants of docs/operating.md, run for real: pages work, writes are refused,
    and a tag table added by a later migration is readable without a new grant."""
    import asyncpg

    from tests.support import execute, run_sync, webug_client

    role, password = f"webug_{secrets.token_hex(4)}", secrets.token_hex(12)
    database = urlsplit(migrated_db_dsn).path.lstrip("/")

    async def owner() -> str:
        conn = await asyncpg.connect(migrated_db_dsn)
        try:
            return await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()

    migrator = run_sync(owner())
    grants = [
        s.replace("webug", role)
        .replace("DATABASE bmdb", f'DATABASE "{database}"')
        .replace("ROLE bmdb_owner", f'ROLE "{migrator}"')
        for s in _sql_block("postgresql-grants")
    ]
    grants[0] += f" PASSWORD '{password}'"  # CREATE ROLE ... LOGIN
    machine = "00000000-0000-4000-8000-00000000c0de"
    run_sync(execute(migrated_db_dsn, *grants))
    try:
        # A migration after the grants: a new tag table, created by the migrator.
        run_sync(
            execute(
                migrated_db_dsn,
                f"INSERT INTO machines VALUES ('{machine}', now())",
                "CREATE TABLE machine_rack_position (machine_id UUID PRIMARY KEY"
                " REFERENCES machines (machine_id), rack TEXT NOT NULL)",
                f"INSERT INTO machine_rack_position VALUES ('{machine}', 'rack-r12')",
            )
        )
        user_dsn = _as_user(migrated_db_dsn, role, password)
        with webug_client(user_dsn) as client:
            for path in ("/", f"/machine/{machine}", "/sessions", "/schema", "/overview"):
                assert client.get(path).status_code == 200, path
            page = client.get(f"/machine/{machine}").text
            assert "RackPosition" in page and "rack-r12" in page
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            run_sync(execute(user_dsn, f"DELETE FROM machines WHERE machine_id = '{machine}'"))
    finally:
        run_sync(execute(migrated_db_dsn, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"'))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-lock"]:
        write_lock()
        print(f"wrote {LOCK}")
    else:
        sys.exit(__doc__)
