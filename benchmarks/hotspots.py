"""Where a py-spy profile of the gateway spends its time, by area of the request path.

Reads py-spy's ``raw`` format recorded with ``--threads`` (one collapsed stack per line, its
thread first, then a sample count) and prints:

* **threads**: samples of each thread, and the CPU time it used if known;
* **by area**: each sample goes to the deepest frame that belongs to a known area (so a
  ``json.dumps`` called by the audit record counts as audit, an event-loop ``select`` as
  asyncio, and the audit writer's thread is audit throughout); the shares add up to 100 %;
* **cumulative**: each function of a known area, by the samples whose stack holds it (the
  process's and the event loop's own frames, under everything, are left out);
* **self**: each function's share of the samples it was at the top of.

py-spy's samples are not CPU time: on a busy machine a thread waiting for a core looks busy, and
so do the gateway's worker threads waiting for work and the event loop waking from ``epoll``.
Given each thread's CPU time (``/proc/<pid>/task/<tid>/stat`` around the run, as
benchmarks/request_path.py ``--profile`` reads it), each thread's CPU time is spread evenly over
its samples, except those at a waiting point (:data:`WAITS`), which weigh nothing; every view is
then a share of CPU time, in milliseconds per statement if the number of statements is known. A
thread whose every sample is a wait keeps its CPU time under its own name.

    .venv/bin/python benchmarks/hotspots.py FILE [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

# Path prefixes (as py-spy shortens them, relative to sys.path) of each area, the most specific
# first: "proxy/neo4j/leases.py" is credentials before anything under "neo4j/" is the driver.
AREAS = (
    ("auth (JWT verification)", ("proxy/auth/", "proxy/principal.py", "joserfc/", "cryptography/")),
    ("policy (OPA call)", ("proxy/policy.py",)),
    ("analysis (plan cache)", ("proxy/analysis.py", "proxy/plan/")),
    ("audit (record, chain, sqlite)", ("proxy/audit/", "proxy/gateway/trail.py", "sqlite3/")),
    (
        "credentials (leases, secret)",
        ("proxy/neo4j/leases.py", "proxy/neo4j/rotation.py", "proxy/neo4j/secret_sources.py"),
    ),
    ("secret refresh (boto3)", ("boto3/", "botocore/", "urllib3/")),
    ("relay upstream (own Bolt client)", ("proxy/neo4j/relay.py", "proxy/neo4j/bolt.py")),
    ("neo4j driver upstream", ("proxy/neo4j/", "neo4j/")),
    ("bolt door (codec, values, session)", ("proxy/bolt/", "proxy/codec/", "proxy/values.py")),
    (
        "request path glue",
        ("proxy/gateway/", "proxy/statement.py", "proxy/metrics.py", "prometheus_client/"),
    ),
    # uvicorn's protocols only: its server.py and main.py run the event loop under everything.
    ("HTTP door", ("proxy/api/", "starlette/", "fastapi/", "uvicorn/protocols/", "h11/")),
    ("logging", ("logging/",)),
)
EVENT_LOOP = ("asyncio/", "selectors.py", "uvloop/")
# Where a thread sleeps (a leaf frame's function and path): the event loop in epoll, an idle
# executor worker in its queue.
WAITS = {
    ("EpollSelector.select", "selectors.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("Condition.wait", "threading.py"),
}
# Threads whose every sample belongs to one area, by name prefix.
THREAD_AREAS = {"audit-writer": "audit (record, chain, sqlite)"}
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\)(?:: (?P<name>.*))?$")
Frame = tuple[str, str]  # function, path
K = TypeVar("K")


def area_of(path: str) -> str | None:
    """The area a source file belongs to, or None (standard library and helpers)."""
    for area, prefixes in AREAS:
        if any(path.startswith(p) or "/" + p in path for p in prefixes):
            return area
    return None


def parse(lines: Iterable[str]) -> list[tuple[int, str, list[Frame], int]]:
    """``(thread id, thread name, frames, count)`` per line, frames root first (thread id 0 if
    the profile was recorded without ``--threads``)."""
    stacks = []
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        parts = stack.split(";")
        thread = _THREAD.match(parts[0])
        if not count.isdigit() or len(parts) < (2 if thread else 1) or not parts[-1]:
            continue
        tid, name = (int(thread["tid"]), thread["name"] or "?") if thread else (0, "-")
        frames = []
        for frame in parts[1:] if thread else parts:
            match = _FRAME.match(frame)
            frames.append((match["function"], match["path"]) if match else (frame, ""))
        stacks.append((tid, name, frames, int(count)))
    return stacks


def attribute(thread: str, frames: list[Frame]) -> str:
    """The area of a sample of ``thread``: the deepest frame's that has one."""
    for prefix, named in THREAD_AREAS.items():
        if thread.startswith(prefix):
            return named
    for _, path in reversed(frames):
        area = area_of(path)
        if area is not None:
            return area
    if any(p.startswith(EVENT_LOOP) or "/asyncio/" in p for _, p in frames):
        return "asyncio (event loop, tasks, transports)"
    return "other"


