# webug: `make run` serves the demo, `make test` runs every test. Both install first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install chromium promtool run test lint bench clean

# The virtualenv and the project's packages; redone when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Headless Chromium for the e2e tests comes from Debian: Playwright's own
# browser download is not used (never `playwright install`).
chromium:
	@if [ -x /usr/bin/chromium ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian chromium for the e2e tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "warning: /usr/bin/chromium is missing and we are not root:" \
		     "install Debian's chromium package, or the e2e tests are skipped"; \
	fi

# promtool checks and tests the alert rules (deploy/prometheus/); Debian's prometheus
# package ships it. Only promtool is used: the package's server is not started here.
promtool:
	@if command -v promtool >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian prometheus (for promtool) for the alert rule tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	else \
		echo "warning: promtool is missing and we are not root:" \
		     "install Debian's prometheus package, or the alert rule tests are skipped"; \
	fi

install: $(STAMP) chromium promtool

run: $(STAMP)
	$(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check app tests e2e

# BENCH_ARGS: options of bench/bench.py, e.g. BENCH_ARGS="--sizes 1000 --no-latency".
bench: $(STAMP)
	@if [ -f bench/bench.py ]; then \
		$(BIN)/python bench/bench.py $(BENCH_ARGS); \
	else \
		echo "bench/bench.py does not exist yet: no benchmark to run" >&2; exit 1; \
	fi

clean:
	rm -rf artifacts .pytest_cache .ruff_cache
