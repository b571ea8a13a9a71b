"""What a statement touched, named as lineage datasets.

The gateway knows, for every statement, the labels and relationship types its plan reads and
writes (:mod:`proxy.analysis`, the same facts the policy decided on). Lineage names each of them
as one dataset:

- namespace ``neo4j://<host>:<port>``: the Neo4j server, as the gateway dials it;
- name ``<database>.<Label>`` for a label, ``<database>.[:TYPE]`` for a relationship type.

Inputs are what the statement read, outputs what it wrote; a label both read and written is
both. An answer that carries lineage (opt-in, see the README's Lineage section) carries
:class:`Lineage`'s document: the request id that finds the statement's audit records, the
namespace and :class:`Touched`'s document.

This module is shared by the gateway (its answers and its own run events) and the Airflow
provider (``CypherGateOperator``'s facets), so it imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Neo4j's Bolt port, where a URI names none.
_BOLT_PORT = 7687


class LineageError(ValueError):
    """A lineage document that does not have the shape :meth:`Touched.from_document` reads."""


@dataclass(frozen=True)
class Touched:
    """The labels and relationship types one statement read and wrote on one database."""

    database: str
    labels_read: tuple[str, ...] = ()
    labels_written: tuple[str, ...] = ()
    types_read: tuple[str, ...] = ()
    types_written: tuple[str, ...] = ()

    @classmethod
    def from_analysis(cls, database: str, analysis: Mapping[str, Any]) -> Touched:
        """From an analysis document (:attr:`proxy.analysis.Analysis.document`)."""
        return cls.from_document({"database": database, **analysis})

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Touched:
        """From :meth:`document`'s shape, as an answer carries it; refuses any other shape."""
        database = document.get("database")
        if not isinstance(database, str) or not database:
            raise LineageError("lineage: 'database' must be a non-empty string")
        return cls(
            database,
            *_pair(document, "labels"),
            *_pair(document, "relationship_types"),
        )

    def document(self) -> dict[str, Any]:
        """The JSON form answers carry (sorted, so equal statements give equal documents)."""
        return {
            "database": self.database,
            "labels": {"read": list(self.labels_read), "write": list(self.labels_written)},
            "relationship_types": {
                "read": list(self.types_read),
                "write": list(self.types_written),
            },
        }

    def inputs(self) -> list[str]:
        """Dataset names of what the statement read."""
        return [label_dataset(self.database, label) for label in self.labels_read] + [
            type_dataset(self.database, rel_type) for rel_type in self.types_read
        ]

    def outputs(self) -> list[str]:
        """Dataset names of what the statement wrote."""
        return [label_dataset(self.database, label) for label in self.labels_written] + [
            type_dataset(self.database, rel_type) for rel_type in self.types_written
        ]


def namespace(host: str, port: int) -> str:
    """The dataset namespace of the Neo4j server at ``host:port``."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal, as a URI writes it
    return f"neo4j://{host}:{port}"


def namespace_of(uri: str) -> str:
    """The dataset namespace of the Neo4j server a URI names (``bolt://``, ``neo4j+s://``...)."""
    parts = urlsplit(uri)
    if not parts.hostname:
        raise LineageError(f"lineage: {uri!r} names no host")
    return namespace(parts.hostname, parts.port or _BOLT_PORT)


def label_dataset(database: str, label: str) -> str:
    """``<database>.<Label>``."""
    return f"{database}.{label}"


def type_dataset(database: str, rel_type: str) -> str:
    """``<database>.[:TYPE]``."""
    return f"{database}.[:{rel_type}]"


@dataclass(frozen=True)
class Lineage:
    """What one answered statement touched, on which server, and the request id that finds its
    audit records (``cyphergate audit query --request-id``)."""

    request_id: str
    namespace: str
    touched: Touched

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Lineage:
        """From :meth:`document`'s shape, as an answer carries it; refuses any other shape."""
        request_id, space = document.get("request_id"), document.get("namespace")
        if not isinstance(request_id, str) or not request_id:
            raise LineageError("lineage: 'request_id' must be a non-empty string")
        if not isinstance(space, str) or not space.startswith("neo4j://"):
            raise LineageError("lineage: 'namespace' must be a neo4j:// URI")
        return cls(request_id, space, Touched.from_document(document))

    def document(self) -> dict[str, Any]:
        """The JSON form an answer carries: :meth:`Touched.document` with the request id and
        the namespace."""
        return {
            "request_id": self.request_id,
            "namespace": self.namespace,
            **self.touched.document(),
        }


def _pair(document: Mapping[str, Any], key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    value = document.get(key)
    if not isinstance(value, Mapping):
        raise LineageError(f"lineage: {key!r} must be an object with 'read' and 'write'")
    return _names(value, key, "read"), _names(value, key, "write")


def _names(value: Mapping[str, Any], key: str, side: str) -> tuple[str, ...]:
    names = value.get(side, [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise LineageError(f"lineage: {key}.{side} must be a list of non-empty strings")
    return tuple(sorted(set(names)))