def largest(values: Mapping[K, float], n: int | None = None) -> list[tuple[K, float]]:
    """The ``n`` (default: all) largest items of ``values``, largest first."""
    return sorted(values.items(), key=lambda item: item[1], reverse=True)[:n]


def summarise(
    lines: Iterable[str],
    top: int = 15,
    cpu_by_thread: Mapping[int, float] | None = None,
    statements: int | None = None,
) -> None:
    """Print the views of a raw py-spy profile; with ``cpu_by_thread`` (thread id -> CPU
    seconds over the run) weighed by CPU time, per statement if ``statements`` is given."""
    stacks = parse(lines)
    samples: Counter[int] = Counter()
    names: dict[int, str] = {}
    for tid, name, _, n in stacks:
        samples[tid] += n
        names[tid] = name
    if not samples:
        print("no samples")
        return
    cpu = cpu_by_thread or {}
    busy: Counter[int] = Counter()  # samples not at a waiting point
    for tid, _, frames, n in stacks:
        busy[tid] += 0 if frames[-1] in WAITS else n
    # A busy sample's weight: its thread's CPU seconds per busy sample; a thread without a known
    # CPU time (ended before the run did) counts its busy samples at the average weight.
    known = [t for t in busy if t in cpu and busy[t]]
    average = sum(cpu[t] for t in known) / max(1, sum(busy[t] for t in known))
    weight = {t: cpu[t] / busy[t] if t in known else average if cpu else 1.0 for t in busy}
    areas: defaultdict[str, float] = defaultdict(float)
    cumulative: defaultdict[Frame, float] = defaultdict(float)
    own: defaultdict[Frame, float] = defaultdict(float)
    for tid, name, frames, n in stacks:
        value = 0.0 if frames[-1] in WAITS else weight[tid] * n
        areas[attribute(name, frames)] += value
        for frame in set(frames):
            if area_of(frame[1]) is not None:
                cumulative[frame] += value
        own[frames[-1]] += value
    for tid in samples:
        if cpu.get(tid) and not busy[tid]:
            areas[f"thread {names[tid]} (only ever seen waiting)"] += cpu[tid]
    for tid in set(cpu) - set(samples):
        areas["threads never sampled"] += cpu[tid]
    total = sum(areas.values())
    unit = f"ms per statement of {statements}" if statements and cpu else "share"

    def show(value: float) -> str:
        if statements and cpu:
            return f"{1000 * value / statements:7.3f}"
        return f"{value / total:7.1%}"

    print("threads (samples, of them at a waiting point; CPU seconds from /proc, where known):")
    for tid, n in samples.most_common():
        seconds = f"{cpu[tid]:.2f} s" if tid in cpu else "?"
        print(f"  {names[tid]:<24} {tid:>8} {n:>7} {n - busy[tid]:>7}  {seconds}")
    for tid in sorted(set(cpu) - set(samples)):
        print(f"  {'(never sampled)':<24} {tid:>8} {0:>7} {0:>7}  {cpu[tid]:.2f} s")
    weighed = "CPU-weighed" if cpu else "sampled"
    print(f"\nby area ({weighed}, {unit}; each sample to its deepest frame of a known area):")
    for area, value in largest(areas):
        print(f"  {show(value)}  {area}")
    for title, counts in (("cumulative", cumulative), ("self", own)):
        print(f"\ntop {top} {title} ({weighed}, {unit}):")
        for (function, path), value in largest(counts, top):
            area = area_of(path) or ("asyncio" if path.startswith(EVENT_LOOP) else "-")
            print(f"  {show(value)}  {function} ({path})  [{area}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path, help="py-spy record --threads -f raw output")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    summarise(args.file.read_text().splitlines(), args.top)


if __name__ == "__main__":
    main()
