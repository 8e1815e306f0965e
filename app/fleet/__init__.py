"""Fleet statistics on /metrics: upstream's gauges and webug's own, collected in the
background by one process per host (`collector.py`)."""
