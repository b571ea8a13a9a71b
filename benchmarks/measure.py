"""What the benchmarks here share: the local stack they run on, latency percentiles, a
process's CPU time and peak memory, the gateway's cache counters, and the data the request-path
benchmarks read and the clients they read it with.

The benchmarks run as scripts (``python benchmarks/<name>.py``), so they import this module by
its bare name from their own folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import neo4j
import tomli_w
from neo4j import GraphDatabase

from proxy.devstack.install import default_cache_dir
from proxy.devstack.stack import DevStack
from proxy.devstack.state import DemoClient
from proxy.ports import free_ports

REPO = Path(__file__).resolve().parent.parent
# A client whose tokens outlive any run: a load generator must not meet an expired token.
BENCH_READER = DemoClient("bench_reader", "demo_reader", token_ttl_s=3600)

# 1,000 indexed items, read one at a time by id.
BENCH_ITEM_READ = "MATCH (i:BenchItem {id: $id}) RETURN i.name AS name"
# The small reads the request-path benchmarks send, each in the same order (bench_work).
BENCH_STATEMENTS = (
    BENCH_ITEM_READ,
    "MATCH (i:BenchItem) WHERE i.id < $id RETURN count(i) AS n",
    "RETURN $id AS id, $id * 2 AS twice",
)
Work = list[tuple[str, dict[str, Any]]]


def bench_work(requests: int) -> Work:
    """``requests`` of the :data:`BENCH_STATEMENTS` with their parameters, the same for every
    benchmark and target (a fixed seed)."""
    rng = random.Random(7)
    return [(rng.choice(BENCH_STATEMENTS), {"id": rng.randrange(1, 1000)}) for _ in range(requests)]


def main_on_neo4j(
    description: str,
    run: Callable[[dict[str, Any], Work], Coroutine[Any, Any, None]],
    *,
    requests: int,
) -> None:
    """The command line of a benchmark of Neo4j alone (no gateway process): ``--requests``
    (default ``requests``) of :func:`bench_work`, given to ``run`` with the status of a local
    stack whose Neo4j holds the items they read."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=requests, help="per variant and pass")
    args = parser.parse_args()
    with local_stack() as stack:
        status = stack.up()
        seed_bench_items(status["neo4j"])
        asyncio.run(run(status, bench_work(args.requests)))


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
    """The ``q`` quantile (0 to 1) of ``samples``, nearest rank; NaN if there are none (every
    statement of the target failed: the report says so in its errors column)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of process ``pid`` (Linux ``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> bool:
    """Start ``VmHWM`` of process ``pid`` again from its present RSS (Linux 4.0 and later, as
    the process's owner); False if it cannot be reset (the peak is then the run's so far)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# Kernel clock ticks per second: the unit of utime and stime in /proc/<pid>/stat.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CACHE_LOOKUP = re.compile(
    r'^cyphergate_cache_lookups_total\{cache="(\w+)",result="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE
)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """The CPU time (user plus system) process ``pid`` has used so far, from
    ``/proc/<pid>/stat``: all its threads, reaped ones too, or only ``thread`` (a thread id; the
    main thread's is the pid). Unlike wall-clock time it does not grow when other processes
    compete for the cores; its resolution is one clock tick (10 ms)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    # After the ")" that ends the command name: field 3 (state) onwards; utime, stime are 14, 15.
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (a supervisor's workers, ``server.workers``), from ``/proc``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # a process that just ended
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == pid:
                    children.append(int(entry.name))
    return [pid, *sorted(children)]


@contextmanager
def extra_gateway(
    stack: DevStack,
    folder: Path,
    workers: int,
    *,
    name: str | None = None,
    settings: Sequence[tuple[Sequence[str], Any]] = (),
    env: Mapping[str, str] | None = None,
    repo: Path | None = None,
) -> Iterator[dict[str, Any]]:
    """A gateway beside the stack's, configured as it is but with ``workers`` processes and
    ``settings`` (each a key path and its value), its own ports, audit chain, leases record and
    leased-user prefix (after ``name``, by default the number of workers), ``env`` added to its
    environment, and the code of ``repo`` (another checkout; by default this one); stopped at
    the end.
    Yields its ``pid`` (the supervisor's, with several workers), ``gateway_url`` and
    ``gateway_bolt_uri``."""
    name = name or f"{workers}w"
    config = tomllib.loads(stack.gateway_config_path.read_text(encoding="utf-8"))
    http_port, bolt_port = free_ports(2)
    folder.mkdir(parents=True, exist_ok=True)
    config["server"].update(port=http_port, bolt_port=bolt_port, workers=workers)
    config["audit"].update(path=str(folder / "audit.sqlite3"), chain_id=f"bench-{name}")
    config["neo4j"].update(
        lease_user_prefix=f"cg_bench{name}_", leases_path=str(folder / "leases.sqlite3")
    )
    # After this gateway's own paths, so that a setting given (audit.path) is the one it runs.
    for keys, value in settings:
        section = config
        for key in keys[:-1]:
            section = section.setdefault(key, {})
        section[keys[-1]] = value
    config_file = folder / "gateway.toml"
    config_file.write_text(tomli_w.dumps(config), encoding="utf-8")
    url = f"http://127.0.0.1:{http_port}"
    with (folder / "gateway.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=repo or REPO,  # python -m imports the package from its working directory
            env={**os.environ, **stack.gateway_aws_env(), **(env or {})},
        )
    try:
        deadline = time.monotonic() + 120
        while True:  # bounded by the deadline
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} gateway did not start: see {folder}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield {
            "pid": process.pid,
            "gateway_url": url,
            "gateway_bolt_uri": f"bolt://127.0.0.1:{bolt_port}",
        }
    finally:
        process.terminate()
        process.wait(timeout=60)


def cpu_snapshot(processes: Mapping[str, tuple[int, int | None]]) -> dict[str, float]:
    """:func:`cpu_seconds` of each named ``(pid, thread or None)``."""
    return {name: cpu_seconds(pid, thread) for name, (pid, thread) in processes.items()}


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """:func:`cpu_seconds` of each thread process ``pid`` has now, by thread id."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            threads[int(task.name)] = cpu_seconds(pid, int(task.name))
    return threads


def cache_hit_rates(metrics_page: str) -> dict[str, tuple[float, float]]:
    """``cache -> (hits, lookups)`` from the gateway's ``/metrics`` page (the analysis cache)."""
    counts: dict[str, dict[str, float]] = {}
    for cache, result, value in _CACHE_LOOKUP.findall(metrics_page):
        counts.setdefault(cache, {})[result] = float(value)
    return {
        cache: (by_result.get("hit", 0.0), sum(by_result.values()))
        for cache, by_result in sorted(counts.items())
    }


_AUDIT_COUNTS = re.compile(r"^cyphergate_audit_(records|commits)_total ([0-9.e+]+)$", re.MULTILINE)


def audit_commits(metrics_page: str) -> tuple[float, float]:
    """``(records, commits)`` the gateway's audit writer has committed, from ``/metrics``."""
    counts = {name: float(value) for name, value in _AUDIT_COUNTS.findall(metrics_page)}
    return counts.get("records", 0.0), counts.get("commits", 0.0)


def seed_bench_items(neo4j: dict[str, Any]) -> None:
    """Create the items ``BENCH_ITEM_READ`` reads, as the stack's administrator (``neo4j`` is
    the devstack status's ``neo4j`` section)."""
    with GraphDatabase.driver(neo4j["bolt_uri"], auth=(neo4j["user"], neo4j["password"])) as d:
        d.execute_query(
            "UNWIND range(1, 1000) AS id CREATE (:BenchItem {id: id, name: 'item ' + id})"
        )
        d.execute_query("CREATE INDEX bench_id IF NOT EXISTS FOR (i:BenchItem) ON (i.id)")


# The gateway's answer when it is saturated (proxy/gateway/admission.py): HTTP 503 with
# Retry-After, over Bolt a FAILURE with this transient code.
OVERLOADED = "Neo.TransientError.Request.ResourceExhaustion"
# What the drivers wait before their first retry of a transient failure.
DRIVER_RETRY_DELAY_S = 1.0


class Refused(Exception):
    """The target refused the statement for now (overloaded); try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"overloaded, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


Send = Callable[[str, dict[str, Any]], Awaitable[None]]
# A client of one target: given the number of concurrent clients, a way to send a statement
# (raising on any failure), with its connections open for as long as the block lasts.
Client = Callable[[int], AbstractAsyncContextManager[Send]]


def bolt_client(uri: str, auth: neo4j.Auth, database: str = "neo4j") -> Client:
    """The official async driver, one auto-commit statement per session, every row read (as
    Airflow's ``Neo4jHook`` runs a statement); a pool of one connection per client."""

    @asynccontextmanager
    async def client(clients: int) -> AsyncIterator[Send]:
        driver = neo4j.AsyncGraphDatabase.driver(uri, auth=auth, max_connection_pool_size=clients)
        async with driver:

            async def send(statement: str, parameters: dict[str, Any]) -> None:
                try:
                    async with driver.session(database=database) as session:
                        result = await session.run(statement, parameters)
                        await result.values()
                except neo4j.exceptions.TransientError as exc:
                    if exc.code == OVERLOADED:
                        raise Refused(DRIVER_RETRY_DELAY_S) from exc
                    raise

            yield send

    return client


def http_client(
    url: str, auth: tuple[str, str] | None, headers: dict[str, str], *, library: str = "aiohttp"
) -> Client:
    """A Query API v2 client (``url`` ends in ``/query/v2``), one keep-alive connection per
    client; a ``503`` with ``Retry-After`` is a refusal, anything else but ``202`` a failure.

    ``library``: ``aiohttp`` (the default) or ``httpx``. httpx's pool costs this process about
    7 ms of CPU per statement at 64 connections (2 ms at 16), so that on two cores the load
    generator, not the target, set the pace; aiohttp's costs a fraction of that."""
    if library == "httpx":
        return _httpx_client(url, None if auth is None else httpx.BasicAuth(*auth), headers)

    @asynccontextmanager
    async def client(clients: int) -> AsyncIterator[Send]:
        connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
        login = None if auth is None else aiohttp.BasicAuth(*auth)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            connector=connector, auth=login, headers=headers, timeout=timeout
        ) as http:

            async def send(statement: str, parameters: dict[str, Any]) -> None:
                body = {"statement": statement, "parameters": parameters}
                async with http.post(url, json=body) as response:
                    text = await response.read()
                    if response.status == 503 and "retry-after" in response.headers:
                        raise Refused(float(response.headers["retry-after"]))
                    if response.status != 202:
                        raise RuntimeError(f"HTTP {response.status}: {text[:160]!r}")

            yield send

    return client


def _httpx_client(url: str, auth: httpx.Auth | None, headers: dict[str, str]) -> Client:
    @asynccontextmanager
    async def client(clients: int) -> AsyncIterator[Send]:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(auth=auth, headers=headers, limits=limits, timeout=30) as http:

            async def send(statement: str, parameters: dict[str, Any]) -> None:
                body = {"statement": statement, "parameters": parameters}
                response = await http.post(url, json=body)
                if response.status_code == 503 and "retry-after" in response.headers:
                    raise Refused(float(response.headers["retry-after"]))
                if response.status_code != 202:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:160]}")

            yield send

    return client


