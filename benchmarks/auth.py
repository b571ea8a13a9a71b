"""Benchmark: the cost of authentication on a cache hit, in-process.

Starts the local stack (real OIDC provider and moto's STS), gets a real token and a real IAM
proof, then verifies each many times with the gateway's own authenticators, counting every HTTP
request they make. Prints p50/p99 per verification on a cache hit, the cost of the first
(uncached) verification for comparison, and the number of calls to the issuer and to STS.

    .venv/bin/python benchmarks/auth.py [--iterations 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from measure import local_stack, percentile  # benchmarks/measure.py

from proxy.auth.aws_iam import IAMAuthenticator
from proxy.auth.oidc import OIDCAuthenticator
from proxy.devstack.stack import DevStack
from proxy.devstack.state import AUDIENCE, SERVER_ID, role_arn
from proxy.settings import IAMSettings, OIDCIssuerSettings


async def measure(stack: DevStack, iterations: int) -> None:
    calls: dict[str, int] = {"issuer": 0, "sts": 0}
    sts_url = stack.sts_url()

    async def count(request: httpx.Request) -> None:
        calls["sts" if str(request.url).startswith(sts_url) else "issuer"] += 1

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        oidc = OIDCAuthenticator(
            [OIDCIssuerSettings(issuer=stack.issuer(), audiences=[AUDIENCE])],
            http,
            time.time,
            leeway_s=30,
            max_token_bytes=8192,
        )
        iam = IAMAuthenticator(
            IAMSettings(sts_endpoints=[sts_url], server_id=SERVER_ID), http, time.time
        )
        token = stack.token("demo_reader")
        proof = stack.iam_header(role_arn("demo_reader")).split(" ", 1)[1]
        rows = []
        for name, verify, credential in (
            ("OIDC JWT (RS256)", oidc.authenticate, token),
            ("AWS IAM proof", iam.authenticate, proof),
        ):
            before = dict(calls)
            started = time.perf_counter()
            await verify(credential)  # the cache miss: discovery + JWKS, or one STS round trip
            first_ms = (time.perf_counter() - started) * 1000
            after_first = dict(calls)
            samples = []
            for _ in range(iterations):
                started = time.perf_counter()
                await verify(credential)
                samples.append((time.perf_counter() - started) * 1000)
            miss_calls = sum(after_first.values()) - sum(before.values())
            hit_calls = sum(calls.values()) - sum(after_first.values())
            rows.append(
                (
                    name,
                    first_ms,
                    percentile(samples, 0.5),
                    percentile(samples, 0.99),
                    miss_calls,
                    hit_calls,
                )
            )
    print(
        f"{'credential':<18} {'miss ms':>8} {'hit p50 ms':>10} {'hit p99 ms':>10} "
        f"{'calls on miss':>13} {'calls on hits':>13}"
    )
    for name, first, p50, p99, miss, hits in rows:
        print(f"{name:<18} {first:>8.2f} {p50:>10.4f} {p99:>10.4f} {miss:>13} {hits:>13}")
        print(f"{'':<18} hit/miss ratio {p50 / first:.4f}")
    print(f"({iterations} cache hits each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5000)
    args = parser.parse_args()
    with local_stack() as stack:
        stack.up()
        asyncio.run(measure(stack, args.iterations))


if __name__ == "__main__":
    main()
