"""The gateway's own OpenLineage run events against the real services: a gateway process on the
devstack's Neo4j, OPA and identity provider, with the file transport (HTTP and Bolt doors) and
the HTTP transport to a small collector on the loopback, which then goes down."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import neo4j
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.client import CallContext
from proxy.devstack.stack import DevStack
from proxy.lineage import namespace
from proxy.lineage_events import derived_run_id
from proxy.ports import free_ports
from tests.openlineage_events import conforming, of_request, read_events
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"
# Reads :Person and writes :Movie; the name matches nobody, so nothing is written.
READS_PERSON_WRITES_MOVIE = (
    "MATCH (p:Person) WHERE p.name = $name CREATE (m:Movie {title: $title}) RETURN m.title"
)


def eventually(find: Callable[[], list[dict[str, Any]]], count: int = 1) -> list[dict[str, Any]]:
    """What ``find`` returns once it holds ``count`` events (the thread sends them soon after
    the answer)."""
    deadline = time.monotonic() + 15
    found = find()
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = find()
    assert len(found) >= count, found
    return found


def neo4j_namespace(stack: DevStack) -> str:
    uri = urlsplit(stack.status()["neo4j"]["bolt_uri"])
    assert uri.hostname is not None and uri.port is not None
    return namespace(uri.hostname, uri.port)


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[side]]


@pytest.fixture(scope="module")
def filed(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filed]:
    folder = tmp_path_factory.mktemp("lineage-file")
    (bolt_port,) = free_ports(1)
    events = folder / "events.jsonl"

    def configure(config: dict[str, Any]) -> None:
        config["server"]["bolt_port"] = bolt_port
        config["lineage"] = {"transport": "file", "path": str(events)}

    gateway = SecondGateway(stack, folder, "lineagefile", configure)
    gateway.start()
    try:
        yield Filed(gateway, events, f"bolt://127.0.0.1:{bolt_port}")
    finally:
        gateway.stop()


class Filed:
    def __init__(self, gateway: SecondGateway, events: Path, bolt: str) -> None:
        self.gateway, self.events, self.bolt = gateway, events, bolt

    def post(
        self, dag: str, statement: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.post(
            self.gateway.url + QUERY,
            json={"statement": statement, "parameters": {"name": "nobody", "title": "t"}},
            headers={"Authorization": self.gateway.stack.auth_header(dag), **(headers or {})},
            timeout=60,
        )

    def of(self, request_id: str, count: int = 1) -> list[dict[str, Any]]:
        return eventually(lambda: of_request(read_events(self.events), request_id), count)


def test_reading_person_and_writing_movie_names_exactly_those(
    filed: Filed, stack: DevStack
) -> None:
    parent = f"airflow/demo_writer.load/{uuid.uuid4()}"
    answer = filed.post(
        "demo_writer",
        READS_PERSON_WRITES_MOVIE,
        # As CypherGateHook sends them (proxy.airflow.identity.task_context).
        CallContext(
            task="load",
            run="manual__2026-11-30T10:00:00+00:00",
            try_number=1,
            lineage_parent=parent,
        ).headers(),
    )
    assert answer.status_code == 202, answer.text
    request_id = answer.headers["X-CypherGate-Request-ID"]
    (event,) = filed.of(request_id)
    assert event["eventType"] == "COMPLETE"
    assert event["job"]["namespace"] == "cyphergate"
    assert event["job"]["name"] == "demo_writer.load"
    where = neo4j_namespace(stack)
    assert datasets(event, "inputs") == [(where, "neo4j.Person")]
    assert datasets(event, "outputs") == [(where, "neo4j.Movie")]
    facets = event["run"]["facets"]
    handed_namespace, handed_job, handed_run = parent.split("/")
    assert facets["parent"]["run"]["runId"] == handed_run
    assert facets["parent"]["job"]["namespace"] == handed_namespace
    assert facets["parent"]["job"]["name"] == handed_job
    assert facets["cyphergate"]["decisionId"]
    assert facets["cyphergate"]["status"] == 202


def test_a_statement_of_an_http_transaction(filed: Filed, stack: DevStack) -> None:
    headers = {"Authorization": stack.auth_header("demo_writer")}
    body = {"statement": READS_PERSON_WRITES_MOVIE, "parameters": {"name": "x", "title": "t"}}
    opened = httpx.post(filed.gateway.url + QUERY + "/tx", json=body, headers=headers, timeout=60)
    assert opened.status_code == 202, opened.text
    transaction = opened.json()["transaction"]["id"]
    path = f"{filed.gateway.url}{QUERY}/tx/{transaction}/commit"
    assert httpx.post(path, headers=headers, timeout=60).status_code == 202
    request_id = opened.headers["X-CypherGate-Request-ID"]
    (event,) = filed.of(request_id)
    assert event["eventType"] == "COMPLETE"
    assert datasets(event, "outputs") == [(neo4j_namespace(stack), "neo4j.Movie")]
    # The transaction as the audit log names it (the Query API's id is the caller's handle).
    with AuditReader(filed.gateway.audit) as log:
        (recorded,) = log.query(RecordFilter(request_id=request_id, event="outcome"))
    assert event["run"]["facets"]["cyphergate"]["transactionId"] == recorded["transaction"]["id"]


def test_a_refused_statement_leaves_only_a_fail(filed: Filed) -> None:
    refused = filed.post("demo_reader", "CREATE (:Movie {title: 'refused'})")
    assert refused.status_code == 403, refused.text
    request_id = refused.headers["X-CypherGate-Request-ID"]
    (event,) = filed.of(request_id)
    assert event["eventType"] == "FAIL"
    assert event["inputs"] == [] and event["outputs"] == []
    assert "write_not_granted" in event["run"]["facets"]["errorMessage"]["message"]
    # Events leave in order: once a later statement's is written, no other is coming for it.
    later = filed.post("demo_reader", "RETURN 1 AS one")
    filed.of(later.headers["X-CypherGate-Request-ID"])
    assert len(of_request(read_events(filed.events), request_id)) == 1


def test_a_refused_load_csv_sources_credentials_stay_out_of_the_event(filed: Filed) -> None:
    """The policy names the LOAD CSV source it refuses; a pre-signed or basic-auth URL holds a
    credential, which the caller may read back but the lineage backend must not."""
    secret = uuid.uuid4().hex
    source = f"https://etl:pw-{secret}@data.example.com/x.csv?X-Amz-Signature=sig-{secret}"
    refused = filed.post("demo_reader", f"LOAD CSV FROM '{source}' AS row RETURN row")
    assert refused.status_code == 403, refused.text
    (event,) = filed.of(refused.headers["X-CypherGate-Request-ID"])
    message = event["run"]["facets"]["errorMessage"]["message"]
    assert "load_csv_not_granted:https://data.example.com/x.csv" in message
    assert secret not in json.dumps(event)


def test_a_call_that_no_dag_was_resolved_for_leaves_none(filed: Filed) -> None:
    answer = httpx.post(
        filed.gateway.url + QUERY,
        json={"statement": "RETURN 1"},
        headers={"Authorization": "Bearer not-a-token"},
        timeout=60,
    )
    assert answer.status_code == 401
    later = filed.post("demo_reader", "RETURN 1 AS one")
    filed.of(later.headers["X-CypherGate-Request-ID"])
    request_id = answer.headers["X-CypherGate-Request-ID"]
    assert of_request(read_events(filed.events), request_id) == []


def test_over_bolt_with_a_parent_given_or_derived(filed: Filed, stack: DevStack) -> None:
    run_id = f"manual__{uuid.uuid4()}"
    login = f"demo_writer/load_movies/3/{run_id}"
    handed = f"airflow/demo_writer.load_movies/{uuid.uuid4()}"
    auto_handed = f"airflow/demo_writer.load_movies/{uuid.uuid4()}"
    auth = neo4j.basic_auth(login, stack.token("demo_writer"))
    with neo4j.GraphDatabase.driver(filed.bolt, auth=auth) as driver:
        driver.execute_query(
            "MATCH (p:Person) WHERE p.name = $name RETURN p.name",
            name="nobody",
            database_="neo4j",
        )
        with driver.session(database="neo4j") as session:
            query = neo4j.Query("RETURN 1 AS one", metadata={"lineage_parent": auto_handed})
            session.run(query).consume()
            tx = session.begin_transaction(metadata={"lineage_parent": handed})
            tx.run(READS_PERSON_WRITES_MOVIE, name="nobody", title="t").consume()
            tx.commit()
    derived = derived_run_id("default", "demo_writer", "load_movies", run_id, 3)

    def parented(run: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [
            e
            for e in read_events(filed.events)
            if e["run"]["facets"].get("parent", {}).get("run", {}).get("runId") == run
        ]

    (auto,) = eventually(parented(derived))
    assert auto["eventType"] == "COMPLETE"
    assert auto["job"]["name"] == "demo_writer.load_movies"
    parent_job = auto["run"]["facets"]["parent"]["job"]
    assert (parent_job["namespace"], parent_job["name"]) == ("default", "demo_writer.load_movies")
    assert datasets(auto, "inputs") == [(neo4j_namespace(stack), "neo4j.Person")]
    assert auto["outputs"] == []
    (given,) = eventually(parented(auto_handed.rsplit("/", 1)[1]))
    assert given["run"]["facets"]["parent"]["job"]["namespace"] == "airflow"
    (in_tx,) = eventually(parented(handed.rsplit("/", 1)[1]))
    assert in_tx["eventType"] == "COMPLETE"
    assert datasets(in_tx, "outputs") == [(neo4j_namespace(stack), "neo4j.Movie")]
    assert in_tx["run"]["facets"]["cyphergate"]["transactionId"]


# ---------------------------------------------------------------------------- HTTP transport


class Collector:
    """A lineage backend on the loopback: keeps each POST's JSON and Authorization header."""

    def __init__(self) -> None:
        received: list[tuple[str | None, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                received.append((self.headers.get("authorization"), self.rfile.read(length)))
                self.send_response(201)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_transport_posts_with_the_key_and_survives_a_backend_that_is_down(
    stack: DevStack, tmp_path: Path
) -> None:
    collector = Collector()
    key = "lineage-" + uuid.uuid4().hex
    key_file = tmp_path / "lineage.key"
    key_file.write_text(key + "\n", encoding="utf-8")

    def configure(config: dict[str, Any]) -> None:
        config["lineage"] = {
            "transport": "http",
            "url": collector.url,
            "api_key_file": str(key_file),
            "retries": 0,
            "timeout_s": 2,
        }

    gateway = SecondGateway(stack, tmp_path / "gateway", "lineagehttp", configure)
    gateway.start()
    try:
        sent = gateway.query("demo_writer", READS_PERSON_WRITES_MOVIE, {"name": "x", "title": "t"})
        assert sent.status_code == 202, sent.text
        request_id = sent.headers["X-CypherGate-Request-ID"]
        deadline = time.monotonic() + 15
        while not collector.received and time.monotonic() < deadline:
            time.sleep(0.1)
        ((authorization, body),) = collector.received
        assert authorization == f"Bearer {key}"
        event = conforming(json.loads(body))
        assert event["run"]["facets"]["cyphergate"]["requestId"] == request_id
        assert [d["name"] for d in event["outputs"]] == ["neo4j.Movie"]

        collector.down()
        answer = gateway.query("demo_reader", "RETURN 1 AS one")
        assert answer.status_code == 202, answer.text  # lineage never fails a request
        deadline = time.monotonic() + 15
        failed = 0.0
        while failed < 1 and time.monotonic() < deadline:
            page = httpx.get(gateway.url + "/metrics", timeout=10).text
            found = re.search(r'cyphergate_lineage_events_total\{outcome="failed"\} (\S+)', page)
            failed = float(found.group(1)) if found else 0.0
            time.sleep(0.1)
        assert failed == 1
        assert 'cyphergate_lineage_events_total{outcome="emitted"} 1.0' in page
    finally:
        gateway.stop()
        collector.server.server_close()
    log = gateway.log_text()
    assert "lineage: the http transport failed (ConnectionError)" in log
    assert key not in log
