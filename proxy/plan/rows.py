"""Rules for the operators that shape rows: filters, projections, joins, applies, unions.

Only a ``Filter`` and the inner joins (``NodeHashJoin``, ``CartesianProduct``,
``ValueHashJoin``) let fresh bindings through unobserved: a row they pass on is one every one of
their conditions held for, so a later label test still decides whether anything of it is seen.
Unless a condition may raise an error (arithmetic, a function, CASE...): an error answers for
rows no later test will look at, so such a Filter or ValueHashJoin observes its rows (a
Filter's after its own label tests, which Neo4j evaluates first). Everything else observes
its rows. Optional parts (``Optional``, ``OptionalExpand``, outer
joins) keep a row whether or not their predicate held, so their predicate narrows only the
variables they bring, never one bound before them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from proxy.plan.flow import ANY, Binding, Env, either, value
from proxy.plan.parser import Parser, parse
from proxy.plan.reader import Op, Reader, argument_names, unquote, variables
from proxy.plan.syntax import Expr, Unparsed

_CALL = re.compile(r"((?:`(?:[^`]|``)*`|\w+)(?:\.(?:`(?:[^`]|``)*`|\w+))*)\(")
_NAME_PART = re.compile(r"`(?:[^`]|``)*`|\w+")


def observe(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """An operator that looks at its rows (Sort, Limit, CacheProperties, ...)."""
    env = reader.facts.observe(envs[0]) if envs else {}
    if op.details:
        reader.expressions(op.details, env)
    return env


def cache_properties(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """CacheProperties ``cache[n.p], ...``: loads properties into the row, and shows nothing
    (what is done with them later is looked at where it is done)."""
    reader.expressions(op.details, dict(envs[0]) if envs else {})
    return dict(envs[0]) if envs else {}


def barrier(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Eager: passes rows on unchanged and looks at none of them. (Its details name labels in
    conflict reports, not reads.)"""
    reader.facts.add("operators", [op.family])
    return dict(envs[0]) if envs else {}


