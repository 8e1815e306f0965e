"""Command line: `python -m app migrate|seed|simulate --dsn DSN`.

These commands write to the database they are given (a demo or test BMDB);
the web application itself never writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    migrate_cmd = commands.add_parser("migrate", help="apply pending sql/migrations")
    migrate_cmd.add_argument("--dsn", required=True)

    seed_cmd = commands.add_parser("seed", help="insert a simulated fleet")
    seed_cmd.add_argument("--dsn", required=True)
    seed_cmd.add_argument("--machines", type=int, default=500)
    seed_cmd.add_argument("--rng-seed", type=int, default=None)

    simulate_cmd = commands.add_parser("simulate", help="run the fleet simulator until ^C")
    simulate_cmd.add_argument("--dsn", required=True)
    simulate_cmd.add_argument("--tick-seconds", type=float, default=1.0)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    if args.command == "migrate":
        from app.bmdb.migrate import DirtyDatabaseError, migrate

        try:
            applied = asyncio.run(migrate(args.dsn))
        except DirtyDatabaseError as exc:
            print(f"webug migrate: {exc}", file=sys.stderr)
            return 1
        print(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ""))
    elif args.command == "seed":
        from app.demo.seed import seed_fleet

        print(asyncio.run(seed_fleet(args.dsn, args.machines, rng_seed=args.rng_seed)))
    elif args.command == "simulate":
        from app.demo.simulate import run_simulator

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_simulator(args.dsn, tick_seconds=args.tick_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
