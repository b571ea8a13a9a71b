"""Benchmark: the same small reads sent straight to Neo4j and through CypherGate, over Bolt and
over HTTP, at several numbers of concurrent clients, in one run on the same local stack.

The targets, each given the same statements in the same order:

* (a) ``bolt-neo4j``    Neo4j's Bolt port, the official async driver, basic auth: the baseline,
  what a DAG uses without the gateway;
* (b) ``bolt-gateway``  the gateway's Bolt door, the same driver, a bearer token;
* (c) ``http-neo4j``    Neo4j's Query API v2, basic auth;
* (d) ``http-gateway``  the gateway's Query API door, a bearer token;
* and, when (a) and (b) both run, ``bolt-neo4j-paced``: (a) again, sent no faster than (b)
  went at the same number of clients (placed after (b), its pace is (b)'s first half's), so
  that Neo4j's CPU per statement through the gateway can also be set beside its own at the
  same load: a Neo4j serving half as many statements a second spends more on each.

A client runs one auto-commit statement at a time (a session, ``run``, every row read), as
Airflow's ``Neo4jHook`` does. First Neo4j is sent statements straight until its CPU per
statement stops falling (its JIT: a fresh JVM's first passes cost it several times what later
ones do), then every target gets one unmeasured pass (the gateway's caches), then the idle
CPU rate of each process is read over a few seconds. At each number of clients the targets then
run in mirrored order (a b c d d c b a), each on half of its statements, so that drift falls on
all of them alike; each half begins with an unmeasured warm-up that opens its connections.
Every loop is bounded by a statement count.

A statement the gateway refuses as overloaded (503 with ``Retry-After``; over Bolt a transient
``FAILURE``) is counted apart from errors (column ``503s``); its client waits as told (or the
drivers' first retry delay, 1 s) and goes on with the next statement. Throughput and the CPU per
statement count the statements that ran; the CPU spent refusing is in the latter.

For each target and number of clients it prints throughput, p50/p99 latency, errors, and the CPU
time (user plus system, read from ``/proc/<pid>/stat`` around each measured half) per statement
of the gateway (and of its event-loop thread alone), Neo4j's JVM, OPA and this client; then the
ratios (b)/(a) and (d)/(c), the issue's targets, the gateway's peak RSS at each number of clients
(``VmHWM``, reset before each), each target's throughput over its own at 16 clients, the other
goals of the cost issue, each met or not (Neo4j's CPU per statement through the gateway within
1.25 of straight Bolt's, no lower throughput at up to 64 clients than at 16 and, beyond, refusals
with Retry-After rather than a p99 of a second or more, no errors, every gateway process within
150 MiB), and the gateway's cache hit rates from ``/metrics``. On a busy machine
trust the CPU time per statement: throughput and latency move with whatever else runs (the load
average is printed before and after). At one client the CPU per statement includes each
process's idle rate times the time a statement takes.

    .venv/bin/python benchmarks/request_path.py [--requests 4000] [--concurrency 1 16 64 256]
        [--targets bolt-neo4j bolt-gateway http-neo4j http-gateway] [--workers 1 [2 ...]]
        [--profile FILE [--profile-target http-gateway]] [--http-client aiohttp|httpx]
        [--gateway-setting server.admission.max_in_flight=16 ...]

``--workers N``: the gateway runs as N processes (``server.workers``). Given several counts,
a gateway runs for each (the stack's with the first, others beside it on the same Neo4j and
OPA), each gateway target is measured once per count (``http-gateway-w2``: the gateway with two
workers) in the same mirrored order, and a gateway's CPU is that of all its processes (the
supervisor and every worker); the share each worker took is printed too.

``--variant KEY=VALUE`` (and ``--variant-env NAME=VALUE``, ``--variant-repo DIR``): one more
gateway runs beside, with the first count of workers and these settings (and environment, and
the code of another checkout: a change with no setting of its own), each gateway target is
measured on it too (``http-gateway-variant``) in the same mirrored order, and its CPU per
statement, throughput and p50 are printed against the same gateway without them: a change
weighed in one run, whatever else the machine does meanwhile.

``--rounds N``: at each number of clients the mirrored order runs N times over, each time on
both halves, and the variant's gateway CPU ratio is printed for each round too, with their
median and range: a change smaller than the drift between rounds is not one the run can see.

``--requests`` counts the statements per target and number of clients (and round).
``--profile FILE``: afterwards ``bolt-gateway`` (or ``--profile-target``) runs once more,
unmeasured, at 16 clients (or the highest number given) on twice ``--requests`` statements with
py-spy sampling the gateway; FILE gets py-spy's raw stacks and benchmarks/hotspots.py's
summary of them is printed.
``--http-client``: the HTTP targets' load generator, aiohttp by default (httpx's connection pool
costs this process several milliseconds of CPU per statement at 64 clients, enough on two cores
to set the pace itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import neo4j
from hotspots import summarise  # benchmarks/hotspots.py
from measure import (  # benchmarks/measure.py
    BENCH_READER,
    Client,
    audit_commits,
    bench_work,
    bolt_client,
    cache_hit_rates,
    cpu_seconds,
    extra_gateway,
    http_client,
    local_stack,
    peak_rss_mib,
    percentile,
    process_tree,
    reset_peak_rss,
    seed_bench_items,
    send_all,
    thread_cpu_seconds,
)

TARGETS = ("bolt-neo4j", "bolt-gateway", "http-neo4j", "http-gateway")
# Straight Bolt again, paced to the throughput the (first) gateway's Bolt door reached at the
# same number of clients: Neo4j's CPU per statement at the same load, with and without us.
PACED = "bolt-neo4j-paced"
# The processes whose CPU time is read, and the columns they are printed in; "gw loop" is the
# gateway's main thread (its event loop), a part of "gateway", not added to the total.
COLUMNS = (("gateway", 9), ("gw loop", 8), ("neo4j", 7), ("opa", 6), ("client", 7))
# The targets: gateway CPU per Bolt statement, and Bolt throughput (b)/(a) at 16 clients;
# over HTTP, gateway CPU per statement, and HTTP throughput (d) over straight Bolt (a) at 16.
CPU_TARGET_MS, THROUGHPUT_TARGET = 0.6, 0.5
HTTP_CPU_TARGET_MS, HTTP_THROUGHPUT_TARGET = 1.0, 0.35
# The cost issue's other goals: Neo4j's CPU per statement through the gateway over straight Bolt,
# and each gateway process's peak RSS.
NEO4J_CPU_GOAL, RSS_GOAL_MIB = 1.25, 150.0
# No collapse: throughput at up to 64 clients no lower than at 16; beyond, a saturated gateway
# refuses with 503 and Retry-After instead of answering in seconds.
COLLAPSE_CLIENTS, SATURATED_P99_MS = 64, 1000.0
Work = list[tuple[str, dict[str, Any]]]
# A measured process: named (pid, thread) pairs whose CPU times add up (a gateway's workers).
Processes = dict[str, list[tuple[int, int | None]]]


def snapshot(processes: Processes) -> dict[str, float]:
    """CPU seconds used so far by each named group of processes or threads."""
    return {
        name: sum(cpu_seconds(pid, thread) for pid, thread in members)
        for name, members in processes.items()
    }


def gateway_processes(pid: int) -> dict[str, list[tuple[int, int | None]]]:
    """The "gateway" (every process of it) and "gw loop" (each one's main thread) groups."""
    tree = process_tree(pid)
    workers = tree[1:] or tree  # a supervisor's own loop only waits on its workers
    return {"gateway": [(p, None) for p in tree], "gw loop": [(p, p) for p in workers]}


@dataclass
class Result:
    """One target at one number of clients, over its measured halves."""

    target: str
    clients: int
    statements: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    refused: int = 0  # overload refusals (503 + Retry-After, Bolt's transient FAILURE)
    cpu_s: dict[str, float] = field(default_factory=dict)
    worker_cpu_s: dict[int, float] = field(default_factory=dict)  # by worker pid

    @property
    def answered(self) -> int:
        """Statements that ran (neither refused nor failed)."""
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Statements that ran, per second."""
        return self.answered / self.seconds

    def cpu_ms(self, process: str) -> float:
        """CPU milliseconds ``process`` spent per statement that ran (refusals' cost included)."""
        return 1000 * self.cpu_s.get(process, 0.0) / max(1, self.answered)

    def add(self, other: Result) -> None:
        """Count ``other`` (the same target and clients, another round) in this one."""
        self.statements += other.statements
        self.seconds += other.seconds
        self.latencies_ms += other.latencies_ms
        self.failures += other.failures
        self.refused += other.refused
        for name, seconds in other.cpu_s.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + seconds
        for pid, seconds in other.worker_cpu_s.items():
            self.worker_cpu_s[pid] = self.worker_cpu_s.get(pid, 0.0) + seconds

    def total_cpu_ms(self) -> float:
        return sum(self.cpu_ms(process) for process, _ in COLUMNS if process != "gw loop")


async def measure_half(
    client: Client,
    work: Work,
    clients: int,
    processes: Processes,
    result: Result,
    pace: float | None = None,
) -> None:
    """Warm up (open the connections), then send ``work`` (at most ``pace`` statements a
    second) and add it to ``result``."""
    workers = [pid for pid, _ in processes.get("gw loop", [])]
    async with client(clients) as send:
        await send_all(send, warm_up(work, clients), clients)
        before, started = snapshot(processes), time.perf_counter()
        by_worker = {pid: cpu_seconds(pid) for pid in workers}
        latencies, failures, refused, last = await send_all(send, work, clients, pace)
        seconds, after = last - started, snapshot(processes)
        for pid in workers:
            spent = cpu_seconds(pid) - by_worker[pid]
            result.worker_cpu_s[pid] = result.worker_cpu_s.get(pid, 0.0) + spent
    result.statements += len(work)
    result.seconds += seconds
    result.latencies_ms += latencies
    result.failures += failures
    result.refused += refused
    for name in processes:
        result.cpu_s[name] = result.cpu_s.get(name, 0.0) + after[name] - before[name]
    print(f"  {result.target:<15} x{clients:<3} {len(work)} in {seconds:.1f} s", file=sys.stderr)


def mirrored(order: list[str], halves: tuple[Work, Work]) -> Iterator[tuple[str, Work]]:
    """Each target with the half of the statements it runs, in mirrored order (a b c c b a: the
    first half forwards, the second backwards), so that drift falls on all of them alike."""
    for name in order:
        yield name, halves[0]
    for name in reversed(order):
        yield name, halves[1]


def warm_up(work: Work, clients: int) -> Work:
    """What a measured half sends first, unmeasured: enough to open every connection."""
    return work[: max(50, 4 * clients)]


async def unmeasured(client: Client, work: Work, clients: int) -> None:
    async with client(clients) as send:
        await send_all(send, work, clients)


def warm_neo4j(
    client: Client,
    work: Work,
    pid: int,
    *,
    statements: int = 4000,
    least: int = 10,
    most: int = 25,
) -> None:
    """Send statements straight to Neo4j, in passes, until its CPU per statement stops falling:
    a fresh JVM's first passes cost it several times what later ones do (measured: 1.7 ms per
    statement falling to 0.2 over some 40,000 statements, while its JIT compiles), a drift that
    no mirrored order cancels. At least ``least`` passes, then until three in a row do not beat
    the best so far by a tenth (a pass is noisy), at most ``most``."""
    passes = (work * (statements // len(work) + 1))[:statements]
    best, flat = float("inf"), 0
    for n in range(1, most + 1):
        before = cpu_seconds(pid)
        asyncio.run(unmeasured(client, passes, 16))
        cost = 1000 * (cpu_seconds(pid) - before) / len(passes)
        print(f"  Neo4j warm-up, pass {n}: {cost:.3f} ms of its CPU per statement", file=sys.stderr)
        flat = flat + 1 if cost > 0.9 * best else 0
        best = min(best, cost)
        if n >= least and flat >= 3:
            return


def idle_rates(processes: Processes, seconds: float = 5.0) -> dict[str, float]:
    """CPU milliseconds per second each process spends with no statement to run."""
    before = snapshot(processes)
    time.sleep(seconds)
    after = snapshot(processes)
    return {name: 1000 * (after[name] - before[name]) / seconds for name in processes}


# Not a dependency of the project: installed by hand, only for --profile.
PY_SPY = Path(sys.executable).parent / "py-spy"


def profile_gateway(
    pid: int, client: Client, work: Work, clients: int, out: Path, target: str
) -> None:
    """One unmeasured run of ``client`` with py-spy sampling process ``pid`` into ``out``; print
    the summary, weighed by each thread's CPU time over the run."""
    command = [str(PY_SPY), "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out)]
    spy = subprocess.Popen([*command, "--threads"], stdout=subprocess.DEVNULL)
    time.sleep(2)  # attached before the load starts
    threads, process, started = thread_cpu_seconds(pid), cpu_seconds(pid), time.perf_counter()
    asyncio.run(unmeasured(client, work, clients))
    seconds, total = time.perf_counter() - started, cpu_seconds(pid) - process
    cpu = {tid: spent - threads.get(tid, 0.0) for tid, spent in thread_cpu_seconds(pid).items()}
    spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
    spy.wait(timeout=60)
    print(
        f"\npy-spy on the gateway, {target} x{clients}, {len(work)} statements in"
        f" {seconds:.1f} s, gateway CPU {1000 * total / len(work):.3f} ms per"
        f" statement ({out}):"
    )
    summarise(out.read_text().splitlines(), cpu_by_thread=cpu, statements=len(work))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="per target and concurrency")
    parser.add_argument(
        "--rounds", type=int, default=1, help="times the mirrored order runs at each concurrency"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="gateway processes (several: compared)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw output of a profiled extra run")
    parser.add_argument(
        "--profile-target",
        choices=("bolt-gateway", "http-gateway"),
        default="bolt-gateway",
        help="the gateway target --profile runs",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run one more gateway with these settings too, measured beside the others",
    )
    parser.add_argument(
        "--variant-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the variant's environment too (PYTHONPATH=DIR: a folder shadowing a module)",
    )
    parser.add_argument(
        "--variant-repo",
        type=Path,
        help="the variant runs the code of this checkout (a git worktree at another commit)",
    )
    parser.add_argument(
        "--profile-variant", action="store_true", help="--profile the variant's gateway"
    )
    parser.add_argument(
        "--http-client",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="the load generator's HTTP client (httpx's costs it several times more CPU)",
    )
    parser.add_argument(
        "--gateway-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a gateway setting, its value in TOML (server.admission.max_in_flight=16)",
    )
    args = parser.parse_args()
    targets = [t for t in TARGETS if t in args.targets]  # (a) to (d), whatever order was given
    counts = list(dict.fromkeys(args.workers))
    if min(counts) < 1:
        parser.error("--workers counts processes: 1 or more")
    if args.rounds < 1:
        parser.error("--rounds counts how often the mirrored order runs: 1 or more")
    if args.profile is not None and not PY_SPY.exists():  # checked before minutes of measuring
        parser.error(
            f"--profile needs py-spy, which is not installed: {PY_SPY.parent}/pip install py-spy"
        )

    variant = [gateway_setting(text) for text in args.variant]
    variant_env = dict(text.partition("=")[::2] for text in args.variant_env)
    # Each gateway by label: "w<N>" for each count of workers, "variant" for --variant's.
    labels = {f"w{n}": n for n in counts}
    if variant or variant_env or args.variant_repo:
        labels["variant"] = counts[0]
    first_label = f"w{counts[0]}"

    def named(target: str, label: str) -> str:
        return f"{target}-{label}" if len(labels) > 1 else target

    work = bench_work(args.requests)  # the same statements, in the same order, for every target
    halves = (work[: len(work) // 2], work[len(work) // 2 :])

    overrides = [gateway_setting(text) for text in args.gateway_setting]

    def configure(config: dict[str, Any]) -> None:
        config["server"]["workers"] = counts[0]
        apply_settings(config, overrides)

    with (
        local_stack(extra_clients=[BENCH_READER], configure_gateway=configure) as stack,
        contextlib.ExitStack() as extras,
    ):
        status = stack.up(with_gateway=True)
        db = status["neo4j"]
        seed_bench_items(db)
        token = stack.client_token(BENCH_READER.client_id)  # outlives the run; see measure.py
        pid = {name: process["pid"] for name, process in status["processes"].items()}
        gateways = {first_label: {**status, "pid": pid["gateway"]}}
        for label, n in labels.items():  # beside the stack's, on the same Neo4j and OPA
            if label != first_label:
                folder = stack.run_dir.parent / f"gateway-{label}"
                settings, env = (variant, variant_env) if label == "variant" else ([], {})
                repo = args.variant_repo if label == "variant" else None
                beside = extra_gateway(
                    stack, folder, n, name=label, settings=settings, env=env, repo=repo
                )
                gateways[label] = extras.enter_context(beside)
        wait_for_workers([(labels[label], gateway) for label, gateway in gateways.items()])
        common: Processes = {
            "neo4j": [(pid["neo4j"], None)],
            "opa": [(pid["opa"], None)],
            "client": [(os.getpid(), None)],
        }
        watched = {n: {**gateway_processes(g["pid"]), **common} for n, g in gateways.items()}
        query_api = "/db/neo4j/query/v2"
        bearer = {"Authorization": f"Bearer {token}"}
        plan: dict[str, tuple[Client, Processes]] = {}
        first = watched[first_label]  # direct targets show the (idle) first gateway's CPU too
        for target in targets:
            if target == "bolt-neo4j":
                basic = neo4j.basic_auth(db["user"], db["password"])
                plan[target] = bolt_client(db["bolt_uri"], basic), first
            elif target == "http-neo4j":
                login = (db["user"], db["password"])
                url = db["http_uri"] + query_api
                direct = http_client(url, login, {}, library=args.http_client)
                plan[target] = direct, first
            for label, gateway in gateways.items():
                if target == "bolt-gateway":
                    client = bolt_client(gateway["gateway_bolt_uri"], neo4j.bearer_auth(token))
                    plan[named(target, label)] = client, watched[label]
                    if label == first_label and "bolt-neo4j" in targets:
                        basic = neo4j.basic_auth(db["user"], db["password"])
                        plan[PACED] = bolt_client(db["bolt_uri"], basic), first
                elif target == "http-gateway":
                    client = http_client(
                        gateway["gateway_url"] + query_api, None, bearer, library=args.http_client
                    )
                    plan[named(target, label)] = client, watched[label]
        order = list(plan)
        basic = neo4j.basic_auth(db["user"], db["password"])
        warm_neo4j(bolt_client(db["bolt_uri"], basic), work, pid["neo4j"])
        for name in order:  # the gateway's caches (and Neo4j's), before anything counts
            asyncio.run(unmeasured(plan[name][0], halves[0], 16))
        idle = idle_rates(
            {
                **{named("gateway", label): watched[label]["gateway"] for label in labels},
                **common,
            }
        )
        load_before = os.getloadavg()
        results: list[Result] = []
        rounds: list[Result] = []  # each round's own results
        rss: dict[int, dict[str, list[float]]] = {}
        for clients in args.concurrency:
            level = {name: Result(name, clients) for name in order}
            pids = {
                named("gateway", label): [p for p, _ in watched[label]["gateway"]]
                for label in labels
            }
            reset = all(reset_peak_rss(p) for each in pids.values() for p in each)
            for _ in range(args.rounds):
                this = {name: Result(name, clients) for name in order}
                for name, half in mirrored(order, halves):
                    client, processes = plan[name]
                    pace = None
                    if name == PACED:  # as fast as the first gateway's Bolt door went, no faster
                        pace = this[named("bolt-gateway", first_label)].throughput or None
                    asyncio.run(measure_half(client, half, clients, processes, this[name], pace))
                for name, result in this.items():
                    level[name].add(result)
                rounds.extend(this.values())
            results.extend(level.values())
            # The peaks at this number of clients (if they cannot be reset, the run's so far).
            if reset:
                rss[clients] = {g: [peak_rss_mib(p) for p in each] for g, each in pids.items()}
        first_url = gateways[first_label]["gateway_url"]
        page = httpx.get(first_url + "/metrics", timeout=10).text
        caches, (records, commits) = cache_hit_rates(page), audit_commits(page)
        print(f"load average (1, 5, 15 min): before {load_before}, after {os.getloadavg()}")
        report(results, idle, rss, caches)
        if commits:  # warm-ups included; with several workers, the one that answered
            print(
                f"gateway audit log: {records:.0f} records in {commits:.0f} commits"
                f" ({records / commits:.1f} per commit)"
            )
        if len(counts) > 1:
            report_workers(results, counts, idle)
        if "variant" in labels:
            changes = [*args.variant, *args.variant_env]
            if args.variant_repo:
                changes.append(f"the code of {args.variant_repo}")
            report_variant(results, first_label, changes, rounds)
        if args.profile is not None and args.profile_target in targets:
            n = 16 if 16 in args.concurrency else max(args.concurrency)
            label = "variant" if args.profile_variant else first_label
            worker = watched[label]["gw loop"][0][0]  # the first worker, if several
            client = plan[named(args.profile_target, label)][0]
            profile_gateway(worker, client, work * 2, n, args.profile, args.profile_target)


def wait_for_workers(gateways: list[tuple[int, dict[str, Any]]]) -> None:
    """Until each gateway (with its number of workers) has all its workers and each worker has
    had time to open its doors (a worker listens only once started, so an early connection
    would all go to the first)."""
    deadline = time.monotonic() + 120
    for n, gateway in gateways:
        expected = 1 if n == 1 else n + 1
        while len(process_tree(gateway["pid"])) < expected:  # bounded by the deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {n}-worker gateway did not start all its workers")
            time.sleep(0.5)
    if any(n > 1 for n, _ in gateways):
        time.sleep(15)  # a worker's start-up (Neo4j, OPA, leases) takes a few seconds


def report_workers(results: list[Result], counts: list[int], idle: dict[str, float]) -> None:
    """Gateway CPU per statement by number of workers, against the fewest workers given (in
    whatever order ``--workers`` names them), also net of each gateway's idle rate (its
    background work: policy revision polls, lease upkeep, per process, which weighs more the
    fewer statements a second the machine lets through); and the share of the work each worker
    took."""
    fewest = min(counts)
    print(f"\nworkers: gateway CPU per statement (all its processes) against {fewest} worker(s)")
    by_key = {(r.target, r.clients): r for r in results}
    for (target, clients), r in by_key.items():
        base, _, count = target.rpartition("-w")
        if not base.endswith("gateway") or int(count) == fewest:
            continue
        first = by_key[f"{base}-w{fewest}", clients]

        def net(result: Result, workers: int) -> float:
            rate = idle[f"gateway-w{workers}"]  # ms per second
            return result.cpu_ms("gateway") - rate * result.seconds / result.statements

        ratio = r.cpu_ms("gateway") / first.cpu_ms("gateway")
        net_ratio = net(r, int(count)) / net(first, fewest)
        goal = "met" if ratio <= 1.0 else "NOT met"
        shares = sum(r.worker_cpu_s.values()) or 1.0
        split = " / ".join(f"{100 * s / shares:.0f}%" for s in r.worker_cpu_s.values())
        print(
            f"  {base:<13} x{clients:<3} {count} workers {r.cpu_ms('gateway'):.3f} ms,"
            f" {fewest}: {first.cpu_ms('gateway'):.3f} ms, ratio {ratio:.2f} ({goal});"
            f" net of idle {net(r, int(count)):.3f} / {net(first, fewest):.3f} ms,"
            f" ratio {net_ratio:.2f}; throughput {r.throughput:.0f} vs {first.throughput:.0f}"
            f" st/s; worker shares {split}"
        )
        # The same load per worker: N workers at c clients against the fewest at c * fewest / N
        # (when that number of clients was measured too). CPU per statement falls with the
        # statements a process serves at once (more per commit, read and wake-up), so this
        # tells what running more processes costs apart from each serving fewer.
        per_worker = clients * fewest / int(count)
        same_load = by_key.get((f"{base}-w{fewest}", int(per_worker)))
        if same_load is not None and per_worker == int(per_worker):
            print(
                f"  {'':<13} x{clients:<3} against {fewest} worker(s) at the same clients per"
                f" worker (x{int(per_worker)}): {same_load.cpu_ms('gateway'):.3f} ms,"
                f" ratio {r.cpu_ms('gateway') / same_load.cpu_ms('gateway'):.2f}"
            )
    print("  (goal: with more workers, CPU per statement no higher: ratio <= 1.00)")


def report_variant(
    results: list[Result], first: str, changes: list[str], rounds: list[Result]
) -> None:
    """Each gateway target with --variant's settings against the same without them (and, with
    several ``rounds``, its gateway CPU ratio in each round, and their median)."""
    print(f"\nvariant ({', '.join(changes)}) against the gateway without it ({first}):")
    by_key = {(r.target, r.clients): r for r in results}
    by_round: dict[tuple[str, int], list[Result]] = {}
    for r in rounds:
        by_round.setdefault((r.target, r.clients), []).append(r)
    for key, r in by_key.items():
        target, clients = key
        base, _, label = target.rpartition("-")
        if label != "variant":
            continue
        was = by_key[f"{base}-{first}", clients]
        p50 = percentile(r.latencies_ms, 0.5) / percentile(was.latencies_ms, 0.5)
        ratio = r.cpu_ms("gateway") / was.cpu_ms("gateway")
        print(
            f"  {base:<13} x{clients:<3} gateway CPU {r.cpu_ms('gateway'):.3f} ms against"
            f" {was.cpu_ms('gateway'):.3f} (ratio {ratio:.2f});"
            f" neo4j CPU {r.cpu_ms('neo4j'):.3f} against {was.cpu_ms('neo4j'):.3f};"
            f" throughput {r.throughput / was.throughput:.2f}x; p50 {p50:.2f}x"
        )
        pairs = zip(by_round.get(key, []), by_round.get((was.target, clients), []), strict=True)
        each = [v.cpu_ms("gateway") / b.cpu_ms("gateway") for v, b in pairs]
        if len(each) > 1:
            print(
                f"  {'':<13} {'':<4} gateway CPU ratio by round: "
                + " ".join(f"{x:.2f}" for x in each)
                + f"; median {statistics.median(each):.2f}, {min(each):.2f} to {max(each):.2f}"
            )


def apply_settings(config: dict[str, Any], changes: list[tuple[list[str], Any]]) -> None:
    """Set each of ``changes`` (keys, value) in the gateway configuration ``config``."""
    for keys, value in changes:
        section = config
        for key in keys[:-1]:
            section = section.setdefault(key, {})
        section[keys[-1]] = value


def gateway_setting(text: str) -> tuple[list[str], Any]:
    """``server.admission.max_in_flight=16`` as its keys and its TOML value."""
    key, _, value = text.partition("=")
    return key.strip().split("."), tomllib.loads(f"v = {value}")["v"]


def report(
    results: list[Result],
    idle: dict[str, float],
    rss_mib: dict[int, dict[str, list[float]]],
    caches: dict[str, tuple[float, float]],
) -> None:
    rates = ", ".join(f"{name} {rate:.1f}" for name, rate in idle.items())
    print(f"idle CPU, ms per second: {rates}")
    print("CPU columns: milliseconds of CPU (user + system) per statement, by process\n")
    print(
        f"{'target':<21}{'clients':>7}{'stmts':>7}{'st/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'errors':>7}{'503s':>6}"
        + "".join(f"{name:>{width}}" for name, width in COLUMNS)
        + f"{'total':>7}"
    )
    for r in results:
        print(
            f"{r.target:<21}{r.clients:>7}{r.statements:>7}{r.throughput:>7.0f}"
            f"{percentile(r.latencies_ms, 0.5):>8.2f}{percentile(r.latencies_ms, 0.99):>8.2f}"
            f"{len(r.failures):>7}{r.refused:>6}"
            + "".join(f"{r.cpu_ms(name):>{width}.3f}" for name, width in COLUMNS)
            + f"{r.total_cpu_ms():>7.3f}"
        )
    for r in results:
        if r.failures:
            first = r.failures[0]
            print(f"first failure of {r.target} x{r.clients}: {type(first).__name__}: {first}")
    by_key = {(r.target, r.clients): r for r in results}
    print("\nratios, gateway / direct (throughput; p50; CPU per statement: neo4j, all processes):")
    for (target, n), through in by_key.items():
        kind = target.partition("-gateway")[0]  # bolt-gateway, http-gateway-w2
        direct = by_key.get((f"{kind}-neo4j", n))
        if target == kind or direct is None:  # a direct target, or no baseline measured
            continue
        p50 = percentile(through.latencies_ms, 0.5) / percentile(direct.latencies_ms, 0.5)
        print(
            f"  {target:<16} x{n:<3} throughput {through.throughput / direct.throughput:.2f}"
            f"  p50 {p50:.2f}  neo4j CPU {through.cpu_ms('neo4j') / direct.cpu_ms('neo4j'):.2f}"
            f"  total CPU {through.total_cpu_ms() / direct.total_cpu_ms():.2f}"
        )
    print("\nthe issue's targets:")
    for (target, n), r in by_key.items():
        if target.startswith("bolt-gateway"):
            met = "met" if r.cpu_ms("gateway") <= CPU_TARGET_MS else "NOT met"
            print(f"  {target} CPU per statement x{n}: {r.cpu_ms('gateway'):.3f} ms ({met})")
    for (target, n), r in by_key.items():
        if target.startswith("bolt-gateway") and n == 16 and ("bolt-neo4j", 16) in by_key:
            ratio = r.throughput / by_key["bolt-neo4j", 16].throughput
            met = "met" if ratio >= THROUGHPUT_TARGET else "NOT met"
            print(f"  {target} throughput / direct x16: {ratio:.2f} ({met})")
    print(f"  (targets: <= {CPU_TARGET_MS} ms per statement; >= {THROUGHPUT_TARGET} at x16)")
    for (target, n), r in by_key.items():
        if target.startswith("http-gateway"):
            met = "met" if r.cpu_ms("gateway") <= HTTP_CPU_TARGET_MS else "NOT met"
            print(f"  {target} CPU per statement x{n}: {r.cpu_ms('gateway'):.3f} ms ({met})")
            if ("bolt-neo4j", n) in by_key:
                ratio = r.throughput / by_key["bolt-neo4j", n].throughput
                met = "met" if ratio >= HTTP_THROUGHPUT_TARGET else "NOT met"
                print(f"  {target} throughput / straight Bolt x{n}: {ratio:.2f} ({met})")
    print(
        f"  (HTTP targets: <= {HTTP_CPU_TARGET_MS} ms per statement;"
        f" >= {HTTP_THROUGHPUT_TARGET} of straight Bolt at x16)"
    )
    for clients, gateways in rss_mib.items():
        for gateway, peaks in gateways.items():
            each = ", ".join(f"{peak:.1f}" for peak in peaks)
            print(f"\n{gateway} x{clients} peak RSS, MiB: {each} (sum {sum(peaks):.1f})")
    print("\nthroughput at each number of clients over that at 16 (statements that ran):")
    for (target, n), r in by_key.items():
        at_16 = by_key.get((target, 16))
        if at_16 is not None and n > 16:
            print(f"  {target:<16} x{n:<3} {r.throughput / at_16.throughput:.2f}")
    print_goals(by_key, rss_mib)
    for cache, (hits, lookups) in caches.items():
        share = f"{hits / lookups:.1%}" if lookups else "-"
        print(f"gateway {cache} cache: {hits:.0f} hits of {lookups:.0f} lookups ({share})")


def print_goals(
    by_key: dict[tuple[str, int], Result], rss_mib: dict[int, dict[str, list[float]]]
) -> None:
    """The cost issue's goals besides the CPU and throughput targets, each met or not: Neo4j's
    CPU per statement through each gateway target over straight Bolt's, throughput at more
    clients no lower than at 16, no errors, and every gateway process's peak RSS."""
    print("\nthe other goals:")
    for (target, n), r in by_key.items():
        direct = by_key.get(("bolt-neo4j", n))
        if "-gateway" in target and direct is not None and direct.cpu_ms("neo4j") > 0:
            ratio = r.cpu_ms("neo4j") / direct.cpu_ms("neo4j")
            met = _met(ratio <= NEO4J_CPU_GOAL)
            print(f"  {target} Neo4j CPU / straight Bolt x{n}: {ratio:.2f} ({met})", end="")
            paced = by_key.get((PACED, n))
            if paced is not None and paced.cpu_ms("neo4j") > 0:
                at_pace = r.cpu_ms("neo4j") / paced.cpu_ms("neo4j")
                print(
                    f"; at the Bolt door's pace ({paced.throughput:.0f}/s): {at_pace:.2f}"
                    f" ({_met(at_pace <= NEO4J_CPU_GOAL)})",
                    end="",
                )
            print()
    for (target, n), r in by_key.items():
        at_16 = by_key.get((target, 16))
        if "-gateway" in target and at_16 is not None and n > 16:
            ratio = r.throughput / at_16.throughput
            if n <= COLLAPSE_CLIENTS:
                print(f"  {target} throughput x{n} / x16: {ratio:.2f} ({_met(ratio >= 1)})")
                continue
            # Beyond: saturated, the gateway refuses (503 + Retry-After, its clients wait as
            # told) rather than letting latency grow to seconds.
            p99 = percentile(r.latencies_ms, 0.99)
            ok = p99 < SATURATED_P99_MS and (ratio >= 1 or r.refused > 0)
            print(
                f"  {target} x{n}: p99 {p99:.0f} ms, {r.refused} refused with Retry-After,"
                f" throughput {ratio:.2f} of x16 ({_met(ok)})"
            )
    errors = sum(len(r.failures) for r in by_key.values())
    print(f"  errors: {errors} ({_met(errors == 0)})")
    for clients, gateways in rss_mib.items():
        peak = max((max(peaks) for peaks in gateways.values() if peaks), default=0.0)
        print(
            f"  largest gateway process x{clients}: {peak:.1f} MiB ({_met(peak <= RSS_GOAL_MIB)})"
        )
    print(
        f"  (goals: Neo4j <= {NEO4J_CPU_GOAL}x its CPU per statement over straight Bolt; no lower"
        f" throughput at up to {COLLAPSE_CLIENTS} clients than at 16, beyond: refusals rather"
        f" than a p99 of {SATURATED_P99_MS / 1000:.0f} s or more; 0 errors;"
        f" <= {RSS_GOAL_MIB:.0f} MiB)"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
