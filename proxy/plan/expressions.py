"""Expressions and patterns in the ``Details`` of a Neo4j 5.26 plan, parsed into a tree.

Neo4j prints every expression of a plan in one canonical form (its ``ExpressionStringifier``):
names that need them in backticks, label disjunctions as ``n:A|B`` with no spaces, the
separators of comprehensions and of CASE with spaces, patterns glued (``(a)-[r:T]->(b)``), a
cached property as ``cache[n.key]``. This module parses that form. The plan reader
(:mod:`proxy.plan.reader`) decides from the tree which variables a predicate narrows and which
labels and types an expression names; it never matches text.

Guarantee: :func:`parse` either returns a tree that accounts for every character of the text,
or raises :class:`Unparsed` (and the reader then treats the operator as touching anything).
A construct this module does not know is never skipped over.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<name>`(?:[^`]|``)*`)
    | (?P<number>0x[0-9A-Fa-f]+|0o[0-7]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<param>\$(?:`(?:[^`]|``)*`|\w+))
    | (?P<cache>cache\w*\[)
    | (?P<word>[^\W\d]\w*)
    | (?P<symbol><-->|<--|-->|<-|->|--|\.\.|::|<>|!=|<=|>=|=~|\+=|[-+*/%^=<>()\[\]{},.:|&!$])
    """,
    re.VERBOSE | re.DOTALL,
)
# Words that end an expression wherever they appear (a variable may not be named like them
# unquoted, and Neo4j quotes names that need it).
_STOP = frozenset(
    {"AND", "OR", "XOR", "AS", "WHERE", "THEN", "ELSE", "END", "WHEN", "ASC", "DESC", "IN"}
)
_COMPARE = frozenset({"=", "<>", "!=", "<", ">", "<=", ">=", "=~"})
_QUANTIFIERS = frozenset({"all", "any", "none", "single"})
_SHORTEST = frozenset({"shortestPath", "allShortestPaths"})


class Unparsed(ValueError):
    """The text is not in the form this module knows."""


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str
    text: str
    glued: bool  # no whitespace before it


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
            if element.inner is not None:
                yield from element.inner.expressions()
        if self.where is not None:
            yield self.where

    def all_elements(self) -> Iterator[Element]:
        for element in self.elements:
            yield element
            if element.inner is not None:
                yield from element.inner.all_elements()


# ---- the parser -----------------------------------------------------------------------------


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    pos, glued = 0, True
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise Unparsed(f"unexpected character at {pos}")
        kind = match.lastgroup
        if kind == "space":
            glued = False
        elif kind == "cache":
            close = text.find("]", match.end())
            if close < 0:
                raise Unparsed("an unterminated cached property")
            toks.append(Tok("cache", text[match.end() : close], glued))
            match = re.compile(r"\]").match(text, close)
            assert match is not None
            glued = True
        else:
            toks.append(Tok(kind, match.group(0), glued))
            glued = True
        pos = match.end()
    return toks


def name_of(tok: Tok) -> str:
    """A name token's name (backticks removed)."""
    if tok.kind == "name":
        return tok.text[1:-1].replace("``", "`")
    return tok.text


