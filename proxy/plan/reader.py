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
from typing import Any, Literal

from proxy.plan.flow import Binding, Env, Facts, Guarantee, both, read_set, value
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
        return {n: env.get(n) or Binding("unknown", None, fresh=True) for n in op.identifiers}

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
        """``env``, with its fresh bindings observed if ``predicate`` may raise an error (see
        :func:`may_fail`): an error is an answer, so the rows it is evaluated on are seen, not
        merely let through for a later label test to decide."""
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
    type tests of a relationship (``type(r) IN "T"``, ``type(r) = "T"``) and by its equalities
    of two variables (``a = b``: one entity, so what is known of either holds of both); only the
    variables in ``only``, when given. With ``first``, only by the label conjuncts: what Neo4j
    tests before the rest of the predicate, so what narrows a row before an error the rest may
    raise could tell of it (a type test is a function call, which Neo4j may order after the
    rest). Nothing else narrows: not a label test under NOT, OR, XOR, CASE or a list predicate,
    nor one on anything but a variable."""
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
            elif conjunct.kind == "op" and conjunct.text == "=":
                left, right = conjunct.args
                if left.kind == right.kind == "var" and left.text in out and right.text in out:
                    known = both(out[left.text].labels, out[right.text].labels)
                    _narrow_var(out, left.text, known, only)
                    _narrow_var(out, right.text, known, only)
    return out


# What may stand where Neo4j wants a boolean (a predicate, an operand of AND, OR, XOR, NOT, a
# quantifier's condition) and never raise an error on any row: a comparison (of any types:
# incomparable ones are null), STARTS WITH and ENDS WITH, IS [NOT] NULL and type predicates, a
# label test of a node or relationship, true, false, null, and AND, OR, XOR, NOT and the
# quantifiers (all, any, none, single over a path's nodes or relationships) of these (a label
# test with a dynamic label, ``a:$(expr)``, is no such test: expr may be no string). Anything
# else there may (a string or a number is no boolean: the error names its value), and so may
# arithmetic (overflow, division by zero), functions, CASE, indexing, comprehensions and
# patterns anywhere (but ``type(r)`` of a relationship), IN or CONTAINS unless its right side
# is a literal or a list (IN a non-list is an error), and =~ (a pattern that does not compile).
_LOGICAL = frozenset({"and", "or", "xor", "not"})
_COMPARISONS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">=", "with", "in", "contains"})
_LISTED = frozenset({"literal", "list"})
_BOOLEAN_LITERALS = frozenset({"TRUE", "FALSE", "NULL"})
_ENDS = frozenset({"startNode", "endNode"})  # of a relationship: a node
_PATH_FUNCTIONS: dict[str, Literal["node", "rel"]] = {"nodes": "node", "relationships": "rel"}


def may_fail(predicate: Expr, env: Env) -> bool:
    """Whether evaluating ``predicate``, where a boolean is wanted, could raise an error on some
    row (see above): an error is an answer about the row."""
    kind = predicate.kind
    if kind in _LOGICAL:
        return any(may_fail(arg, env) for arg in predicate.args)
    if kind == "literal":
        return predicate.text.upper() not in _BOOLEAN_LITERALS
    if kind == "label":
        # A dynamic label's expression raises an error unless it gives strings: on any row.
        dynamic = predicate.label is not None and bool(predicate.label.dynamic())
        return dynamic or not _is_entity(predicate.args[0], env)
    if kind == "is" or (kind == "op" and predicate.text in _COMPARISONS):
        if predicate.text in ("in", "contains") and predicate.args[1].kind not in _LISTED:
            return True
        return any(_value_may_fail(arg, env) for arg in predicate.args)
    if kind == "quantifier":
        source, condition = predicate.args
        elements = _listed_entities(source, env)
        if elements is None:
            return True
        var = predicate.text.split(":", 1)[1]
        return may_fail(condition, {**env, var: Binding(elements)})
    return True


def _value_may_fail(expr: Expr, env: Env) -> bool:
    """Whether evaluating ``expr`` as a value could raise an error on some row: a variable, a
    literal, a parameter or a cached property never does, nor a property of a node or a
    relationship (of a number or a string, it would)."""
    kind = expr.kind
    if kind in ("var", "cached", "literal", "param"):
        return False
    if kind == "property":
        return not _is_entity(expr.args[0], env)
    if kind == "call" and expr.text == "type" and len(expr.args) == 1:
        return not _is_relationship(expr.args[0], env)  # of a relationship, never an error
    if kind in ("list", "map", "entry"):
        return any(_value_may_fail(arg, env) for arg in expr.args)
    if (
        kind in _LOGICAL
        or kind in ("label", "is", "quantifier")
        or (kind == "op" and expr.text in _COMPARISONS)
    ):
        return may_fail(expr, env)
    return True


def _is_entity(expr: Expr, env: Env) -> bool:
    """A variable that holds a node or a relationship, or a relationship's ``startNode`` or
    ``endNode``."""
    if expr.kind == "var":
        return expr.text in env and env[expr.text].kind in ("node", "rel")
    if expr.kind == "call" and expr.text in _ENDS and len(expr.args) == 1:
        return _is_relationship(expr.args[0], env)
    return False


def _is_relationship(expr: Expr, env: Env) -> bool:
    """A variable that holds a relationship."""
    return expr.kind == "var" and expr.text in env and env[expr.text].kind == "rel"


def _listed_entities(source: Expr, env: Env) -> Literal["node", "rel"] | None:
    """What a quantifier's list holds, if it is one that cannot fail: a path's ``nodes`` or
    ``relationships``, or a variable-length relationship's list."""
    if source.kind == "call" and source.text in _PATH_FUNCTIONS and len(source.args) == 1:
        return _PATH_FUNCTIONS[source.text] if source.args[0].kind == "var" else None
    if source.kind == "var" and source.text in env and env[source.text].kind == "rel":
        return "rel"
    return None


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
    if not _is_relationship(left.args[0], env):
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
