"""Benchmark: what asking OPA for each decision's revision (``?provenance``) costs, against the
same decisions without it, in one run, on the real OPA serving ``policies/`` as a bundle from
the folder server (as the devstack does), with decision logging on in both.

The decision path is what a request asks OPA: the preflight, then the decision on a planned
statement (the analysis is fixed here: this measures the policy step, not Neo4j). Variants run
in mirrored order, A B B A per cycle, so drift (a warming cache, a neighbour's load) hits both
alike. Prints, per variant, the wall-clock p50/p99 of one decision path, the gateway process's
CPU per path and OPA's CPU per path, and each as a ratio of provenance on over off.

    .venv/bin/python benchmarks/provenance.py [--paths 1000] [--cycles 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import REPO, cpu_seconds, percentile  # benchmarks/measure.py

from proxy.analysis import Analysis
from proxy.app import open_policy
from proxy.bundle_server import FolderBundleServer
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.opa_server import folder_bundle_config, opa_bundle_command, wait_healthy
from proxy.plan import PlanFacts
from proxy.policy import OPAPolicyEngine, policy_input, preflight_input
from proxy.ports import free_ports
from proxy.principal import Identity, Principal
from proxy.settings import OPASettings

IDENTITY = Identity(method="oidc", issuer="bench", subject="bench", asserted_dag="demo_labels")
PRINCIPAL = Principal(identity=IDENTITY, dag="demo_labels", task="t", run="r", try_number=1)
FACTS = PlanFacts(
    labels_read=frozenset({"Person", "Movie"}),
    rel_types_read=frozenset({"ACTED_IN"}),
    operators=frozenset({"NodeByLabelScan", "Expand(All)", "Filter", "ProduceResults"}),
    databases=frozenset({"neo4j"}),
)
PREFLIGHT = preflight_input(PRINCIPAL, database="neo4j")
DECISION = policy_input(
    PRINCIPAL,
    database="neo4j",
    statement="MATCH (p:Person)-[:ACTED_IN]->(m:Movie {title: $title}) RETURN p.name AS name",
    parameter_names=["title"],
    requested_access_mode=None,
    analysis=Analysis(query_type="r", facts=FACTS),
)


async def path(engine: OPAPolicyEngine) -> None:
    """One request's policy step: the preflight, then the decision; both must allow."""
    preflight = await engine.preflight(PREFLIGHT)
    decision = await engine.decide(DECISION)
    if not (preflight.decision.allow and decision.allow):
        raise SystemExit(f"the benchmark's request is refused: {decision.reasons}")


async def measure(opa_url: str, opa_pid: int, paths: int, cycles: int) -> dict[str, Any]:
    on = OPASettings(url=opa_url, provenance=True)
    off = OPASettings(url=opa_url, provenance=False)
    samples: dict[str, list[float]] = {"on": [], "off": []}
    client_cpu = dict.fromkeys(samples, 0.0)
    opa_cpu = dict.fromkeys(samples, 0.0)
    async with open_policy(on) as with_provenance, open_policy(off) as without:
        engines = {"on": with_provenance, "off": without}
        revision = (await with_provenance.decide(DECISION)).revision
        for engine in engines.values():  # warm-up: connections open, OPA's caches filled
            for _ in range(200):
                await path(engine)
        for _ in range(cycles):
            for name in ("on", "off", "off", "on"):
                engine = engines[name]
                cpu0, opa0 = time.process_time(), cpu_seconds(opa_pid)
                for _ in range(paths):
                    t0 = time.perf_counter()
                    await path(engine)
                    samples[name].append((time.perf_counter() - t0) * 1000)
                client_cpu[name] += time.process_time() - cpu0
                opa_cpu[name] += cpu_seconds(opa_pid) - opa0
    return {
        "revision": revision,
        "samples": samples,
        "client_cpu": client_cpu,
        "opa_cpu": opa_cpu,
    }


def report(result: dict[str, Any], paths: int, cycles: int) -> None:
    count = 2 * paths * cycles  # paths per variant
    print(f"policy revision reported with provenance: {result['revision']}")
    print(f"{count} decision paths (preflight + decision) per variant, order A B B A x {cycles}")
    print(
        f"{'provenance':<10} {'p50 ms':>8} {'p99 ms':>8} {'gateway CPU us':>15} {'OPA CPU us':>11}"
    )
    rows = {}
    for name in ("off", "on"):
        values = result["samples"][name]
        rows[name] = (
            statistics.median(values),
            percentile(values, 0.99),
            result["client_cpu"][name] / count * 1e6,
            result["opa_cpu"][name] / count * 1e6,
        )
        p50, p99, client, opa = rows[name]
        print(f"{name:<10} {p50:>8.3f} {p99:>8.3f} {client:>15.0f} {opa:>11.0f}")
    ratios = [
        on / off if off else float("nan") for on, off in zip(rows["on"], rows["off"], strict=True)
    ]
    print(
        f"{'on / off':<10} {ratios[0]:>8.3f} {ratios[1]:>8.3f} "
        f"{ratios[2]:>15.3f} {ratios[3]:>11.3f}"
    )
    added = [on - off for on, off in zip(rows["on"], rows["off"], strict=True)]
    print(f"{'on - off':<10} {added[0]:>8.3f} {added[1]:>8.3f} {added[2]:>15.0f} {added[3]:>11.0f}")
    print("(CPU is read from /proc in 10 ms ticks, summed over every round of a variant)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paths", type=int, default=1000, help="decision paths per round")
    parser.add_argument("--cycles", type=int, default=3, help="A B B A cycles")
    args = parser.parse_args()
    opa = ensure_opa(default_cache_dir())
    opa_port, bundle_port = free_ports(2)
    server = FolderBundleServer(opa, REPO / "policies", bundle_port)
    server.start()
    with tempfile.TemporaryDirectory() as work, (Path(work) / "opa.log").open("w+b") as log:
        config = Path(work) / "opa.json"
        config.write_text(json.dumps(folder_bundle_config(server.url)), encoding="utf-8")
        command = opa_bundle_command(opa, opa_port, config)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(process, opa_port, log)
            url = f"http://127.0.0.1:{opa_port}"
            result = asyncio.run(measure(url, process.pid, args.paths, args.cycles))
        finally:
            process.terminate()
            process.wait(timeout=10)
            server.close()
    report(result, args.paths, args.cycles)


if __name__ == "__main__":
    main()
