"""The tree the plan's ``Details`` are parsed into, and the tokens and cursor of the parser.

Neo4j prints every expression of a plan in one canonical form (its ``ExpressionStringifier``):
names that need them in backticks, label disjunctions as ``n:A|B`` with no spaces, the
separators of comprehensions and of CASE with spaces, patterns glued (``(a)-[r:T]->(b)``), a
cached property as ``cache[n.key]`` (unquoted: see :mod:`proxy.plan` for the names that makes
ambiguous). :mod:`proxy.plan.parser` parses that form into this tree; the plan reader decides
from the tree which variables a predicate narrows and which labels and types it names.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<name>`(?:[^`]|``)*`)
    | (?P<number>0x[0-9A-Fa-f]+|0o[0-7]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<param>\$(?:`(?:[^`]|``)*`|\w+))
    | (?P<cache>cache\[)
    | (?P<word>[^\W\d]\w*)
    | (?P<symbol><-->|<--|-->|<-|->|--|\.\.|::|<>|!=|<=|>=|=~|\+=|[-+*/%^=<>()\[\]{},.:|&!$])
    """,
    re.VERBOSE | re.DOTALL,
)
_CACHED = re.compile(r"[^\[\](){}:$'\"`,|&!<>=]+\.[^\[\](){}:$'\"`,|&!<>=]+")
# Words that end an expression wherever they appear (a variable may not be named like them
# unquoted, and Neo4j quotes names that need it).
STOP = frozenset(
    {"AND", "OR", "XOR", "AS", "WHERE", "THEN", "ELSE", "END", "WHEN", "ASC", "DESC", "IN"}
)


class Unparsed(ValueError):
    """The text is not in the form this module knows."""


@dataclass(frozen=True, slots=True)
class Tok:
    """One token; ``glued`` when no whitespace comes before it."""

    kind: str
    text: str
    glued: bool


# ---- the tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expr:
    """A node of the tree: ``kind`` says what it is, ``text`` its name or operator, ``args``
    its sub-expressions, ``label`` a label or type expression, ``pattern`` an embedded pattern."""

    kind: str
    text: str = ""
    args: tuple[Expr, ...] = ()
    label: LabelExpr | None = None
    pattern: Pattern | None = None

    def walk(self) -> Iterator[Expr]:
        """This node and every node below it, patterns' predicates and properties included."""
        yield self
        for arg in self.args:
            yield from arg.walk()
        if self.label is not None:
            for expr in self.label.dynamic():
                yield from expr.walk()
        if self.pattern is not None:
            for expr in self.pattern.expressions():
                yield from expr.walk()


@dataclass(frozen=True, slots=True)
class LabelExpr:
    """A label or relationship type expression: ``op`` is name, or, and, not, any (``%``) or
    dynamic (``$(...)``, ``$any(...)``, ``$all(...)``)."""

    op: str
    name: str = ""
    parts: tuple[LabelExpr, ...] = ()
    expression: Expr | None = None  # of a dynamic label: what names it, evaluated per row

    def dynamic(self) -> list[Expr]:
        """The expressions of its dynamic labels: each is evaluated on the row, and raises an
        error when it is no string (or list of strings)."""
        found = [self.expression] if self.expression is not None else []
        for part in self.parts:
            found += part.dynamic()
        return found

    def names(self) -> set[str]:
        """Every label or type named."""
        found = {self.name} if self.op == "name" else set()
        for part in self.parts:
            found |= part.names()
        return found

    def guarantee(self) -> frozenset[str] | None:
        """Names of which an entity satisfying this expression has at least one; None when
        nothing is known. ``A`` gives {A}; ``A|B`` {A, B} (either), and None if either side
        gives None; ``A&B`` (or ``A:B``) the union of what its parts give (each part holds, so
        any one part's guarantee would do; the union is weaker but needs no choosing), None if
        no part gives one; ``!A``, ``%`` and dynamic labels give None."""
        if self.op == "name":
            return frozenset({self.name})
        found: set[str] = set()
        if self.op == "or":
            for part in self.parts:
                got = part.guarantee()
                if got is None:
                    return None
                found |= got
            return frozenset(found)
        if self.op == "and":
            for part in self.parts:
                found |= part.guarantee() or set()
            return frozenset(found) if found else None
        return None

    def wild(self) -> bool:
        """Whether the expression can match a name it does not write (``!``, ``%``, dynamic)."""
        return self.op in ("not", "any", "dynamic") or any(p.wild() for p in self.parts)


