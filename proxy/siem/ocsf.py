"""Audit records as OCSF events (schema version :data:`OCSF_VERSION`), for a SIEM.

One record gives one event, so a receiver's duplicate check (``metadata.uid``, which is
``<chain>:<seq>``) works for these as for our own form:

* a refused credential (status 401, a statement's or a reviewer's) is **Authentication**
  (3002), activity Logon, status Failure;
* a reviewer's read of the log (``access``) is **API Activity** (6003), activity Read;
* everything else (a statement's decision and outcome, a transaction's end) is **Datastore
  Activity** (6005): Query for a read, Write for a write, Other for a schema statement or a
  commit or rollback, Unknown when the statement was refused before Neo4j planned it.

Nothing is lost in the mapping: ``raw_data`` is the record's canonical body (its SHA-256 is the
record's ``hash``), and what OCSF has no attribute for is under ``unmapped.cyphergate``.
The README's SIEM section has the table; tests validate the events against the OCSF schema.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy import __version__
from proxy.audit.record import verdict_of

OCSF_VERSION = "1.7.0"
_PRODUCT = {"name": "CypherGate", "vendor_name": "CypherGate", "version": __version__}
_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium"}
_STATUS = {0: "Unknown", 1: "Success", 2: "Failure"}
# (category uid, category name, class uid, class name)
_DATASTORE = (6, "Application Activity", 6005, "Datastore Activity")
_AUTHENTICATION = (3, "Identity & Access Management", 3002, "Authentication")
_API = (6, "Application Activity", 6003, "API Activity")
# Neo4j's query type -> Datastore Activity's activity.
_QUERY_ACTIVITY = {"r": (4, "Query"), "rw": (5, "Write"), "w": (5, "Write"), "s": (99, "Schema")}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AUTH_PROTOCOL = {"oidc": (4, "OpenID"), "aws_iam": (99, "AWS IAM")}


def ocsf_event(
    *, chain: str, seq: int, hash_: str, body: str, record: dict[str, Any]
) -> dict[str, Any]:
    """The OCSF event of one record (``record`` is ``body`` parsed)."""
    status = record.get("status")
    if status == 401:
        event = _authentication(record)
    elif record.get("event") == "access":
        event = _with_class(_API, 2, "Read")
        event["api"] = {"operation": "read_audit_log", "service": {"name": "cyphergate-audit"}}
    else:
        event = _datastore(record)
    event.update(_common(chain=chain, seq=seq, hash_=hash_, body=body, record=record))
    if "actor" not in event and status != 401:
        event["actor"] = _actor(record)
    event["src_endpoint"] = _endpoint(record.get("client"))
    return event


def _with_class(
    klass: tuple[int, str, int, str], activity_id: int, activity: str
) -> dict[str, Any]:
    category_uid, category_name, class_uid, class_name = klass
    return {
        "category_uid": category_uid,
        "category_name": category_name,
        "class_uid": class_uid,
        "class_name": class_name,
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity}",
    }


def _datastore(record: dict[str, Any]) -> dict[str, Any]:
    transaction = record.get("transaction") or {}
    if record.get("event") == "transaction":
        activity_id, activity = 99, str(transaction.get("action") or "end").capitalize()
    else:
        activity_id, activity = _QUERY_ACTIVITY.get(record.get("query_type") or "", (99, "Other"))
    event = _with_class(_DATASTORE, activity_id, activity)
    # Always there (OCSF wants one of database, databucket, table): Neo4j is a NoSQL store.
    event["database"] = {"type_id": 6, "type": "NoSQL"}
    if record.get("database") is not None:
        event["database"]["name"] = record["database"]
    if record.get("statement"):
        event["query_info"] = {"query_string": record["statement"]}
        if record.get("statement_sha256"):
            event["query_info"]["uid"] = record["statement_sha256"]
    return event


def _authentication(record: dict[str, Any]) -> dict[str, Any]:
    event = _with_class(_AUTHENTICATION, 1, "Logon")
    principal = record.get("principal") or {}
    protocol = _AUTH_PROTOCOL.get(str(principal.get("method")), (0, "Unknown"))
    event["auth_protocol_id"], event["auth_protocol"] = protocol
    event["user"] = _user(principal) or {"name": "unknown"}
    event["service"] = {"name": "cyphergate"}
    event["is_remote"] = True
    return event


def _common(
    *, chain: str, seq: int, hash_: str, body: str, record: dict[str, Any]
) -> dict[str, Any]:
    status = record.get("status")
    decision = record.get("decision") or {}
    error = record.get("error") or {}
    verdict = verdict_of(decision, event=record.get("event"))
    refused = verdict == "deny" or status in (401, 403)
    if refused or (isinstance(status, int) and status >= 400):
        status_id = 2
    elif status is None:
        status_id = 0  # a decision written ahead of execution: its outcome record follows
    else:
        status_id = 1
    severity_id = 3 if refused else 2 if status_id == 2 else 1
    reasons = decision.get("reasons") or ([error["reason"]] if error.get("reason") else [])
    common: dict[str, Any] = {
        "time": epoch_ms(record["time"]),
        "severity_id": severity_id,
        "severity": _SEVERITY[severity_id],
        "status_id": status_id,
        "status": _STATUS[status_id],
        "metadata": {
            "version": OCSF_VERSION,
            "product": _PRODUCT,
            "uid": f"{chain}:{seq}",
            "correlation_uid": record.get("request_id"),
            "log_name": chain,
            "sequence": seq,
            "event_code": record.get("event"),
            "original_time": record.get("time"),
        },
        "raw_data": body,
        "unmapped": {
            "cyphergate": {
                "chain": chain,
                "seq": seq,
                "hash": hash_,
                "prev_hash": record.get("prev_hash"),
                "event": record.get("event"),
                "verdict": verdict,
                "reasons": list(reasons),
                "decision_id": decision.get("decision_id"),
                "policy_revision": decision.get("policy_revision"),
                "task": (record.get("principal") or {}).get("task"),
                "run": (record.get("principal") or {}).get("run"),
                "rows": record.get("rows"),
                "counters": record.get("counters"),
                "statement_sha256": record.get("statement_sha256"),
                "transaction": record.get("transaction"),
                "late": record.get("late"),
                "committed": record.get("committed"),
            }
        },
    }
    if status is not None:
        common["status_code"] = str(status)
    if reasons:
        common["status_detail"] = ", ".join(str(reason) for reason in reasons)
    if record.get("latency_us") is not None:
        common["duration"] = record["latency_us"] // 1000
    return common


def _actor(record: dict[str, Any]) -> dict[str, Any]:
    principal = record.get("principal") or {}
    decision = record.get("decision") or {}
    actor: dict[str, Any] = {"user": _user(principal) or {"name": "unknown"}}
    if principal.get("issuer"):
        actor["idp"] = {"name": str(principal.get("method")), "uid": principal["issuer"]}
    if decision:
        policy: dict[str, Any] = {"name": "cyphergate"}
        if decision.get("decision_id"):
            policy["uid"] = decision["decision_id"]
        if decision.get("policy_revision"):
            policy["version"] = str(decision["policy_revision"])
        allowed = decision.get("allow") is True and not decision.get("shadow_denied")
        actor["authorizations"] = [{"decision": "allow" if allowed else "deny", "policy": policy}]
    return actor


def _user(principal: dict[str, Any]) -> dict[str, Any] | None:
    """The caller as an OCSF user: a service account named by its DAG when one was resolved."""
    subject, dag = principal.get("subject"), principal.get("dag")
    if not subject and not dag:
        return None
    user: dict[str, Any] = {"name": str(dag or subject), "type_id": 4, "type": "Service"}
    if subject:
        user["uid"] = str(subject)
    return user


def _endpoint(client: object) -> dict[str, Any]:
    """``host:port`` as an OCSF network endpoint; ``unknown`` when the peer was not recorded."""
    if not isinstance(client, str) or not client:
        return {"name": "unknown"}
    host, _, port = client.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return {"name": client}
    endpoint: dict[str, Any] = {"ip": str(address)}
    if port.isdigit() and 0 < int(port) < 65536:
        endpoint["port"] = int(port)
    return endpoint


def epoch_ms(time: str) -> int:
    """Milliseconds since the epoch of a record's RFC 3339 UTC time."""
    moment = datetime.fromisoformat(time.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(milliseconds=1)
