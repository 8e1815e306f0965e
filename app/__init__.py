"""webug: the web debug interface for the BMDB (Bare Metal Database)."""

from app.http.worker_metrics import share_metrics_dir

# Here, the package's first code: uvicorn workers must agree on a metrics directory before
# anything imports prometheus_client (app/http/worker_metrics.py).
share_metrics_dir()
