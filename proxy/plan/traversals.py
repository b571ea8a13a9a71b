"""Rules for the operators that find nodes and relationships in the store.

Scans, seeks and expansions bind what they find as *fresh* (see :mod:`proxy.plan.flow`), with
what the operator itself guarantees: a label scan or index its label, an expansion the types
it follows. The node at the far end of an expansion is guaranteed nothing: a ``Filter`` above
it narrows it, or it is read as :data:`~proxy.plan.flow.ANY`. Nodes and relationships *inside*
a variable-length or shortest path are read where they are walked, with what the operator's
own predicate says of every one of them (``all(n IN nodes(p) WHERE n:L)``), or as anything.
A scan or seek on the right of an apply (``UNWIND $rows AS row MATCH (n:L {k: row.k})``) runs
once per row of its left side: its rows carry that row's variables, as the apply's arguments
(read where they were found), not as something it found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from proxy.plan.failures import may_fail
from proxy.plan.flow import Binding, Env, Guarantee, both, entity, inner_nodes, read_set, value
from proxy.plan.parser import Parser, parse
from proxy.plan.reader import Op, Reader, argument_names, is_var
from proxy.plan.syntax import Element, Expr, Pattern, Unparsed, conjuncts

_SELECTOR = re.compile(r"(?:ANY|SHORTEST|ALL SHORTEST)(?: \d+)?(?: GROUPS)? ")
_SHORTEST_SECTIONS = ("expanding from", "inlined predicates", "non-inlined predicates")
# Expansions that yield every path, one row each (not the pruning or BFS ones, which yield each
# far end once, whatever it was reached through).
_EVERY_PATH = frozenset({"VarLengthExpand(All)", "VarLengthExpand(Into)"})


def node_scan(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """``n``, ``n:L``, ``n:A|B``, ``n:A&!B``, ``n WHERE id(n) = $x``: one fresh node."""
    env = reader.facts.observe(envs[0]) if envs else dict(args)
    parser = Parser(op.details)
    var = parser.variable()
    guarantee: Guarantee = None
    if parser.at(":"):
        parser.i += 1
        label = parser.label_expression()
        reader.facts.add("labels_read", label.names())
        guarantee = label.guarantee()
    if parser.at_word("WHERE"):
        parser.i += 1
        reader.expression(parser.expression(), env)
    parser.end()
    if op.family.endswith("AllNodesScan"):
        reader.facts.add("operators", ["AllNodesScan"])
    env[var] = Binding("node", guarantee, fresh=True)
    return env


def node_index(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """``RANGE INDEX n:L(p, q) WHERE <predicate>[, cache[n.p]]`` or ``UNIQUE n:L(p) WHERE ...``,
    several for a multi-node seek, each followed by its cached properties: fresh nodes of the
    index's label. The predicate is read like any other (it names property keys bare)."""
    env = reader.facts.observe(envs[0]) if envs else dict(args)
    parser = Parser(op.details)
    while True:
        _index_head(parser)
        var = parser.variable()
        parser.take(":")
        label = parser.name()
        _property_keys(parser)
        reader.facts.add("labels_read", [label])
        env[var] = Binding("node", frozenset({label}), fresh=True)
        _index_tail(reader, parser, env)
        if parser.done():
            return env
        parser.take(",")


def _index_head(parser: Parser) -> None:
    """``RANGE INDEX`` (any index type) or ``UNIQUE``."""
    if parser.at_word("UNIQUE"):
        parser.i += 1
        return
    tok = parser.peek()
    if tok is None or tok.kind != "word" or not tok.text.isupper():
        raise Unparsed("an index seek without an index")
    parser.i += 1
    parser.take_word("INDEX")


def _property_keys(parser: Parser) -> None:
    """``(p, q)`` after an index's label or type."""
    parser.take("(")
    parser.name()
    while parser.at(","):
        parser.i += 1
        parser.name()
    parser.take(")")


def _index_tail(reader: Reader, parser: Parser, env: Env) -> None:
    """`` WHERE <predicate>`` then ``, cache[v.p]`` items, up to the next seek (or the end)."""
    if parser.at_word("WHERE"):
        parser.i += 1
        reader.expression(parser.expression(), env)
    while parser.at(",") and (tok := parser.peek(1)) is not None and tok.kind == "cache":
        parser.i += 2


