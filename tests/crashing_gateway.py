"""A gateway that dies at one crash point, as ``kill -9`` would: the crash tests' own ``serve``.

    python -m tests.crashing_gateway --config gateway.toml --crash-at password_altered
    python -m tests.crashing_gateway --config gateway.toml --writer-bug-file PATH

With ``--writer-bug-file``, the audit writer's next write raises an unexpected exception (as a
bug in it would) each time ``PATH`` appears; the file is consumed.

It is ``cyphergate serve`` with a :class:`~proxy.faults.Faults` object passed to ``create_app``;
production has no way to ask for one (a ``faults`` section in a configuration is refused).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import uvicorn

from proxy.app import create_app
from proxy.faults import CrashPoint
from proxy.settings import load_settings

log = logging.getLogger(__name__)


class CrashAt:
    """Ends the process with status 137 at ``point``, and passes every other point; raises a
    :class:`WriterBug` in the audit writer when ``writer_bug_file`` appears."""

    def __init__(self, point: CrashPoint | None, writer_bug_file: Path | None = None) -> None:
        self.point = point
        self.writer_bug_file = writer_bug_file

    def reached(self, point: CrashPoint) -> None:
        if point == self.point:
            log.critical("fault injection: dying at %s", point)
            os._exit(137)
        if point == "audit_batch" and self.writer_bug_file is not None:
            try:
                self.writer_bug_file.unlink()
            except FileNotFoundError:
                return
            raise WriterBug("fault injection: an unexpected exception in the audit writer")


class WriterBug(Exception):
    """What the injected bug raises: no handler of the gateway knows it."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--crash-at", choices=get_args(CrashPoint))
    parser.add_argument("--writer-bug-file", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    logging.basicConfig(level=logging.INFO)
    app = create_app(settings, faults=CrashAt(args.crash_at, args.writer_bug_file))
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level="info",
        proxy_headers=False,  # as `cyphergate serve` runs it
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
