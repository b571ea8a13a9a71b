"""A hypothesis strategy for Cypher statements that try to reach past a label grant.

It draws from a grammar of read and write shapes: MATCH / OPTIONAL MATCH / WITH / UNWIND /
CALL {} (``CALL (x)``, ``CALL (*)``, an importing WITH, OPTIONAL CALL, a UNION inside) /
EXISTS {} / COUNT {} / COLLECT {} / pattern comprehensions (with WHERE) / quantified path
patterns (with WHERE) / shortest paths and path selectors / variable length; label and type
expressions with ``!``, ``|``, ``&``, ``%`` and dynamic labels and types (``$()``, ``$any()``,
``$all()``, from parameters and from other entities' values) in MATCH, CREATE, MERGE, SET and
REMOVE; dynamic keys; WHERE with NOT, OR, XOR and list predicates; SET, SET = and += (copying
one entity's properties to another), REMOVE, CREATE, MERGE ON CREATE / ON MATCH, DELETE,
DETACH DELETE, FOREACH; UNION and UNION ALL; CYPHER options; and statements no test grant may
run (procedures, LOAD CSV), which must be refused. Variables are tracked by kind, so most
statements are valid; labels and types lean towards the granted ones, so that many statements
are allowed and the oracles have something to check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

NODE_LABELS = ("Person", "Person", "Person", "Movie", "Movie", "Secret", "Account", "Ghost")
REL_TYPES = ("ACTED_IN", "ACTED_IN", "ACTED_IN", "DIRECTED", "OWNS", "KNOWS")
GRANTED_NODE_LABELS = ("Person", "Movie")
GRANTED_REL_TYPES = ("ACTED_IN", "DIRECTED")
NODE_PROPS = ("uid", "name", "born", "canary")
REL_PROPS = ("since", "canary")


@dataclass(frozen=True)
class Statement:
    text: str
    parameters: dict[str, Any]
    writes: bool
    refused: bool = False  # no test grant may run it (a procedure, LOAD CSV)


@dataclass
class Scope:
    nodes: list[str] = field(default_factory=list)
    rels: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return self.nodes + self.rels + self.paths + self.values

    def copy(self) -> Scope:
        return Scope(list(self.nodes), list(self.rels), list(self.paths), list(self.values))


class Gen:
    """One statement's worth of draws."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.counter = 0
        self.params: dict[str, Any] = {}
        # Most statements stay close to the grants (so that many are allowed and checked); the
        # rest draw from everything.
        self.benign = self.chance(65)
        # Neo4j refuses variable-length relationships and quantified paths in one statement.
        self.repeats = self.pick(("var-length", "quantified"))
        self.selective = False  # the pattern just drawn has a SHORTEST/ANY selector
        self.path_labels: dict[str, str] = {}  # paths whose every node a WHERE should label

    # -- draw helpers
    def pick(self, items: Any) -> Any:
        """One of ``items`` (a draw hypothesis can shrink towards the first)."""
        return self.draw(st.sampled_from(list(items)))

    def chance(self, percent: int) -> bool:
        return self.draw(st.integers(0, 99)) < percent

    def number(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -- labels and types
    def label_expr(self, rel: bool = False, *, dynamic: bool = True, simple: bool = False) -> str:
        names = REL_TYPES if rel else NODE_LABELS
        if self.benign and self.chance(97):
            return str(self.pick(GRANTED_REL_TYPES if rel else GRANTED_NODE_LABELS))
        form = self.number(0, 19 if dynamic and not simple else 14)
        if simple:
            form = min(form, 13)
        a, b, c = (str(self.pick(names)) for _ in range(3))
        if form < 11:
            return a
        if form < 14:
            return f"{a}|{b}"
        if form < 15:
            return f"{a}&{b}"
        if form < 16:
            return f"!{a}"
        if form < 17:
            return "%"
        if form < 18:
            return f"({a}|{b})&!{c}"
        self.params["dyn"] = self.pick(names)
        return "$($dyn)" if form == 18 else self.pick(("$any($dyn)", "$all($dyn)"))

    # -- patterns
    def node(self, scope: Scope, *, new: bool = True, reuse: bool = True) -> str:
        if reuse and scope.nodes and (not new or self.chance(35)):
            var = self.pick(scope.nodes)
            return f"({var}:{self.label_expr()})" if self.chance(20) else f"({var})"
        var = self.fresh("n") if self.chance(75) else ""
        inner = var
        if self.benign or self.chance(80):
            inner += f":{self.label_expr()}"
        if self.chance(12):
            inner += f" {{uid: {self.number(1, 12)}}}"
        if var and self.chance(8):
            inner += f" WHERE {var}.born > {self.number(1950, 1965)}"
        if var:
            scope.nodes.append(var)
        return f"({inner})"

    def rel(self, scope: Scope, *, var_length_ok: bool = True) -> str:
        var = self.fresh("r") if self.chance(50) else ""
        inner = var
        length = ""
        if var_length_ok and self.repeats == "var-length" and self.chance(15):
            length = self.pick(("*", "*1..2", "*2", "*..3", "*0..2", "*1..5"))
        if self.benign or self.chance(85):
            # Variable-length relationships take only names and |.
            inner += f":{self.label_expr(rel=True, dynamic=not length, simple=bool(length))}"
        inner += length
        if self.chance(8):
            inner += f" {{since: {self.number(2000, 2030)}}}"
        elif var and not length and self.chance(8):
            inner += f" WHERE {var}.since > {self.number(2000, 2030)}"
        if var:
            (scope.values if length else scope.rels).append(var)
        left, right = self.pick((("-", "->"), ("<-", "-"), ("-", "-")))
        return f"{left}[{inner}]{right}"

    def path(self, scope: Scope) -> str:
        form = self.number(0, 19)
        tested = False  # a selective path whose every node is said in WHERE (refused: see below)
        if form in (14, 15) and self.repeats != "quantified":
            form = 0
        if form < 14:
            text = self.node(scope)
            for _ in range(self.number(0, 2) if form < 4 else self.number(1, 2)):
                text += self.rel(scope) + self.node(scope)
            if self.benign and "*" in text:  # say what every node along the way is
                name = self.fresh("p")
                scope.paths.append(name)
                self.path_labels[name] = self.pick(("Person|Movie", "Person", "Movie"))
                return f"{name} = {text}"
        elif form < 16 and self.chance(35):  # a quantified relationship, -[:T]-{m,n}
            # Planned as a VarLengthExpand with the path's WHERE in a Filter above it.
            start, end = self.node(scope), self.node(scope)
            types = self.label_expr(rel=True, simple=True)
            bounds = self.pick(("{1,3}", "{2}", "{0,2}", "{2,3}", "+"))
            text = f"{start}-[:{types}]-{bounds}{end}"
            if self.benign or self.chance(20):
                name = self.fresh("p")
                scope.paths.append(name)
                if self.benign:
                    self.path_labels[name] = self.pick(("Person|Movie", "Person", "Movie"))
                return f"{name} = {text}"
        elif form < 16:  # a quantified path pattern
            start, end = self.node(scope), self.node(scope)
            x, y = self.fresh("q"), self.fresh("q")
            labels = (self.label_expr(), self.label_expr(rel=True), self.label_expr())
            inner = f"({x}:{labels[0]})-[:{labels[1]}]->({y}:{labels[2]})"
            if not self.benign and self.chance(30):
                inner = f"({x})-[:{self.label_expr(rel=True)}]-({y})"
            if self.chance(20):  # a predicate inside the repetition, on every step
                inner += f" WHERE {y}.born > {x}.born OR {y}.canary IS NULL"
            bounds = self.pick(("{1,3}", "{2}", "+", "{1,}", "{0,2}"))
            scope.values += [x, y]
            text = f"{start} ({inner}){bounds} {end}"
        elif form < 18 and self.repeats == "var-length":
            a, b = self.node(scope), self.node(scope, new=True, reuse=False)
            kind = self.pick(("shortestPath", "allShortestPaths"))
            types = self.label_expr(rel=True, simple=True)
            text = f"{kind}({a}-[:{types}*..{self.number(1, 6)}]-{b})"
        elif form < 18:
            return self.path(scope) if self.chance(50) else self.node(scope)
        else:
            selector = self.pick(
                ("SHORTEST 1", "ALL SHORTEST", "ANY", "SHORTEST 2", "SHORTEST 2 GROUPS", "ANY 2")
            )
            a, b = self.node(scope), self.node(scope, new=True, reuse=False)
            hops = self.number(1, 6)
            types = self.label_expr(rel=True, simple=True)
            # Neo4j tests a WHERE on a selective path after it chose the shortest: refused.
            if self.benign and self.chance(25):
                text, tested = f"{selector} {a}-[:{types}]-{{1,{hops}}}{b}", True
            elif self.benign:  # say what every node along the way is
                inner = self.pick(("Person|Movie", "Person", "Movie"))
                step = f"((:{inner})-[:{types}]-(:{inner}))"
                text = f"{selector} {a} {step}{{1,{hops}}} {b}"
            else:
                text = f"{selector} {a}-[:{types}]-{{1,{hops}}}{b}"
            self.selective = True
        if form >= 16 or self.chance(20):
            name = self.fresh("p")
            scope.paths.append(name)
            if self.benign and (16 <= form < 18 or (form >= 18 and tested)):
                self.path_labels[name] = self.pick(("Person|Movie", "Person", "Movie"))
            return f"{name} = {text}"
        return text

    # -- predicates and expressions
    def literal(self, prop: str) -> str:
        if prop in ("name", "canary"):
            return repr(self.pick(("n1", "n5", "x", "CANARY-n5")))
        if prop == "born":
            return str(self.number(1950, 1965))
        if prop == "since":
            return str(self.number(2000, 2040))
        return str(self.number(0, 14))

    def predicate(self, scope: Scope, depth: int = 0) -> str:
        nodes, rels, paths = scope.nodes, scope.rels, scope.paths
        if depth > 3 or not (nodes or rels):
            return "true"
        form = self.number(0, 29 if depth < 2 else 15)
        if form < 5 and (nodes or rels):
            var = self.pick(nodes + rels)
            return f"{var}:{self.label_expr(rel=var in rels, dynamic=False)}"
        if form < 9 and (nodes or rels):
            var = self.pick(nodes + rels)
            prop = self.pick(NODE_PROPS if var in nodes else REL_PROPS)
            op = self.pick(("=", "<>", "<", ">", "STARTS WITH" if prop == "name" else "="))
            return f"{var}.{prop} {op} {self.literal(prop)}"
        if form < 10 and nodes:
            return (
                f"{self.pick(nodes)}.{self.pick(NODE_PROPS)} IS {self.pick(('NULL', 'NOT NULL'))}"
            )
        if form < 12 and nodes:
            var = self.pick(nodes)
            inner = scope.copy()
            text = f"({var}){self.rel(inner, var_length_ok=False)}{self.node(inner)}"
            if self.chance(40):
                return f"EXISTS {{ MATCH {text} WHERE {self.predicate(inner, depth + 2)} }}"
            return f"EXISTS {{ {text} }}" if self.chance(50) else f"COUNT {{ {text} }} > 0"
        if form < 13 and paths:
            source = self.pick(("nodes", "relationships"))
            quantifier = self.pick(("all", "any", "none", "single"))
            x = self.fresh("x")
            if source == "nodes":
                test = f"{x}:{self.label_expr(dynamic=False)}"
            else:
                rel_test = f"{x}:{self.label_expr(rel=True, dynamic=False)}"
                test = self.pick((f"type({x}) = 'ACTED_IN'", rel_test))
            return f"{quantifier}({x} IN {source}({self.pick(paths)}) WHERE {test})"
        if form < 14 and nodes:
            return f"{self.pick(('Secret', 'Person', 'Movie'))!r} IN labels({self.pick(nodes)})"
        if form < 15 and rels:
            return f"type({self.pick(rels)}) = {self.pick(REL_TYPES)!r}"
        if form < 16 and nodes and self.chance(50):
            var = self.pick(nodes)
            rel = self.label_expr(rel=True, dynamic=False)
            return f"({var})-[:{rel}]-(:{self.label_expr(dynamic=False)})"
        if form < 16 and nodes:  # a list predicate over what a pattern comprehension reaches
            var, x = self.pick(nodes), self.fresh("x")
            quantifier = self.pick(("all", "any", "none", "single"))
            rel = self.label_expr(rel=True, dynamic=False)
            reached = self.pick(("(z)", f"(z:{self.label_expr(dynamic=False)})"))
            test = self.pick((f"{x}:{self.label_expr(dynamic=False)}", f"{x}.born > 1955"))
            return f"{quantifier}({x} IN [({var})-[:{rel}]-{reached} | z] WHERE {test})"
        if form < 20:
            return f"NOT ({self.predicate(scope, depth + 1)})"
        if form < 24:
            return f"({self.predicate(scope, depth + 1)} OR {self.predicate(scope, depth + 1)})"
        if form < 26:
            return f"({self.predicate(scope, depth + 1)} XOR {self.predicate(scope, depth + 1)})"
        if form < 30 and (nodes or rels):
            return f"{self.predicate(scope, depth + 1)} AND {self.predicate(scope, depth + 1)}"
        return "true"

    def value(self, scope: Scope) -> str:
        """A non-aggregating expression over the scope."""
        nodes, rels, paths = scope.nodes, scope.rels, scope.paths
        self.params.setdefault("k", self.pick(NODE_PROPS))
        choices: list[str] = [*scope.values, "1"]
        for var in nodes:
            prop = self.pick(NODE_PROPS)
            choices += [var, f"{var}.{prop}", f"properties({var})", f"labels({var})"]
            choices += [f"{var}{{.*}}", f"[({var})-->(z) | z.name]", f"COUNT {{ ({var})--() }}"]
            choices += [f"CASE WHEN {var}:Secret THEN {var}.canary ELSE {var}.name END"]
            choices += [f"[({var})-[:ACTED_IN]->(z:Movie) | z.canary]", f"elementId({var})"]
            # Dynamic property access, keys, and a map projection with a nested list of maps.
            choices += [f"{var}[$k]", f"keys({var})", f"{var}[{var}.name]"]
            choices += [f"{var}{{.name, k: [({var})-[:ACTED_IN]-(z:Movie|Person) | z{{.*}}]}}"]
            # Subqueries and lists that carry what they reach out as values.
            rel, label = self.label_expr(rel=True), self.label_expr()
            # Neo4j takes dynamic labels in clauses, not in expressions: these stay static.
            srel = self.label_expr(rel=True, dynamic=False)
            slabel = self.label_expr(dynamic=False)
            choices += [
                f"COLLECT {{ MATCH ({var})-[:{rel}]-(z:{label}) RETURN z.canary }}",
                f"COLLECT {{ MATCH ({var})-[y:{rel}]-(z) WHERE z:{label} RETURN y{{.*}} }}",
                f"COUNT {{ MATCH ({var})-[:{rel}]-(z) WHERE z.canary IS NOT NULL }}",
                f"EXISTS {{ MATCH ({var})-[:{rel}]-(z:{label}) WHERE z.born > 1955 }}",
                f"[({var})-[:{srel}]-(z) WHERE z:{slabel} | properties(z)]",
                f"head([({var})-[:{srel}]-(z) | z])",
                f"[x IN keys({var}) | {var}[x]]",
                f"{{a: {var}, b: labels({var})[0]}}",
                f"coalesce({var}.canary, {var}.name)",
                f"size(labels({var}))",
            ]
            # Names, and entities carried out in maps, lists and CASE: what a caller learns of
            # labels, types and keys (the name oracle) as much as of values.
            other = self.pick(nodes + rels)
            test = self.predicate(scope, depth=3) if self.chance(50) else f"{var}.uid > 3"
            choices += [
                f"{var}{{.name, o: {other}.name}}",
                f"{var}{{.*, {other}}}",
                f"{var}{{.name, .canary, t: labels({var})}}",
                f"CASE WHEN {test} THEN {var} ELSE {other} END",
                f"CASE WHEN {var}:{self.label_expr(dynamic=False)} THEN labels({var}) END",
                f"[({var})-[y:{srel}]-(z:{slabel}) | [type(y), labels(z), keys(z)]]",
                f"[({var})-[y:{srel}]-(z) WHERE z:{slabel} | y]",
                f"reduce(s = [], x IN [({var})-[:{srel}]-(z:{slabel}) | z] | s + labels(x))",
                f"size([({var})-[:{srel}]-(z:{slabel}) WHERE z.born > 1955 | z])",
                f"keys(properties({var}))",
            ]
        for var in rels:
            choices += [var, f"type({var})", f"{var}.{self.pick(REL_PROPS)}", f"startNode({var})"]
            choices += [f"endNode({var})", f"properties({var})"]
            choices += [f"{var}{{.*}}", f"{var}[$k]", f"keys({var})", f"properties(endNode({var}))"]
            choices += [f"labels(startNode({var}))", f"[type({var}), keys({var})]"]
            choices += [f"{var}{{.since, s: startNode({var}), e: endNode({var}).name}}"]
        for var in paths:
            choices += [var, f"nodes({var})", f"relationships({var})", f"length({var})"]
            choices += [f"[x IN nodes({var}) | x.canary]"]
            choices += [f"reduce(s = '', x IN nodes({var}) | s + coalesce(x.canary, x.name))"]
            choices += [f"[x IN relationships({var}) | [startNode(x).canary, keys(endNode(x))]]"]
            choices += [f"last(nodes({var}))", f"[x IN tail(nodes({var})) | x{{.*}}]"]
            choices += [f"[x IN nodes({var}) WHERE x:{self.label_expr(dynamic=False)} | x]"]
            choices += [
                f"[x IN nodes({var}) | labels(x)]",
                f"[x IN relationships({var}) | type(x)]",
            ]
            choices += [f"[x IN relationships({var}) | x{{.*, s: startNode(x)}}]"]
        return str(self.pick(choices))

    def items(self, scope: Scope, *, aggregate: bool) -> tuple[str, list[str]]:
        """``expr AS c1, ...`` and the new names."""
        parts, names = [], []
        for _ in range(self.number(1, 3)):
            name = self.fresh("c")
            if aggregate and self.chance(40):
                inner = self.value(scope)
                expr = self.pick(
                    (
                        "count(*)",
                        f"count({inner})",
                        f"collect({inner})",
                        f"collect(DISTINCT {inner})",
                    )
                )
            else:
                expr = self.value(scope)
            parts.append(f"{expr} AS {name}")
            names.append(name)
        return ", ".join(parts), names

    # -- clauses
    def reading(self, scope: Scope) -> str:
        clauses = []
        for index in range(self.number(1, 3)):
            form = self.number(0, 10) if index else self.number(0, 5)
            if form < 4:
                optional = "OPTIONAL " if index and self.chance(30) else ""
                self.selective = False
                patterns = [self.path(scope)]
                if not self.selective and self.chance(30):
                    widened = scope.copy()
                    second = self.path(widened)
                    if not self.selective:  # a selective pattern stands alone in its MATCH
                        patterns.append(second)
                        scope.nodes[:], scope.rels[:] = widened.nodes, widened.rels
                        scope.paths[:], scope.values[:] = widened.paths, widened.values
                text = f"{optional}MATCH {', '.join(patterns)}"
                conditions = [
                    f"all(x IN nodes({path}) WHERE x:{labels})"
                    for path, labels in self.path_labels.items()
                    if path in text
                ]
                if self.chance(55):
                    conditions.append(self.predicate(scope))
                if conditions:
                    text += " WHERE " + " AND ".join(conditions)
                clauses.append(text)
            elif form < 5 and scope.nodes:
                var = self.pick(scope.nodes)
                inner = scope.copy()
                body = f"MATCH ({var}){self.rel(inner, var_length_ok=False)}{self.node(inner)}"
                new = [n for n in inner.nodes if n not in scope.nodes]
                if not new:
                    continue
                call = self.pick(
                    (
                        f"CALL ({var}) {{ {body} RETURN {new[0]} }}",
                        f"CALL {{ WITH {var} {body} RETURN {new[0]} }}",
                        f"CALL (*) {{ {body} RETURN {new[0]} }}",
                        f"OPTIONAL CALL ({var}) {{ {body} RETURN {new[0]} }}",
                        f"CALL ({var}) {{ {body} RETURN {new[0]} UNION "
                        f"MATCH ({var})-[:{self.label_expr(rel=True)}]-({new[0]}) "
                        f"RETURN {new[0]} }}",
                    )
                )
                clauses.append(call)
                scope.nodes.append(new[0])
            elif form < 6:
                inner = Scope()
                body = f"MATCH {self.path(inner)}"
                if not inner.nodes:
                    continue
                clauses.append(f"CALL () {{ {body} RETURN {inner.nodes[0]} LIMIT 3 }}")
                scope.nodes.append(inner.nodes[0])
            elif form < 8 and scope.names():
                clauses.append(self.with_clause(scope))
            elif form < 9 and scope.nodes:
                clauses.append(self.rematch(scope))
            else:
                var = self.fresh("u")
                if scope.nodes and self.chance(60):
                    rel = self.label_expr(rel=True, dynamic=False)
                    label = self.label_expr(dynamic=False)
                    sources = self.pick(
                        (
                            f"[{', '.join(scope.nodes)}]",
                            f"[{scope.nodes[0]}]",
                            f"[({scope.nodes[-1]})-[:{rel}]-(z:{label}) | z]",
                            f"[({scope.nodes[-1]})-[:{rel}]-(z) WHERE z:{label} | z]",
                        )
                    )
                    scope.nodes.append(var)
                elif scope.paths and self.chance(50):
                    sources = f"nodes({self.pick(scope.paths)})"
                    scope.nodes.append(var)
                else:
                    sources = "range(1, 2)"
                    scope.values.append(var)
                clauses.append(f"UNWIND {sources} AS {var}")
        return " ".join(clauses)

    def rematch(self, scope: Scope) -> str:
        """A node already bound, matched again under a label test: optional or not, alone or
        with a new relationship, the test inline or in WHERE (where a reader that narrows an
        optional match's arguments would go wrong)."""
        var = self.pick(scope.nodes)
        optional = "OPTIONAL " if self.chance(60) else ""
        label = self.label_expr(dynamic=False)
        if self.chance(50):
            return f"{optional}MATCH ({var}) WHERE {var}:{label}"
        if self.chance(40):
            return f"{optional}MATCH ({var}:{label})"
        rel = self.rel(scope, var_length_ok=False)
        other = self.node(scope, reuse=False)
        where = self.pick(
            (f"{var}:{label}", f"NOT {var}:{label}", f"{var}:{label} OR {var}.uid = 1")
        )
        return f"{optional}MATCH ({var}){rel}{other} WHERE {where}"

    def with_clause(self, scope: Scope) -> str:
        if self.chance(15):  # everything in scope goes on, filtered or ordered
            text = "WITH *"
            if scope.nodes and self.chance(40):
                text += f" ORDER BY {self.pick(scope.nodes)}.uid SKIP 1 LIMIT {self.number(1, 3)}"
            return text + (f" WHERE {self.predicate(scope)}" if self.chance(60) else "")
        kept = [v for v in scope.names() if self.chance(60)] or [self.pick(scope.names())]
        extra = ""
        if self.chance(25):
            name = self.fresh("c")
            extra = f", count(*) AS {name}"
        elif self.chance(15) and scope.nodes:
            name = self.fresh("c")
            extra = f", collect({self.pick(scope.nodes)}) AS {name}"
        distinct = "DISTINCT " if self.chance(10) else ""
        text = f"WITH {distinct}{', '.join(kept)}{extra}"
        old = scope.copy()
        scope.nodes[:] = [v for v in old.nodes if v in kept]
        scope.rels[:] = [v for v in old.rels if v in kept]
        scope.paths[:] = [v for v in old.paths if v in kept]
        scope.values[:] = [v for v in old.values if v in kept] + ([name] if extra else [])
        if scope.nodes and self.chance(15):
            text += f" ORDER BY {scope.nodes[0]}.uid LIMIT {self.number(1, 3)}"
        if self.chance(30) and scope.names():
            text += f" WHERE {self.predicate(scope)}"
        return text

    def writing(self, scope: Scope) -> str:
        nodes, rels, paths = scope.nodes, scope.rels, scope.paths
        label = self.label_expr()
        plain = self.pick(NODE_LABELS)
        uid = 100 + self.number(0, 50)
        forms: list[str] = [
            f"CREATE (w:{plain} {{uid: {uid}}})",
            f"MERGE (w:{plain} {{uid: {self.number(1, 12)}}}) ON MATCH SET w.seen = true",
        ]
        for var in nodes:
            forms += [f"SET {var}.name = 'changed'", f"SET {var}:{plain}", f"REMOVE {var}:{plain}"]
            forms += [
                f"REMOVE {var}.name",
                f"SET {var} += {{name: 'x'}}",
                f"SET {var} = {{uid: {uid}}}",
            ]
            forms += [
                f"DETACH DELETE {var}",
                f"DELETE {var}",
                f"FOREACH (x IN [{var}] | SET x.seen = true)",
            ]
            forms += [f"SET (CASE WHEN {var}.born > 1955 THEN {var} END).seen = true"]
            forms += [
                f"FOREACH (a IN [1] | FOREACH (b IN [{var}] | SET b.seen = true))",
                f"FOREACH (b IN [{var}] | FOREACH (c IN [1] | "
                f"MERGE (b)-[:{self.pick(REL_TYPES)}]->(w:{plain} {{uid: {uid}}})))",
                f"FOREACH (b IN [{var}] | DETACH DELETE b)",
                f"SET {var}:{plain}:{self.pick(NODE_LABELS)}",
                f"REMOVE {var}:{plain}:{self.pick(NODE_LABELS)}",
                f"MERGE (w:{plain} {{uid: {self.number(1, 12)}}}) ON CREATE SET w = {var} "
                f"ON MATCH SET w += {var}",
            ]
            forms += [f"CALL ({var}) {{ SET {var}.z = 1 }}", f"SET {var}:$($dyn)"]
            # A dynamic key from a variable named like a granted key: inside FOREACH's and
            # MERGE's details Neo4j prints n[seen] as n.seen.
            forms += [
                f"FOREACH (seen IN ['born'] | SET {var}[seen] = 1)",
                f"FOREACH (seen IN ['born'] | MERGE (w:{plain} {{uid: {self.number(1, 12)}}}) "
                f"ON MATCH SET w[seen] = 1)",
            ]
            forms += [f"CREATE ({var})-[:{self.pick(REL_TYPES)} {{since: 1}}]->(:{plain})"]
            forms += [f"MERGE ({var})-[:{self.pick(REL_TYPES)}]->(w:{plain})"]
            # Items on several entities, or of two kinds, print as SETs of their own.
            forms += [
                f"MERGE ({var})-[r:{self.pick(REL_TYPES)}]->(w:{plain}) "
                f"ON MATCH SET r.since = 3, {var}.seen = true, w:{plain}",
                f"MERGE (w:{plain} {{uid: {self.number(1, 12)}}}) "
                f"ON CREATE SET w.seen = true, {var}.seen = true",
                f"FOREACH (x IN [{var}] | CREATE (x)-[:{self.pick(REL_TYPES)}]->(:{plain}))",
            ]
            other = self.pick(nodes)
            forms += [f"CREATE ({var})-[:{self.pick(REL_TYPES)}]->({other})"]
            forms += [f"MERGE ({var})-[:{self.pick(REL_TYPES)}]->({other})"]
            self.params.setdefault("dyn", self.pick(NODE_LABELS))
            self.params.setdefault("dynt", self.pick(REL_TYPES))
            # Properties, labels and types copied from one entity to another, or named by
            # an expression (dynamic labels, types and keys).
            forms += [
                f"SET {var} = {other}",
                f"SET {var} += {other}",
                f"SET {var} = properties({other})",
                f"SET {var}.name = coalesce({other}.canary, {other}.name)",
                f"SET {var}.name = head(COLLECT {{ MATCH ({other})--(z) RETURN z.canary }})",
                f"SET {var}:$(labels({other}))",
                f"SET {var}:$({other}.name)",
                f"REMOVE {var}:$($dyn)",
                f"SET {var}[$k] = 1",
                f"REMOVE {var}[$k]",
                f"SET {var}[{other}.name] = 1",
                f"CREATE (w:$($dyn) {{uid: {uid}}})",
                f"MERGE (w:$($dyn) {{uid: {self.number(1, 12)}}}) ON CREATE SET w.seen = true "
                f"ON MATCH SET w.seen = false",
                f"CREATE ({var})-[:$($dynt)]->({other})",
                f"MERGE ({var})-[:$($dynt)]->(w:{plain})",
                f"CREATE (w:{plain}) SET w = properties({other})",
                f"CREATE (w:{plain} {{uid: {uid}, name: {other}.canary}})",
                f"FOREACH (x IN CASE WHEN {var}:Secret THEN [1] ELSE [] END | "
                f"SET {other}.seen = true)",
                f"CALL ({var}) {{ MATCH ({var})-[:{self.label_expr(rel=True)}]-(z) "
                f"SET z.seen = true }}",
                f"CALL {{ WITH {var} MATCH ({var})--(z:{self.label_expr()}) DETACH DELETE z }}",
            ]
        for var in rels:
            forms += [f"SET {var}.since = 1", f"DELETE {var}", f"SET {var} += {{since: 2}}"]
            forms += [f"SET {var} = endNode({var})", f"SET {var}[$k] = 2"]
            forms += [f"WITH startNode({var}) AS s, {var} MERGE (s)-[:$(type({var}))]->(w:{plain})"]
            if nodes:
                forms += [f"SET {self.pick(nodes)} += {var}", f"SET {var} += {self.pick(nodes)}"]
        for var in paths:
            forms += [f"FOREACH (x IN nodes({var}) | SET x.seen = true)", f"DELETE {var}"]
        del label
        return str(self.pick(forms))

    def attack(self, uses: str = "any") -> Statement:
        """Reach something the reader cannot vouch for, try to narrow it, then use it: the
        shape in which an unsound narrowing (an optional match, a negated or disjunctive test,
        a list predicate, an equality, a subquery) lets a read or a write through."""
        reach, has_r, has_a = self.pick(_REACHES)
        label = self.pick(GRANTED_NODE_LABELS) if self.chance(85) else self.pick(NODE_LABELS)
        other = self.pick(NODE_LABELS)
        narrow = self.pick(_NARROWINGS).format(L=label, X=other, a="a" if has_a else "v")
        usable = [
            text
            for text, needs_r, needs_a in _USES
            if (has_r or not needs_r)
            and (has_a or not needs_a)
            and (uses == "any" or text.startswith("RETURN") == (uses == "reads"))
        ]
        use = self.pick(usable).format(L=label)
        text = f"{reach} {narrow} {use}".replace("  ", " ")
        return Statement(text, {}, not use.startswith("RETURN"))

    def statement(self, uses: str = "any") -> Statement:
        if self.chance(55):
            return self.attack(uses)
        if uses != "writes" and self.chance(15):
            label = self.pick(GRANTED_NODE_LABELS)
            return Statement(self.pick(_HIDDEN_REACHES).format(L=label), {}, False)
        if self.chance(10):
            text = self.pick(_SHAPES).format(L=self.pick(GRANTED_NODE_LABELS))
            return Statement(text, {}, "SET" in text or "CREATE" in text or "MERGE" in text)
        prefix = self.pick(
            (
                "",
                "",
                "",
                "",
                "",
                "",
                "CYPHER runtime=slotted ",
                "CYPHER runtime=interpreted ",
                "CYPHER 5 ",
            )
        )
        if self.chance(3):
            return Statement(self.pick(_REFUSED), {"url": "file:///etc/passwd"}, True, True)
        scope = Scope()
        body = self.reading(scope)
        writes = self.chance(35)
        if writes:
            body += " " + self.writing(scope)
            if self.chance(30) and scope.names():
                items, _ = self.items(scope, aggregate=False)
                body += f" RETURN {items}"
            return Statement(prefix + body, dict(self.params), True)
        if self.chance(10):  # a UNION of two single-column reads
            alias = self.fresh("c")
            other = Scope()
            second = self.reading(other)
            left = self.value(scope)
            right = self.value(other) if other.names() else "1"
            union = self.pick(("UNION", "UNION ALL"))
            body = f"{body} RETURN {left} AS {alias} {union} {second} RETURN {right} AS {alias}"
            return Statement(prefix + body, dict(self.params), False)
        items, names = self.items(scope, aggregate=True)
        page = ""
        if self.chance(15):  # a page of the answer: ordered by every column, so never by chance
            page = (
                f" ORDER BY {', '.join(names)} SKIP {self.number(0, 2)} LIMIT {self.number(1, 3)}"
            )
        return Statement(prefix + f"{body} RETURN {items}{page}", dict(self.params), False)


# Statements no test grant may run: procedures (granted to none) and LOAD CSV (likewise).
_REFUSED = (
    "CALL db.labels()",
    "CALL db.labels() YIELD label RETURN label",
    "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType",
    "CALL db.propertyKeys()",
    "CALL db.schema.nodeTypeProperties()",
    "CALL db.schema.visualization()",
    "MATCH (p:Person) CALL db.labels() YIELD label RETURN p.name, label",
    "CALL dbms.components()",
    "CALL db.indexes()",
    "MATCH (p:Person) CALL db.create.setNodeVectorProperty(p, 'v', [1.0])",
    "LOAD CSV FROM $url AS row RETURN row",
    "LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row",
    "LOAD CSV WITH HEADERS FROM $url AS row MERGE (p:Person {uid: toInteger(row.uid)})",
    "MATCH (p:Person) LOAD CSV FROM 'file:///' + p.name AS row RETURN row",
)
# (text, binds r, binds a): ways to reach a node `v` that nothing proves a label of.
_REACHES: tuple[tuple[str, bool, bool], ...] = (
    ("MATCH (a:Person)-[r:ACTED_IN]->(v)", True, True),
    ("MATCH (a:Person)-[r:ACTED_IN]-(v)", True, True),
    # A scan hint keeps Neo4j from starting at v (an all-nodes scan the reader refuses), so
    # the narrowing below comes from another operator, above what v's rows already met.
    ("MATCH (a:Person)-[r:ACTED_IN]-(v) USING SCAN a:Person", True, True),
    ("MATCH (a:Person)<-[r:DIRECTED]-(v)", True, True),
    ("MATCH (a:Person)-[r]->(v)", True, True),
    ("MATCH (a:Movie) WITH a MATCH (a)-[r:ACTED_IN]-(v)", True, True),
    ("MATCH (v)", False, False),
    ("MATCH ()-[r:ACTED_IN]->(v)", True, False),
    ("MATCH (a:Person)-[r:ACTED_IN]->(m:Movie) WITH a, r, startNode(r) AS v", True, True),
    ("MATCH (a:Person)-[r:ACTED_IN]->(m) UNWIND [a, m] AS v", True, True),
    ("MATCH (a:Person)-[:ACTED_IN]->(m) WITH a, collect(m) AS ms UNWIND ms AS v", False, True),
    ("MATCH p = (a:Person)-[:ACTED_IN*1..2]-(b) UNWIND nodes(p) AS v", False, True),
    ("MATCH (a:Person) OPTIONAL MATCH (a)-[r:ACTED_IN]->(v)", True, True),
    ("MATCH (a:Person) OPTIONAL MATCH (a)-[r]-(v) WHERE 1 / (v.uid - 9) >= 0", True, True),
    ("MATCH (a:Person) OPTIONAL MATCH (a)-[r]-(v) WHERE NOT r.canary", True, True),
    ("MATCH (a:Person)-[r:ACTED_IN]->(v) WITH a, r, v", True, True),
    ("MATCH (a:Person) MATCH (v) WHERE (a)-[:ACTED_IN]-(v)", False, True),
    ("MATCH (a:Person) CALL (a) { MATCH (a)-[:ACTED_IN]-(v) RETURN v }", False, True),
    ("MATCH (a:Person)-[r:ACTED_IN]->(v) WITH * ORDER BY v.uid LIMIT 5", True, True),
    # Paths between labelled ends, through nodes nothing labels.
    ("MATCH (a:Person)-[:ACTED_IN*2]-(v:Person)", False, True),
    ("MATCH (a:Person)-[:ACTED_IN|DIRECTED*1..3]->(v:Movie)", False, True),
    ("MATCH p = shortestPath((a:Person)-[:ACTED_IN*..3]-(v:Person))", False, True),
    ("MATCH (a:Person) ((x)-[:ACTED_IN]-(y)){2} (v:Person)", False, True),
    ("MATCH (a:Person) ((x:Person)-[:ACTED_IN]-(y)){1,2} (v:Movie)", False, True),
    ("MATCH p = SHORTEST 1 (a:Person)-[:ACTED_IN]-{1,3}(v:Person)", False, True),
    ("MATCH (a:Person) MATCH (v:Person) WHERE EXISTS { (a)-[:ACTED_IN*2]-(v) }", False, True),
    # Either side of a union, an optional join, a merge.
    (
        "CALL () { MATCH (v:Person) RETURN v UNION MATCH (:Person)-[:ACTED_IN]->(v) RETURN v }",
        False,
        False,
    ),
    (
        "MATCH (a:Person) OPTIONAL MATCH (a)-[:ACTED_IN]->(m:Movie) WITH a, coalesce(m, a) AS v",
        False,
        True,
    ),
    ("MATCH (a:Person) MERGE (a)-[r:ACTED_IN]->(v)", True, True),
    (
        "MATCH (a:Person)-[r:ACTED_IN]->(m) WITH a, r, CASE WHEN a.uid > 1 THEN m ELSE a END AS v",
        True,
        True,
    ),
)
# Statements that reach an unlabelled node only inside a test, a count or a list, and return
# only what is granted: the reach itself must be refused.
_HIDDEN_REACHES = (
    "MATCH (a:Person) WHERE EXISTS {{ (a)-[:ACTED_IN]->() }} RETURN a.name AS x",
    "MATCH (a:Person) WHERE EXISTS {{ MATCH (a)-[:ACTED_IN]-(y) WHERE y.born > 1955 }}"
    " RETURN a.name AS x",
    "MATCH (a:Person) WHERE NOT EXISTS {{ (a)-[:ACTED_IN]->(:{L}) }} RETURN a.name AS x",
    "MATCH (a:Person) WHERE (a)-[:ACTED_IN]->() RETURN a.name AS x",
    "MATCH (a:Person) RETURN a.name AS x, COUNT {{ (a)-[:ACTED_IN]->() }} AS c",
    "MATCH (a:Person) RETURN a.name AS x, COUNT {{ (a)-[:ACTED_IN]->(:{L}) }} AS c",
    "MATCH (a:Person) RETURN a.name AS x, size([(a)-[:ACTED_IN]->(y) | y.name]) AS c",
    "MATCH (a:Person) RETURN a.name AS x, [(a)-[:ACTED_IN]->(y:{L}) | y.name] AS c",
    "MATCH (a:Person) CALL (a) {{ MATCH (a)-[:ACTED_IN]->(y) RETURN count(y) AS c }}"
    " RETURN a.name AS x, c",
    "MATCH (a:Person) OPTIONAL MATCH (a)-[:ACTED_IN]->(y) RETURN a.name AS x, count(y) AS c",
    "MATCH (a:Person) WHERE a.born > 1990 OR EXISTS {{ (a)-[:ACTED_IN]->() }} RETURN a.name AS x",
    "MATCH (a:Person) RETURN a.name AS x, EXISTS {{ (a)-[:ACTED_IN]->() }} AS c",
    "MATCH (a:Person) RETURN a.name AS x, CASE WHEN EXISTS {{ (a)--() }} THEN 1 ELSE 0 END AS c",
    "MATCH (a:Person) WITH a, COLLECT {{ MATCH (a)-[:ACTED_IN]->(y) RETURN y.name }} AS ys"
    " RETURN a.name AS x, size(ys) AS c",
    "MATCH (a:Person)-[:ACTED_IN]->(m:Movie) WHERE EXISTS {{ (m)<-[:ACTED_IN]-(y) WHERE y <> a }}"
    " RETURN a.name AS x",
    "MATCH (a:Person) RETURN a.name AS x, any(y IN [(a)-[:ACTED_IN]->(z) | z] WHERE y:{L}) AS c",
    "MATCH (a:Person) WITH a ORDER BY COUNT {{ (a)-[:ACTED_IN]->() }} DESC, a.uid"
    " RETURN a.name AS x LIMIT 2",
    "MATCH (a:Person) WHERE COUNT {{ (a)-[:DIRECTED]-() }} = 0 RETURN a.name AS x",
    "MATCH (a:Person), (b:Person) WHERE (a)-[:ACTED_IN]->()<-[:ACTED_IN]-(b)"
    " RETURN a.name AS x, b.name AS c",
)
# Whole statements in the shapes that found holes: names declared again (after WITH, in a
# subquery that does not import them), zero-hop paths, nodes created under a name in use,
# predicates hidden in index seeks and in anything named like Neo4j's cached properties.
_SHAPES = (
    "MATCH (p:Person)-[:ACTED_IN]->(m:{L}) WITH p, m.name AS t MATCH (p)-[:ACTED_IN]->(m) "
    "RETURN m.canary AS c",
    "MATCH (p:Person)-[r:ACTED_IN]->(m:Movie) WITH p, r.since AS t MATCH (p)-[r]->(x:Person) "
    "RETURN type(r) AS ty, r.canary AS c",
    "MATCH (p:Person)-[:ACTED_IN]->(m:Movie) CALL (p) {{ MATCH (p)-[r]->(m) "
    "RETURN type(r) AS t, m.canary AS c }} RETURN t, c",
    "MATCH (p:Person)-[:ACTED_IN]->(m:Movie) CALL (p) {{ OPTIONAL MATCH (p)-[:ACTED_IN]->(m) "
    "RETURN m.canary AS c }} RETURN c",
    "MATCH (m:Movie) CALL {{ MATCH (m:{L}) SET m.y = 1 RETURN 1 AS c LIMIT 1 }} SET m.pwned = 1",
    "MATCH (m:Movie) CALL {{ MATCH (m:{L}) RETURN m.uid AS c LIMIT 1 }} RETURN m.canary AS x, c",
    "MATCH p = (a:Movie)-[:ACTED_IN*0..1]->(b) WHERE all(r IN relationships(p) "
    "WHERE endNode(r):{L}) SET b.pwned = 1",
    "MATCH p = (a:Secret)-[:ACTED_IN*0..1]-(b) WHERE all(r IN relationships(p) "
    "WHERE startNode(r):{L}) RETURN b.canary AS c",
    "MATCH (m:{L}) WITH m.name AS t CREATE (m)",
    "MATCH (m:{L}) WITH m.name AS t CREATE (m)-[:ACTED_IN]->(:Person {{uid: 77}})",
    "MATCH (a:Person) MERGE (a)-[r:ACTED_IN]->(v) SET v.pwned = true",
    "MATCH (m:Movie) MATCH (a:Person) WHERE a.name = COLLECT {{ MATCH (m)-[:OWNS]-(x) "
    "RETURN x.name }}[0] RETURN a.name AS n",
    "WITH ['n1', 'n2'] AS cachex RETURN cachex[size(COLLECT {{ MATCH (x:Secret) "
    "RETURN x.canary }})] AS ch",
    "MATCH (m:Movie) CALL (m) {{ MATCH (```x UNIQUE m:Person(`:Person {{name: 'n1'}}) "
    "RETURN ```x UNIQUE m:Person(`.name AS k }} SET m.pwned = 1",
    "MATCH (q:Person)-[:ACTED_IN]->(m:Movie) WITH q, m.name AS t OPTIONAL MATCH "
    "(q)-[:ACTED_IN]->(x:Movie)<-[:ACTED_IN]-(m) RETURN t, properties(m) AS c",
    "MATCH (q:Person) WITH q, q AS m WITH q, m.name AS t OPTIONAL MATCH "
    "(q)-[:ACTED_IN]->(x:Movie)<-[:ACTED_IN]-(m) SET m.pwned = 1",
    "MATCH (p:Person)-[:ACTED_IN]->(m:Movie) FOREACH (p IN [m] | FOREACH (y IN [p] | "
    "SET y.pwned = 1))",
    "MATCH (p:Person)-[r:ACTED_IN]->(m:Movie) FOREACH (p IN [r] | FOREACH (y IN [p] | "
    "SET y.pwned = 1))",
    "MATCH (a:Person)-[rs:ACTED_IN*1..1]-(p) WHERE all(r IN rs WHERE r.since > 0) "
    "RETURN p.canary AS c",
    "MATCH (a:Person) ((x)-[r:ACTED_IN]->(y) WHERE r.since > x.born){{1,1}} (p) "
    "RETURN p.canary AS c",
    "MATCH (a:Person)-[rs:ACTED_IN*1..1]->(b) WHERE all(r IN rs WHERE (CASE WHEN "
    "endNode(r).canary STARTS WITH 'CANARY-n13' THEN 1/0 ELSE 1 END) = 1) AND b:{L} RETURN b.name",
    # A count with no grouping key answers a row when its filter let nothing through.
    "MATCH (m) CALL (m) {{ WITH m WHERE m:{L} RETURN count(*) AS c }} SET m.pwned = 1",
    "MATCH (m) CALL (m) {{ MATCH (m:{L}) RETURN collect(m) AS c }} SET m:Person",
    "MATCH ()-[r]->() CALL (r) {{ WITH r WHERE r:ACTED_IN RETURN count(*) AS c }} SET r.pwned = 1",
    # A path predicate's failing conjunct runs before its label or type test, on every step.
    "MATCH (a:Person)-[r*1..1]-(v:{L}) USING SCAN a:Person WHERE all(x IN r WHERE "
    "1 / (toInteger(x.canary STARTS WITH 'CANARY-r') - 1) = -1 AND x:ACTED_IN) "
    "RETURN count(*) AS c",
    "MATCH p = (a:Person)-[:ACTED_IN*2..2]-(v) USING SCAN a:Person WHERE all(n IN nodes(p) "
    "WHERE (n.canary IS NULL OR NOT n.canary) AND n:Person|{L}) RETURN count(*) AS c",
    "MATCH (p:Person) CALL (p) {{ MATCH (p)-[:ACTED_IN]->(m) RETURN m }} IN TRANSACTIONS "
    "OF 1 ROWS ON ERROR CONTINUE RETURN m.canary AS c",
    # Writes through a list's elements, and deletions that take relationships with them.
    "MATCH (a:Person)-[:ACTED_IN]->(m) UNWIND [a, m] AS v SET v.pwned = true",
    "MATCH (a:Person)-[:ACTED_IN]->(m:{L}) UNWIND [m, a] AS v SET v:Person",
    "MATCH (a:Person)-[:ACTED_IN]->(m) WITH a, collect(m) AS ms UNWIND ms + [a] AS v "
    "SET v.pwned = true",
    "MATCH (p:{L}) DETACH DELETE p",
    "MATCH (p:Person)-[:ACTED_IN]->(m:Movie) DETACH DELETE p",
    "MATCH (p:Person) WHERE p.uid = 2 DETACH DELETE p",
    "MATCH (p:Person)-[r]->(x) DELETE r",
    # Equalities and inequalities between a proven and an unproven node.
    "MATCH (a:Person)-[:ACTED_IN]->(m) MATCH (b:{L}) WHERE m = b SET m.pwned = true",
    "MATCH (a:Person)-[:ACTED_IN]->(m) MATCH (b:{L}) WHERE m <> b SET m.pwned = true",
    "MATCH (a:Person)-[:ACTED_IN]->(m), (b:{L}) WHERE NOT m = b RETURN m.canary AS c",
)
# Ways to try to prove `v` carries {L}; some are sound, some only look it.
_NARROWINGS = (
    "WHERE v:{L}",
    "WHERE NOT v:{X}",
    "WHERE v:{L} OR v.uid > 3",
    "WHERE v:{L} XOR v:{X}",
    "WHERE v:{L} AND v.uid > 0",
    "WHERE v:{L} AND 1 / (v.uid - 6) >= 0",
    "WHERE 1 / (v.uid - 9) >= 0 AND v:{L}",
    # An error raised in one operator, the narrowing in a later one (found by review).
    "WHERE 1 / (v.uid - 9) >= 0 MATCH (b:{L}) WHERE v = b",
    "MATCH (b:{L}) WHERE b.uid = 1 / (toInteger(v.canary STARTS WITH 'CANARY-n1') - 1) AND v = b",
    "WITH * WHERE toInteger(v.canary) IS NULL MATCH (b:{L}) WHERE b = v",
    # A string where a boolean is wanted: an error that names the string.
    "WHERE NOT v.canary MATCH (b:{L}) WHERE v = b",
    "WHERE v.canary STARTS WITH 'CANARY-x' OR NOT v.canary MATCH (b:{L}) WHERE v = b",
    "MATCH (b:{L}) WHERE (CASE WHEN v.canary STARTS WITH 'CANARY-n1' THEN 1 / 0 ELSE 1 END) = 1"
    " AND v = b",
    "WHERE NOT NOT v:{L}",
    "WHERE v:!{X}",
    "WHERE v:%",
    "WHERE '{L}' IN labels(v)",
    "WHERE all(x IN [v] WHERE x:{L})",
    "WHERE CASE WHEN v:{L} THEN true ELSE false END",
    "WHERE v = {a}",
    "WHERE EXISTS {{ MATCH (v:{L}) }}",
    "WITH * WHERE v:{L}",
    "WITH v AS w, {a} AS a WITH w AS v, a WHERE v:{L}",
    "OPTIONAL MATCH (v) WHERE v:{L}",
    "OPTIONAL MATCH (v:{L})",
    "OPTIONAL MATCH (v)-[:ACTED_IN]-(:Person) WHERE v:{L}",
    "MATCH (v:{L})",
    "MATCH (v) WHERE v:{L}",
    "",
)
# (text, needs r, needs a): ways to use `v`.
_USES: tuple[tuple[str, bool, bool], ...] = (
    ("RETURN v", False, False),
    ("RETURN properties(v) AS x", False, False),
    ("RETURN v.canary AS x", False, False),
    ("RETURN count(v) AS x", False, False),
    ("RETURN labels(v) AS x", False, False),
    ("RETURN count(*) AS x", False, False),
    ("RETURN collect(v.name) AS x", False, False),
    ("SET v.pwned = true", False, False),
    ("SET v:Person", False, False),
    ("REMOVE v:{L}", False, False),
    ("SET v += {{pwned: 1}}", False, False),
    ("DETACH DELETE v", False, False),
    ("DELETE r", True, False),
    ("SET r.pwned = 1", True, False),
    ("CREATE (v)-[:ACTED_IN]->(:Person {{uid: 99}})", False, False),
    ("MERGE (v)-[:ACTED_IN]->(:Person {{uid: 1}})", False, False),
    ("FOREACH (x IN [v] | SET x.pwned = true)", False, False),
    ("SET a.name = v.canary", False, True),
)


@st.composite
def statements(draw: st.DrawFn, uses: str = "any") -> Statement:
    """One generated statement with its parameters; ``uses`` (reads, writes, any) steers the
    attack shapes towards what a grant could let through."""
    return Gen(draw).statement(uses)
