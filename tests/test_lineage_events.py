"""The gateway's OpenLineage run events, unit by unit: what one statement's event says, and
that sending them never holds up or fails the request path (fakes at the transport and the
lineage seam; the real transports against the real stack are in test_lineage_events_stack.py)."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde
from pydantic import ValidationError

from proxy.app.lineage import transport
from proxy.audit.record import AuditEvent
from proxy.cli.config import check_config
from proxy.errors import AuthenticationFailed, PolicyDenied
from proxy.gateway.call import Call, Statement
from proxy.lineage_events import Emitter, RunEvents, derived_run_id, parse_parent
from proxy.metrics import Metrics
from proxy.settings import LineageSettings
from tests.fakes import FakeLineage, FakeTransport
from tests.openlineage_events import conforming
from tests.test_gateway import make, run

NAMESPACE = "neo4j://db.test:7687"
ANALYSIS = {
    "query_type": "rw",
    "labels": {"read": ["Person"], "write": ["Movie"]},
    "relationship_types": {"read": [], "write": ["ACTED_IN"]},
    "procedures": [],
}
PRINCIPAL = {
    "method": "oidc",
    "issuer": "https://issuer.test",
    "subject": "s",
    "dag": "movies",
    "task": "load",
    "run": "manual__2026-11-30T10:00:00+00:00",
    "try_number": 2,
}
PARENT_RUN = "0193c5a2-5b4e-7c3d-8e9f-0a1b2c3d4e5f"


def record(**changes: Any) -> AuditEvent:
    """The last record of an allowed statement that ran (``changes`` make it another)."""
    fields: dict[str, Any] = {
        "event": "outcome",
        "time": "2026-11-30T10:00:01.000000Z",
        "request_id": "req-1",
        "principal": dict(PRINCIPAL),
        "database": "neo4j",
        "decision": {
            "allow": True,
            "reasons": [],
            "decision_id": "dec-1",
            "policy_revision": "rev-7",
        },
        "status": 202,
        "analysis": ANALYSIS,
    }
    return AuditEvent(**{**fields, **changes})


def events() -> RunEvents:
    return RunEvents(
        namespace="cyphergate", parent_namespace="default", dataset_namespace=NAMESPACE
    )


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def document(event: object) -> dict[str, Any]:
    return conforming(json.loads(Serde.to_json(event)))


def test_a_statement_that_ran_completes_with_what_it_read_and_wrote() -> None:
    built = document(events().build(record()))
    assert built["eventType"] == "COMPLETE"
    assert built["eventTime"] == "2026-11-30T10:00:01.000000Z"
    assert built["job"]["namespace"] == "cyphergate"
    assert built["job"]["name"] == "movies.load"
    assert names(built["inputs"]) == [(NAMESPACE, "neo4j.Person")]
    assert names(built["outputs"]) == [
        (NAMESPACE, "neo4j.Movie"),
        (NAMESPACE, "neo4j.[:ACTED_IN]"),
    ]
    facet = built["run"]["facets"]["cyphergate"]
    assert facet["requestId"] == "req-1"
    assert facet["decisionId"] == "dec-1"
    assert facet["policyRevision"] == "rev-7"
    assert facet["status"] == 202
    assert "errorMessage" not in built["run"]["facets"]
    assert uuid.UUID(built["run"]["runId"]).version == 7


def test_a_refused_statement_fails_with_the_reasons_and_no_dataset() -> None:
    refused = record(
        event="decision",
        status=403,
        error={"code": "Neo.ClientError.Security.Forbidden", "reason": "policy_denied"},
        decision={"allow": False, "reasons": ["label_not_granted:Movie"], "decision_id": "d"},
    )
    built = document(events().build(refused))
    assert built["eventType"] == "FAIL"
    assert built["inputs"] == [] and built["outputs"] == []
    message = built["run"]["facets"]["errorMessage"]["message"]
    assert "policy_denied" in message and "label_not_granted:Movie" in message
    assert built["run"]["facets"]["errorMessage"]["programmingLanguage"] == "Cypher"


def test_a_statement_that_failed_in_neo4j_fails_without_datasets() -> None:
    failed = record(
        status=503, error={"code": "Neo.TransientError.General", "reason": "neo4j_unavailable"}
    )
    built = document(events().build(failed))
    assert built["eventType"] == "FAIL"
    assert built["outputs"] == []
    assert "neo4j_unavailable" in built["run"]["facets"]["errorMessage"]["message"]


def test_a_statement_whose_answer_failed_after_it_committed_completes_with_its_datasets() -> None:
    """Its writes are in the graph: the event tells what it wrote, and why its answer failed."""
    committed = record(
        status=413,
        error={"code": "Neo.ClientError.Request.Invalid", "reason": "answer_too_large"},
        committed=True,
    )
    built = document(events().build(committed))
    assert built["eventType"] == "COMPLETE"
    assert names(built["outputs"]) == [
        (NAMESPACE, "neo4j.Movie"),
        (NAMESPACE, "neo4j.[:ACTED_IN]"),
    ]
    assert "answer_too_large" in built["run"]["facets"]["errorMessage"]["message"]


def test_a_call_without_a_dag_has_no_event() -> None:
    identity_only = {"method": "oidc", "issuer": "https://issuer.test", "subject": "s"}
    assert events().build(record(principal=identity_only)) is None
    assert events().build(record(principal=None)) is None


def test_a_parent_handed_over_is_the_parent() -> None:
    built = document(events().build(record(), f"airflow/movies.load/{PARENT_RUN}"))
    parent = built["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == PARENT_RUN
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("airflow", "movies.load")


def test_without_one_the_parent_is_derived_from_the_task_try() -> None:
    built = document(events().build(record(), "not a parent"))
    parent = built["run"]["facets"]["parent"]
    expected = derived_run_id("default", "movies", "load", str(PRINCIPAL["run"]), 2)
    assert parent["run"]["runId"] == expected
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("default", "movies.load")


def test_a_parent_of_another_dags_job_is_not_taken() -> None:
    # The handed parent is an unsigned header: a caller acting as DAG movies must not file its
    # statements under a run of DAG payroll (nor of another task than its own), so its event
    # gets the parent derived from its own task try instead.
    derived = derived_run_id("default", "movies", "load", str(PRINCIPAL["run"]), 2)
    for handed in (
        f"airflow/payroll.export/{PARENT_RUN}",
        f"airflow/payroll/{PARENT_RUN}",
        f"airflow/moviesx.load/{PARENT_RUN}",
        f"airflow/movies.other/{PARENT_RUN}",
    ):
        parent = document(events().build(record(), handed))["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == derived, handed
        assert parent["job"]["name"] == "movies.load", handed
    # With no task named, any job of its own DAG (a task's, or the DAG run's) may be the parent.
    principal = {**PRINCIPAL, "task": None}
    for job in ("movies.load", "movies"):
        built = document(events().build(record(principal=principal), f"a/{job}/{PARENT_RUN}"))
        assert built["run"]["facets"]["parent"]["job"]["name"] == job
    built = document(events().build(record(principal=principal), f"a/payroll.x/{PARENT_RUN}"))
    assert "parent" not in built["run"]["facets"]


def test_a_dag_alone_names_the_job_and_no_parent() -> None:
    principal = {**PRINCIPAL, "task": None, "run": None, "try_number": None}
    built = document(events().build(record(principal=principal)))
    assert built["job"]["name"] == "movies"
    assert "parent" not in built["run"]["facets"]


def test_parent_parsing() -> None:
    assert parse_parent(f"default/dag.task/{PARENT_RUN}") == ("default", "dag.task", PARENT_RUN)
    # A namespace may be a URL (it holds "/"); a job name cannot.
    assert parse_parent(f"http://ol.test/ns/dag.task/{PARENT_RUN}") == (
        "http://ol.test/ns",
        "dag.task",
        PARENT_RUN,
    )
    for bad in (
        "",
        PARENT_RUN,
        f"dag.task/{PARENT_RUN}",
        "default/dag.task/not-a-uuid",
        f"default\n/dag.task/{PARENT_RUN}",
        f"{'n' * 1000}/dag.task/{PARENT_RUN}",
    ):
        assert parse_parent(bad) is None, bad


def test_a_derived_run_id_is_stable_per_task_try() -> None:
    first = derived_run_id("default", "d", "t", "r", 1)
    assert first == derived_run_id("default", "d", "t", "r", 1)
    assert first != derived_run_id("default", "d", "t", "r", 2)
    assert first != derived_run_id("other", "d", "t", "r", 1)
    uuid.UUID(first)


def test_a_derived_run_id_is_one_dags_however_its_ids_are_dotted() -> None:
    # DAG and task ids may hold dots, and the task is the caller's word: a caller acting as DAG
    # "a" naming task "b.c" must not get the parent run of DAG "a.b"'s task "c" (nor one try's
    # run id another's, with a run id holding dots).
    ids = derived_run_id("default", "a.b", "c", "r", 1)
    assert ids != derived_run_id("default", "a", "b.c", "r", 1)
    assert derived_run_id("default", "d", "t", "x.2.y", 1) != derived_run_id(
        "default", "d", "t.1.x", "y", 2
    )


# ---------------------------------------------------------------------------- the emitter


@contextmanager
def emitter(fake: FakeTransport, metrics: Metrics, queue_size: int = 100) -> Iterator[Emitter]:
    sender = Emitter(events(), fake, metrics=metrics, queue_size=queue_size, close_timeout_s=5.0)
    sender.start()
    try:
        yield sender
    finally:
        fake.release.set()
        sender.close()


def counted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "cyphergate_lineage_events_total", {"outcome": outcome}
    )
    return value or 0.0


def test_events_are_sent_from_a_thread_and_counted() -> None:
    metrics, fake = Metrics(), FakeTransport()
    with emitter(fake, metrics) as sender:
        sender.ended(record(), {"x-cyphergate-lineage-parent": f"a/movies.load/{PARENT_RUN}"})
        sender.ended(record(principal=None), {})
    assert fake.closed
    (sent,) = fake.events
    assert document(sent)["run"]["facets"]["parent"]["run"]["runId"] == PARENT_RUN
    assert counted(metrics, "emitted") == 1
    assert counted(metrics, "skipped") == 1


def test_a_failing_transport_is_counted_and_logged_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, fake = Metrics(), FakeTransport(broken=True)
    with caplog.at_level(logging.WARNING), emitter(fake, metrics) as sender:
        sender.ended(record(), {})
    assert counted(metrics, "failed") == 1
    assert counted(metrics, "emitted") == 0
    assert "ConnectionError" in caplog.text
    assert "pw@" not in caplog.text  # the exception's text may name a credential


def test_a_full_queue_drops_without_waiting() -> None:
    metrics, fake = Metrics(), FakeTransport()
    fake.release.clear()  # the backend hangs: the thread holds the first event
    with emitter(fake, metrics, queue_size=2) as sender:
        started = time.perf_counter()
        for _ in range(10):
            sender.ended(record(), {})
        took = time.perf_counter() - started
        assert counted(metrics, "dropped") >= 7
    assert took < 0.5, "ended() must never wait for the transport"
    assert counted(metrics, "emitted") + counted(metrics, "dropped") == 10


def test_the_request_path_reports_each_statement_once_with_its_last_record() -> None:
    lineage = FakeLineage()
    rig = make()
    rig.gateway._lineage = lineage  # what create_app passes when [lineage] is on
    for c in [_call("MATCH (n) RETURN n"), _call("CREATE (:N)")]:
        run(rig.gateway, c)
    rig.policy.allow = False
    with pytest.raises(PolicyDenied):
        run(rig.gateway, _call("CREATE (:N)"))
    assert [r.event for r, _ in lineage.ended_records] == ["outcome", "outcome", "decision"]
    assert [r.status for r, _ in lineage.ended_records] == [202, 202, 403]
    assert all(r.principal and r.principal["dag"] == "etl" for r, _ in lineage.ended_records)
    assert lineage.ended_records[0][1]["x-cyphergate-lineage-parent"] == "p"
    # Each record handed over is the one the audit log holds.
    assert all(r in rig.audit.events for r, _ in lineage.ended_records)


def _call(statement: str) -> Call:
    async def read() -> Statement:
        return Statement(text=statement, parameters={})

    headers = {"x-cyphergate-lineage-parent": "p"}
    return Call(
        request_id=str(uuid.uuid4()),
        database="neo4j",
        authorization="Bearer good",
        client=None,
        headers=headers,
        statement=read,
    )


# ---------------------------------------------------------------------------- settings


def test_off_by_default() -> None:
    assert LineageSettings().transport == "none"


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"transport": "file"}, "needs path"),
        ({"transport": "http"}, "needs url"),
        ({"transport": "http", "url": "ftp://x"}, "http:// or https://"),
        ({"transport": "kafka", "kafka_topic": "t"}, "needs kafka_config"),
        (
            {"transport": "http", "url": "http://x", "api_key": "k", "api_key_file": "/k"},
            "not both",
        ),
        ({"transport": "console", "colour": "blue"}, "Extra inputs"),
    ],
)
def test_a_wrong_section_is_refused(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        LineageSettings(**values)


def test_kafka_needs_its_extra() -> None:
    if importlib.util.find_spec("confluent_kafka") is None:
        with pytest.raises(ValidationError, match="confluent-kafka"):
            LineageSettings(transport="kafka", kafka_topic="t", kafka_config={"a": "b"})
    else:
        settings = LineageSettings(
            transport="kafka",
            kafka_topic="lineage",
            kafka_config={"bootstrap.servers": "127.0.0.1:9"},
        )
        assert transport(settings).kind == "kafka"


def test_each_transport_is_the_client_librarys(tmp_path: Path) -> None:
    kinds = {
        "console": LineageSettings(transport="console"),
        "file": LineageSettings(transport="file", path=tmp_path / "e.jsonl"),
        "http": LineageSettings(transport="http", url="http://127.0.0.1:9", api_key="k" * 20),
    }
    for kind, settings in kinds.items():
        assert transport(settings).kind == kind


def test_no_dag_no_event_from_the_real_path() -> None:
    lineage = FakeLineage()
    rig = make()
    rig.gateway._lineage = lineage
    with pytest.raises(AuthenticationFailed):
        run(rig.gateway, _call_without_credential())
    ((refused, _),) = lineage.ended_records
    assert refused.principal is None
    assert events().build(refused) is None


def _call_without_credential() -> Call:
    async def read() -> Statement:
        return Statement(text="RETURN 1", parameters={})

    return Call("r", "neo4j", None, None, {}, read)


def test_config_check_takes_the_events_file_as_one_to_write(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    key = tmp_path / "lineage.key"
    config.write_text(
        '[neo4j]\npassword = "a-long-secret-4711"\n'
        f'[lineage]\ntransport = "file"\npath = "{tmp_path / "events.jsonl"}"\n'
    )
    assert check_config(config)[1] == []
    config.write_text(
        '[neo4j]\npassword = "a-long-secret-4711"\n'
        f'[lineage]\ntransport = "http"\nurl = "https://ol.test"\napi_key_file = "{key}"\n'
    )
    assert check_config(config)[1] == [f"lineage.api_key_file = '{key}': no such file"]