class Parser:
    """A recursive-descent parser over one ``Details`` text; see the module docstring."""

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
        if tok.kind == "word" and tok.text.upper() in _STOP:
            raise Unparsed(f"a keyword where a variable belongs at token {self.i}")
        self.i += 1
        return name_of(tok)

    # -- expressions, loosest binding first
    def expression(self) -> Expr:
        return self._binary(("OR",), self._xor)

    def _xor(self) -> Expr:
        return self._binary(("XOR",), self._and)

    def _and(self) -> Expr:
        return self._binary(("AND",), self._not)

    def _binary(self, words: tuple[str, ...], lower: object) -> Expr:
        assert callable(lower)
        parts = [lower()]
        while self.at_word(*words):
            self.i += 1
            parts.append(lower())
        return parts[0] if len(parts) == 1 else Expr(words[0].lower(), args=tuple(parts))

    def _not(self) -> Expr:
        if self.at_word("NOT"):
            self.i += 1
            return Expr("not", args=(self._not(),))
        return self._comparison()

    def _comparison(self) -> Expr:
        left = self._additive()
        while True:
            tok = self.peek()
            if tok is not None and tok.kind == "symbol" and tok.text in _COMPARE:
                self.i += 1
                left = Expr("op", tok.text, (left, self._additive()))
            elif self.at_word("STARTS", "ENDS") and self.at_word("WITH", offset=1):
                self.i += 2
                left = Expr("op", "with", (left, self._additive()))
            elif self.at_word("CONTAINS", "IN"):
                self.i += 1
                left = Expr("op", "in", (left, self._additive()))
            elif self.at_word("IS"):
                self.i += 1
                left = Expr("is", self._is_suffix(), (left,))
            else:
                return left

    def _is_suffix(self) -> str:
        """What follows IS: [NOT] NULL, [NOT] :: TYPE, [NOT] TYPED TYPE, [NOT] NORMALIZED."""
        words: list[str] = []
        if self.at_word("NOT"):
            self.i += 1
        if self.at_word("NULL", "NORMALIZED"):
            self.i += 1
            return "null"
        if self.at("::") or self.at_word("TYPED"):
            self.i += 1
            depth = 0
            while (tok := self.peek()) is not None:
                if tok.kind == "word" and depth == 0 and tok.text.upper() in _STOP:
                    break
                if tok.kind == "symbol" and tok.text not in ("<", ">", "|", ","):
                    break
                if tok.kind == "symbol" and tok.text == "," and depth == 0:
                    break
                depth += {"<": 1, ">": -1}.get(tok.text, 0) if tok.kind == "symbol" else 0
                words.append(tok.text)
                self.i += 1
            if not words or depth:
                raise Unparsed("a type predicate without a type")
            return "type"
        raise Unparsed(f"an IS predicate of unknown form at token {self.i}")

    def _additive(self) -> Expr:
        left = self._multiplicative()
        while self.at("+", "-"):
            op = self.take("+", "-").text
            left = Expr("op", op, (left, self._multiplicative()))
        return left

    def _multiplicative(self) -> Expr:
        left = self._power()
        while self.at("*", "/", "%"):
            op = self.take("*", "/", "%").text
            left = Expr("op", op, (left, self._power()))
        return left

    def _power(self) -> Expr:
        left = self._unary()
        while self.at("^"):
            self.i += 1
            left = Expr("op", "^", (left, self._unary()))
        return left

    def postfix_expression(self) -> Expr:
        """An atom with its property accesses, indexes and label tests (a SET target)."""
        return self._postfix(self._atom())

    def _unary(self) -> Expr:
        if self.at("-", "+"):
            self.i += 1
            return Expr("op", "neg", (self._unary(),))
        return self._postfix(self._atom())

    def _postfix(self, subject: Expr) -> Expr:
        while (tok := self.peek()) is not None and tok.glued:
            if tok.text == "." and tok.kind == "symbol":
                self.i += 1
                subject = Expr("property", self.name(), (subject,))
            elif tok.text == "[" and tok.kind == "symbol":
                self.i += 1
                parts = []
                if not self.at("..", "]"):
                    parts.append(self.expression())
                if self.at(".."):
                    self.i += 1
                    if not self.at("]"):
                        parts.append(self.expression())
                self.take("]")
                subject = Expr("index", args=(subject, *parts))
            elif tok.text == ":" and tok.kind == "symbol":
                self.i += 1
                subject = Expr("label", args=(subject,), label=self.label_expression())
            elif tok.text == "{" and tok.kind == "symbol" and subject.kind == "var":
                subject = Expr("map_projection", subject.text, (subject, *self._map_items()))
            else:
                break
        return subject

    def _atom(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise Unparsed("an expression ends too early")
        if tok.kind in ("string", "number"):
            self.i += 1
            return Expr("literal", tok.text)
        if tok.kind == "param":
            self.i += 1
            return Expr("param", tok.text)
        if tok.kind == "cache":
            self.i += 1
            return Expr("cached", tok.text)
        if tok.kind == "symbol":
            if tok.text == "(":
                if self._pattern_ahead():
                    return Expr("pattern", pattern=self.pattern())
                self.i += 1
                inner = self.expression()
                self.take(")")
                return inner
            if tok.text == "[":
                return self._list()
            if tok.text == "{":
                return Expr("map", args=tuple(self._map_items()))
            if tok.text == "*":  # count(*)
                self.i += 1
                return Expr("star")
            raise Unparsed(f"unexpected {tok.text!r} at token {self.i}")
        word = tok.text.upper() if tok.kind == "word" else ""
        if word in ("TRUE", "FALSE", "NULL", "NAN", "INF", "INFINITY"):
            self.i += 1
            return Expr("literal", word)
        if word == "CASE":
            return self._case()
        if word in ("EXISTS", "COUNT", "COLLECT") and self.at("{", offset=1):
            raise Unparsed("a subquery expression printed inline")
        if tok.kind == "word" and self._call_ahead():
            return self._call()
        return Expr("var", self.variable())

    def _call_ahead(self) -> bool:
        j = self.i
        while (
            j + 2 < len(self.toks)
            and self.toks[j + 1].text == "."
            and self.toks[j + 2].kind in ("word", "name")
            and self.toks[j + 1].glued
        ):
            j += 2
        nxt = self.toks[j + 1] if j + 1 < len(self.toks) else None
        return nxt is not None and nxt.text == "(" and nxt.glued

    def _call(self) -> Expr:
        parts = [self.name()]
        while self.at("."):
            self.i += 1
            parts.append(self.name())
        name = ".".join(parts)
        self.take("(")
        if name in _QUANTIFIERS and not self.at(")"):
            return self._quantifier(name)
        if name == "reduce":
            return self._reduce()
        if name in _SHORTEST:
            pattern = self.pattern(function=name)
            self.take(")")
            return Expr("pattern", pattern=pattern)
        args: list[Expr] = []
        if self.at_word("DISTINCT"):
            self.i += 1
        while not self.at(")"):
            args.append(self.expression())
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return Expr("call", name, tuple(args))

    def _quantifier(self, name: str) -> Expr:
        var = self.variable()
        self.take_word("IN")
        source = self.expression()
        where = Expr("literal", "TRUE")
        if self.at_word("WHERE"):
            self.i += 1
            where = self.expression()
        self.take(")")
        return Expr("quantifier", f"{name}:{var}", (source, where))

    def _reduce(self) -> Expr:
        acc = self.variable()
        self.take("=")
        init = self.expression()
        self.take(",")
        var = self.variable()
        self.take_word("IN")
        source = self.expression()
        self.take("|")
        body = self.expression()
        self.take(")")
        return Expr("reduce", f"{acc}:{var}", (init, source, body))

    def _case(self) -> Expr:
        self.take_word("CASE")
        args: list[Expr] = []
        if not self.at_word("WHEN"):
            args.append(self.expression())
        while self.at_word("WHEN"):
            self.i += 1
            args.append(self.expression())
            self.take_word("THEN")
            args.append(self.expression())
        if self.at_word("ELSE"):
            self.i += 1
            args.append(self.expression())
        self.take_word("END")
        return Expr("case", args=tuple(args))

    def _list(self) -> Expr:
        self.take("[")
        if self.at("]"):
            self.i += 1
            return Expr("list")
        if self._pattern_ahead() or (self._path_assignment_ahead()):
            pattern = self.pattern()
            parts: list[Expr] = []
            if self.at("|"):
                self.i += 1
                parts.append(self.expression())
            self.take("]")
            return Expr("pattern_comprehension", args=tuple(parts), pattern=pattern)
        tok, nxt = self.peek(), self.peek(1)
        if (
            tok is not None
            and tok.kind in ("word", "name")
            and nxt is not None
            and nxt.kind == "word"
            and nxt.text.upper() == "IN"
        ):
            var = self.variable()
            self.i += 1
            source = self.expression()
            where = projection = None
            if self.at_word("WHERE"):
                self.i += 1
                where = self.expression()
            if self.at("|"):
                self.i += 1
                projection = self.expression()
            self.take("]")
            parts = [source, where or Expr("literal", "TRUE"), projection or Expr("var", var)]
            return Expr("comprehension", var, tuple(parts))
        items = [self.expression()]
        while self.at(","):
            self.i += 1
            items.append(self.expression())
        self.take("]")
        return Expr("list", args=tuple(items))

    def _map_items(self) -> list[Expr]:
        self.take("{")
        items: list[Expr] = []
        while not self.at("}"):
            if self.at("."):  # map projection: .key or .*
                self.i += 1
                if self.at("*"):
                    self.i += 1
                    items.append(Expr("all_properties"))
                else:
                    items.append(Expr("key", self.name()))
            else:
                key = self.name()
                if self.at(":"):
                    self.i += 1
                    items.append(Expr("entry", key, (self.expression(),)))
                else:  # a variable selector in a map projection
                    items.append(Expr("var", key))
            if not self.at("}"):
                self.take(",")
        self.take("}")
        return items

    # -- label expressions
    def label_expression(self) -> LabelExpr:
        return self._label_or()

    def _label_or(self) -> LabelExpr:
        parts = [self._label_and()]
        while self._glued_symbol("|"):
            self.i += 1
            parts.append(self._label_and())
        return parts[0] if len(parts) == 1 else LabelExpr("or", parts=tuple(parts))

    def _label_and(self) -> LabelExpr:
        parts = [self._label_not()]
        while self._glued_symbol("&") or self._glued_symbol(":"):
            self.i += 1
            parts.append(self._label_not())
        return parts[0] if len(parts) == 1 else LabelExpr("and", parts=tuple(parts))

    def _glued_symbol(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "symbol" and tok.text == text and tok.glued

    def _label_not(self) -> LabelExpr:
        if self.at("!"):
            self.i += 1
            return LabelExpr("not", parts=(self._label_not(),))
        if self.at("%"):
            self.i += 1
            return LabelExpr("any")
        if self.at("("):
            self.i += 1
            inner = self._label_or()
            self.take(")")
            return inner
        if self.at("$"):
            self.i += 1
            if self.at_word("ANY", "ALL"):
                self.i += 1
            self.take("(")
            self.expression()
            self.take(")")
            return LabelExpr("dynamic")
        tok = self.peek()
        if tok is not None and tok.kind == "param" and tok.text.upper() in ("$ANY", "$ALL"):
            self.i += 1  # $any(...) and $all(...) tokenise as a parameter and a bracket
            self.take("(")
            self.expression()
            self.take(")")
            return LabelExpr("dynamic")
        return LabelExpr("name", self.name())

    # -- patterns
    def _pattern_ahead(self) -> bool:
        """Whether the ``(`` here opens a node pattern rather than a parenthesised expression:
        a node pattern is followed, glued, by a relationship, or is ``()``/``(v:L ...)``."""
        if not self.at("("):
            return False
        depth, j = 0, self.i
        while j < len(self.toks):
            tok = self.toks[j]
            if tok.kind == "symbol" and tok.text in "([{":
                depth += 1
            elif tok.kind == "symbol" and tok.text in ")]}":
                depth -= 1
                if depth == 0:
                    nxt = self.toks[j + 1] if j + 1 < len(self.toks) else None
                    return (
                        nxt is not None
                        and nxt.glued
                        and nxt.kind == "symbol"
                        and nxt.text in ("-", "<-", "--", "-->", "<--", "<-->", "->")
                    )
            j += 1
        return False

    def _path_assignment_ahead(self) -> bool:
        return self.at("=", offset=1) and self.at("(", offset=2)

    def pattern(self, function: str = "") -> Pattern:
        """``[p = ](a)-[r]->(b)...`` or ``(a) ((x)-[r]-(y)){1, 3} (b)`` (a quantified path)."""
        path_var = ""
        if self._path_assignment_ahead():
            path_var = self.variable()
            self.take("=")
        if not function and self.at_word("shortestPath", "allShortestPaths"):
            function = self.name()
            self.take("(")
            inner = self.pattern(function=function)
            self.take(")")
            return Pattern(inner.elements, path_var, inner.where, function)
        elements: list[Element] = [self._node_or_group()]
        while True:
            if self.at("-", "<-", "--", "-->", "<--", "<-->") and self.peek() is not None:
                elements.append(self._relationship())
                elements.append(self._node_or_group())
            elif self.at("(") and not (tok := self.peek()) is None and not tok.glued:
                elements.append(self._node_or_group())  # juxtaposed: (a) ((...)){1,3} (b)
            else:
                break
        where = None
        if self.at_word("WHERE"):
            self.i += 1
            where = self.expression()
        return Pattern(tuple(elements), path_var, where, function)

    def _node_or_group(self) -> Element:
        self.take("(")
        if self.at("("):  # a parenthesised path, quantified: ((a)-[r]->(b)){1, 3}
            inner = self.pattern()
            self.take(")")
            low, high = self._quantifier_bounds()
            return Element("group", inner=inner, min_hops=low, max_hops=high, var_length=True)
        var = label = props = where = None
        tok = self.peek()
        if tok is not None and tok.kind in ("word", "name") and not self.at_word("WHERE"):
            var = self.variable()
        if self.at(":"):
            self.i += 1
            label = self.label_expression()
        if self.at("{"):
            props = Expr("map", args=tuple(self._map_items()))
        elif (tok := self.peek()) is not None and tok.kind == "param":
            self.i += 1
            props = Expr("param", tok.text)
        if self.at_word("WHERE"):
            self.i += 1
            where = self.expression()
        self.take(")")
        return Element("node", var or "", label, props, where)

    def _quantifier_bounds(self) -> tuple[int | None, int | None]:
        if self.at("+"):
            self.i += 1
            return 1, None
        if self.at("*"):
            self.i += 1
            return 0, None
        self.take("{")
        low = high = None
        if (tok := self.peek()) is not None and tok.kind == "number":
            low = int(tok.text)
            self.i += 1
        if self.at(","):
            self.i += 1
            if (tok := self.peek()) is not None and tok.kind == "number":
                high = int(tok.text)
                self.i += 1
        else:
            high = low
        self.take("}")
        return low, high

    def _relationship(self) -> Element:
        start = self.take("-", "<-", "--", "-->", "<--", "<-->").text
        if start in ("--", "-->", "<--", "<-->"):
            direction = {"--": "both", "-->": "out", "<--": "in", "<-->": "both"}[start]
            return Element("rel", direction=direction)
        self.take("[")
        var = label = props = where = None
        low: int | None = None
        high: int | None = None
        var_length = False
        tok = self.peek()
        if tok is not None and tok.kind in ("word", "name") and not self.at_word("WHERE"):
            var = self.variable()
        if self.at(":"):
            self.i += 1
            label = self.label_expression()
        if self.at("*"):
            self.i += 1
            var_length = True
            low, high = self._hops()
        if self.at("{"):
            props = Expr("map", args=tuple(self._map_items()))
        elif (tok := self.peek()) is not None and tok.kind == "param":
            self.i += 1
            props = Expr("param", tok.text)
        if self.at_word("WHERE"):
            self.i += 1
            where = self.expression()
        self.take("]")
        end = self.take("-", "->").text
        way = {("-", "-"): "both", ("-", "->"): "out", ("<-", "-"): "in"}.get((start, end))
        if way is None:
            raise Unparsed("a relationship pointing both ways")
        return Element("rel", var or "", label, props, where, way, var_length, low, high)

    def _hops(self) -> tuple[int | None, int | None]:
        """``*``, ``*2``, ``*1..``, ``*..3``, ``*1..3``: (min, max), max None when unbounded."""
        low = high = None
        if (tok := self.peek()) is not None and tok.kind == "number" and tok.glued:
            low = int(tok.text)
            self.i += 1
        if self.at(".."):
            self.i += 1
            if (tok := self.peek()) is not None and tok.kind == "number" and tok.glued:
                high = int(tok.text)
                self.i += 1
            return low, high
        return low, low  # `*` alone is (None, None): any length; `*2` is exactly 2


def parse(text: str) -> Expr:
    """One whole expression."""
    parser = Parser(text)
    expr = parser.expression()
    parser.end()
    return expr


def conjuncts(expr: Expr) -> list[Expr]:
    """The top-level AND-ed parts of a predicate."""
    if expr.kind == "and":
        return [part for arg in expr.args for part in conjuncts(arg)]
    return [expr]
