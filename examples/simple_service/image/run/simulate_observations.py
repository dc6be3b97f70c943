#!/usr/bin/env python3
"""Simulate a stream of observations: append one random value (normally distributed) per
interval to ``$GOLEM_ROOT/out/observations``, one per line, until stopped.

``GOLEM_ROOT`` defaults to ``/golem`` (where the image is in the sandbox). The interval is
``--interval``, else ``$GOLEM_SIMULATOR_INTERVAL``, else 1 second. The first observation is
written at once. ``simulate_observations_ctl.py`` runs this in the background.

usage: simulate_observations.py [--interval SECONDS] [--count N] [--mean M] [--stdev S]
                                [--seed SEED]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_INTERVAL = 1.0
INTERVAL_ENV = "GOLEM_SIMULATOR_INTERVAL"


def golem_root() -> Path:
    """The image's root: ``$GOLEM_ROOT``, by default ``/golem``."""
    return Path(os.environ.get("GOLEM_ROOT") or "/golem")


def observations_path() -> Path:
    """The file the observations are appended to (its folder is made if missing)."""
    out = golem_root() / "out"
    out.mkdir(parents=True, exist_ok=True)
    return out / "observations"


def positive_float(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above zero: {text!r}")
    return value


def default_interval() -> float:
    """``$GOLEM_SIMULATOR_INTERVAL`` when it is a valid interval, else 1 second."""
    text = os.environ.get(INTERVAL_ENV)
    if not text:
        return DEFAULT_INTERVAL
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError as exc:
        sys.exit(f"simulate_observations: ${INTERVAL_ENV}: {exc}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Append a random observation to $GOLEM_ROOT/out/observations every "
        "interval, forever (or --count times)."
    )
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=None,
        help=f"seconds between observations (default: ${INTERVAL_ENV}, else 1)",
    )
    parser.add_argument(
        "--count", type=int, default=0, help="stop after N observations (default: never)"
    )
    parser.add_argument("--mean", type=float, default=14.0, help="the distribution's mean")
    parser.add_argument("--stdev", type=float, default=3.0, help="its standard deviation")
    parser.add_argument("--seed", type=int, default=None, help="seed the random generator")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interval: float = args.interval if args.interval is not None else default_interval()
    generator = random.Random(args.seed)
    path = observations_path()

    def terminate(signum: int, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, terminate)
    written = 0
    next_at = time.monotonic()
    while True:
        value = generator.gauss(args.mean, args.stdev)
        # One write of one whole line per open, in append mode: readers see whole lines.
        with path.open("a", encoding="ascii") as file:
            file.write(f"{value:.6f}\n")
        written += 1
        if 0 < args.count <= written:
            return 0
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