def argument(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """Argument ``a, b``: the row an apply hands its right-hand side."""
    del reader, envs
    return {name: args.get(name) or Binding("unknown", None, fresh=True) for name in op.identifiers}


def empty_row(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """EmptyRow (an argument with no variables: it brings nothing of the row) and Input
    (values fed in)."""
    del reader, envs
    return {name: value() for name in op.identifiers}


def filter_rows(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Filter: narrows by its positive label conjuncts; observes nothing, unless its predicate
    may raise an error (``1/(v.x - 9) > 0``), whose rows it then observes once its own label
    tests (evaluated first) have narrowed them: an equality or a join above that would narrow
    them further comes too late for an error already raised."""
    env = dict(envs[0]) if envs else {}
    predicate = parse(op.details)
    reader.expression(predicate, env)
    labelled = reader.narrow(predicate, env, first=True)
    return reader.narrow(predicate, reader.sees_if_failing(predicate, labelled))


def projection(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    env = reader.facts.observe(envs[0]) if envs else {}
    return {**env, **reader.items(op.details, env)}


def aggregation(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """EagerAggregation, OrderedAggregation, Distinct: only the grouping keys and aggregates
    go on."""
    env = reader.facts.observe(envs[0]) if envs else {}
    out = reader.items(op.details, env)
    # Neo4j lists the subquery's arguments among an aggregation's identifiers: they stay. An
    # aggregation without grouping keys answers one row even when nothing reached it (count 0),
    # so an argument goes on as the subquery received it, not as a filter below narrowed it.
    kept = args if op.family in ("EagerAggregation", "OrderedAggregation") else env
    return {**{name: kept.get(name) or env[name] for name in op.identifiers if name in env}, **out}


def produce(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    del op
    return reader.facts.observe(envs[0]) if envs else {}


def unwind(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Unwind ``expr AS x``: x is an element of the list."""
    env = reader.facts.observe(envs[0]) if envs else {}
    parser = Parser(op.details)
    expr = parser.expression()
    reader.expression(expr, env)
    parser.take_word("AS")
    var = parser.variable()
    parser.end()
    env[var] = element_of(expr, env)
    return env


def element_of(expr: Expr, env: Env) -> Binding:
    """What an element of a list holds: for a list of variables, what any of them holds, and
    for a path's ``relationships``, a relationship (no new entity: those were read where they
    were found); for anything else, a value."""
    if expr.kind == "call" and expr.text == "relationships" and len(expr.args) == 1:
        return Binding("rel")  # of a path, or of one Neo4j inlines: (a)-[anon_0]->(m)
    if (
        expr.kind == "list"
        and expr.args
        and all(a.kind == "var" and a.text in env for a in expr.args)
    ):
        found = env[expr.args[0].text]
        for arg in expr.args[1:]:
            found = either(found, env[arg.text])
        return replace(found, fresh=False)
    return value()


def load_csv(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """LoadCSV ``row``: its source is not in the plan (see :mod:`proxy.plan.text`)."""
    env = reader.facts.observe(envs[0]) if envs else {}
    reader.facts.load_csv_ops += 1
    env[Parser(op.details).variable()] = value()
    return env


# Neo4j's own procedures that look at nothing in the store (db.ping answers whether the
# database is up: cypher-shell calls it as it connects); a plugin cannot take their names.
_LOOK_AT_NOTHING = frozenset({"db.ping"})


def procedure(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """ProcedureCall ``ns.name(args) :: (col :: TYPE, ...)``: what it yields is unknown (a
    node it yields is found by it: fresh, any label), unless the procedure looks at nothing."""
    env = reader.facts.observe(envs[0]) if envs else dict(args)
    match = _CALL.match(op.details)
    if match is None:
        raise Unparsed("a procedure call of unknown form")
    parts = [unquote(part) for part in _NAME_PART.findall(match.group(1))]
    name = ".".join(parts)
    reader.facts.add("procedures", [name])
    parser = Parser(op.details[match.end() - 1 :])  # the arguments, then `:: (signature)`
    parser.take("(")
    while not parser.at(")"):
        reader.expression(parser.expression(), env)
        if not parser.at(")"):
            parser.take(",")
    parser.take(")")
    yielded = value() if name in _LOOK_AT_NOTHING else Binding("unknown", None, fresh=True)
    for column in _yields(parser):  # declared here, whatever a name in use held
        env[column] = yielded
    for column in op.identifiers:
        if column not in env:
            env[column] = yielded
    return env


def _yields(parser: Parser) -> list[str]:
    """The columns of ``:: (name :: TYPE, ...)``, the signature after a procedure's arguments."""
    if parser.done():
        return []
    parser.take("::")
    parser.take("(")
    names: list[str] = []
    depth = 0
    while not (depth == 0 and parser.at(")")):
        names.append(parser.name())
        parser.take("::")
        while not (depth == 0 and (parser.at(",") or parser.at(")"))):
            tok = parser.take_any()
            depth += {"<": 1, ">": -1}.get(tok.text, 0) if tok.kind == "symbol" else 0
        if parser.at(","):
            parser.i += 1
    parser.take(")")
    parser.end()
    return names


# Commands about every transaction of the server, whatever its database or user, although
# Neo4j plans them on the session's database: SHOW TRANSACTIONS answers with the statements,
# parameters and metadata of all of them (system's, other DAGs', with the values they read and
# write, of any label), TERMINATE TRANSACTIONS ends any of them.
_EVERY_TRANSACTION = frozenset({"ShowTransactions", "TerminateTransactions"})
# Commands that list every index or constraint: the labels, types and keys each is on, and how
# often and when it was last read (what other DAGs do with labels a grant may not read).
_EVERY_SCHEMA_OBJECT = frozenset({"ShowIndexes", "ShowConstraints"})
# Commands about what an expression of the caller's names: ``settings(<expr>)``,
# ``transactions(<expr>)`` in their details, evaluated like any expression (a plugin's function
# there runs: ``apoc.cypher.runFirstColumnSingle`` reads anything). Neo4j prints the strings in
# it without quotes, so a quote in those details is ambiguous.
_WITH_EXPRESSIONS = frozenset({"ShowSettings", "ShowTransactions", "TerminateTransactions"})
# Index and constraint commands print their ``OPTIONS`` map last, which may call functions.
_WITH_OPTIONS = frozenset({"CreateIndex", "CreateConstraint"})


def command(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """SHOW, TERMINATE, schema and administration commands (recorded as commands by the walk):
    they yield values about the database, not graph entities. One that changes something
    (TERMINATE, CREATE, DROP, administration) is also a write of anything; one about every
    transaction reaches any database, and SHOW TRANSACTIONS, INDEXES and CONSTRAINTS read
    anything. The expressions some take (which settings, which transactions, an index's
    ``OPTIONS``) are read."""
    del envs
    if op.family in _WITH_EXPRESSIONS and op.details:
        if any(quote in op.details for quote in "'\"`"):
            # Neo4j prints a string there without its quotes: a quote is part of one, and
            # could hide a call (`"'" + f() + "'"` prints as `' + f() + '`).
            raise Unparsed("a command's expression with a quote")
        reader.expressions(op.details, dict(args))
    if op.family in _WITH_OPTIONS:
        _, options, given = op.details.partition(" OPTIONS ")
        if options:  # evaluated as any expression is: a function called there is called
            reader.expression(parse(given), dict(args))
    if not op.family.startswith("Show"):
        reader.facts.write_anything()
    if op.family in _EVERY_TRANSACTION:
        reader.facts.add("databases", None)
    if op.family == "ShowTransactions" or op.family in _EVERY_SCHEMA_OBJECT:
        reader.facts.add("labels_read", None)
        reader.facts.add("rel_types_read", None)
    return {**args, **dict.fromkeys(op.identifiers, value())}


# ---- binary operators


def apply(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Apply, TransactionApply: the RHS rows (carrying the arguments) go on. A subquery that
    uses nothing of its row multiplies rows like a cartesian product. ``CALL ... IN
    TRANSACTIONS ... ON ERROR CONTINUE`` (or ``BREAK``) lets an outer row go on when its batch
    failed, so there the subquery proves nothing of the outer variables."""
    lhs, rhs = envs
    if op.family == "Apply" and lhs and not _uses_its_row(lhs, op.raw["children"][1]):
        reader.facts.add("operators", ["CartesianProduct"])
    out = subquery_rows(lhs, rhs)
    if op.family == "TransactionApply":
        reader.facts.add("operators", [op.family])  # commits in batches (see Analysis)
    if op.family == "TransactionApply" and _on_error(reader, op.details, lhs) != "FAIL":
        # A failed batch's rows go on as they came: the subquery's narrowing may not hold.
        for name, outer in lhs.items():
            inner = rhs.get(name)
            if inner is None or inner.origin is outer.origin:
                out[name] = outer
    return out


def subquery_rows(lhs: Env, rhs: Env) -> Env:
    """The variables of the rows an apply's right-hand side hands back: its own, and the outer
    ones as it narrowed them. A name it declared again (printed like the outer one) may mean
    either afterwards: the inner one (a MATCH after WITH dropped the outer) or the outer one
    (a CALL subquery that did not import it). Which, the plan does not say: the name holds
    what either holds."""
    out = dict(lhs)
    for name, binding in rhs.items():
        outer = lhs.get(name)
        out[name] = (
            binding if outer is None or binding.origin is outer.origin else either(outer, binding)
        )
    return out


def _uses_its_row(lhs: Env, rhs: Mapping[str, Any]) -> bool:
    """Whether a subquery's plan takes anything of its row (an ``Argument`` of LHS variables)."""
    return bool(set(lhs) & argument_names(rhs))


def _on_error(reader: Reader, details: str, env: Env) -> str:
    """``IN [n ]CONCURRENT TRANSACTIONS OF <batch> ROWS ON ERROR FAIL|CONTINUE|BREAK[ REPORT
    STATUS AS s]``: what happens to an outer row when its batch fails."""
    parser = Parser(details)
    parser.take_word("IN")
    if not parser.at_word("TRANSACTIONS"):
        if not parser.at_word("CONCURRENT"):
            reader.expression(parser.expression(), env)
        parser.take_word("CONCURRENT")
    parser.take_word("TRANSACTIONS")
    parser.take_word("OF")
    reader.expression(parser.expression(), env)
    parser.take_word("ROWS")
    parser.take_word("ON")
    parser.take_word("ERROR")
    mode = parser.name().upper()
    if mode not in ("FAIL", "CONTINUE", "BREAK"):
        raise Unparsed("a CALL IN TRANSACTIONS of unknown form")
    if parser.at_word("REPORT"):
        parser.i += 1
        parser.take_word("STATUS")
        parser.take_word("AS")
        parser.variable()
    parser.end()
    return mode


def semi_apply(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """SemiApply and its kin: the RHS is an existence test (observed); the LHS rows go on,
    with a boolean for the Let* forms. No RHS variable leaves it."""
    lhs, rhs = envs
    reader.facts.observe(rhs)
    if op.details and "Select" in op.family:
        reader.expression(parse(op.details), lhs)
    return {**lhs, **{name: value() for name in op.identifiers if name not in lhs}}


def conditional_apply(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """ConditionalApply / AntiConditionalApply: the LHS row, or the RHS rows, go on."""
    del op
    lhs, rhs = envs[0], reader.facts.observe(envs[1])
    out = subquery_rows(lhs, rhs)
    for name, binding in lhs.items():  # where the RHS did not run, the LHS row as it was
        out[name] = either(binding, out[name]) if out[name] is not binding else binding
    return out


def roll_up(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """RollUpApply ``list, variable``: the LHS row, with a list of RHS values."""
    lhs, rhs = envs
    reader.facts.observe(rhs)
    return {**lhs, variables(op.details)[0]: value()}


def foreach_apply(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """SubqueryForeach, TransactionForeach and the binary Foreach ``x IN list``: the RHS runs
    for its effects (observed), and the LHS rows go on unchanged."""
    lhs, rhs = envs
    reader.facts.observe(rhs)
    if op.family == "TransactionForeach":
        reader.facts.add("operators", [op.family])  # commits in batches (see Analysis)
        _on_error(reader, op.details, lhs)
    elif op.family == "Foreach":
        parser = Parser(op.details)
        parser.variable()
        parser.take_word("IN")
        reader.expression(parser.expression(), lhs)
        parser.end()
    return dict(lhs)


def foreach_arguments(reader: Reader, op: Op, lhs: Env) -> Env:
    """The binary Foreach ``x IN list`` runs its RHS once per element, with ``x`` bound to it
    (declared here, whatever a name in use held)."""
    parser = Parser(op.details)
    var = parser.variable()
    parser.take_word("IN")
    source = parser.expression()
    parser.end()
    reader.expression(source, lhs)
    return {**lhs, var: element_of(source, lhs)}


def join(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Inner joins: on a NodeHashJoin's keys both sides hold; CartesianProduct and
    ValueHashJoin combine independent sides (a name on both is either's, to be safe)."""
    lhs, rhs = envs
    keys: set[str] = set()
    if op.family == "NodeHashJoin":
        keys = set(variables(op.details))
    elif op.family == "ValueHashJoin":
        # Each side's expression is evaluated on each of its rows: one that may raise an
        # error sees them (as a Filter's does).
        condition = parse(op.details)
        reader.expression(condition, {**lhs, **rhs})
        lhs, rhs = (reader.sees_if_failing(condition, env) for env in (lhs, rhs))
    else:
        reader.facts.add("operators", ["CartesianProduct"])
    out: Env = {}
    for name in lhs.keys() | rhs.keys():
        a, b = lhs.get(name), rhs.get(name)
        if a is not None and b is not None:
            out[name] = a.narrowed(b.labels) if name in keys else either(a, b)
        else:
            out[name] = a if a is not None else b  # type: ignore[assignment]
    return out


def outer_join(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Left (right) outer hash join: every row of the preserved side goes on, joined or not,
    with the other side's variables null where nothing joined."""
    lhs, rhs = (reader.facts.observe(env) for env in envs)
    kept, other = (lhs, rhs) if op.family == "NodeLeftOuterHashJoin" else (rhs, lhs)
    keys = set(variables(op.details))
    out = {**other, **kept}
    for name in kept.keys() & other.keys() - keys:  # one name, two variables: either
        out[name] = either(kept[name], other[name])
    return out


def union(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """Union, OrderedUnion: a row of either side."""
    del op
    lhs, rhs = (reader.facts.observe(env) for env in envs)
    return {name: either(lhs.get(name), rhs.get(name)) for name in lhs.keys() | rhs.keys()}


def assert_same(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """AssertSameNode/AssertSameRelationship ``n``: the LHS rows go on, and both sides found the
    same entity (or the statement fails)."""
    lhs, rhs = (reader.facts.observe(env) for env in envs)
    out = dict(lhs)
    for name in variables(op.details):
        if name in lhs and name in rhs:
            out[name] = lhs[name].narrowed(rhs[name].labels)
    return out


def triadic(reader: Reader, op: Op, envs: Sequence[Env], _args: Env) -> Env:
    """TriadicSelection ``WHERE [NOT ](a)--(c)``: RHS rows kept by whether ``c`` is among the
    nodes the LHS reached from ``a`` (the LHS expansion was read where it was planned)."""
    lhs, rhs = (reader.facts.observe(env) for env in envs)
    if not op.details.startswith("WHERE "):
        raise Unparsed("a triadic selection of unknown form")
    return {**lhs, **rhs}


def optional(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """Optional ``a, b``: the child's rows, or one row of the arguments with the child's new
    variables null. So the arguments go on as they were before it: a predicate below that
    narrowed them did not hold on that row."""
    del reader
    out = dict(envs[0])
    for name in variables(op.details) if op.details else []:
        outer, inner = args.get(name), out.get(name)
        if outer is None:
            out[name] = Binding("unknown", None, fresh=True)
        elif inner is None or inner.origin is outer.origin:
            out[name] = outer
        else:  # declared again below (printed alike): either, afterwards
            out[name] = either(outer, inner)
    return out


def anti(reader: Reader, op: Op, envs: Sequence[Env], args: Env) -> Env:
    """Anti: one row of the arguments if its child has none."""
    reader.facts.observe(envs[0])
    return {name: args[name] for name in op.identifiers if name in args}


__all__ = ["ANY"]
