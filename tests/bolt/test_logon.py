"""The hostile-credential corpus, sent through Bolt's LOGON instead of an HTTP header: each is
refused with ``Unauthorized``, closes the connection, leaves a record with its own reason, and
makes the gateway contact no host it was not configured with."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.codec import wire
from proxy.codec.packstream import Structure
from proxy.devstack.stack import DevStack
from tests.auth.test_hostile_credentials import CASES, HTTP_ONLY, Decoy, Forge, decoy
from tests.bolt.test_wire import PROPOSALS, V54, Peer, failure, logged_on, peer

pytestmark = pytest.mark.integration
__all__ = ["decoy", "peer"]  # fixtures, used by name


def logon_auth(authorization: str | None) -> dict[str, Any]:
    """The LOGON auth map a client would send for an ``Authorization`` value."""
    if not authorization:
        return {"scheme": "none"}
    scheme, _, rest = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return {"scheme": "bearer", "principal": "", "credentials": rest}
    return {"scheme": "bearer", "principal": "", "credentials": authorization}


LOGON_CASES = [case for case in CASES if case[0] not in HTTP_ONLY]


def logon(peer: Peer, auth: dict[str, Any]) -> Any:
    """The door's answer to ``auth`` in a LOGON, after a handshake and a HELLO."""
    peer.send(wire.MAGIC + PROPOSALS)
    assert peer.read(4) == V54
    peer.message(0x01, {"user_agent": "test/1"})
    assert peer.answer() is not None
    peer.message(0x6A, auth)
    return peer.answer()


@pytest.mark.parametrize(("name", "make", "reason"), LOGON_CASES, ids=[c[0] for c in LOGON_CASES])
def test_hostile_logon(
    stack: DevStack,
    peer: Peer,
    decoy: Decoy,
    name: str,
    make: Callable[[Forge], str | None],
    reason: str,
) -> None:
    auth = logon_auth(make(Forge(stack, decoy)))
    answer = logon(peer, auth)
    # An expired token or a stale IAM proof is told so (drivers' auth managers then fetch a new
    # one); nothing else.
    expired = reason in {"token_expired", "iam_request_stale"}
    code = "Neo.ClientError.Security." + ("TokenExpired" if expired else "Unauthorized")
    assert failure(answer) == code, name
    assert answer is not None
    message = answer.fields[0]["message"]
    assert message.startswith("Authentication failed."), message
    assert peer.closed()
    found = re.search(r"\(request ([0-9a-f-]{36})\)", message)
    assert found, message
    with AuditReader(stack.audit_path) as reader:
        (record,) = reader.query(RecordFilter(request_id=found.group(1)))
    assert record["error"]["reason"] == reason, name
    assert record["status"] == 401
    assert decoy.hits == [], f"the gateway contacted a host it was not configured with: {name}"


@pytest.mark.parametrize("principal", [["demo_reader"], 7, True, {"dag": "demo_reader"}])
def test_a_basic_principal_that_is_not_text_is_refused_not_ignored(
    stack: DevStack, peer: Peer, principal: object
) -> None:
    """Found by review: a basic LOGON's principal of another PackStream type (a list naming a
    DAG, a number) was ignored, and the connection acted as the identity's only DAG where the
    client had named another; Neo4j refuses such a LOGON. It is refused, recorded with its
    reason and its caller, and the connection closed."""
    token = stack.token("demo_writer")
    answer = logon(peer, {"scheme": "basic", "principal": principal, "credentials": token})
    assert failure(answer) == "Neo.ClientError.Security.Unauthorized"
    assert answer is not None
    message = answer.fields[0]["message"]
    assert token not in message
    assert peer.closed()
    found = re.search(r"\(request ([0-9a-f-]{36})\)", message)
    assert found, message
    with AuditReader(stack.audit_path) as reader:
        (record,) = reader.query(RecordFilter(request_id=found.group(1)))
    assert record["error"]["reason"] == "malformed_principal"
    assert record["status"] == 401
    assert record["principal"]["subject"] == "demo_writer"  # the caller, named
    assert token not in str(record)