def relationship_leaf(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """``(a)-[r:T]->(b)``, ``RANGE INDEX (a)-[r:T(p)]->(b) WHERE ...[, cache[r.p]]``,
    ``(a)-[r]->(b) WHERE id(r) = ...``: a fresh relationship (of the types shown) and its two
    ends, fresh and of any label, all three declared here."""
    env = reader.facts.observe(envs[0]) if envs else dict(args)
    parser = Parser(op.details)
    indexed = not parser.at("(")
    if indexed:
        _index_head(parser)
    start = parser.node_element()
    left = parser.take("-", "<-").text
    parser.take("[")
    var = parser.variable()
    types = None
    if parser.at(":"):
        parser.i += 1
        types = parser.label_expression()
    if indexed:
        _property_keys(parser)
    parser.take("]")
    right = parser.take("-", "->").text
    end = parser.node_element()
    if (left, right) == ("<-", "->") or start.label or end.label:
        raise Unparsed("a relationship leaf of unknown shape")
    if indexed:
        _index_tail(reader, parser, {})
    elif parser.at_word("WHERE"):
        parser.i += 1
        reader.expression(parser.expression(), env)
    parser.end()
    if "AllRelationshipsScan" in op.family:
        reader.facts.add("operators", ["AllRelationshipsScan"])
    reader.facts.add("rel_types_read", types.names() if types else ())
    env[var] = Binding("rel", types.guarantee() if types else None, fresh=True)
    for node in (start, end):
        if node.var:
            env[node.var] = Binding("node", None, fresh=True)
    return env


def bind(reader: Reader, element: Element, env: Env, *, new: bool) -> None:
    """Bind a pattern element's variable as a fresh entity: always when the operator declares
    it (``new``; a name in use is then declared again), else only if it is not bound."""
    label = element.label
    reader.facts.add(read_set(element.kind), label.names() if label else ())
    if element.properties is not None:
        reader.expression(element.properties, env)
    if element.var and (new or element.var not in env):
        guarantee = label.guarantee() if label else None
        env[element.var] = Binding(entity(element.kind), guarantee, fresh=True)


def count_store(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """``count( (:A), () ) AS c`` and ``count( (:A)-[:T]->() ) AS c``: a count of the nodes of
    each position (``()``: of any label) or of the relationships, whose unlabelled end is any
    node: so an unlabelled position is a read of anything."""
    env = reader.facts.observe(envs[0]) if envs else dict(args)
    match = re.fullmatch(r"(?s)count\( (.*) \) AS (.+)", op.details)
    if match is None:
        raise Unparsed("a count-store count of unknown form")
    parser = Parser(match.group(1))
    while True:
        for element in parser.pattern().elements:
            target = read_set(element.kind)
            reader.facts.add(target, element.label.names() if element.label else ())
            reader.facts.add(target, element.label.guarantee() if element.label else None)
        if parser.done():
            break
        parser.take(",")
    env[Parser(match.group(2)).variable()] = value()
    return env


def expand(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Expand, OptionalExpand, VarLengthExpand (all modes), ShortestPath, ProjectEndpoints:
    ``[p = ](a)-[r:T*1..3]->(b)[ WHERE pred]``, written from the node it expands from."""
    env = reader.facts.observe(envs[0]) if envs else {}
    text = op.details
    if op.base.startswith("VarLengthExpand(Pruning,BFS"):
        text = re.sub(r" (?:`(?:[^`]|``)*`|\w+)?\Z", "", text)  # a trailing depth variable
    parser = Parser(text)
    pattern = parser.pattern()
    parser.end()
    if len(pattern.elements) != 3 or pattern.elements[1].kind != "rel":
        raise Unparsed("an expansion of unknown shape")
    start, rel, end = pattern.elements
    # What the operator declares: the relationship, and the far end unless it expands Into a
    # node already bound (a shortest path runs between two bound nodes; ProjectEndpoints may
    # bind either end: both are taken as new, of any label).
    into = "Into" in op.base or op.family == "ShortestPath"
    declared = {rel.var} | ({end.var} if not into else set())
    if op.family == "ProjectEndpoints":
        declared = {start.var, end.var}
    for element in pattern.elements:
        bind(reader, element, env, new=element.var in declared)
    new = {var for var in declared if var}
    # A shortest path's name is the path's; a var-length expansion's is Neo4j's own `p`, only
    # for its predicate, whatever the statement names p.
    own_name = pattern.path_var not in {e.var for e in pattern.elements}
    if pattern.path_var and op.family == "ShortestPath" and own_name:
        env[pattern.path_var] = value()
    if rel.var_length or op.family in ("ShortestPath", "VarLengthExpand"):
        _walked(reader, pattern, env, every_path=op.base in _EVERY_PATH)
    if pattern.where is not None:
        reader.expression(pattern.where, env)
        if may_fail(pattern.where, env):
            # Evaluated on every candidate before anything above narrows it: an error would
            # tell of it, so what it finds is seen here, with what its own label tests prove.
            env = reader.facts.observe(reader.narrow(pattern.where, env, first=True))
        if op.family in ("VarLengthExpand", "ShortestPath") and _looks_at_nodes(pattern.where):
            # Evaluated on every step, before any filter above proves what the far end is
            # (an error it raises would tell): what it looks at is seen here.
            env = reader.narrow(pattern.where, env, only={end.var})
            env = {**env, end.var: reader.facts.observe({end.var: env[end.var]})[end.var]}
        if op.family == "OptionalExpand":
            # Rows where nothing matched go on with the new variables null: the predicate
            # narrows only those.
            env = reader.narrow(pattern.where, env, only=new)
        elif op.family != "ShortestPath":
            # A shortest path's predicate holds of the path it returns, not of its ends
            # beyond what it says of every node (see _walked).
            env = reader.narrow(pattern.where, env)
    del start, end
    return env


def _walked(reader: Reader, pattern: Pattern, env: Env, *, every_path: bool) -> None:
    """A variable-length or shortest path: record its length, read every relationship walked
    and every node passed through, and narrow its far end by what is said of every node. An
    expansion that yields every path (``every_path``) leaves the nodes between its hops fresh,
    under :func:`~proxy.plan.flow.inner_nodes` of its relationship, for a Filter above to narrow
    (a path through any other node is then dropped before anything looks at it)."""
    start, rel, end = pattern.elements
    if not rel.var_length:  # `*1..1` prints as a plain relationship: one hop
        rel = replace(rel, var_length=True, min_hops=1, max_hops=1)
    reader.facts.hops(rel.max_hops)
    if pattern.where is not None and may_fail(pattern.where, env):
        # Neo4j evaluates a path predicate's conjuncts in their order, on every step: one that
        # may raise an error may do so before a label test proves what the step is.
        pattern = replace(pattern, where=None)
    types = both(rel.label.guarantee() if rel.label else None, _along(pattern, "relationships", ""))
    reader.facts.add("rel_types_read", types)
    if rel.var:
        env[rel.var] = Binding("rel", types)
    every_node = _along(pattern, "nodes", "")
    # Each node inside a directed path ends one relationship and starts the next.
    ends = _along(pattern, "relationships", "end")
    starts = _along(pattern, "relationships", "start")
    inner = every_node
    if rel.direction in ("out", "in"):
        inner = both(both(inner, ends), starts)
    if (rel.max_hops is None or rel.max_hops > 1) and every_path and rel.var:
        env[inner_nodes(rel.var)] = Binding("node", inner, fresh=True)
    elif rel.max_hops is None or rel.max_hops > 1:
        reader.facts.add("labels_read", inner)
    # With zero hops the far end is the start: only a path of one hop or more ends on a node
    # that ends (or starts) a relationship along it.
    at_least_one = rel.min_hops is None or rel.min_hops >= 1
    along = ends if rel.direction == "out" else starts if rel.direction == "in" else None
    far = both(every_node, along if at_least_one else None)
    if end.var and end.var in env and far is not None and env[end.var].fresh:
        env[end.var] = env[end.var].narrowed(far)
    del start


def _looks_at_nodes(predicate: Expr) -> bool:
    """Whether a path's predicate looks at its nodes (beyond its relationships' own values)."""
    return any(
        node.kind == "call" and node.text in ("startNode", "endNode", "nodes")
        for node in predicate.walk()
    ) or any(node.kind == "var" and node.text != "p" for node in _node_refs(predicate))


def _node_refs(predicate: Expr) -> list[Expr]:
    """Variables a path predicate names other than its iteration variables and path."""
    bound = {
        node.text.split(":", 1)[-1]
        for node in predicate.walk()
        if node.kind in ("quantifier", "comprehension")
    }
    return [n for n in predicate.walk() if n.kind == "var" and n.text not in bound]


def _along(pattern: Pattern, source: str, end: str) -> Guarantee:
    """What the conjuncts ``all(x IN <source>(p) WHERE x:L AND ...)`` of the pattern's own
    predicate say of every element along it; with ``end`` (``start``/``end``), what they say
    of ``startNode(x)``/``endNode(x)`` of every relationship along it."""
    if pattern.where is None or not pattern.path_var:
        return None
    found: Guarantee = None
    for conjunct in conjuncts(pattern.where):
        if conjunct.kind != "quantifier" or not conjunct.text.startswith("all:"):
            continue
        var = conjunct.text.split(":", 1)[1]
        over, predicate = conjunct.args
        if not (
            over.kind == "call"
            and over.text == source
            and len(over.args) == 1
            and is_var(over.args[0], pattern.path_var)
        ):
            continue
        for part in conjuncts(predicate):
            if part.kind != "label" or part.label is None:
                continue
            subject = part.args[0]
            if (not end and is_var(subject, var)) or (
                end
                and subject.kind == "call"
                and subject.text == f"{end}Node"
                and len(subject.args) == 1
                and is_var(subject.args[0], var)
            ):
                found = both(found, part.label.guarantee())
    return found


def shortest(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """StatefulShortestPath: ``SHORTEST k (a) ((x)-[r]-(y)){1, } (b)``, then lines
    ``expanding from: a``, ``inlined predicates: ...`` and ``non-inlined predicates: ...``.
    Its pattern shows no labels or types: those are inlined predicates on the variables (types
    print as ``r:A:B``, meaning A or B, which a guarantee reads the same). Every node and
    relationship of the quantified part is read where it is walked."""
    env = reader.facts.observe(envs[0]) if envs else {}
    head, *rest = op.details.split("\n")
    selector = _SELECTOR.match(head)
    if selector is None:
        raise Unparsed("a shortest-path selector of unknown form")
    parser = Parser(head[selector.end() :])
    pattern = parser.pattern()
    parser.end()
    predicates: list[Expr] = []
    section, source = "", ""
    for line in rest:
        text = line.strip()
        label, sep, after = text.partition(": ")
        if sep and label in _SHORTEST_SECTIONS:
            section, text = label, after
        if section == "expanding from":
            from_parser = Parser(text)
            source = from_parser.variable()
            from_parser.end()
            continue
        if not text:
            continue
        if section not in _SHORTEST_SECTIONS:
            raise Unparsed("a shortest-path detail of unknown form")
        predicates.append(parse(text))
    guarantees: dict[str, Guarantee] = {}
    kinds: Env = {
        element.var: Binding(entity(element.kind))
        for element in pattern.all_elements()
        if element.var and element.kind != "group" and element.var not in env
    }
    for predicate in predicates:
        reader.expression(predicate, {**kinds, **env})
        for conjunct in conjuncts(predicate):
            if conjunct.kind == "label" and conjunct.label and conjunct.args[0].kind == "var":
                var = conjunct.args[0].text
                guarantees[var] = both(guarantees.get(var), conjunct.label.guarantee())
    ends = {id(pattern.elements[0]), id(pattern.elements[-1])}
    top = {id(element) for element in pattern.elements}
    into = "Into" in op.base
    for element in pattern.all_elements():
        if element.kind == "group" or element.var_length:
            reader.facts.hops(element.max_hops)
        if element.kind == "group":
            continue
        if element.var_length and (element.max_hops is None or element.max_hops > 1):
            reader.facts.add("labels_read", None)  # the nodes between its hops: anything
        end = id(element) in ends
        if end and element.var in env and (into or element.var == source):
            continue  # the node it expands from, or both ends in Into mode: bound before
        binding = Binding(entity(element.kind), guarantees.get(element.var), fresh=True)
        if end and element.var:
            env[element.var] = binding  # the far end: a filter above may still prove it
            continue
        reader.facts.read(binding)  # walked here: read with what the predicates say of it
        if element.var:  # declared here: on the path (in a repeated part, a list)
            inside = id(element) not in top
            env[element.var] = value() if inside else replace(binding, fresh=False)
    for name in set(op.identifiers) - set(env):
        env[name] = value()
    return env


def repeat_arguments(reader: Reader, op: Op, lhs: Env) -> Env:
    """A step of a Repeat(Trail) starts from the start node or the previous step's end, both
    read where they were found: a node, with no guarantee of its own."""
    del reader
    inner = argument_names(op.raw["children"][1]) - set(lhs)
    return {**lhs, **{name: Binding("node") for name in inner}}


def repeat(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Repeat(Trail) ``(s) (...){1, 3} (t)``: the RHS is one step of the quantified part,
    starting from an ``Argument`` bound to the start node or the previous step's end, and the
    rows of every step are observed. The end ``t`` is the start or some step's end, already
    read (it carries no guarantee of its own); the group variables are lists."""
    lhs, rhs = envs
    reader.facts.observe(rhs)
    parser = Parser(op.details)
    parser.take("(")
    parser.variable()
    parser.take(")")
    parser.take("(")
    parser.take("..")
    parser.take(".")
    parser.take(")")
    _low, high = parser.quantifier_bounds()
    parser.take("(")
    end = parser.variable()
    parser.take(")")
    parser.end()
    reader.facts.hops(high)
    out = dict(lhs)
    for name in set(op.identifiers) - set(lhs):  # the group variables, declared here
        out[name] = value()
    out[end] = Binding("node")
    return out
