"""The database fixtures serve tests/ and e2e/ alike: one PostgreSQL per run."""

pytest_plugins = ["tests.support"]