@pytest.mark.parametrize(
    ("principal", "said", "reason"),
    [
        (
            "demo_writer/chargé/1/manual__1",
            "The task (second part) of the login principal dag/task/try/run is not a valid"
            " Airflow id.",
            "bad_context_header",
        ),
        (
            "demo_writer/load/1/manual__x\r\nX: 1",
            "The run id (fourth part) of the login principal dag/task/try/run is not a valid"
            " Airflow id.",
            "bad_context_header",
        ),
        (
            "demo_writer/load/²/manual__1",
            "The try number (third part) of the login principal dag/task/try/run must be a whole"
            " number.",
            "bad_try_header",
        ),
    ],
    ids=["task", "run", "try"],
)
def test_a_bad_part_of_the_login_principal_is_named_as_such_not_as_a_header(
    stack: DevStack, peer: Peer, principal: str, said: str, reason: str
) -> None:
    """Found by review: a basic LOGON's principal ``dag/task/try/run`` with a task id outside
    ASCII was refused with "Header x-cyphergate-task is not a valid Airflow id.", naming an HTTP
    header to a Bolt client that sent none. The refusal names the part of the principal, never
    its value; the record keeps its reason."""
    token = stack.token("demo_writer")
    answer = logon(peer, {"scheme": "basic", "principal": principal, "credentials": token})
    assert failure(answer) == "Neo.ClientError.Request.Invalid"
    assert answer is not None
    message = answer.fields[0]["message"]
    found = re.fullmatch(re.escape(said) + r" \(request ([0-9a-f-]{36})\)", message)
    assert found, message
    assert peer.closed()
    with AuditReader(stack.audit_path) as reader:
        (record,) = reader.query(RecordFilter(request_id=found.group(1)))
    assert record["error"]["reason"] == reason
    assert record["status"] == 400


def test_a_logoff_inside_a_transaction_leaves_nothing_of_it_to_the_next_identity(
    stack: DevStack, peer: Peer, neo4j_admin: Driver
) -> None:
    """A client that logs off inside a transaction and on again as another identity, its COMMIT
    sent behind (all in one write, as a pipelining client would): the LOGOFF breaks the protocol
    (Neo4j allows it only when nothing is open), so the connection closes, the transaction is
    rolled back and recorded so, and neither the LOGON nor the COMMIT is taken."""
    label = f"BoltRelogon{uuid.uuid4().hex[:10]}"
    logged_on(peer, stack.token("demo_writer"))
    peer.message(0x11, {})
    assert peer.answer() == Structure(b"\x70", ({},))
    peer.message(0x10, f"CREATE (:{label})", {}, {})
    peer.message(0x3F, {"n": -1})
    for _ in range(2):  # the RUN's SUCCESS, the PULL's
        answer = peer.answer()
        assert answer is not None and answer.tag == b"\x70", answer
    peer.send(
        wire.encode(0x6B)
        + wire.encode(0x6A, {"scheme": "bearer", "credentials": stack.token("demo_reader")})
        + wire.encode(0x12)
    )
    assert failure(peer.answer()) == "Neo.ClientError.Request.Invalid"
    assert peer.answer() is None and peer.closed()  # nothing else answered
    created, _, _ = neo4j_admin.execute_query(f"MATCH (n:{label}) RETURN count(n) AS n")
    assert created[0]["n"] == 0
    with AuditReader(stack.audit_path) as reader:
        (decision,) = reader.query(RecordFilter(text=label))
        transaction_id = decision["transaction"]["id"]
        trail = [
            r
            for r in reader.query(RecordFilter())
            if (r.get("transaction") or {}).get("id") == transaction_id
        ]
    assert [(r["event"], r["principal"]["dag"]) for r in trail] == [
        ("decision", "demo_writer"),
        ("outcome", "demo_writer"),
        ("transaction", "demo_writer"),
    ]
    assert trail[-1]["transaction"]["action"] == "rollback"
    assert trail[-1]["transaction"]["cause"] == "closed"
