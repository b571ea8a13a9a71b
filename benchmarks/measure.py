"""What the benchmarks here share: the local stack they run on, latency percentiles, a
process's peak memory, and the data the request-path benchmarks read.

The benchmarks run as scripts (``python benchmarks/<name>.py``), so they import this module by
its bare name from their own folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neo4j import GraphDatabase

from proxy.devstack.install import default_cache_dir
from proxy.devstack.stack import DevStack
from proxy.devstack.state import DemoClient

REPO = Path(__file__).resolve().parent.parent
# A client whose tokens outlive any run: a load generator must not meet an expired token.
BENCH_READER = DemoClient("bench_reader", "demo_reader", token_ttl_s=3600)

# 1,000 indexed items, read one at a time by id.
BENCH_ITEM_READ = "MATCH (i:BenchItem {id: $id}) RETURN i.name AS name"


@contextmanager
def local_stack(**options: Any) -> Iterator[DevStack]:
    """The real local stack (not yet started: call ``up``) in a temporary folder, with the
    repository's policies; stopped and removed at the end. ``options`` go to :class:`DevStack`."""
    with tempfile.TemporaryDirectory(prefix="cyphergate-bench-") as run_dir:
        stack = DevStack(
            Path(run_dir) / "stack",
            cache_dir=default_cache_dir(),
            policies_dir=REPO / "policies",
            **options,
        )
        try:
            yield stack
        finally:
            stack.down()


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


def seed_bench_items(neo4j: dict[str, Any]) -> None:
    """Create the items ``BENCH_ITEM_READ`` reads, as the stack's administrator (``neo4j`` is
    the devstack status's ``neo4j`` section)."""
    with GraphDatabase.driver(neo4j["bolt_uri"], auth=(neo4j["user"], neo4j["password"])) as d:
        d.execute_query(
            "UNWIND range(1, 1000) AS id CREATE (:BenchItem {id: id, name: 'item ' + id})"
        )
        d.execute_query("CREATE INDEX bench_id IF NOT EXISTS FOR (i:BenchItem) ON (i.id)")
