"""What of Neo4j's answers a caller is shown: its notifications (deprecations, performance
hints) and the plan of its own ``EXPLAIN``, without what tells of data its grant may not read.
Both doors' summaries come through here (the driver's, :mod:`.executor`, and the relay's,
:mod:`.summaries`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Neo4j's warnings that a name is unknown: whether one exists anywhere in the database (on
# nodes the caller may not read too) is not the caller's to learn, so none reaches it.
UNKNOWN_NAME_WARNINGS = frozenset(
    f"Neo.ClientNotification.Statement.Unknown{kind}Warning"
    for kind in ("PropertyKey", "Label", "RelationshipType")
)
# What Neo4j's plan estimates from its counts of the whole graph (nodes of a label, relationships
# of a type between labels, unreadable ones included): never shown to a caller.
_ESTIMATES = frozenset({"EstimatedRows"})


def shown_plan(plan: object) -> dict[str, Any] | None:
    """The plan of a caller's own ``EXPLAIN`` as it may see it: every operator without Neo4j's
    estimates (``EstimatedRows`` is a count of what the grant may not read)."""
    if not isinstance(plan, Mapping):
        return None
    shown = dict(plan)
    args = shown.get("args")
    if isinstance(args, Mapping):
        shown["args"] = {k: v for k, v in args.items() if k not in _ESTIMATES}
    children = shown.get("children")
    if isinstance(children, list):
        shown["children"] = [shown_plan(child) or {} for child in children]
    return shown


def notifications(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Neo4j's notifications (deprecations, performance hints) in the form Bolt 5.4 and the
    Query API give them (``code``, ``title``, ``description``, ``severity``, ``category``,
    ``position``), from the summary's ``notifications`` or, on newer Bolt, its GQL
    ``statuses``; never one of :data:`UNKNOWN_NAME_WARNINGS`."""
    return tuple(n for n in _notifications(metadata) if n.get("code") not in UNKNOWN_NAME_WARNINGS)


def _notifications(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    found = metadata.get("notifications")
    if isinstance(found, list):
        return tuple(n for n in found if isinstance(n, dict))
    statuses = metadata.get("statuses")
    if not isinstance(statuses, list):
        return ()
    converted: list[dict[str, Any]] = []
    for status in statuses:
        if not (isinstance(status, dict) and "neo4j_code" in status):
            continue  # a status that is no notification (success, no data)
        record = status.get("diagnostic_record") or {}
        notification = {
            "code": status["neo4j_code"],
            "title": status.get("title", ""),
            "description": status.get("description", ""),
            "severity": record.get("_severity", ""),
            "category": record.get("_classification", ""),
        }
        if isinstance(record.get("_position"), dict):
            notification["position"] = record["_position"]
        converted.append(notification)
    return tuple(converted)
