"""Runs the scenarios BENCH_SCENARIOS names, in order, and prints the table."""

import os
import signal
import sys
import time

from .harness import Bench
from .operator import RUNNING, stop_operator
from .scenarios import MODULES
from .settings import OUT_DIR, log, setting
from .table import table


def main():
    os.makedirs(os.path.join(OUT_DIR, "logs"), exist_ok=True)
    wanted = [s.strip() for s in setting("BENCH_SCENARIOS").split(",") if s.strip()]
    bench = Bench()
    start = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for name in wanted:
            if name not in MODULES:
                raise SystemExit(f"unknown scenario {name!r} (known: {', '.join(MODULES)})")
            t = time.monotonic()
            MODULES[name].run(bench)
            log(f"{name}: done in {time.monotonic() - t:.0f}s")
    finally:
        for op in list(RUNNING):
            stop_operator(op)
    log(f"all scenarios done in {time.monotonic() - start:.0f}s; results: {os.path.join(OUT_DIR, 'results.json')}")
    print(table(bench.results))


if __name__ == "__main__":
    main()
