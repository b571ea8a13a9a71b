"""What every benchmark here reports: latency percentiles and a process's peak memory.

The benchmarks run as scripts (``python benchmarks/<name>.py``), so they import this module by
its bare name from their own folder.
"""

from __future__ import annotations

from pathlib import Path


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``samples``, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of process ``pid`` (Linux ``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
