"""The ``cyphergate`` command line as a user runs it: ``python -m proxy`` in a process of its
own, from the checkout, its output read as text."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from tests.second_gateway import REPO


def cyphergate(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``cyphergate ARGS`` to its end (whatever its exit status), with ``env`` added to this
    process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=REPO,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
