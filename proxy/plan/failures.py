"""Whether evaluating an expression could raise an error on some row of a plan.

An error is an answer about the row it was raised on: a predicate that may raise one sees its
rows (see :meth:`proxy.plan.reader.Reader.sees_if_failing`), where one that cannot merely lets
them through for a later label test to decide.
"""

from __future__ import annotations

from typing import Literal

from proxy.plan.flow import Binding, Env
from proxy.plan.syntax import Expr, Pattern

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
        return not is_relationship(expr.args[0], env)  # of a relationship, never an error
    if kind in ("list", "map", "entry"):
        return any(_value_may_fail(arg, env) for arg in expr.args)
    if (
        kind in _LOGICAL
        or kind in ("label", "is", "quantifier")
        or (kind == "op" and expr.text in _COMPARISONS)
    ):
        return may_fail(expr, env)
    return True


def _of_the_row(pattern: Pattern | None, env: Env) -> bool:
    """A path Neo4j builds from the row's variables (``nodes((a)-[anon_7*]-(b))``), and so never
    an error: every element a bound variable, with nothing to test."""
    if pattern is None or pattern.where or pattern.path_var or pattern.function:
        return False
    return all(
        e.var in env and (e.label, e.properties, e.where, e.inner) == (None,) * 4
        for e in pattern.elements
    )


def _is_entity(expr: Expr, env: Env) -> bool:
    """A variable that holds a node or a relationship, or a relationship's ``startNode`` or
    ``endNode``."""
    if expr.kind == "var":
        return expr.text in env and env[expr.text].kind in ("node", "rel")
    if expr.kind == "call" and expr.text in _ENDS and len(expr.args) == 1:
        return is_relationship(expr.args[0], env)
    return False


def is_relationship(expr: Expr, env: Env) -> bool:
    """A variable that holds a relationship."""
    return expr.kind == "var" and expr.text in env and env[expr.text].kind == "rel"


def _listed_entities(source: Expr, env: Env) -> Literal["node", "rel"] | None:
    """What a quantifier's list holds, if it is one that cannot fail: a path's ``nodes`` or
    ``relationships``, or a variable-length relationship's list."""
    if source.kind == "call" and source.text in _PATH_FUNCTIONS and len(source.args) == 1:
        path = source.args[0]
        built = path.kind == "var" or (path.kind == "pattern" and _of_the_row(path.pattern, env))
        return _PATH_FUNCTIONS[source.text] if built else None
    if source.kind == "var" and source.text in env and env[source.text].kind == "rel":
        return "rel"
    return None


__all__ = ["is_relationship", "may_fail"]
