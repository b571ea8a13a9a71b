"""The canary graph and the oracles that say whether an allowed statement did more than its grant.

The graph holds nodes of granted labels (Person, Movie), of labels no test grant reads (Secret,
Account), of both at once (Movie:Secret, Person:Account), of ungranted ones only
(Secret:Account:Vault, where Vault is a label no readable node has) and of none, connected to
each other in every direction through granted relationship types (ACTED_IN, DIRECTED) and
ungranted ones (OWNS, KNOWS). Every node that carries no granted label,
and every relationship of an ungranted type, carries a unique canary value.

A label grant means what Neo4j's own GRANT means: a node is readable when one of its labels is
granted (so a Movie:Secret node is readable), writable when one of its labels is write-granted.
What a readable node shows is all of it, as the README's least-privilege section promises and as
Neo4j's TRAVERSE and READ on one of its labels show it: every label it carries (``labels()`` of
the Movie:Secret node names Secret) and every property key and value. So the names a caller may
learn are the labels of the nodes it may read, the types it may read, the property keys of
either, and the names its own statement spells; no other label, type or key name.

Oracles, for a statement the gateway allowed:

- **canaries**: no canary value appears anywhere in its answer, nor in a readable node or
  relationship after it ran (copied there by a write);
- **non-interference** (read-only statements): its answer is the same on the whole graph as on
  the graph without what the grant may not read (deleted inside a transaction that is rolled
  back), so nothing ungranted shaped it: not by value, count, existence, error or the
  notifications the gateway passes on;
- **names**: every node and relationship in its answer (whole, in a path, a list or a map) is
  one the grant may read, and no name only unreadable things carry (:func:`secret_names`: the
  label Vault, the types OWNS and KNOWS, the key ``canary``) reaches the caller unless the
  statement spells it: not as a string (``labels()``, ``type()``, ``keys()``), a map key
  (``properties()``, map projections), nor a word of Neo4j's error message or of a
  notification the gateway passes on. Neo4j keeps a name once used even when nothing carries
  it any more, so the non-interference run cannot see these; this oracle can.
- **writes**: nothing the grant may not write changed: a node with no write-granted label is
  untouched (labels, properties, existence), a writable node kept its other labels, a
  relationship of a type not write-granted is untouched, and no relationship of a node the
  grant may not read is created or deleted (a relationship's ends are written with it, as
  DETACH DELETE of a readable node tied to an unreadable one would); created nodes carry
  only write-granted labels; and a property key not write-granted is neither set, changed nor
  removed on anything, nor on anything created.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from neo4j import Record
from neo4j.graph import Node, Path, Relationship

CANARY = "CANARY-"
GRANTED_LABELS = ("Person", "Movie")
OTHER_LABELS = ("Secret", "Account")
GRANTED_TYPES = ("ACTED_IN", "DIRECTED")
OTHER_TYPES = ("OWNS", "KNOWS")
ABSENT_LABEL = "Ghost"  # a label no node has

# (labels, how many): every combination the issue asks for.
KINDS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("Person",), 3),
    (("Movie",), 2),
    (("Secret",), 2),
    (("Account",), 2),
    (("Movie", "Secret"), 1),
    (("Person", "Account"), 1),
    (("Secret", "Account", "Vault"), 1),
    ((), 1),
)
TYPES = GRANTED_TYPES + OTHER_TYPES


def seed_statements() -> list[tuple[str, dict[str, Any]]]:
    """The statements that create the canary graph (every node and relationship marked ``fz``)."""
    nodes: list[dict[str, Any]] = []
    by_kind: dict[tuple[str, ...], list[int]] = {}
    for labels, count in KINDS:
        for _ in range(count):
            uid = len(nodes) + 1
            props: dict[str, Any] = {"uid": uid, "name": f"n{uid}", "born": 1950 + uid, "fz": True}
            if not set(labels) & set(GRANTED_LABELS):
                props["canary"] = f"{CANARY}n{uid}"
            nodes.append({"labels": list(labels), "props": props})
            by_kind.setdefault(labels, []).append(uid)
    readable = [kind for kind, _ in KINDS if set(kind) & set(GRANTED_LABELS)]
    unreadable = [kind for kind, _ in KINDS if not set(kind) & set(GRANTED_LABELS)]
    rels: list[tuple[int, str, int]] = []
    # Every readable kind is joined to every unreadable one, both ways, by every type (spread
    # over the nodes of each kind, so that nodes of one kind differ in what they reach).
    for i, r_kind in enumerate(readable):
        for j, u_kind in enumerate(unreadable):
            for t, rel_type in enumerate(TYPES):
                rs, us = by_kind[r_kind], by_kind[u_kind]
                r_node, u_node = rs[(i + t) % len(rs)], us[(j + t) % len(us)]
                rels.append(
                    (r_node, rel_type, u_node) if (i + j + t) % 2 else (u_node, rel_type, r_node)
                )
    # The granted part, and readable nodes joined by ungranted types.
    person, movie = by_kind[("Person",)], by_kind[("Movie",)]
    rels += [
        (person[0], "ACTED_IN", movie[0]),
        (person[1], "ACTED_IN", movie[1]),
        (person[0], "DIRECTED", movie[1]),
        (by_kind[("Person", "Account")][0], "ACTED_IN", movie[0]),
        (person[1], "ACTED_IN", by_kind[("Movie", "Secret")][0]),
        (person[0], "KNOWS", person[1]),
        (movie[0], "OWNS", person[2]),
        (by_kind[("Secret",)][0], "KNOWS", by_kind[("Account",)][0]),
    ]
    statements: list[tuple[str, dict[str, Any]]] = []
    for node in nodes:
        written = "".join(f":{label}" for label in node["labels"])
        statements.append((f"CREATE (n{written}) SET n = $props", {"props": node["props"]}))
    for k, (start, rel_type, end) in enumerate(rels):
        props = {"since": 2000 + k, "fz": True}
        if rel_type not in GRANTED_TYPES:
            props["canary"] = f"{CANARY}r{k}"
        statements.append(
            (
                f"MATCH (a {{uid: $s, fz: true}}), (b {{uid: $e, fz: true}}) "
                f"CREATE (a)-[r:{rel_type}]->(b) SET r = $props",
                {"s": start, "e": end, "props": props},
            )
        )
    return statements


@dataclass(frozen=True)
class Grant:
    """A test grant: what it reads and writes, as OPA's data and as the oracles see it."""

    dag: str
    read_labels: tuple[str, ...]
    read_types: tuple[str, ...]
    write_labels: tuple[str, ...] = ()
    write_types: tuple[str, ...] = ()
    delete: bool = False
    max_hops: int = 3
    write_properties: tuple[str, ...] = ("*",)

    def document(self) -> dict[str, Any]:
        database: dict[str, Any] = {
            "read": {"labels": list(self.read_labels), "relationship_types": list(self.read_types)},
            "guardrails": ["unbounded_expand"],
            "max_hops": self.max_hops,
            "timeout_ms": 5000,
        }
        if self.write_labels or self.write_types:
            database["write"] = {
                "labels": list(self.write_labels),
                "relationship_types": list(self.write_types),
                "properties": list(self.write_properties),
                "delete": self.delete,
            }
        return {"databases": {"neo4j": database}}

    @property
    def reads_everything(self) -> bool:
        return "*" in self.read_labels and "*" in self.read_types


