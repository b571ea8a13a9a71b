"""Argument types of the command line: a bad number or time is refused while parsing; and the
logs a command reads (``--config`` or ``--log``, each repeatable).

Each is an ``argparse`` type (a ``ValueError`` or ``ArgumentTypeError`` becomes exit 2 with the
option's name), so nothing is opened, read or written on a value that cannot be meant: a
negative ``--limit`` (SQLite reads it as "no limit"), ``nan`` (every comparison with it false,
so nothing is checked) or ``inf`` (no time that far back).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from proxy.audit.reader import BadFilter, utc_bound
from proxy.chains import replica_chains
from proxy.settings import AuditSettings, load_settings

# Durations reach back from now to a time the log can name: a century is plenty.
_LONGEST_S = 100 * 365.25 * 24 * 3600
# SQLite's INTEGER: a larger number is an OverflowError where it is bound.
_LARGEST_COUNT = 2**63 - 1


def count(text: str) -> int:
    """A whole number, 0 or more, that SQLite can take (64 bits)."""
    value = int(text)  # its ValueError: argparse's "invalid count value"
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: give 0 or more")
    if value > _LARGEST_COUNT:
        raise argparse.ArgumentTypeError(f"{text} is past {_LARGEST_COUNT}, SQLite's largest")
    return value


def port(text: str) -> int:
    """A TCP port, 0 (one the system picks) to 65535, as ``server.port`` takes: a larger one
    was bound modulo 65536, on a port nobody asked for."""
    value = int(text)  # its ValueError: argparse's "invalid port value"
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port: give 0 to 65535")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more (what 0 means, the option says)."""
    return _duration(text, unit_s=1, name="seconds", zero=True)


def minutes(text: str) -> float:
    """A duration in minutes, more than 0."""
    return _duration(text, unit_s=60, name="minutes", zero=False)


def _duration(text: str, *, unit_s: float, name: str, zero: bool) -> float:
    value = float(text)  # its ValueError: argparse's "invalid ... value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a number of {name}")
    if value < 0 or (value == 0 and not zero):
        raise argparse.ArgumentTypeError(
            f"{text} {name}: give {'0 or more' if zero else 'more than 0'}"
        )
    if value * unit_s > _LONGEST_S:
        raise argparse.ArgumentTypeError(f"{text} {name} is longer than a century")
    return value


def utc_time(text: str) -> str:
    """An ISO 8601 time, as the log writes times (see :func:`proxy.audit.reader.utc_bound`)."""
    try:
        return utc_bound(text)
    except BadFilter as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("time: ")) from None


def add_window(parser: argparse.ArgumentParser, noun: str) -> None:
    """``--since`` and ``--until``, each an ISO 8601 time (see :func:`check_window`)."""
    parser.add_argument(
        "--since",
        type=utc_time,
        help=f"{noun} at or after this time (ISO 8601, with its offset; none: UTC)",
    )
    parser.add_argument(
        "--until",
        type=utc_time,
        help=f"{noun} before this time (ISO 8601, with its offset; none: UTC)",
    )


def check_window(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--until`` at or before ``--since``: a window that holds no time selects no
    record, and a reviewer would read its empty answer as "nothing happened"."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and until <= since:
        parser.error(f"--until {until} is not after --since {since}: the window holds no time")


def log_source_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        action="append",
        help="a gateway's configuration file (repeat it for several replicas)",
    )
    source.add_argument(
        "--log", type=Path, action="append", help="an audit log file (repeat it for several)"
    )


def log_sources(args: argparse.Namespace) -> list[tuple[Path, AuditSettings | None]]:
    """Each log to read, with its gateway's audit settings when a configuration named it: every
    chain of each configuration (one per worker, see ``server.workers``)."""
    if args.log is not None:
        return [(Path(log), None) for log in args.log]
    chains = [chain for config in args.config for chain in replica_chains(load_settings(config))]
    return [(audit.path, audit) for audit in chains]
