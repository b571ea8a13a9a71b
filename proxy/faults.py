"""Crash injection for the crash tests: an object the tests pass in, never a setting.

The credential code calls :meth:`Faults.reached` at the points where a crash would leave the most
to recover from. In production nothing is passed and :data:`NO_FAULTS` does nothing; the crash
tests start a gateway (``tests/crashing_gateway.py``) whose ``Faults`` ends the process there,
as ``kill -9`` would. A configuration file cannot ask for it.
"""

from __future__ import annotations

from typing import Literal, Protocol

CrashPoint = Literal["lease_user_created", "password_altered"]


class Faults(Protocol):
    """Told each time the gateway passes a crash point; may end the process there."""

    def reached(self, point: CrashPoint) -> None: ...


class NoFaults:
    """Production's :class:`Faults`: passes every point."""

    def reached(self, point: CrashPoint) -> None:
        del point


NO_FAULTS = NoFaults()