GRANTS = (
    Grant("fuzz_reader", GRANTED_LABELS, GRANTED_TYPES),
    Grant("fuzz_writer", GRANTED_LABELS, GRANTED_TYPES, ("Person",), ("ACTED_IN",), delete=True),
    # Writes only the keys the generator's writes use, bar `born` and `pwned`.
    Grant(
        "fuzz_wide",
        ("*",),
        ("*",),
        ("Person",),
        ("ACTED_IN",),
        write_properties=("name", "seen", "since", "uid", "z"),
    ),
)

NODES = "MATCH (n) RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props"
RELS = (
    "MATCH (a)-[r]->(b) RETURN elementId(r) AS id, type(r) AS type, properties(r) AS props, "
    "elementId(a) AS s, elementId(b) AS e"
)
WITHOUT_UNREADABLE = (
    "MATCH ()-[r]->() WHERE NOT type(r) IN $types DELETE r",
    "MATCH (n) WHERE none(l IN labels(n) WHERE l IN $labels) DETACH DELETE n",
)


@dataclass
class GraphState:
    """Every node and relationship, by element id."""

    nodes: dict[str, tuple[list[str], dict[str, Any]]] = field(default_factory=dict)
    rels: dict[str, tuple[str, dict[str, Any], str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, run: Any) -> GraphState:
        """The state as seen by ``run(statement) -> records`` (inside a transaction)."""
        state = cls()
        for r in run(NODES):
            state.nodes[r["id"]] = (sorted(r["labels"]), dict(r["props"]))
        for r in run(RELS):
            state.rels[r["id"]] = (r["type"], dict(r["props"]), r["s"], r["e"])
        return state


def write_violations(grant: Grant, before: GraphState, after: GraphState) -> list[str]:
    """What changed that ``grant`` may not write (see the module docstring)."""
    found: list[str] = []
    writable = set(grant.write_labels)

    def may_write(labels: Iterable[str]) -> bool:
        return "*" in writable or bool(writable & set(labels))

    for node_id, (labels, props) in before.nodes.items():
        now = after.nodes.get(node_id)
        if not may_write(labels):
            if now != (labels, props):
                found.append(f"node {labels} {props.get('uid')} changed: {now}")
        elif now is None:
            if not grant.delete:
                found.append(f"writable node {labels} deleted without a delete grant")
        elif "*" not in writable and set(labels) - writable != set(now[0]) - writable:
            found.append(f"labels of writable node {labels} became {now[0]}")
    for node_id, (labels, _props) in after.nodes.items():
        if (
            node_id not in before.nodes
            and "*" not in writable
            and (not labels or set(labels) - writable)
        ):
            found.append(f"node created with labels {labels}")
    write_types = set(grant.write_types)
    for rel_id, rel in before.rels.items():
        if "*" not in write_types and rel[0] not in write_types and after.rels.get(rel_id) != rel:
            found.append(f"relationship {rel[0]} {rel[1].get('since')} changed")
    for rel_id, rel in after.rels.items():
        if rel_id not in before.rels and "*" not in write_types and rel[0] not in write_types:
            found.append(f"relationship {rel[0]} created")
    # A relationship is a node's too: none is added to or taken from a node the grant may not
    # read (DETACH DELETE of a readable node with one to an unreadable node, say).
    read = set(grant.read_labels)

    def unreadable(node_id: str) -> bool:
        labels = (before.nodes.get(node_id) or after.nodes.get(node_id) or ([], {}))[0]
        return "*" not in read and not read & set(labels)

    for rel_id in before.rels.keys() ^ after.rels.keys():
        rel_type, _props, start, end = before.rels.get(rel_id) or after.rels[rel_id]
        if unreadable(start) or unreadable(end):
            gone = "deleted" if rel_id in before.rels else "created"
            found.append(f"relationship {rel_type} of an unreadable node {gone}")
    return found + _property_violations(grant, before, after)


def _property_violations(grant: Grant, before: GraphState, after: GraphState) -> list[str]:
    """Property keys set, changed or removed that the grant may not write."""
    if "*" in grant.write_properties:
        return []
    found: list[str] = []
    pairs = [(before.nodes.get(i, ([], {}))[1], now[1]) for i, now in after.nodes.items()]
    pairs += [(before.rels[i][1] if i in before.rels else {}, r[1]) for i, r in after.rels.items()]
    for old, new in pairs:
        changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
        if changed - set(grant.write_properties):
            found.append(f"properties {sorted(changed)} written")
    return found


def copied_canaries(grant: Grant, after: GraphState) -> list[str]:
    """Canary values now held by something the grant may read."""
    labels, types = set(grant.read_labels), set(grant.read_types)
    found = []
    for node_labels, props in after.nodes.values():
        if (set(node_labels) & labels or "*" in labels) and CANARY in _text(props):
            found.append(f"node {node_labels} holds {_text(props)}")
    for rel_type, props, _s, _e in after.rels.values():
        if (rel_type in types or "*" in types) and CANARY in _text(props):
            found.append(f"relationship {rel_type} holds {_text(props)}")
    return found


def canonical(records: Iterable[Record]) -> list[str]:
    """An answer as a sorted list of rows, each in one canonical text form (lists sorted, so
    that an order Neo4j does not promise never counts as a difference)."""
    return sorted(json.dumps(_plain([*record.values()]), sort_keys=True) for record in records)


def _plain(value: Any) -> Any:
    if isinstance(value, Node):
        return {
            "node": value.element_id,
            "labels": sorted(value.labels),
            "props": _plain(dict(value)),
        }
    if isinstance(value, Relationship):
        return {"rel": value.element_id, "type": value.type, "props": _plain(dict(value))}
    if isinstance(value, Path):
        return {"path": [_plain(n) for n in value.nodes] + [_plain(r) for r in value.relationships]}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _text(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True)


def holds_canary(answer: list[str]) -> bool:
    return any(CANARY in row for row in answer)


def secret_names(grant: Grant, state: GraphState) -> frozenset[str]:
    """The label, type and key names only what ``grant`` may not read carries in ``state``."""
    labels, types = set(grant.read_labels), set(grant.read_types)
    shown: set[str] = set()
    hidden: set[str] = set()
    for node_labels, props in state.nodes.values():
        readable = "*" in labels or bool(labels & set(node_labels))
        (shown if readable else hidden).update(node_labels, props)
    for rel_type, props, _s, _e in state.rels.values():
        readable = "*" in types or rel_type in types
        (shown if readable else hidden).update([rel_type], props)
    return frozenset(hidden - shown)


def spelled(text: str, parameters: Mapping[str, Any]) -> frozenset[str]:
    """The names a statement spells itself (its words, and its string parameters')."""
    words = _WORD.findall(text)
    for value in parameters.values():
        words += _WORD.findall(value) if isinstance(value, str) else []
    return frozenset(words)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_leaks(
    grant: Grant, secret: frozenset[str], own: frozenset[str], rows: Iterable[Record], said: str
) -> list[str]:
    """What of the rows and of what else the caller is shown (``said``: Neo4j's error message,
    the notifications it is passed) names what it may not read (see the module docstring)."""
    found: list[str] = []
    texts: set[str] = set()  # every string and key in the rows (a name may be part of one)
    for record in rows:
        _names(grant, [*record.values()], texts, found)
    words = set(_WORD.findall(said))  # a message quotes the statement: its words are its own
    for name in sorted(secret - own):
        if name in words or any(name in text for text in texts):
            found.append(f"the name {name!r} reached the caller")
    return found


def _names(grant: Grant, value: Any, names: set[str], found: list[str]) -> None:
    """Collect the strings and keys in ``value``; note entities ``grant`` may not read."""
    if isinstance(value, Node):
        readable = "*" in grant.read_labels or set(grant.read_labels) & value.labels
        if not readable and (value.labels or dict(value)):  # a deleted node shows nothing
            found.append(f"an unreadable node {sorted(value.labels)} reached the caller")
        names.update(value.labels, value.keys())
        _names(grant, list(dict(value).values()), names, found)
    elif isinstance(value, Relationship):
        if "*" not in grant.read_types and value.type not in grant.read_types:
            found.append(f"an unreadable relationship {value.type} reached the caller")
        names.update([value.type], value.keys())
        _names(grant, list(dict(value).values()), names, found)
    elif isinstance(value, Path):
        _names(grant, [*value.nodes, *value.relationships], names, found)
    elif isinstance(value, Mapping):
        names.update(str(key) for key in value)
        _names(grant, list(value.values()), names, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _names(grant, item, names, found)
    elif isinstance(value, str):
        names.add(value)
