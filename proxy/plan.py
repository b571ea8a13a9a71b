"""Least-privilege facts from the plan Neo4j 5.26 returns for ``EXPLAIN``.

:func:`read_plan` turns ``summary.plan`` (operators with ``Details`` strings) into the labels,
relationship types and property keys a statement reads and writes, the procedures and
user-defined functions it calls, its LOAD CSV sources and its risky operators.

Guarantee: the extraction errs towards denial. Whatever it cannot attribute precisely comes out
as :data:`ANY` (a write to a node whose labels are unknown, a dynamic label, ``:%`` or ``:!A``,
``SET n = $map``), a LOAD CSV source it cannot see is ``<dynamic>``, and an operator this module
does not know whose name looks like a write (or an administration command) writes :data:`ANY`.
Labels are tracked per variable through the plan tree (scans, seeks, label filters, expands,
aliases); a variable is "known" to carry one of a set of labels only where every path to it
says so. ``labels_read`` names the labels under which nodes are *found* (scans, seeks,
filters, label expressions): an unlabelled entry point (``AllNodesScan``, seek by id) reads
:data:`ANY`, while nodes reached by an expand are governed by the relationship types followed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ANY = "*"
DYNAMIC = "<dynamic>"

# Built-in namespaced functions of 5.26 (SHOW FUNCTIONS); any other ``ns.f(`` is user-defined.
_BUILTIN_NAMESPACES = frozenset(
    {"date", "datetime", "duration", "graph", "localdatetime", "localtime", "point", "time"}
    | {"vector.similarity"}
)
# Unknown operators named like a write; the last ones are state-changing commands that also run
# on a user database (TERMINATE TRANSACTIONS plans as query type "r"; CREATE USER is routed).
_WRITE_HINT = re.compile(
    "Set|Create|Merge|Delete|Remove|Foreach|Load|Drop|Terminate|Administration|Alter|Grant|Revoke"
)
# The write operators 5.26 emits, as EXPLAIN shows them; other write-like names are unknown.
_SET_OPS = frozenset(
    {"SetProperty", "SetProperties", "SetDynamicProperty", "SetPropertiesFromMap"}
    | {"SetNodePropertiesFromMap", "SetRelationshipPropertiesFromMap", "SetLabels", "RemoveLabels"}
)
_CLAUSE_OPS = frozenset({"Create", "Merge", "LockingMerge", "Foreach"})
_WRITE_OPS = _SET_OPS | _CLAUSE_OPS | {"Delete", "DetachDelete", "LoadCSV"}
_WRITE_OPS |= {"SubqueryForeach", "TransactionForeach"}
_JOINS = frozenset(
    {"CartesianProduct", "NodeHashJoin", "ValueHashJoin", "NodeLeftOuterHashJoin"}
    | {"NodeRightOuterHashJoin", "AssertSameNode", "AssertSameRelationship"}
)
_COMMAND_PREFIXES = ("Show", "Terminate", "Create", "Drop", "Alter")
_COMMANDS = frozenset({"AdministrationCommand", "DoNothingIfExists"})
_APPLY_KEEPS_RHS = frozenset({"Apply", "TransactionApply"})
_UNLABELLED_ENTRY = ("AllNodesScan", "NodeByIdSeek", "NodeByElementIdSeek")
_MAX_HOPS = 2**31 - 1  # pruning var-expands print an unbounded pattern as *..2147483647

_NAME = r"(?:[^\W\d]\w*|\x01\d+\x02)"
_IDENT = re.compile(rf"{_NAME}\Z")
_ALIAS = re.compile(rf"(?s)(.*) AS ({_NAME})\Z")
_PROP_SET = re.compile(rf"(?s)({_NAME}|.+?)\.({_NAME}) = ")
_MAP_SET = re.compile(rf"(?s)({_NAME}) (\+?=) (.*)\Z")
_MAP_KEY = re.compile(rf"[{{,]\s*({_NAME}): ")
_FUNCTION = re.compile(rf"(?<![\w.\x02])({_NAME}(?:\.{_NAME})+)\(")
_VAR_LENGTH = re.compile(r"-\[[^\]]*?\*(\d*)(\.\.)?(\d*)")
_BARE_NODE = re.compile(rf"(?<=[->\s])\(({_NAME})\)|\(({_NAME})\)(?=<?-)")
_LABEL_START = re.compile(rf"(\(|-\[)?({_NAME})?:(?=[\w\x01!%($])")
_QUOTED = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|" r'"(?:[^"\\]|\\.)*"')
_QUANTIFIER = re.compile(r"\)\s*\{\s*\d*\s*,\s*\}")
_CLAUSE = re.compile(r"(ON (?:MATCH|CREATE) SET|SET|REMOVE|CREATE|DETACH DELETE|DELETE) ")

Binding = tuple[str, frozenset[str] | None]  # ("node" | "rel" | "any", labels or None: any)
Env = dict[str, Binding]


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """What one planned statement reads, writes and calls; :data:`ANY` where unknowable."""

    labels_read: frozenset[str] = frozenset()
    labels_written: frozenset[str] = frozenset()
    rel_types_read: frozenset[str] = frozenset()
    rel_types_written: frozenset[str] = frozenset()
    properties_written: frozenset[str] = frozenset()
    procedures: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    load_csv: tuple[str, ...] = ()
    operators: frozenset[str] = frozenset()
    deletes: bool = False
    # Databases the operators run on (the ``@db`` suffix): a routed administration command or a
    # ``USE system CALL ...`` shows "system" here although the session's database is another.
    databases: frozenset[str] = frozenset()
    # Commands in the plan (SHOW ..., TERMINATE TRANSACTIONS, administration and index or
    # constraint commands), by operator name: they read or change more than graph data.
    commands: frozenset[str] = frozenset()


@dataclass
class _Facts:
    """The mutable sets :func:`read_plan` fills while walking the tree."""

    sets: dict[str, set[str]] = field(
        default_factory=lambda: {f: set() for f in PlanFacts.__slots__ if f != "deletes"}
    )
    load_csv_ops: int = 0
    deletes: bool = False

    def add(self, name: str, values: Iterable[str] | None) -> None:
        """Record ``values``, or :data:`ANY` when they are unknown (None)."""
        self.sets[name].update({ANY} if values is None else values)


@dataclass
class _Text:
    """A ``Details`` string with strings blanked and `quoted names` swapped for tokens."""

    text: str
    names: list[str]

    def name(self, token: str) -> str:
        """The real name behind a (possibly tokenised) name."""
        return self.names[int(token[1:-1])] if token.startswith("\x01") else token


def read_plan(plan: Mapping[str, Any], *, statement: str | None = None) -> PlanFacts:
    """The facts of a ``summary.plan`` tree; ``statement`` lets LOAD CSV sources be named."""
    facts = _Facts()
    _walk(plan, {}, facts)
    sources = _load_csv_sources(statement) if statement is not None else []
    if len(sources) != facts.load_csv_ops:  # never guess which source belongs to which load
        sources = [DYNAMIC] * facts.load_csv_ops
    s = facts.sets
    return PlanFacts(
        **{name: frozenset(values) for name, values in s.items() if name != "load_csv"},
        load_csv=tuple(sources),
        deletes=facts.deletes,
    )


def _walk(op: Mapping[str, Any], env_in: Env, facts: _Facts) -> Env:
    """Walk one operator (children first) and return the bindings of the rows it produces."""
    op_type = op.get("operatorType") if isinstance(op, Mapping) else None
    children = list(op.get("children") or []) if isinstance(op_type, str) else []
    if not isinstance(op_type, str) or len(children) > 2:
        raise ValueError("not a Neo4j plan: an operator without an operatorType or with 3 children")
    base, _, database = op_type.partition("@")
    family = base.split("(", 1)[0]
    if database:
        facts.sets["databases"].add(database)
    if family in _COMMANDS or (family.startswith(_COMMAND_PREFIXES) and family not in _WRITE_OPS):
        facts.sets["commands"].add(family)
    args = op.get("args", op.get("arguments")) or {}
    details = _mask(str(args.get("Details") or ""))
    identifiers = {str(i) for i in op.get("identifiers") or []}
    below = {str(i) for child in children for i in child.get("identifiers") or []}
    if len(children) == 2:
        env = _walk_binary(family, children, env_in, facts)
    elif children:
        env = _walk(children[0], env_in, facts)
        for new in identifiers - below:  # a fresh variable never inherits an older binding
            env.pop(new, None)
    else:
        env = dict(env_in)
        scan = ("Node" in family or "Relationship" in family) and re.search("Scan|Seek", family)
        if family != "Argument" and not scan:  # scans and seeks are bound by _bind
            for name in identifiers:  # an unknown leaf may rebind a name: forget it
                env.pop(name, None)
    _observe(base, family, details, env, facts, below=below)
    return env


def _walk_binary(family: str, children: list[Any], env_in: Env, facts: _Facts) -> Env:
    """Walk both children and merge their bindings as the operator combines the rows."""
    lhs = _walk(children[0], env_in, facts)
    apply_like = family.endswith("Apply") or family in _WRITE_OPS
    rhs = _walk(children[1], lhs if apply_like else env_in, facts)
    if family in _APPLY_KEEPS_RHS:
        return rhs
    if apply_like:
        return {**rhs, **lhs}
    merged: Env = {}
    for var in lhs.keys() | rhs.keys():
        a, b = lhs.get(var), rhs.get(var)
        if family in _JOINS:  # both sides hold for a joined row
            if one := (_both(a, b) if a and b else a or b):
                merged[var] = one
        elif a and b and a[1] is not None and b[1] is not None:  # a union: either side
            merged[var] = (a[0] if a[0] == b[0] else "any", a[1] | b[1])
    return merged


def _both(a: Binding, b: Binding) -> Binding:
    """A variable constrained by two bindings at once."""
    kind = a[0] if b[0] in (a[0], "any") else b[0] if a[0] == "any" else "any"
    if a[1] is None or b[1] is None:
        return (kind, a[1] if b[1] is None else b[1])
    return (kind, a[1] | b[1])


def _observe(base: str, family: str, d: _Text, env: Env, facts: _Facts, *, below: set[str]) -> None:
    """Record what one operator binds, reads, writes and calls."""
    if family in ("CartesianProduct", "Eager"):
        facts.sets["operators"].add(family)
    elif "AllRelationshipsScan" in family:  # Directed... and Undirected... alike
        facts.sets["operators"].add("AllRelationshipsScan")
    elif "AllNodesScan" in family:  # also the parallel runtime's PartitionedAllNodesScan
        facts.sets["operators"].add("AllNodesScan")
    if any(k in family for k in ("Expand", "ShortestPath", "Repeat", "Trail")) and _unbounded(d):
        facts.sets["operators"].add("UnboundedVarLengthExpand")
    if "." in family and not d.text:  # USE system CALL x(): the plan is just the procedure
        facts.sets["procedures"].add(base)
    _functions(family, d, facts)
    if family in _CLAUSE_OPS:
        _clauses(family, d, env, facts)
        _reads(family, d, env, facts, below, patterns=False)
        return
    _bind(family, d, env, leaf=not below)
    if family == "ProcedureCall":
        match = re.match(rf"({_NAME}(?:\.{_NAME})*)\(", d.text)
        facts.sets["procedures"].add(d.name(match.group(1)) if match else ANY)
    elif family == "LoadCSV":
        facts.load_csv_ops += 1
    elif family in _SET_OPS:
        for item in _split(d.text, ", "):
            _set_item(item, d, env, facts)
        if family.endswith("Labels"):  # its labels are written, not read
            return
    elif family in ("Delete", "DetachDelete"):
        _delete(d.text, d, env, facts, detach=family == "DetachDelete")
    elif family not in _WRITE_OPS and _WRITE_HINT.search(family):
        _unknown(facts)
        facts.deletes = facts.deletes or "Delete" in family
        facts.load_csv_ops += "Load" in family
    _reads(family, d, env, facts, below)


def _bind(family: str, d: _Text, env: Env, *, leaf: bool) -> None:
    """Update ``env`` with what a read operator binds or proves about its variables."""
    refs = _label_refs(d)
    if "Node" in family and ("Scan" in family or "Seek" in family) and "Relation" not in family:
        first = next((r for r in refs if r[0] != "rel"), None)
        if first and first[1]:
            env[first[1]] = ("node", first[2])
        elif match := re.match(_NAME, d.text):
            env[d.name(match.group(0))] = ("node", None)
    elif "Relationship" in family or any(k in family for k in ("Expand", "ShortestPath", "Repeat")):
        for kind, var, guaranteed, _names, _wild, place in refs:
            # a leaf binds every variable of its pattern afresh; an expand only its new ones
            if var and place == "pattern" and (kind == "rel" or var not in env or leaf):
                env[var] = (kind, guaranteed)
    where = d.text if family == "Filter" else d.text.partition(" WHERE ")[2]
    for conjunct in _split(where, " AND "):
        if match := re.match(rf"({_NAME}):", conjunct):
            end, guaranteed, _names, _wild = _label_expr(conjunct, match.end(), d)
            if end == len(conjunct) and guaranteed is not None:  # the whole conjunct is n:expr
                var = d.name(match.group(1))
                old = env.get(var)
                env[var] = _both(old, ("any", guaranteed)) if old else ("any", guaranteed)
    if family in ("Projection", "Unwind", "Distinct", "OrderedDistinct") or "Aggregation" in family:
        before = dict(env)
        for item in _split(d.text, ", "):
            if match := _ALIAS.match(item):
                source, alias = d.name(match.group(1)), d.name(match.group(2))
                env.pop(alias, None)
                if _IDENT.match(match.group(1)) and source in before:
                    env[alias] = before[source]


def _reads(
    family: str, d: _Text, env: Env, facts: _Facts, below: set[str], *, patterns: bool = True
) -> None:
    """Record the labels and types in an operator's details (with ``patterns`` false, only
    predicates: CREATE and MERGE patterns are writes)."""
    count_all = family == "NodeCountFromCountStore" and ":" not in d.text
    if family.endswith(_UNLABELLED_ENTRY) or count_all:
        facts.add("labels_read", None)
    refs = _label_refs(d)
    proven = {var for _k, var, g, _n, _w, place in refs if var and g and place == "predicate"}
    for kind, var, _g, names, wild, place in refs:
        if place == "pattern" and not patterns:
            continue
        if kind == "any" and var in env:
            kind = env[var][0]
        if kind == "rel" and place == "pattern" and not names and not {var} & (proven | below):
            wild = True  # an untyped pattern follows any type, unless it names a matched one
        targets = ("labels_read", "rel_types_read") if kind == "any" else (f"{_set(kind)}_read",)
        for target in targets:
            facts.add(target, names)
            if wild:
                facts.add(target, None)


def _clauses(family: str, d: _Text, env: Env, facts: _Facts) -> None:
    """Record the writes of CREATE, MERGE and one-operator FOREACH details."""
    clause = "CREATE" if family == "Create" else ""
    items = _split(d.text, ", ")
    for item in items[1:] if family == "Foreach" else items:  # FOREACH starts with "x IN list"
        if item.startswith("LOCK("):  # MERGE's locks name nodes it already holds
            continue
        if match := _CLAUSE.match(item):
            clause, item = match.group(1), item[match.end() :]
        if clause == "CREATE":
            _create(item, d, env, facts)
        elif clause.endswith("SET") or clause == "REMOVE":
            _set_item(item, d, env, facts)
        elif clause.endswith("DELETE"):
            _delete(item, d, env, facts, detach=clause.startswith("DETACH"))
        else:
            _unknown(facts)


def _create(item: str, d: _Text, env: Env, facts: _Facts) -> None:
    """Record one created node or relationship pattern, with its property keys."""
    refs = [r for r in _label_refs(_Text(item, d.names)) if r[5] == "pattern"]
    for kind, var, guaranteed, names, wild, _place in refs:
        facts.add(f"{_set(kind)}_written", names)
        if wild:
            facts.add(f"{_set(kind)}_written", None)
        if var and (names or wild or var not in env):  # (a)-[:T]->(b) does not relabel a
            env[var] = (kind, guaranteed)
    if "-[" not in item and not refs:  # a node created with no label at all
        facts.add("labels_written", None)
        if match := re.match(rf"\(({_NAME})", item):
            env[d.name(match.group(1))] = ("node", None)
    facts.add("properties_written", [d.name(key) for key in _MAP_KEY.findall(item)])
    if re.search(r"[)\]\w\x02] \$", item):  # (n:L $props): a map parameter has any key
        facts.add("properties_written", None)


def _set_item(item: str, d: _Text, env: Env, facts: _Facts) -> None:
    """Record one SET/REMOVE item: ``n.k = v``, ``n[k] = v``, ``n = map``, ``n += map``, ``n:L``."""
    if re.match(rf"{_NAME}:", item) and (refs := _label_refs(_Text(item, d.names))):
        facts.add("labels_written", refs[0][3])
        if refs[0][4]:
            facts.add("labels_written", None)
    elif match := re.match(rf"({_NAME})\[", item):
        _touch(d.name(match.group(1)), env, facts)
        facts.add("properties_written", None)
    elif match := _PROP_SET.match(item):
        _touch(d.name(match.group(1)), env, facts)
        facts.add("properties_written", [d.name(match.group(2))])
    elif match := _MAP_SET.match(item):
        _touch(d.name(match.group(1)), env, facts)
        value = match.group(3)
        facts.add("properties_written", [d.name(key) for key in _MAP_KEY.findall(value)])
        if not (match.group(2) == "+=" and value.startswith("{") and value.endswith("}")):
            facts.add("properties_written", None)  # `=` drops every other key; $map: any key
    else:
        _unknown(facts)


def _delete(item: str, d: _Text, env: Env, facts: _Facts, *, detach: bool) -> None:
    """Record a DELETE of a variable, a path pattern or an expression."""
    facts.deletes = True
    refs = _label_refs(_Text(item, d.names))
    for part in _split(item, ", "):
        if _IDENT.match(part):
            _touch(d.name(part), env, facts)
        elif part.startswith("(") and refs:
            for var in {r[1] for r in refs if r[1]}:  # a path: each node and relationship
                _touch(var, env, facts)
        else:
            _touch("", env, facts)
    if detach:  # DETACH DELETE removes every relationship of the node, whatever its type
        facts.add("rel_types_written", None)


def _touch(var: str, env: Env, facts: _Facts) -> None:
    """Record a write to the entity bound to ``var`` (any label and type when unknown)."""
    kind, names = env.get(var, ("any", None))
    for target in ("labels", "rel_types") if kind == "any" else (_set(kind),):
        facts.add(f"{target}_written", names)


def _unknown(facts: _Facts) -> None:
    """A write this module cannot read: it may touch anything."""
    for name in ("labels_written", "rel_types_written", "properties_written"):
        facts.add(name, None)


def _set(kind: str) -> str:
    """The fact-set prefix of a binding kind."""
    return "rel_types" if kind == "rel" else "labels"


def _functions(family: str, d: _Text, facts: _Facts) -> None:
    """Record namespaced functions that are not built in."""
    text = d.text.split("(", 1)[-1] if family == "ProcedureCall" else d.text
    for call in _FUNCTION.findall(text):
        name = ".".join(d.name(part) for part in call.split("."))
        if name.rsplit(".", 1)[0] not in _BUILTIN_NAMESPACES:
            facts.sets["functions"].add(name)


def _unbounded(d: _Text) -> bool:
    """True when a var-length pattern or quantifier in ``d`` has no upper bound."""
    for low, dots, high in _VAR_LENGTH.findall(d.text):
        if (not dots and not low) or (dots and (not high or int(high) >= _MAX_HOPS)):
            return True
    return bool(_QUANTIFIER.search(d.text))


LabelRef = tuple[str, str, frozenset[str] | None, frozenset[str], bool, str]


def _label_refs(d: _Text) -> list[LabelRef]:
    """Every ``x:expr`` in ``d``: (kind, var, guaranteed labels, names, wildcard, place)."""
    refs: list[LabelRef] = []
    text = d.text
    rels = {d.name(v) for v in re.findall(rf"-\[({_NAME})", text)}
    pos = 0
    while match := _LABEL_START.search(text, pos):
        opener, var = match.group(1), d.name(match.group(2) or "")
        pos, guaranteed, names, wild = _label_expr(text, match.end(), d)
        pos = max(pos, match.end())
        if opener:
            kind, place = ("node" if opener == "(" else "rel"), "pattern"
        else:
            before = text[: match.start()]
            node_function = re.search(r"(?:startNode|endNode)\([^()]*\)\Z", before)
            kind = "rel" if var in rels else "node" if node_function else "any"
            place = "predicate"
        refs.append((kind, var, guaranteed, names, wild, place))
    for match in re.finditer(rf"-\[({_NAME})?[*\]\s]|\)<?-->?\(", text):  # with no type
        refs.append(("rel", d.name(match.group(1) or ""), None, frozenset(), False, "pattern"))
    for match in _BARE_NODE.finditer(text):
        var = d.name(match.group(1) or match.group(2))
        if var not in rels:
            refs.append(("node", var, None, frozenset(), False, "pattern"))
    return refs


Guarantee = frozenset[str] | None  # the node has one of these labels; None: nothing known


def _label_expr(text: str, i: int, d: _Text) -> tuple[int, Guarantee, frozenset[str], bool]:
    """Parse a label expression at ``text[i]``: (end, guaranteed, names, wildcard)."""
    names: set[str] = set()
    wild = False

    def atom(i: int) -> tuple[int, frozenset[str] | None]:
        nonlocal wild
        if text.startswith("!", i):
            wild = True
            return atom(i + 1)[0], None
        if text.startswith("%", i):
            wild = True
            return i + 1, None
        if text.startswith("(", i):
            i, got = either(i + 1)
            return i + text.startswith(")", i), got
        if text.startswith("$", i):  # dynamic: $(e), $any(e), $all(e)
            wild, depth, i = True, 0, text.index("(", i)
            for j in range(i, len(text)):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    return j + 1, None
            return len(text), None
        match = re.compile(_NAME).match(text, i)
        if not match:
            wild = True
            return i, None
        names.add(d.name(match.group(0)))
        return match.end(), frozenset({d.name(match.group(0))})

    def both(i: int) -> tuple[int, frozenset[str] | None]:
        i, got = atom(i)
        while i < len(text) and text[i] in "&:" and text[i + 1 : i + 2] not in (" ", ":", ""):
            i, more = atom(i + 1)
            got = more if got is None else got if more is None else got | more
        return i, got

    def either(i: int) -> tuple[int, frozenset[str] | None]:
        i, got = both(i)
        while text.startswith("|", i):
            i, more = both(i + 1)
            got = None if got is None or more is None else got | more
        return i, got

    end, guaranteed = either(i)
    return end, guaranteed, frozenset(names), wild


def _mask(raw: str) -> _Text:
    """Blank string literals and replace `quoted names` by tokens, so regexes see structure."""
    names: list[str] = []

    def swap(match: re.Match[str]) -> str:
        if not match.group(0).startswith("`"):
            return match.group(0)[0] * 2
        names.append(match.group(0)[1:-1].replace("``", "`"))
        return f"\x01{len(names) - 1}\x02"

    return _Text(_QUOTED.sub(swap, raw), names)


def _split(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets (the text is already masked)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(text[i], 0)
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_TOKEN = re.compile(
    r"""(?sx) \s+ | //[^\n]* | /\*.*?\*/
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*") | (?P<name>`(?:[^`]|``)*`|\$?\w+)
    | (?P<symbol>.)"""
)


def _load_csv_sources(statement: str) -> list[str]:
    """The source of each ``LOAD CSV ... FROM <source> AS`` in the text, in order."""
    tokens = [m for m in _TOKEN.finditer(statement) if m.lastgroup]
    words = [m.group(0).upper() if m.lastgroup == "name" else m.group(0) for m in tokens]
    sources = []
    for i in range(len(words) - 1):
        if words[i] == "LOAD" and words[i + 1] == "CSV":
            j = i + 2 + 2 * (words[i + 2 : i + 4] == ["WITH", "HEADERS"])
            source = tokens[j + 1 : words.index("AS", j) if "AS" in words[j:] else j + 1]
            if len(source) != 1 or words[j : j + 1] != ["FROM"]:
                sources.append(DYNAMIC)
            elif source[0].lastgroup == "str" and "\\" not in source[0].group(0):
                sources.append(source[0].group(0)[1:-1])
            elif re.fullmatch(r"\$\w+", source[0].group(0)):
                sources.append(source[0].group(0))
            else:
                sources.append(DYNAMIC)
    return sources
