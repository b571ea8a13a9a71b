"""Crash injection for the crash tests: an object the tests pass in, never a setting.

The credential code calls :meth:`Faults.reached` at the points where a crash would leave the most
to recover from; the audit writer calls it before each write, where a test raises the unexpected
exception a bug would. In production nothing is passed and :data:`NO_FAULTS` does nothing; the crash
tests start a gateway (``tests/crashing_gateway.py``) whose ``Faults`` ends the process there,
as ``kill -9`` would. A configuration file cannot ask for it.
"""

from __future__ import annotations

from typing import Literal, Protocol

# audit_batch: the audit writer is about to write a batch (a test raises there, as a bug would).
CrashPoint = Literal["lease_user_created", "password_altered", "audit_batch"]


class Faults(Protocol):
    """Told each time the gateway passes a crash point; may end the process there."""

    def reached(self, point: CrashPoint) -> None: ...


class NoFaults:
    """Production's :class:`Faults`: passes every point."""

    def reached(self, point: CrashPoint) -> None:
        del point


NO_FAULTS = NoFaults()
