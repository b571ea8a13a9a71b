"""The dataflow over a Neo4j 5.26 plan: the walk, and the helpers every operator rule uses.

Operators are walked children first. A rule (in :mod:`proxy.plan.traversals`,
:mod:`proxy.plan.rows` and :mod:`proxy.plan.writes`) says, for one operator, which variables
it binds and what it guarantees about them, what it observes (see :mod:`proxy.plan.flow`), and
what it writes. An operator without a rule, or whose ``Details`` do not parse, is *opaque*: it
may read anything (and, if its name says it changes something, write anything), every
variable it brings is an unknown entity, and the analysis names it in ``unreadable``.

The operator names, their children and the ``Details`` formats are those of Neo4j 5.26's
``LogicalPlan2PlanDescription``; what each rule claims (what a row that passes an operator is
guaranteed to satisfy) is checked against the real server in ``tests/plan/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from proxy.plan.failures import is_relationship, may_fail
from proxy.plan.flow import Binding, Env, Facts, Guarantee, both, inner_nodes, read_set, value
from proxy.plan.parser import Parser
from proxy.plan.syntax import Expr, Pattern, Unparsed, conjuncts

# Built-in namespaced functions of 5.26 (SHOW FUNCTIONS); any other ``ns.f(`` is user-defined.
_CLOCKS = ("realtime", "statement", "transaction")
_TEMPORALS = ("date", "datetime", "localdatetime", "localtime", "time")
BUILTIN_NAMESPACES = frozenset(
    {"duration", "graph", "point", "vector.similarity", *_TEMPORALS}
    | {f"{t}.{clock}" for t in _TEMPORALS for clock in _CLOCKS}
)
# Names of operators that change something: an opaque operator named like this writes anything.
_WRITE_HINT = re.compile(
    "Set|Create|Merge|Delete|Remove|Foreach|Load|Drop|Terminate|Administration|Alter|Grant|Revoke"
)
_COMMAND_PREFIXES = ("Show", "Terminate", "Create", "Drop", "Alter")
_COMMANDS = frozenset({"AdministrationCommand", "DoNothingIfExists"})


@dataclass(frozen=True, slots=True)
class Op:
    """One operator of the plan, as the rules see it."""

    base: str  # the operatorType without its @database
    family: str  # the base without its (mode): Expand(All) -> Expand
    details: str
    identifiers: tuple[str, ...]
    raw: Mapping[str, Any]


Rule = Callable[["Reader", Op, Sequence[Env], Env], Env]
# What an apply-like operator's right-hand side sees as its arguments, given the observed LHS.
Arguments = Callable[["Reader", Op, Env], Env]


@dataclass(frozen=True, slots=True)
class Rules:
    """The rule of each operator (by base name or family), and the binary operators whose
    right-hand side runs once per left-hand row (it sees that row as its arguments)."""

    rules: Mapping[str, Rule]
    applies: frozenset[str]
    writes: frozenset[str]  # the families that write, for telling commands apart
    # The arguments of an apply whose RHS sees more than the LHS row (by family).
    arguments: Mapping[str, Arguments]


def unquote(name: str) -> str:
    """A name as Neo4j prints it in ``identifiers``, without its backticks."""
    if len(name) > 1 and name.startswith("`") and name.endswith("`"):
        return name[1:-1].replace("``", "`")
    return name


class Reader:
    """Walks one plan, filling :class:`Facts`."""

    def __init__(self, facts: Facts, rules: Rules) -> None:
        self.facts = facts
        self._rules = rules

    def walk(self, raw: Mapping[str, Any], args: Env) -> Env:
        """The env of the rows ``raw`` produces, given the arguments its leaves see."""
        op_type = raw.get("operatorType") if isinstance(raw, Mapping) else None
        children = raw.get("children") or [] if isinstance(op_type, str) else []
        if not isinstance(op_type, str) or not isinstance(children, list) or len(children) > 2:
            raise ValueError("not a Neo4j plan: an operator without an operatorType or with 3+")
        base, _, database = op_type.rpartition("@") if "@" in op_type else (op_type, "", "")
        arguments = raw.get("args") or raw.get("arguments") or {}
        op = Op(
            base=base,
            family=base.split("(", 1)[0],
            details=str(arguments.get("Details") or "") if isinstance(arguments, Mapping) else "",
            identifiers=tuple(unquote(str(i)) for i in raw.get("identifiers") or []),
            raw=raw,
        )
        if database:
            self.facts.add("databases", [database])
        family = op.family
        writes = self._rules.writes
        if family in _COMMANDS or (family.startswith(_COMMAND_PREFIXES) and family not in writes):
            self.facts.add("commands", [family])
        rule = self._rules.rules.get(base) or self._rules.rules.get(family)
        if rule is None and "." in family and not op.details and not children:
            self.facts.add("procedures", [family])  # a system procedure call (USE system CALL)
            return {}
        if rule is not None and family in self._rules.applies and len(children) == 2:
            # The RHS runs per LHS row and may use it in any way: the row is observed.
            lhs = self.facts.observe(self.walk(children[0], args))
            arguments = self._rules.arguments.get(family)
            try:
                rhs_args = arguments(self, op, lhs) if arguments else lhs
            except Unparsed:
                return self._opaque(op, [lhs])
            envs = [lhs, self.walk(children[1], rhs_args)]
        else:
            envs = [self.walk(child, args) for child in children]
        if rule is None:
            return self._opaque(op, envs)
        try:
            env = rule(self, op, envs, args)
        except Unparsed as exc:
            return self._opaque(op, envs, why=str(exc))
        return self._restricted(op, env)

    def _restricted(self, op: Op, env: Env) -> Env:
        """The env limited to the operator's identifiers. An identifier the rule did not bind
        is something this reader does not know about: an unknown, fresh entity."""
        if not op.identifiers:
            return env
        # The nodes between a path's hops wait under names no identifier has (flow.inner_nodes).
        waiting = {n: b for n, b in env.items() if n.startswith(inner_nodes(""))}
        return waiting | {n: env.get(n) or Binding("unknown", fresh=True) for n in op.identifiers}

    def _opaque(self, op: Op, envs: Sequence[Env], *, why: str = "") -> Env:
        for env in envs:
            self.facts.observe(env)
        self.facts.opaque(writes=bool(_WRITE_HINT.search(op.family)), what=op.base)
        self.facts.deletes = self.facts.deletes or "Delete" in op.family
        self.facts.load_csv_ops += "Load" in op.family  # a load from somewhere: any source
        del why  # the reason is for debugging; the analysis names the operator
        return {name: Binding("unknown", None, fresh=True) for name in op.identifiers}

    # ---- expressions

    def expression(self, expr: Expr, env: Env) -> None:
        """Record what an expression names: the labels and types it tests, the patterns it
        matches (their nodes and relationships not taken from the row are read with what the
        pattern guarantees of them), and the user-defined functions it calls."""
        element_kinds: dict[str, str] = {}
        for node in expr.walk():
            if node.kind in ("quantifier", "comprehension") and node.args:
                source, var = node.args[0], node.text.split(":", 1)[-1]
                if source.kind == "call" and source.text in ("nodes", "relationships"):
                    element_kinds[var] = "node" if source.text == "nodes" else "rel"
                elif source.kind == "list" and source.args:  # [a, b]: what a and b are
                    kinds = {self._subject_kind(a, env, element_kinds) for a in source.args}
                    if len(kinds) == 1:
                        element_kinds[var] = kinds.pop()
        for node in expr.walk():
            if node.kind == "label" and node.label is not None:
                kind = self._subject_kind(node.args[0], env, element_kinds)
                names = node.label.names()
                if kind != "rel":
                    self.facts.add("labels_read", names)
                if kind not in ("node",):
                    self.facts.add("rel_types_read", names)
            elif node.kind in ("pattern", "pattern_comprehension") and node.pattern is not None:
                self.pattern_reads(node.pattern, env)
            elif node.kind == "call" and _user_defined(node.text):
                self.facts.add("functions", [node.text])

    @staticmethod
    def _subject_kind(subject: Expr, env: Env, element_kinds: Mapping[str, str]) -> str:
        if subject.kind == "var":
            bound = env.get(subject.text)
            if bound is not None and bound.kind in ("node", "rel"):
                return bound.kind
            return element_kinds.get(subject.text, "unknown")
        if subject.kind == "call" and subject.text in ("startNode", "endNode"):
            return "node"
        return "unknown"

    def pattern_reads(self, pattern: Pattern, env: Env) -> None:
        """A pattern matched inside an expression: every node and relationship it does not take
        from the row is read, with what the pattern itself says of it."""
        for element in pattern.all_elements():
            if element.kind == "group":
                self.facts.hops(element.max_hops)
                self.facts.add("labels_read", None)  # nodes inside a repeated part: anything
                continue
            target = read_set(element.kind)
            self.facts.add(target, element.label.names() if element.label else ())
            if element.var and element.var in env:
                continue  # taken from the row (a path built from what was matched)
            self.facts.add(target, element.label.guarantee() if element.label else None)
            if element.var_length:
                self.facts.hops(element.max_hops)
                self.facts.add("labels_read", None)  # the nodes along it: anything
        for expr in pattern.expressions():
            self.expression(expr, env)

    def narrow(
        self, predicate: Expr, env: Env, *, only: set[str] | None = None, first: bool = False
    ) -> Env:
        """See :func:`narrow`."""
        return narrow(predicate, env, only=only, first=first)

    def sees_if_failing(self, predicate: Expr, env: Env) -> Env:
        """``env``, with its fresh bindings observed if ``predicate`` may raise an error
        (:func:`~proxy.plan.failures.may_fail`): an error is an answer, so the rows it is
        evaluated on are seen, not merely let through for a later label test to decide."""
        return self.facts.observe(env) if may_fail(predicate, env) else env

    def items(self, text: str, env: Env) -> Env:
        """``expr AS alias, ...`` (projections, aggregations, DISTINCT): an alias of a plain
        variable keeps its binding, any other is a value. Returns the bindings of the aliases."""
        out: Env = {}
        if not text:
            return out
        parser = Parser(text)
        while True:
            expr = parser.expression()
            self.expression(expr, env)
            if parser.at_word("ASC", "DESC"):  # an ordered DISTINCT aggregation's input order
                parser.i += 1
            alias = None
            if parser.at_word("AS"):
                parser.i += 1
                alias = parser.variable()
            elif expr.kind == "var":
                alias = expr.text
            if alias is not None:
                source = env.get(expr.text) if expr.kind == "var" else None
                out[alias] = replace(source, fresh=False) if source else value()
            if parser.done():
                return out
            parser.take(",")

    def expressions(self, text: str, env: Env) -> None:
        """Details that are a list of expressions (``a, b.x ASC``, ``x ASC LIMIT 1``)."""
        parser = Parser(text)
        while not parser.done():
            self.expression(parser.expression(), env)
            if parser.at_word("ASC", "DESC"):
                parser.i += 1
            if parser.at_word("LIMIT"):
                parser.i += 1
                continue
            if not parser.done():
                parser.take(",")


def narrow(predicate: Expr, env: Env, *, only: set[str] | None = None, first: bool = False) -> Env:
    """``env`` with each variable narrowed by the predicate's positive label conjuncts
    (``v:A``, ``v:A|B``, ``v:A&B``), which every row that passes the predicate satisfies, by its
    type tests of a relationship (``type(r) IN "T"``, ``type(r) = "T"``), by what its
    ``all(n IN nodes(<path>) WHERE n:A)`` says of every node of a path (those between the hops
    of its variable-length parts too: see :func:`~proxy.plan.flow.inner_nodes`) and by its
    equalities of two variables (``a = b``: one entity, so what is known of either holds of both);
    only the variables in ``only``, when given. With ``first``, only by the label conjuncts: what
    Neo4j tests before the rest of the predicate, so what narrows a row before an error the rest
    may raise could tell of it (a type test is a function call, which Neo4j may order after the
    rest). Nothing else narrows: not a label test under NOT, OR, XOR, CASE or another list
    predicate, nor one on anything but a variable."""
    out = dict(env)
    parts = conjuncts(predicate)
    for _ in range(2):  # an equality can carry what a label test proved, and back
        for conjunct in parts:
            if conjunct.kind == "label" and conjunct.label is not None:
                subject = conjunct.args[0]
                guarantee = conjunct.label.guarantee()
                if guarantee is not None and subject.kind == "var":
                    _narrow_var(out, subject.text, guarantee, only)
            elif first:
                continue
            elif (typed := _type_test(conjunct, out)) is not None:
                _narrow_var(out, typed[0], typed[1], only)
            elif (path := _every_node(conjunct)) is not None:
                for element in path[0].elements:  # its nodes, and those between hops
                    if element.kind == "node" or element.var_length:
                        name = element.var if element.kind == "node" else inner_nodes(element.var)
                        _narrow_var(out, name, path[1], only)
            elif conjunct.kind == "op" and conjunct.text == "=":
                left, right = conjunct.args
                if left.kind == right.kind == "var" and left.text in out and right.text in out:
                    known = both(out[left.text].labels, out[right.text].labels)
                    _narrow_var(out, left.text, known, only)
                    _narrow_var(out, right.text, known, only)
    return out


def _every_node(conjunct: Expr) -> tuple[Pattern, Guarantee] | None:
    """``all(n IN nodes(<path>) WHERE n:L AND ...)``: the path, and what its label conjuncts
    say of every node along it (the nodes between the hops of its variable-length parts too)."""
    if conjunct.kind != "quantifier" or not conjunct.text.startswith("all:"):
        return None
    source, condition = conjunct.args
    if not (source.kind == "call" and source.text == "nodes" and len(source.args) == 1):
        return None
    path, var = source.args[0].pattern, conjunct.text.split(":", 1)[1]
    found: Guarantee = None
    for part in conjuncts(condition):
        if part.kind == "label" and part.label is not None and is_var(part.args[0], var):
            found = both(found, part.label.guarantee())
    return (path, found) if path is not None and found is not None else None


def _type_test(conjunct: Expr, env: Env) -> tuple[str, frozenset[str]] | None:
    """``type(r) IN "T"`` or ``type(r) IN ["A", "B"]`` (how Neo4j tests the types of a
    relationship it found by its id), or ``type(r) = "T"``, of an ``r`` known to be a
    relationship: r has one of these types. Only string literals, and only IN and =:
    ``type(r) CONTAINS "T"`` says nothing of the kind, and of a variable that may be a node (a
    procedure's yield, say) the test says nothing of what the rest of the predicate saw."""
    if conjunct.kind != "op" or conjunct.text not in ("in", "="):
        return None
    left, right = conjunct.args
    if not (left.kind == "call" and left.text == "type" and len(left.args) == 1):
        return None
    if not is_relationship(left.args[0], env):
        return None
    items = right.args if right.kind == "list" and conjunct.text == "in" else (right,)
    names: set[str] = set()
    for item in items:
        text = item.text
        if item.kind != "literal" or text[:1] not in ("'", '"') or "\\" in text:
            return None
        names.add(text[1:-1])
    return (left.args[0].text, frozenset(names)) if names else None


def _narrow_var(env: Env, name: str, guarantee: Guarantee, only: set[str] | None) -> None:
    if name in env and guarantee is not None and (only is None or name in only):
        env[name] = env[name].narrowed(guarantee)


def _user_defined(function: str) -> bool:
    """Whether a function is user-defined: namespaced, and not in a built-in namespace."""
    return "." in function and function.rsplit(".", 1)[0] not in BUILTIN_NAMESPACES


def variables(text: str) -> list[str]:
    """``a, b``: a list of variables."""
    parser = Parser(text)
    names = [parser.variable()]
    while not parser.done():
        parser.take(",")
        names.append(parser.variable())
    return names


def argument_names(raw: Mapping[str, Any]) -> set[str]:
    """The variables of the ``Argument`` leaves below an operator: what of its row a subquery
    takes."""
    if not raw.get("children"):
        op_type = str(raw.get("operatorType") or "")
        if op_type.split("@", 1)[0] == "Argument":
            return {unquote(str(i)) for i in raw.get("identifiers") or []}
        return set()
    return {name for child in raw["children"] for name in argument_names(child)}


def is_var(expr: Expr, name: str) -> bool:
    return expr.kind == "var" and expr.text == name


__all__ = ["BUILTIN_NAMESPACES", "Op", "Reader", "Rule", "Rules", "conjuncts", "is_var"]
