"""A sink's cursor: the last record it delivered, in a small file beside the audit log.

The file (``<audit log>.sink-<name>.cursor``: one per sink and chain, since each worker of
``server.workers`` has a log file of its own) holds ``{"chain", "seq", "hash"}``. It is written
after each delivered batch, to a temporary file that is synced and renamed over it, so a crash
leaves the old cursor or the new one, never half of one: at worst a batch is sent again.
The hash lets the sink notice that the log is not the one the cursor was written for.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a sink stands: records up to ``seq`` (whose hash is ``hash``) were delivered."""

    seq: int = 0
    hash: str = ""


START = Position()


def cursor_path(audit_path: Path, sink: str) -> Path:
    """Where sink ``sink`` keeps its cursor for the chain in ``audit_path``."""
    return audit_path.with_name(f"{audit_path.name}.sink-{sink}.cursor")


class Cursor:
    """The cursor file of one sink on one chain. Blocking: call it off the event loop."""

    def __init__(self, path: Path, chain: str) -> None:
        self.path = path
        self._chain = chain

    def load(self) -> Position:
        """The position saved last; the start of the chain if none was (or it is unreadable,
        which is logged: the records are sent again rather than skipped)."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            position = Position(int(document["seq"]), str(document["hash"]))
            chain = document.get("chain")
        except FileNotFoundError:
            return START
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error(
                "audit sink cursor %s unreadable (%s): sending from the start", self.path, exc
            )
            return START
        if chain != self._chain or position.seq < 0:
            log.error(
                "audit sink cursor %s is for chain %s: sending from the start", self.path, chain
            )
            return START
        return position

    def save(self, position: Position) -> None:
        """Replace the cursor with ``position``, durably."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({"chain": self._chain, "seq": position.seq, "hash": position.hash})
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
