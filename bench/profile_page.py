"""Profile one webug page in-process with pyinstrument: where its time goes.

    .venv/bin/python bench/profile_page.py DSN PATH [--requests 200] [--htmx]

Runs the app (lifespan included) against the BMDB at DSN, requests PATH a few times to
warm the caches, then profiles `--requests` more and prints the call tree. `--htmx`
sends `HX-Request: true` (the fragment a poll gets). The profiler slows everything
down; read the tree for proportions, and bench/bench.py for times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
from pyinstrument import Profiler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARM_UP = 20


async def profile(path: str, requests: int, headers: dict[str, str]) -> None:
    from app.main import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for _ in range(WARM_UP):
                response = await client.get(path, headers=headers)
            print(f"{path}: HTTP {response.status_code}, {len(response.content):,} bytes")
            profiler = Profiler(interval=0.0005, async_mode="enabled")
            started = time.perf_counter()
            with profiler:
                for _ in range(requests):
                    await client.get(path, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000 / requests
            print(f"{elapsed:.2f} ms per request under the profiler")
            print(profiler.output_text(unicode=False, color=False))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dsn")
    parser.add_argument("path")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--htmx", action="store_true")
    args = parser.parse_args()
    os.environ["WEBUG_DSN"] = args.dsn
    headers = {"HX-Request": "true"} if args.htmx else {}
    try:
        import uvloop  # as uvicorn runs webug

        uvloop.run(profile(args.path, args.requests, headers))
    except ImportError:
        asyncio.run(profile(args.path, args.requests, headers))


if __name__ == "__main__":
    main()