@dataclass(frozen=True, slots=True)
class Element:
    """One node ``(v:L {...} WHERE p)`` or relationship ``-[v:T*1..2 {...} WHERE p]->`` of a
    pattern; a relationship has a ``direction`` (out, in, both) and, if variable-length, hops."""

    kind: str  # node | rel | group (a parenthesised, quantified sub-pattern)
    var: str = ""
    label: LabelExpr | None = None
    properties: Expr | None = None
    where: Expr | None = None
    direction: str = ""
    var_length: bool = False
    min_hops: int | None = None
    max_hops: int | None = None  # None: no upper bound
    inner: Pattern | None = None


@dataclass(frozen=True, slots=True)
class Pattern:
    """A path pattern, optionally named (``p = ...``) and with a trailing ``WHERE``."""

    elements: tuple[Element, ...]
    path_var: str = ""
    where: Expr | None = None
    function: str = ""  # shortestPath / allShortestPaths, when wrapped in one

    def expressions(self) -> Iterator[Expr]:
        for element in self.elements:
            for expr in (element.properties, element.where):
                if expr is not None:
                    yield expr
            if element.label is not None:
                yield from element.label.dynamic()
            if element.inner is not None:
                yield from element.inner.expressions()
        if self.where is not None:
            yield self.where

    def all_elements(self) -> Iterator[Element]:
        for element in self.elements:
            yield element
            if element.inner is not None:
                yield from element.inner.all_elements()


def tokenize(text: str) -> list[Tok]:
    """The tokens of a ``Details`` text; a cached property is one token."""
    toks: list[Tok] = []
    pos, glued = 0, True
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise Unparsed(f"unexpected character at {pos}")
        kind, pos = match.lastgroup, match.end()
        if kind == "space":
            glued = False
            continue
        if kind == "cache":
            # Neo4j prints a cached property unquoted, `cache[n.key]`: only that form, with
            # nothing in it that could be structure, is read as one.
            close = text.find("]", pos)
            if close < 0 or not _CACHED.fullmatch(text, pos, close):
                raise Unparsed("a cached property of unknown form")
            toks.append(Tok("cache", text[pos:close], glued))
            pos = close + 1
        else:
            toks.append(Tok(kind, match.group(0), glued))
        glued = True
    return toks


def name_of(tok: Tok) -> str:
    """A name token's name (backticks removed)."""
    if tok.kind == "name":
        return tok.text[1:-1].replace("``", "`")
    return tok.text


class Cursor(ABC):
    """A position in one text's tokens, and the steps every part of the parser takes. The parts
    (patterns in :mod:`proxy.plan.patterns`, expressions in :mod:`proxy.plan.parser`) call each
    other through the abstract methods."""

    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    # -- helpers
    def peek(self, offset: int = 0) -> Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def at(self, *texts: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind in ("symbol", "word") and tok.text in texts

    def at_word(self, *words: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "word" and tok.text.upper() in words

    def take(self, *texts: str) -> Tok:
        tok = self.peek()
        if tok is None or tok.text not in texts:
            raise Unparsed(f"expected {texts!r} at token {self.i}")
        self.i += 1
        return tok

    def take_any(self) -> Tok:
        """The next token, whatever it is."""
        tok = self.peek()
        if tok is None:
            raise Unparsed("the text ends too early")
        self.i += 1
        return tok

    def take_word(self, word: str) -> None:
        if not self.at_word(word):
            raise Unparsed(f"expected {word} at token {self.i}")
        self.i += 1

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def end(self) -> None:
        if not self.done():
            raise Unparsed(f"unparsed text from token {self.i}")

    def name(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in ("word", "name"):
            raise Unparsed(f"expected a name at token {self.i}")
        self.i += 1
        return name_of(tok)

    def variable(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in ("word", "name"):
            raise Unparsed(f"expected a variable at token {self.i}")
        if tok.kind == "word" and tok.text.upper() in STOP:
            raise Unparsed(f"a keyword where a variable belongs at token {self.i}")
        self.i += 1
        return name_of(tok)

    @abstractmethod
    def expression(self) -> Expr:
        """One expression, loosest binding first."""

    @abstractmethod
    def label_expression(self) -> LabelExpr:
        """A label or type expression after ``:``."""

    @abstractmethod
    def map_items(self) -> list[Expr]:
        """``{k: v, .p, .*}``: the items of a map or map projection."""


def conjuncts(expr: Expr) -> list[Expr]:
    """The top-level AND-ed parts of a predicate."""
    if expr.kind == "and":
        return [part for arg in expr.args for part in conjuncts(arg)]
    return [expr]
