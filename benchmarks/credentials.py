"""Benchmark: throughput and latency through the gateway while its Neo4j password rotates every
5 seconds, against the same gateway with rotation off, in one run on the real local stack.

Variants, each a gateway process of its own with its own Neo4j user and Secrets Manager secret,
run in alternating rounds (ABC ABC ...) so drift hits them alike, 16 clients each:

* ``static``        the gateway's own user, no rotation (the baseline);
* ``rotating``      the same, rotated every 5 s;
* ``leases+rot``    per-DAG leased users (TTL 60 s) and the gateway's own password rotated
                    every 5 s: the devstack's default mode.

    .venv/bin/python benchmarks/credentials.py [--seconds 20] [--rounds 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import boto3
import httpx
import tomli_w
from measure import (  # benchmarks/measure.py
    BENCH_ITEM_READ,
    BENCH_READER,
    local_stack,
    peak_rss_mib,
    percentile,
    seed_bench_items,
)
from neo4j import GraphDatabase

from proxy.devstack.stack import DevStack
from proxy.devstack.state import AWS_REGION, StackState
from proxy.ports import free_ports

VARIANTS = {
    "static": {"credentials": "service_account", "rotation_interval_s": 0.0},
    "rotating": {"credentials": "service_account", "rotation_interval_s": 5.0},
    "leases+rot": {"credentials": "leases", "rotation_interval_s": 5.0, "lease_ttl_s": 60.0},
}


def start_gateway(stack: DevStack, folder: Path, name: str, neo4j: dict[str, Any]) -> Any:
    """A gateway process as Neo4j user ``bench_<name>``, with its secret in Secrets Manager."""
    status = stack.status()
    user = "bench_" + name.replace("+", "_")
    password = secrets.token_urlsafe(24)
    admin = status["neo4j"]
    with GraphDatabase.driver(admin["bolt_uri"], auth=(admin["user"], admin["password"])) as d:
        d.execute_query(
            "CREATE USER $u SET PASSWORD $p CHANGE NOT REQUIRED",
            u=user,
            p=password,
            database_="system",
        )
    keys = StackState.load(stack.state_file).gateway_aws_keys
    boto3.client(
        "secretsmanager",
        endpoint_url=stack.sts_url(),
        region_name=AWS_REGION,
        aws_access_key_id=keys["id"],
        aws_secret_access_key=keys["secret"],
    ).create_secret(
        Name=f"bench/{user}", SecretString=json.dumps({"username": user, "password": password})
    )
    config = tomllib.loads(stack.gateway_config_path.read_text(encoding="utf-8"))
    (port,) = free_ports(1)
    config["server"]["port"] = port
    config["server"].pop("bolt_port", None)  # the stack gateway's
    config["audit"] = {"path": str(folder / f"{user}.sqlite3")}
    config["neo4j"].update(
        user=user,
        lease_user_prefix=f"cg_{user}_",
        leases_path=str(folder / f"{user}-leases.sqlite3"),
        **neo4j,
    )
    config["neo4j"]["secret"].update(secret_id=f"bench/{user}", refresh_interval_s=5.0)
    config_file = folder / f"{user}.toml"
    config_file.write_text(tomli_w.dumps(config), encoding="utf-8")
    log = (folder / f"{user}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", str(config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **stack.gateway_aws_env()},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url, folder / f"{user}.log"
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"gateway {name} did not start")


async def drive(url: str, header: str, seconds: float, clients: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": header}, limits=limits, timeout=30
    ) as http:

        async def client(n: int) -> None:
            nonlocal errors
            i = n
            while time.monotonic() < deadline:
                i += clients
                body = {"statement": BENCH_ITEM_READ, "parameters": {"id": 1 + i % 1000}}
                started = time.perf_counter()
                response = await http.post("/db/neo4j/query/v2", json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 202

        await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with local_stack(extra_clients=[BENCH_READER]) as stack:
        folder = stack.run_dir.parent  # the gateways' own folders sit beside the stack's
        processes = []
        try:
            status = stack.up(with_gateway=True)
            seed_bench_items(status["neo4j"])
            gateways = {}
            for name, neo4j in VARIANTS.items():
                process, url, log = start_gateway(stack, folder, name, neo4j)
                processes.append(process)
                gateways[name] = (process, url, log)
            header = "Bearer " + stack.client_token(BENCH_READER.client_id)
            samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
            errors = dict.fromkeys(VARIANTS, 0)
            seconds = dict.fromkeys(VARIANTS, 0.0)
            for _, url, _ in gateways.values():  # warm-up
                asyncio.run(drive(url, header, 2.0, args.clients))
            for _ in range(args.rounds):
                for name, (_, url, _) in gateways.items():
                    latencies, failed = asyncio.run(drive(url, header, args.seconds, args.clients))
                    samples[name] += latencies
                    errors[name] += failed
                    seconds[name] += args.seconds
            base = len(samples["static"]) / seconds["static"]
            print(f"{args.clients} clients, {args.rounds} rounds of {args.seconds:.0f} s each")
            print(f"{'variant':<11} {'requests':>8} {'req/s':>7} {'ratio':>6} {'p50 ms':>7} "
                  f"{'p99 ms':>7} {'errors':>6} {'rotations':>9} {'RSS MiB':>8}")  # fmt: skip
            for name, (process, _, log) in gateways.items():
                values = samples[name]
                rate = len(values) / seconds[name]
                rotations = log.read_text(errors="replace").count("rotated the Neo4j password")
                print(
                    f"{name:<11} {len(values):>8} {rate:>7.0f} {rate / base:>6.3f} "
                    f"{statistics.median(values):>7.2f} {percentile(values, 0.99):>7.2f} "
                    f"{errors[name]:>6} {rotations:>9} {peak_rss_mib(process.pid):>8.1f}"
                )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
