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

from collections.abc import Callable

from proxy.plan.patterns import PatternParser
from proxy.plan.syntax import STOP, Expr, LabelExpr, Unparsed, tokenize

_COMPARE = frozenset({"=", "<>", "!=", "<", ">", "<=", ">=", "=~"})
_QUANTIFIERS = frozenset({"all", "any", "none", "single"})
_SHORTEST = frozenset({"shortestPath", "allShortestPaths"})


class Parser(PatternParser):
    """A recursive-descent parser over one ``Details`` text; see the module docstring."""

    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0

    # -- expressions, loosest binding first
    def expression(self) -> Expr:
        return self._binary(("OR",), self._xor)

    def _xor(self) -> Expr:
        return self._binary(("XOR",), self._and)

    def _and(self) -> Expr:
        return self._binary(("AND",), self._not)

    def _binary(self, words: tuple[str, ...], lower: Callable[[], Expr]) -> Expr:
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
                op = self.take_any().text.lower()
                left = Expr("op", op, (left, self._additive()))
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
                if tok.kind == "word" and depth == 0 and tok.text.upper() in STOP:
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
                key = self.peek()
                if key is not None and key.kind == "param":  # n[$k], as MERGE and FOREACH print it
                    self.i += 1
                    subject = Expr("index", args=(subject, Expr("param", key.text)))
                else:
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
                subject = Expr("map_projection", subject.text, (subject, *self.map_items()))
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
                return Expr("map", args=tuple(self.map_items()))
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

    def map_items(self) -> list[Expr]:
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
            expression = self.expression()
            self.take(")")
            return LabelExpr("dynamic", expression=expression)
        tok = self.peek()
        if tok is not None and tok.kind == "param" and tok.text.upper() in ("$ANY", "$ALL"):
            self.i += 1  # $any(...) and $all(...) tokenise as a parameter and a bracket
            self.take("(")
            expression = self.expression()
            self.take(")")
            return LabelExpr("dynamic", expression=expression)
        return LabelExpr("name", self.name())


def parse(text: str) -> Expr:
    """One whole expression."""
    parser = Parser(text)
    expr = parser.expression()
    parser.end()
    return expr
