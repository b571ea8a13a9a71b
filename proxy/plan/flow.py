"""What the plan reader knows about each variable, and what it has found a statement touches.

The reader walks the plan bottom-up. Each operator hands its parent an :data:`Env`: for every
variable in its rows, a :class:`Binding` saying whether it holds a node, a relationship or
something else, and which labels (or types) it is *guaranteed* to have one of.

A binding is ``fresh`` while it holds entities an operator below found in the store and only
pure row filters have seen since (``Filter``, inner joins, cartesian products). A filter's
positive label conjunct narrows a fresh binding before anything looks at it. Every other
operator *observes* the rows it takes in: at that moment each fresh binding is recorded as
read, with the labels (or types) it is known to have, or :data:`ANY` when nothing is known.
So a node is label-checked wherever it was found (a scan, an expansion, a procedure), and the
check can only come from a predicate that every row passing it satisfies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

ANY = "*"
Kind = Literal["node", "rel", "value", "unknown"]
Guarantee = frozenset[str] | None  # has at least one of these; None: nothing known


@dataclass(frozen=True, slots=True)
class Binding:
    """One variable: its kind, the labels or types it has one of, and whether it is fresh.

    ``origin`` is the declaration the binding comes from: a new :class:`Binding` is a new
    declaration, a narrowed or observed one keeps its origin. Neo4j prints a variable declared
    again under a name in use (after ``WITH`` dropped it, or inside a subquery that does not
    import it) under that same name; the origin tells the reader which one a name holds."""

    kind: Kind
    labels: Guarantee = None
    fresh: bool = False
    origin: object = field(default_factory=object, compare=False, repr=False)

    def narrowed(self, guarantee: Guarantee) -> Binding:
        """This binding, also known to satisfy ``guarantee`` (both hold)."""
        return replace(self, labels=both(self.labels, guarantee))


Env = dict[str, Binding]


def inner_nodes(var: str) -> str:
    """The env name of the nodes inside the variable-length relationship ``var`` (between its
    hops), while they wait, fresh, for a Filter's ``all(n IN nodes(<path>) WHERE n:L)`` to narrow
    them. No plan names a variable so (a NUL never passes the statement's name check)."""
    return "\0" + var


def value() -> Binding:
    """A new variable holding a value nothing is known of (a number, a list, a path...)."""
    return Binding("value")


def both(a: Guarantee, b: Guarantee) -> Guarantee:
    """Two guarantees that hold at once: either one is a guarantee, and so is their union (the
    union is weaker, but it needs no choosing between them)."""
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def either(a: Binding | None, b: Binding | None) -> Binding:
    """A variable that holds what ``a`` holds on some rows and what ``b`` holds on others."""
    if a is None or b is None:
        one = a or b
        return replace(one, labels=None) if one is not None else Binding("unknown")
    kind: Kind = a.kind if a.kind == b.kind else "unknown"
    labels = None if a.labels is None or b.labels is None else a.labels | b.labels
    return Binding(kind, labels, a.fresh or b.fresh)


FactSet = Literal[
    "labels_read",
    "labels_written",
    "rel_types_read",
    "rel_types_written",
    "properties_written",
    "procedures",
    "functions",
    "operators",
    "databases",
    "commands",
    "unreadable",
]


def read_set(kind: str) -> FactSet:
    """Where a read of a pattern element of this kind (node or rel) is recorded."""
    return "labels_read" if kind == "node" else "rel_types_read"


def write_set(kind: str) -> FactSet:
    """Where a write of a pattern element of this kind (node or rel) is recorded."""
    return "labels_written" if kind == "node" else "rel_types_written"


def entity(kind: str) -> Kind:
    """The binding kind of a pattern element of this kind."""
    return "node" if kind == "node" else "rel"


@dataclass
class Facts:
    """The mutable sets the reader fills while it walks the tree."""

    sets: dict[FactSet, set[str]] = field(default_factory=dict)
    load_csv_ops: int = 0
    deletes: bool = False
    max_hops: int | None = None  # the longest variable-length pattern; None: there is none
    # The names the statement's text writes inside square brackets (``n[k]``, ``[x IN l]``);
    # None: the text is unknown, so any name may be.
    bracketed: frozenset[str] | None = None

    def add(self, name: FactSet, values: Iterable[str] | None) -> None:
        """Record ``values``, or :data:`ANY` when they are unknown (None)."""
        self.sets.setdefault(name, set()).update({ANY} if values is None else values)

    def get(self, name: FactSet) -> frozenset[str]:
        return frozenset(self.sets.get(name, ()))

    def hops(self, high: int | None) -> None:
        """Record a variable-length pattern of at most ``high`` hops (None: unbounded)."""
        bound = UNBOUNDED if high is None else high
        self.max_hops = bound if self.max_hops is None else max(self.max_hops, bound)

    def read(self, binding: Binding) -> None:
        """Record a read of what ``binding`` holds."""
        if binding.kind in ("node", "unknown"):
            self.add("labels_read", binding.labels)
        if binding.kind in ("rel", "unknown"):
            self.add("rel_types_read", binding.labels)

    def write(self, binding: Binding) -> None:
        """Record a write to what ``binding`` holds (a property, a label, a deletion)."""
        if binding.kind in ("node", "unknown", "value"):
            self.add("labels_written", binding.labels if binding.kind == "node" else None)
        if binding.kind in ("rel", "unknown", "value"):
            self.add("rel_types_written", binding.labels if binding.kind == "rel" else None)

    def observe(self, env: Mapping[str, Binding]) -> Env:
        """Record every fresh binding as read; the same bindings, no longer fresh."""
        seen: Env = {}
        for name, binding in env.items():
            if binding.fresh:
                self.read(binding)
                binding = replace(binding, fresh=False)
            seen[name] = binding
        return seen

    def write_anything(self) -> None:
        """A write of anything: any label, type and property."""
        self.add("labels_written", None)
        self.add("rel_types_written", None)
        self.add("properties_written", None)

    def opaque(self, *, writes: bool, what: str) -> None:
        """An operator (or a part of one) this reader cannot read: it may touch anything."""
        self.add("unreadable", [what])
        self.add("labels_read", None)
        self.add("rel_types_read", None)
        if writes:
            self.write_anything()


UNBOUNDED = 2**31 - 1  # Neo4j's own bound for "no upper bound"
