"""Patterns in a plan's ``Details``: ``[p = ](a)-[r:T*1..3 {k: v} WHERE x]->(b:L)``, quantified
groups ``((a)-[r]->(b)){1, 3}``, juxtaposed parts ``(a) ((x)--(y)){1, } (b)`` and shortest-path
wrappers, as Neo4j 5.26 prints them."""

from __future__ import annotations

from proxy.plan.syntax import Cursor, Element, Expr, LabelExpr, Pattern, Unparsed


class PatternParser(Cursor):
    """The pattern part of the parser."""

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
            elif self.at("(") and (tok := self.peek()) is not None and not tok.glued:
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
            low, high = self.quantifier_bounds()
            return Element("group", inner=inner, min_hops=low, max_hops=high, var_length=True)
        var, label = self._name_and_label()
        props, where = self._properties_and_where()
        self.take(")")
        return Element("node", var or "", label, props, where)

    def _name_and_label(self) -> tuple[str | None, LabelExpr | None]:
        """The ``v:L`` that opens a node or relationship pattern, each part optional."""
        var = label = None
        tok = self.peek()
        if tok is not None and tok.kind in ("word", "name") and not self.at_word("WHERE"):
            var = self.variable()
        if self.at(":"):
            self.i += 1
            label = self.label_expression()
        return var, label

    def _properties_and_where(self) -> tuple[Expr | None, Expr | None]:
        """The ``{k: v}`` (or ``$map``) and ``WHERE p`` that close a node or relationship
        pattern, each optional."""
        props = where = None
        if self.at("{"):
            props = Expr("map", args=tuple(self.map_items()))
        elif (tok := self.peek()) is not None and tok.kind == "param":
            self.i += 1
            props = Expr("param", tok.text)
        if self.at_word("WHERE"):
            self.i += 1
            where = self.expression()
        return props, where

    def node_element(self) -> Element:
        """One node pattern, ``(v:L {k: v} WHERE p)``."""
        element = self._node_or_group()
        if element.kind != "node":
            raise Unparsed("a group where a node belongs")
        return element

    def quantifier_bounds(self) -> tuple[int | None, int | None]:
        """``{1, 3}``, ``{2}``, ``{1, }``, ``+``, ``*``: (min, max), max None when unbounded."""
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
        low: int | None = None
        high: int | None = None
        var_length = False
        var, label = self._name_and_label()
        if self.at("*"):
            self.i += 1
            var_length = True
            low, high = self._hops()
        props, where = self._properties_and_where()
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
