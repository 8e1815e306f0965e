# syntax=docker/dockerfile:1
# webug, the read-only web debug UI for the BMDB.
#
#   docker build -t webug .
#   docker run -p 8000:8000 -e WEBUG_DSN=postgresql://webug@bmdb:26257/bmdb webug
#
# Not built in this project's CI (no Docker there): tests/test_compose.py checks its
# structure. Python dependencies come from requirements.lock: every package of the
# runtime closure pinned to the version the test suite ran against, installed without
# resolving anything (--no-deps) and checked for consistency (pip check). For a fully
# repeatable base, pin the image by digest: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/webug
COPY requirements.lock /tmp/requirements.lock
RUN /opt/webug/bin/pip install --no-cache-dir --no-deps --require-virtualenv \
        -r /tmp/requirements.lock \
    && /opt/webug/bin/pip check

FROM ${PYTHON_IMAGE}
# An unprivileged user with a home of its own (the demo keeps its embedded PostgreSQL
# under ~/.cache when no WEBUG_DSN is given; PostgreSQL refuses to run as root anyway).
RUN groupadd --system --gid 10001 webug \
    && useradd --system --uid 10001 --gid webug --create-home --home-dir /home/webug \
        --shell /usr/sbin/nologin webug
COPY --from=build /opt/webug /opt/webug
WORKDIR /srv/webug
# The application and its migrations, owned by root: webug can read but not change them.
COPY app ./app
COPY sql ./sql
ENV PATH=/opt/webug/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEBUG_WORKERS=1 \
    WEBUG_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
# WEBUG_WORKERS uvicorn processes. With more than one, PROMETHEUS_MULTIPROC_DIR makes
# /metrics add up every worker's requests and queries. uvicorn's own access log is off:
# webug.access logs each request with its ID and route. Behind a load balancer, set
# FORWARDED_ALLOW_IPS (uvicorn reads it) to the balancer's addresses.
CMD ["sh", "-c", "if [ \"$WEBUG_WORKERS\" -gt 1 ]; then export PROMETHEUS_MULTIPROC_DIR=\"$(mktemp -d)\"; fi; exec uvicorn app.main:app --host 0.0.0.0 --port 8000 --workers \"$WEBUG_WORKERS\" --no-access-log"]
