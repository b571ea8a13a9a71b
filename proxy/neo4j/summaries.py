"""The gateway's :class:`~proxy.statement.Summary` of a result, from the metadata of the
``SUCCESS`` that ends it on a Bolt connection of the gateway's own (:mod:`proxy.neo4j.relay`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.neo4j.shown import notifications, shown_plan
from proxy.statement import QueryType, Summary

# Bolt's summary counters, by the name the gateway gives them (the Query API's).
_COUNTERS = {
    "nodes-created": "nodesCreated",
    "nodes-deleted": "nodesDeleted",
    "relationships-created": "relationshipsCreated",
    "relationships-deleted": "relationshipsDeleted",
    "properties-set": "propertiesSet",
    "labels-added": "labelsAdded",
    "labels-removed": "labelsRemoved",
    "indexes-added": "indexesAdded",
    "indexes-removed": "indexesRemoved",
    "constraints-added": "constraintsAdded",
    "constraints-removed": "constraintsRemoved",
    "system-updates": "systemUpdates",
}
_QUERY_TYPES: tuple[QueryType, ...] = ("r", "rw", "w", "s")


def summary_of(metadata: Mapping[str, Any], rows: int, truncated: bool) -> Summary:
    """The gateway's :class:`~proxy.statement.Summary` of a result's final ``SUCCESS``."""
    stats = metadata.get("stats")
    stats = stats if isinstance(stats, dict) else {}
    counters: dict[str, int | bool] = dict.fromkeys(_COUNTERS.values(), 0)
    updates = False
    if stats:  # a read has none: nothing to look up
        for bolt_name, name in _COUNTERS.items():
            value = stats.get(bolt_name)
            if isinstance(value, int):
                counters[name] = value
        updates = any(counters[name] for name in _COUNTERS.values() if name != "systemUpdates")
    counters["containsUpdates"] = bool(stats.get("contains-updates", updates))
    counters["containsSystemUpdates"] = bool(
        stats.get("contains-system-updates", counters["systemUpdates"] > 0)
    )
    bookmark = metadata.get("bookmark")
    plan = metadata.get("plan")
    query_type = metadata.get("type")
    return Summary(
        rows=rows,
        counters=counters,
        bookmarks=[bookmark] if isinstance(bookmark, str) else [],
        truncated=truncated,
        query_type=next((kind for kind in _QUERY_TYPES if kind == query_type), None),
        plan=shown_plan(plan),
        notifications=notifications(metadata),
    )
