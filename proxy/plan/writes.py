"""Rules for the operators that change the graph.

A write is recorded against what the written entity is known to be: setting or removing a
property or a label of a node needs the write grant on the labels the node is known to have
one of (``*`` when nothing is known), and setting or removing a label also needs it on the
label written; a relationship likewise by its type. A created node writes its labels (an
unlabelled one writes ``*``), a created relationship its type. A deletion writes what it
deletes; ``DETACH DELETE`` also deletes relationships of any type. ``MERGE``'s and a one-operator
``FOREACH``'s writes exist only in their details; they are parsed like the others.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.plan.flow import Binding, Env, Facts, entity, value, write_set
from proxy.plan.parser import Parser
from proxy.plan.reader import Op, Reader
from proxy.plan.rows import element_of, foreach_apply
from proxy.plan.syntax import Expr, LabelExpr, Pattern, Unparsed

WRITES = frozenset(
    {"Create", "Merge", "LockingMerge", "Foreach", "SetLabels", "RemoveLabels", "Delete"}
    | {"DetachDelete", "SetProperty", "SetProperties", "SetDynamicProperty"}
    | {"SetNodePropertiesFromMap", "SetRelationshipPropertiesFromMap", "SetPropertiesFromMap"}
    | {"LoadCSV", "SubqueryForeach", "TransactionForeach"}
)


def create(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Create ``(n:A:B {k: v}), (a)-[r:T {k: v}]->(b)``."""
    env = reader.facts.observe(envs[0]) if envs else {}
    parser = Parser(op.details)
    while True:
        _create(reader, parser.pattern(), env)
        if parser.done():
            return env
        parser.take(",")


def _create(reader: Reader, pattern: Pattern, env: Env) -> None:
    """One item of a CREATE: Neo4j lists every node it creates on its own, ``(n:L {...})``,
    and every relationship as ``(a)-[r:T {...}]->(b)`` between nodes bound or listed before;
    so a node alone is always created (whatever a name in use says), a relationship's end
    never is (and one that is not bound is an unknown form)."""
    facts = reader.facts
    alone = len(pattern.elements) == 1
    for element in pattern.elements:
        if element.kind == "group" or element.var_length or element.where is not None:
            raise Unparsed("a created pattern of unknown shape")
        if element.kind == "node" and not alone:
            if element.label is not None or element.properties is not None:
                raise Unparsed("a relationship created to a node described in place")
            if element.var not in env:
                raise Unparsed("a relationship created to a node not bound")
            continue  # a node the relationship starts or ends at, not created here
        kind = write_set(element.kind)
        label = element.label
        _dynamic_parts(reader, label, env)
        facts.add(kind, label.names() if label else None)  # an unlabelled node: anything
        if label is not None and label.wild():
            facts.add(kind, None)
        _properties(reader, element.properties, env)
        if element.var:
            env[element.var] = Binding(entity(element.kind), label.guarantee() if label else None)


def _properties(reader: Reader, properties: Expr | None, env: Env) -> None:
    """The keys a created entity's property map sets (a ``$map`` parameter: any key)."""
    if properties is None:
        return
    reader.expression(properties, env)
    if properties.kind == "map":
        reader.facts.add("properties_written", [item.text for item in properties.args])
    else:
        reader.facts.add("properties_written", None)


