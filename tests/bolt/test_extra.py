"""What a ``RUN``'s, ``BEGIN``'s, ``ROUTE``'s and ``HELLO``'s extra map may carry, each sent to
Neo4j itself and to the gateway, against the real stack: what Neo4j refuses the gateway refuses
with Neo4j's code, recorded once, the statement not run; what Neo4j accepts, it serves."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.codec import wire
from proxy.codec.packstream import Structure
from proxy.devstack.stack import DevStack
from tests.bolt.test_wire import PROPOSALS, V54, Peer, failure, logged_on, peer, straight_to_neo4j

pytestmark = pytest.mark.integration
__all__ = ["peer"]  # a fixture, used by name

RUN, BEGIN, ROUTE, SUCCESS = 0x10, 0x11, 0x66, b"\x70"
INVALID = "Neo.ClientError.Request.Invalid"
NODE = Structure(b"N", (1, ["Person"], {}, "4:x:1"))
DATE = Structure(b"D", (20_000,))

# A RUN's extra or a BEGIN's, each refused by Neo4j 5.26 with Request.Invalid.
REFUSED: dict[str, dict[str, Any]] = {
    "db that is a number": {"db": 5},
    "db that is a list": {"db": ["neo4j"]},
    "unknown minimum severity": {"notifications_minimum_severity": "BOGUS"},
    "minimum severity null": {"notifications_minimum_severity": None},
    "minimum severity a list": {"notifications_minimum_severity": ["WARNING"]},
    "disabled categories a text": {"notifications_disabled_categories": "HINT"},
    "unknown disabled category": {"notifications_disabled_categories": ["BOGUS"]},
    "a node in tx_metadata": {"tx_metadata": {"seen": NODE}},
}


def refusal_records(stack: DevStack, answer: Structure | None) -> list[dict[str, Any]]:
    """The audit records of the request a FAILURE names."""
    assert answer is not None
    found = re.search(r"\(request ([0-9a-f-]{36})\)", answer.fields[0]["message"])
    assert found, answer
    with AuditReader(stack.audit_path) as log:
        return list(log.query(RecordFilter(request_id=found.group(1))))


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_run_extra_neo4j_refuses_is_refused_recorded_and_not_run(
    stack: DevStack, status: dict[str, Any], peer: Peer, neo4j_admin: Driver, name: str
) -> None:
    """Found by review: a ``db`` that is not text ran the statement on the home database, and
    notification filters Neo4j refuses were taken as "all notifications"."""
    label = f"BoltExtra{uuid.uuid4().hex[:10]}"
    extra = REFUSED[name]
    neo4j = straight_to_neo4j(status)
    try:
        neo4j.message(RUN, "RETURN 1", {}, extra)
        assert failure(neo4j.answer()) == INVALID, "Neo4j refuses it"
    finally:
        neo4j.close()
    logged_on(peer, stack.token("demo_writer"))
    peer.message(RUN, f"CREATE (:{label})", {}, extra)
    answer = peer.answer()
    assert failure(answer) == INVALID
    (record,) = refusal_records(stack, answer)
    assert (record["status"], record["error"]["reason"]) == (400, "run_extra_invalid")
    records, _, _ = neo4j_admin.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n")
    assert records[0]["n"] == 0


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_begin_extra_neo4j_refuses_is_refused_and_recorded(
    stack: DevStack, status: dict[str, Any], peer: Peer, name: str
) -> None:
    extra = REFUSED[name]
    neo4j = straight_to_neo4j(status)
    try:
        neo4j.message(BEGIN, extra)
        assert failure(neo4j.answer()) == INVALID, "Neo4j refuses it"
    finally:
        neo4j.close()
    logged_on(peer, stack.token("demo_writer"))
    peer.message(BEGIN, extra)
    answer = peer.answer()
    assert failure(answer) == INVALID
    (record,) = refusal_records(stack, answer)
    assert (record["status"], record["error"]["reason"]) == (400, "begin_extra_invalid")


# A RUN's or BEGIN's extra Neo4j 5.26 accepts: the gateway serves it too.
ACCEPTED: dict[str, dict[str, Any]] = {
    "mode null": {"mode": None},
    "db null": {"db": None},
    "a date in tx_metadata": {"tx_metadata": {"since": DATE}},
    "severity in lower case": {"notifications_minimum_severity": "warning"},
    "category in lower case": {"notifications_disabled_categories": ["hint"]},
}


@pytest.mark.parametrize("name", list(ACCEPTED))
@pytest.mark.parametrize("tag", [RUN, BEGIN], ids=["run", "begin"])
def test_a_run_or_begin_extra_neo4j_accepts_is_served(
    stack: DevStack, status: dict[str, Any], peer: Peer, name: str, tag: int
) -> None:
    """Found by review: ``mode: null`` was refused, and a date in ``tx_metadata`` was refused
    only once the statement had been decided (recorded as the statement's failure)."""
    extra = ACCEPTED[name]
    neo4j = straight_to_neo4j(status)
    logged_on(peer, stack.token("demo_writer"))
    try:
        for client in (neo4j, peer):
            if tag == BEGIN:
                client.message(BEGIN, extra)
                begun = client.answer()
                assert begun is not None and begun.tag == SUCCESS, begun
                client.message(RUN, "RETURN 1 AS one", {}, {})
            else:
                client.message(RUN, "RETURN 1 AS one", {}, extra)
            ran = client.answer()
            assert ran is not None and ran.tag == SUCCESS, ran
            client.message(0x3F, {"n": -1})
            assert client.answer() == Structure(b"\x71", ([1],))
    finally:
        neo4j.close()


def test_a_category_disabled_in_lower_case_is_disabled(stack: DevStack, peer: Peer) -> None:
    """Neo4j reads categories in any case; the gateway, which filters them, took ``hint`` as
    no category and passed the hints on."""
    statement = "MATCH (a:BoltNoSuch), (b:BoltNoSuch) RETURN a, b"  # a cartesian-product hint
    logged_on(peer, stack.token("demo_writer"))
    shown = []
    for categories in ([], ["performance"]):
        peer.message(RUN, statement, {}, {"notifications_disabled_categories": categories})
        ran = peer.answer()
        assert ran is not None and ran.tag == SUCCESS, ran
        peer.message(0x3F, {"n": -1})
        summary = peer.answer()
        assert summary is not None and summary.tag == SUCCESS, summary
        shown.append([n["category"] for n in summary.fields[0].get("notifications", [])])
    assert "PERFORMANCE" in shown[0]
    assert "PERFORMANCE" not in shown[1]


@pytest.mark.parametrize(
    ("bookmarks", "extra"),
    [([1], {}), (["FB:x", ["FB:y"]], {}), ([], {"db": 5})],
    ids=["bookmark a number", "bookmark a list", "db a number"],
)
def test_a_route_neo4j_refuses_is_refused_and_recorded(
    stack: DevStack, status: dict[str, Any], peer: Peer, bookmarks: list[Any], extra: Any
) -> None:
    neo4j = straight_to_neo4j(status)
    try:
        neo4j.message(ROUTE, {}, bookmarks, extra)
        assert failure(neo4j.answer()) == INVALID, "Neo4j refuses it"
    finally:
        neo4j.close()
    logged_on(peer, stack.token("demo_writer"))
    peer.message(ROUTE, {}, bookmarks, extra)
    answer = peer.answer()
    assert failure(answer) == INVALID
    (record,) = refusal_records(stack, answer)
    assert (record["status"], record["error"]["reason"]) == (400, "route_invalid")


def test_a_hello_with_a_filter_neo4j_refuses_is_refused(peer: Peer) -> None:
    """As Neo4j: a ``FAILURE``, and the connection closes."""
    peer.send(wire.MAGIC + PROPOSALS)
    assert peer.read(4) == V54
    peer.message(0x01, {"user_agent": "test/1", "notifications_minimum_severity": "BOGUS"})
    assert failure(peer.answer()) == INVALID
    assert peer.closed()


@pytest.mark.parametrize(
    ("tag", "fields"),
    [
        (RUN, ("CREATE (:%s)", {}, {"imp_user": "neo4j"})),
        (BEGIN, ({"imp_user": "neo4j"},)),
        (ROUTE, ({}, [], {"imp_user": "neo4j"})),
    ],
    ids=["run", "begin", "route"],
)
def test_impersonation_is_refused_on_every_message_that_carries_it(
    stack: DevStack, peer: Peer, neo4j_admin: Driver, tag: int, fields: tuple[Any, ...]
) -> None:
    """Statements run as the DAG's own Neo4j user, never another: ``imp_user`` is refused
    (``Forbidden``, one record), whichever message names it, and the statement is not run."""
    label = f"BoltImp{uuid.uuid4().hex[:10]}"
    if tag == RUN:
        fields = (fields[0] % label, *fields[1:])
    logged_on(peer, stack.token("demo_writer"))
    peer.message(tag, *fields)
    answer = peer.answer()
    assert failure(answer) == "Neo.ClientError.Security.Forbidden"
    (record,) = refusal_records(stack, answer)
    assert (record["status"], record["error"]["reason"]) == (403, "impersonation_refused")
    assert record["principal"]["subject"] == "demo_writer"
    records, _, _ = neo4j_admin.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n")
    assert records[0]["n"] == 0


@pytest.mark.parametrize("api", [4, 99, -1])
def test_a_telemetry_naming_no_driver_api_is_refused(
    stack: DevStack, status: dict[str, Any], peer: Peer, api: int
) -> None:
    """Neo4j refuses a ``TELEMETRY`` whose api is none of the four (0 to 3) with a ``FAILURE``;
    the gateway answered ``SUCCESS``. Refused (``Request.Invalid``, recorded), and the
    connection serves again after a ``RESET``."""
    neo4j = straight_to_neo4j(status)
    try:
        neo4j.message(0x54, api)
        answer = neo4j.answer()
        assert answer is not None and answer.tag == b"\x7f", "Neo4j refuses it"
    finally:
        neo4j.close()
    logged_on(peer, stack.token("demo_writer"))
    peer.message(0x54, api)
    answer = peer.answer()
    assert failure(answer) == INVALID
    (record,) = refusal_records(stack, answer)
    assert (record["status"], record["error"]["reason"]) == (400, "telemetry_invalid")
    peer.message(0x0F)
    assert peer.answer() == Structure(SUCCESS, ({},))
    peer.message(0x54, 3)
    assert peer.answer() == Structure(SUCCESS, ({},))


@pytest.mark.parametrize("tag", [RUN, BEGIN], ids=["run", "begin"])
def test_a_look_alike_of_the_gateways_metadata_key_is_refused_recorded_and_not_run(
    stack: DevStack, peer: Peer, neo4j_admin: Driver, tag: int
) -> None:
    """Found by review: ``DAG_ID`` and ``dag_id`` with a zero-width space reached Neo4j, and SHOW
    TRANSACTIONS showed them beside the gateway's own ``dag_id``."""
    label = f"BoltLookAlike{uuid.uuid4().hex[:10]}"
    extra = {"tx_metadata": {"DAG_ID": "evil", "dag_id\u200b": "evil"}}
    logged_on(peer, stack.token("demo_writer"))
    if tag == BEGIN:
        peer.message(BEGIN, extra)
    else:
        peer.message(RUN, f"CREATE (:{label})", {}, extra)
    answer = peer.answer()
    assert failure(answer) == INVALID
    (record,) = refusal_records(stack, answer)
    reason = "begin_extra_invalid" if tag == BEGIN else "run_extra_invalid"
    assert (record["status"], record["error"]["reason"]) == (400, reason)
    assert record["decision"] is None  # refused before the statement is decided
    records, _, _ = neo4j_admin.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n")
    assert records[0]["n"] == 0
