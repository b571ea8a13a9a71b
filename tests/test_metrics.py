"""/metrics on the session's gateway: counts that move with real requests, and nothing secret."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.devstack.stack import DevStack
from proxy.devstack.state import LEASE_PREFIX

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(gateway: httpx.Client) -> tuple[str, Samples]:
    response = gateway.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_requests_and_name_no_dag_or_secret(
    stack: DevStack, gateway: httpx.Client
) -> None:
    _, before = scrape(gateway)
    statement = f"RETURN '{uuid.uuid4().hex}' AS fresh"  # never analysed or decided before
    reader = {"Authorization": stack.auth_header("demo_reader")}
    for _ in range(2):
        response = gateway.post("/db/neo4j/query/v2", json={"statement": statement}, headers=reader)
        assert response.status_code == 202
    unlisted = {"Authorization": stack.auth_header("demo_unlisted")}
    refused = {"statement": f"RETURN '{uuid.uuid4().hex}' AS refused"}
    assert gateway.post("/db/neo4j/query/v2", json=refused, headers=unlisted).status_code == 403
    bad = {"Authorization": "Bearer not-a-token"}
    assert gateway.post("/db/neo4j/query/v2", json=refused, headers=bad).status_code == 401
    text, after = scrape(gateway)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cyphergate_requests_total", verdict="allow", status="202") == 2
    assert moved("cyphergate_requests_total", verdict="deny", status="403") == 1
    assert moved("cyphergate_requests_total", verdict="deny", status="401") == 1
    assert moved("cyphergate_request_duration_seconds_count", verdict="allow") == 2
    assert moved("cyphergate_denials_total", reason="dag_not_granted") == 1
    # The fresh statement is analysed once and hits the analysis cache the second time; the
    # unlisted DAG is refused by the preflight, before anything is analysed; decisions are not
    # cached (each is OPA's own, with its decision id); the unauthenticated request gets
    # nowhere near any of it.
    assert moved("cyphergate_cache_lookups_total", cache="analysis", result="miss") == 1
    assert moved("cyphergate_cache_lookups_total", cache="analysis", result="hit") == 1
    assert value(after, "cyphergate_neo4j_leases_active") >= 1  # the devstack leases per DAG
    assert value(after, "process_resident_memory_bytes") > 0
    for private in ("demo_reader", "demo_unlisted", "not-a-token", LEASE_PREFIX, "Bearer"):
        assert private not in text
