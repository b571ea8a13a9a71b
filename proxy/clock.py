"""The injectable clock. Auth and audit read time from the same one, so tests are deterministic."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds since the epoch, as a float."""

system_clock: Clock = time.time