async def send_all(
    send: Send, work: list[tuple[str, dict[str, Any]]], clients: int, pace: float | None = None
) -> tuple[list[float], list[BaseException], int, float]:
    """Send ``work`` (statement, parameters) from ``clients`` concurrent workers, each taking the
    next statement when it is free; the latency in ms of each success, the failures, the
    number refused as overloaded, and when (``time.perf_counter()``) the last answer came. A
    worker refused waits as told (``Retry-After``, or the drivers' first retry delay), as a
    well-behaved client does, then takes the next statement: the refused one is counted, not
    sent again, so that every loop stays bounded. A wait that outlasts the work is not the
    target's time: measure up to the last answer. ``pace``: statements per second at most, all
    workers together (the n-th is not sent before n/pace seconds)."""
    items = iter(enumerate(work))
    latencies: list[float] = []
    failures: list[BaseException] = []
    refused = 0
    begun = last = time.perf_counter()

    async def worker() -> None:
        nonlocal refused, last
        for n, (statement, parameters) in items:
            if pace is not None and (early := begun + n / pace - time.perf_counter()) > 0:
                await asyncio.sleep(early)
            started = time.perf_counter()
            try:
                await send(statement, parameters)
            except Refused as refusal:
                refused += 1
                last = time.perf_counter()
                await asyncio.sleep(refusal.retry_after_s)
                continue
            except Exception as exc:  # counted and shown, never fatal to the run
                failures.append(exc)
                last = time.perf_counter()
                continue
            last = time.perf_counter()
            latencies.append((last - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, failures, refused, last