def set_items(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """SetProperty, SetProperties, Set*PropertiesFromMap, SetDynamicProperty, SetLabels,
    RemoveLabels: ``n.k = v, ...``, ``n = {..}``, ``n += {..}``, ``n[k] = v``, ``n:A:B``."""
    env = reader.facts.observe(envs[0]) if envs else {}
    parser = Parser(op.details)
    while True:
        _set_item(reader, parser, env)
        if parser.done():
            return env
        parser.take(",")


def _set_item(
    reader: Reader, parser: Parser, env: Env, embedded: frozenset[str] | None = None
) -> None:
    """One item of SET or REMOVE (a REMOVE of a property prints as a SET to null).

    ``embedded``: the item is printed inside a MERGE's or a FOREACH's details, where Neo4j
    prints a dynamic key ``n[k]`` as ``n.k``, ``n[row.k]`` as ``n.row.k`` and ``n[$m.k]`` as
    ``n.$m.k`` (a SetDynamicProperty of its own prints ``n[k]``); these are the names in scope
    there. A key taken of a property or an index may be any key, and so may one that names one
    of them, unless the statement's text writes no such name inside square brackets."""
    facts = reader.facts
    target = parser.postfix_expression()
    if target.kind == "label" and target.label is not None:  # a label set, not tested
        reader.expression(target.args[0], env)
        _dynamic_parts(reader, target.label, env)
        _write_to(facts, target.args[0], env)
        _labels_written(facts, target.label)
        return
    reader.expression(target, env)
    operator = parser.take("=", "+=").text
    value = parser.expression()
    reader.expression(value, env)
    if target.kind == "property":
        _write_to(facts, target.args[0], env)
        bracketed = facts.bracketed
        dynamic = embedded is not None and (
            (target.text in embedded and (bracketed is None or target.text in bracketed))
            or target.args[0].kind in ("property", "index")
        )
        facts.add("properties_written", None if dynamic else [target.text])
    elif target.kind == "index":
        _write_to(facts, target.args[0], env)
        facts.add("properties_written", None)
    elif target.kind == "var":
        _write_to(facts, target, env)
        if value.kind == "map":
            facts.add("properties_written", [item.text for item in value.args])
        if operator == "=" or value.kind != "map":
            # `n = {...}` removes every other key; a map from anywhere else has any key.
            facts.add("properties_written", None)
    else:
        raise Unparsed("a SET of unknown form")


def _dynamic_parts(reader: Reader, label: LabelExpr | None, env: Env) -> None:
    """What a written dynamic label or type, ``n:$(expr)``, evaluates: ``expr`` is read like
    any expression (a label test or a function in it is a read or a call like any other), though
    the label it names is written, not tested."""
    for expression in label.dynamic() if label is not None else ():
        reader.expression(expression, env)


def _labels_written(facts: Facts, label: LabelExpr) -> None:
    facts.add("labels_written", label.names())
    if label.wild():
        facts.add("labels_written", None)


def _write_to(facts: Facts, subject: Expr, env: Env) -> None:
    """A write to the entity ``subject`` evaluates to: to what its variable is known to be, or
    to anything."""
    if subject.kind == "var" and subject.text in env:
        facts.write(env[subject.text])
    else:
        facts.write(value())


def delete(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Delete / DetachDelete ``n`` (or a path, or an expression)."""
    env = reader.facts.observe(envs[0]) if envs else {}
    parser = Parser(op.details)
    _delete(reader, parser.expression(), env, detach=op.family == "DetachDelete")
    parser.end()
    return env


def _delete(reader: Reader, target: Expr, env: Env, *, detach: bool) -> None:
    reader.facts.deletes = True
    reader.expression(target, env)
    _write_to(reader.facts, target, env)
    if detach:  # every relationship of the node goes too, whatever its type
        reader.facts.add("rel_types_written", None)
    if detach or not (
        target.kind == "var" and target.text in env and env[target.text].kind == "rel"
    ):
        # A node (or a path's nodes) deleted with a relationship left fails at commit, and one
        # detached counts them in relationshipsDeleted: either tells of relationships of any
        # type, to nodes of any label.
        reader.facts.add("rel_types_read", None)
        reader.facts.add("labels_read", None)


def merge(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Merge / LockingMerge ``CREATE (..), (..)[, ON MATCH SET ..[, SET ..]][, ON CREATE SET
    ..][, LOCK(a)]``: its child finds the match; what it creates, and the SET of each branch,
    are in the details. A merged variable is what was matched or what was created."""
    matched = reader.facts.observe(envs[0]) if envs else {}
    created = dict(matched)
    parser = Parser(op.details)
    clause = ""
    while not parser.done():
        if parser.at_word("CREATE"):
            parser.i += 1
            clause = "create"
        elif parser.at_word("ON") and parser.at_word("MATCH", "CREATE", offset=1):
            clause = "on_" + parser.peek(1).text.lower()  # type: ignore[union-attr]
            parser.i += 2
            parser.take_word("SET")
        elif parser.at_word("LOCK"):
            parser.i += 1
            parser.take("(")
            while not parser.at(")"):
                parser.variable()
                if not parser.at(")"):
                    parser.take(",")
            parser.take(")")
            clause = "lock"
        elif clause in ("on_match", "on_create") and parser.at_word("SET"):
            # A further item of the branch on another entity, or of another kind, is printed as
            # a SET of its own: ``ON MATCH SET r.x = $a, SET m.y = $b, SET m:L``.
            parser.i += 1
        if clause == "create":
            _create(reader, parser.pattern(), created)
        elif clause == "on_match":
            _set_item(reader, parser, matched, frozenset(op.identifiers) | created.keys())
        elif clause == "on_create":
            _set_item(reader, parser, created, frozenset(op.identifiers) | created.keys())
        elif clause != "lock":
            raise Unparsed("a MERGE of unknown form")
        if not parser.done():
            parser.take(",")
    names = matched.keys() | created.keys()
    return {name: _merged(matched.get(name), created.get(name)) for name in names}


def _merged(matched: Binding | None, created: Binding | None) -> Binding:
    if matched is None or created is None:
        return matched or created or value()
    if matched == created:
        return matched
    kind = matched.kind if matched.kind == created.kind else "unknown"
    labels = (
        None
        if matched.labels is None or created.labels is None
        else matched.labels | created.labels
    )
    return Binding(kind, labels)


def foreach(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """Foreach: binary (its RHS does the work), or unary ``x IN list, CREATE (..), SET ..,
    DELETE .., ...`` with the writes in its details."""
    if len(envs) == 2:
        return foreach_apply(reader, op, envs, args)
    env = reader.facts.observe(envs[0]) if envs else {}
    parser = Parser(op.details)
    var = parser.variable()
    parser.take_word("IN")
    source = parser.expression()
    reader.expression(source, env)
    inner = {**env, var: element_of(source, env)}
    clause = ""
    while not parser.done():
        parser.take(",")
        if parser.at_word("CREATE"):
            parser.i += 1
            clause = "create"
        elif parser.at_word("SET", "REMOVE"):
            parser.i += 1
            clause = "set"
        elif parser.at_word("DELETE"):
            parser.i += 1
            clause = "delete"
        elif parser.at_word("DETACH") and parser.at_word("DELETE", offset=1):
            parser.i += 2
            clause = "detach"
        # An item without a keyword is a further one of the clause before it: a CREATE lists
        # the node it creates and then the relationship to it, ``CREATE (m:L), (x)-[r:T]->(m)``.
        if clause == "create":
            _create(reader, parser.pattern(), inner)
        elif clause == "set":
            _set_item(reader, parser, inner, frozenset(op.identifiers) | inner.keys())
        elif clause in ("delete", "detach"):
            _delete(reader, parser.expression(), inner, detach=clause == "detach")
        else:
            raise Unparsed("a FOREACH of unknown form")
    return env


RULES = {
    "Create": create,
    "Merge": merge,
    "LockingMerge": merge,
    "Foreach": foreach,
    "SetLabels": set_items,
    "RemoveLabels": set_items,
    "SetProperty": set_items,
    "SetProperties": set_items,
    "SetDynamicProperty": set_items,
    "SetNodePropertiesFromMap": set_items,
    "SetRelationshipPropertiesFromMap": set_items,
    "SetPropertiesFromMap": set_items,
    "Delete": delete,
    "DetachDelete": delete,
}
