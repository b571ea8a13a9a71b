"""proxy.plan: least-privilege facts from real Neo4j 5.26 EXPLAIN plans, and from hand-made ones."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import Driver

from proxy.plan import ANY, DYNAMIC, PlanFacts, read_plan

U = 2**31 - 1  # max_hops of a pattern with no upper bound


def explain(driver: Driver, statement: str) -> PlanFacts:
    """The facts of ``statement`` as planned by the real Neo4j."""
    with driver.session(database="neo4j", notifications_min_severity="OFF") as session:
        summary = session.run("EXPLAIN " + statement).consume()
    assert summary.plan is not None
    return read_plan(summary.plan, statement=statement)


S = ANY
# (statement, the facts that matter for it: each listed field must be exactly this)
CASES: list[tuple[str, dict[str, Any]]] = [
    # reads: scans, seeks, label expressions, whole-graph scans
    ("MATCH (n:Person) RETURN n", {"labels_read": {"Person"}, "operators": set()}),
    ("MATCH (n:Person {name: 'p1'}) RETURN n", {"labels_read": {"Person"}}),
    ("MATCH (m:Movie {title: 'm1'}) RETURN m", {"labels_read": {"Movie"}}),
    ("MATCH (n) RETURN n", {"labels_read": {S}, "operators": {"AllNodesScan"}}),
    ("MATCH (n) WHERE n:Person RETURN n", {"labels_read": {"Person"}, "operators": set()}),
    ("MATCH (n:Person|Movie) RETURN n", {"labels_read": {"Person", "Movie"}}),
    ("MATCH (n:Person&Movie) RETURN n", {"labels_read": {"Person", "Movie"}}),
    ("MATCH (n:!Person) RETURN n", {"labels_read": {S, "Person"}}),
    ("MATCH (n:%) RETURN n", {"labels_read": {S}}),
    # A negated test narrows nothing, but n is a Person already; Secret is named, so read.
    ("MATCH (n:Person) WHERE NOT n:Secret RETURN n", {"labels_read": {"Person", "Secret"}}),
    ("MATCH (n:$($label)) RETURN n", {"labels_read": {S}}),
    # A scan or seek on the right of an apply carries the apply's row: nothing it found.
    (
        "UNWIND $rows AS row MATCH (n:Person {name: row.name}) RETURN n.born AS b",
        {"labels_read": {"Person"}, "rel_types_read": set()},
    ),
    (
        "MATCH (p:Person) WITH p.name AS k MATCH (m:Movie) WHERE m.title = k RETURN m.title AS t",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": set()},
    ),
    (
        "UNWIND [1, 2] AS i MATCH (m:Movie)<-[r:ACTED_IN]-(p:Person) RETURN i, r.since AS s",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN"}},
    ),
    # A dynamic label's expression fails unless it gives strings: its Filter, below the join
    # that narrows v, sees every neighbour.
    (
        "MATCH (a:Person)-[:ACTED_IN]-(v) USING SCAN a:Person MATCH (a:$(CASE WHEN v.name"
        " STARTS WITH 'a' THEN toString(1 / 0) ELSE 'Person' END)) MATCH (v)<-[:ACTED_IN]-"
        "(c:Person) USING JOIN ON v WHERE v:Movie RETURN count(*) AS c",
        {"labels_read": {S, "Movie", "Person"}},
    ),
    ("MATCH (n:Person) RETURN n:Actor AS a", {"labels_read": {"Person", "Actor"}}),
    # A DISTINCT aggregation of ordered rows prints its order: `count(DISTINCT n) ASC AS c`.
    ("MATCH (n:Person) RETURN count(DISTINCT n) AS c", {"labels_read": {"Person"}}),
    (
        "MATCH (n:Person) RETURN collect(DISTINCT n.name) AS c",
        {"labels_read": {"Person"}, "unreadable": set()},
    ),
    ("MATCH (n) WHERE elementId(n) = $id RETURN n", {"labels_read": {S}}),
    # A relationship found by its id, and its type tested: `type(r) IN "ACTED_IN"`.
    (
        "MATCH (a:Person)-[r:ACTED_IN]->(b:Movie) WHERE elementId(r) = $id RETURN r",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN"}},
    ),
    (
        "MATCH (a:Person)-[r:ACTED_IN|DIRECTED]->(b:Movie) WHERE elementId(r) IN $ids RETURN r",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN", "DIRECTED"}},
    ),
    ("MATCH ()-[r:ACTED_IN]->() WHERE elementId(r) = $id RETURN r", {"labels_read": {S}}),
    ("MATCH (n) RETURN count(n)", {"labels_read": {S}}),
    (
        "MATCH (a:Person)-[r:ACTED_IN|DIRECTED]->(m:Movie) RETURN m",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN", "DIRECTED"}},
    ),
    (
        "MATCH ()-[r]->() RETURN r",
        {"rel_types_read": {S}, "operators": {"AllRelationshipsScan"}},
    ),
    (
        "MATCH (a)-[r]-(b) RETURN r",
        {"rel_types_read": {S}, "operators": {"AllRelationshipsScan"}},
    ),
    ("MATCH ()-[r:ACTED_IN]->() RETURN count(r)", {"rel_types_read": {"ACTED_IN"}}),
    ("MATCH (a:Person)-[r:!ACTED_IN]->(b) RETURN b", {"rel_types_read": {S, "ACTED_IN"}}),
    ("MATCH ()-[r:$($t)]->() RETURN r", {"rel_types_read": {S}}),
    ("MATCH (a:Person) RETURN COUNT { (a)-->() } AS c", {"rel_types_read": {S}}),
    (
        "MATCH (a:Person) WHERE EXISTS { (a)-[:DIRECTED]->(:Movie) } RETURN a",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"DIRECTED"}},
    ),
    (
        "MATCH (a:Person) RETURN [(a)-[:ACTED_IN]->(m:Movie) | m.title] AS t",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN"}},
    ),
    ("MATCH (a:Person), (b:Movie) RETURN a, b", {"operators": {"CartesianProduct"}}),
    # variable-length patterns
    (
        "MATCH (a:Person)-[*]->(b) RETURN b",
        {"rel_types_read": {S}, "max_hops": U},
    ),
    ("MATCH (a:Person)-[:ACTED_IN*1..]->(b) RETURN b", {"max_hops": U}),
    ("MATCH (a:Person)-[:ACTED_IN*2..]->(b) RETURN b", {"max_hops": U}),
    (
        "MATCH (a:Person)-[:ACTED_IN*1..3]->(b) RETURN b",
        {"rel_types_read": {"ACTED_IN"}, "operators": set()},
    ),
    ("MATCH (a:Person)-[:ACTED_IN*3]->(b) RETURN b", {"operators": set()}),
    (
        "MATCH (a:Person)-[:ACTED_IN*]->(b) RETURN DISTINCT b",
        {"max_hops": U},
    ),
    ("MATCH (a:Person)-[:ACTED_IN*..3]->(b) RETURN DISTINCT b", {"operators": set()}),
    (
        "MATCH p = shortestPath((a:Person {name: 'p1'})-[*]-(b:Person {name: 'p2'})) RETURN p",
        {"operators": {"CartesianProduct"}, "max_hops": U},
    ),
    (
        "MATCH p = shortestPath((a:Person {name: 'p1'})-[*..5]-(b:Person {name: 'p2'})) RETURN p",
        {"operators": {"CartesianProduct"}},
    ),
    (
        "MATCH p = (a:Person {name: 'p1'})(()-[:ACTED_IN]->()){1,}(b) RETURN p",
        {"rel_types_read": {"ACTED_IN"}, "max_hops": U},
    ),
    (
        "MATCH p = (a:Person {name: 'p1'})(()-[:ACTED_IN]->()){1,3}(b) RETURN p",
        {"rel_types_read": {"ACTED_IN"}, "operators": set()},
    ),
    (
        "MATCH p = ANY SHORTEST (a:Person {name: 'p1'})-[:ACTED_IN]-+(b:Person {name: 'p2'}) "
        "RETURN p",
        {
            "rel_types_read": {"ACTED_IN"},
            "operators": {"CartesianProduct"},
            "max_hops": U,
        },
    ),
    (
        "MATCH p = SHORTEST 2 (a:Person {name: 'p1'})-[:ACTED_IN]-{1,5}(b:Person {name: 'p2'}) "
        "RETURN p",
        {"rel_types_read": {"ACTED_IN"}, "operators": {"CartesianProduct"}},
    ),
    (
        "MATCH (a:Person {name: 'p1'}) ((x)-[:ACTED_IN]->(y:Movie) WHERE x.born > 1)+ (b) RETURN b",
        {
            "labels_read": {"Person", "Movie"},
            "rel_types_read": {"ACTED_IN"},
            "max_hops": U,
        },
    ),
    # deletes: labels follow the variable; unknown ones are ANY
    (
        # Whether it committed tells if the node has relationships left, of any type, to any
        # node: read, all of them.
        "MATCH (n:Person) DELETE n",
        {
            "labels_written": {"Person"},
            "rel_types_written": set(),
            "deletes": True,
            "labels_read": {"Person", S},
            "rel_types_read": {S},
        },
    ),
    (
        "MATCH (n) DETACH DELETE n",
        {"labels_written": {S}, "rel_types_written": {S}, "deletes": True},
    ),
    (
        # Its relationshipsDeleted counts relationships of any type, to nodes of any label.
        "MATCH (n:Person) DETACH DELETE n",
        {
            "labels_written": {"Person"},
            "rel_types_written": {S},
            "deletes": True,
            "labels_read": {"Person", S},
            "rel_types_read": {S},
        },
    ),
    (
        "MATCH ()-[r:ACTED_IN]->() DELETE r",
        {
            "labels_written": set(),
            "rel_types_written": {"ACTED_IN"},
            "deletes": True,
            "rel_types_read": {"ACTED_IN"},
        },
    ),
    (
        "MATCH (a:Person)-[r:ACTED_IN]->(m) WHERE m:Movie DETACH DELETE m",
        {"labels_written": {"Movie"}, "rel_types_written": {S}, "operators": {"Eager"}},
    ),
    (
        # A path is a value: what it holds is not tracked, so deleting it writes anything.
        "MATCH p = (a:Person)-[r:ACTED_IN]->(m:Movie) DELETE p",
        {"labels_written": {S}, "rel_types_written": {S}},
    ),
    (
        "MATCH (n:Person) WITH collect(n) AS ns UNWIND ns AS x DELETE x",
        {"labels_written": {S}, "rel_types_written": {S}, "deletes": True},
    ),
    ("MATCH (n:Person) WITH 1 AS x MATCH (n) DETACH DELETE n", {"labels_written": {S}}),
    (
        "MATCH (n:Person) DELETE n RETURN 1 AS x UNION MATCH (n) DETACH DELETE n RETURN 1 AS x",
        {"labels_written": {"Person", S}},
    ),
    ("MATCH (n) WHERE elementId(n) = $id DETACH DELETE n", {"labels_written": {S}}),
    # A relationship deleted always commits: deleting one taken from a path reads nothing more.
    (
        "MATCH p = (a:Person)-[:ACTED_IN]->(m:Movie) UNWIND relationships(p) AS r DELETE r",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN"}, "deletes": True},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN]->(m:Movie) FOREACH (r IN relationships(p) | DELETE r)",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN"}, "deletes": True},
    ),
    # property and label writes
    (
        "MATCH (n:Person) SET n.x = 1",
        {"labels_written": {"Person"}, "properties_written": {"x"}, "deletes": False},
    ),
    ("MATCH (n) SET n.x = 1", {"labels_written": {S}, "properties_written": {"x"}}),
    (
        "MATCH (n:Person) SET n.x = 1, n.y = 2",
        {"labels_written": {"Person"}, "properties_written": {"x", "y"}},
    ),
    ("MATCH (n:Person) SET n = $map", {"labels_written": {"Person"}, "properties_written": {S}}),
    ("MATCH (n:Person) SET n += $map", {"properties_written": {S}}),
    ("MATCH (n:Person) SET n += {a: 1, b: 2}", {"properties_written": {"a", "b"}}),
    ("MATCH (n:Person) SET n = {a: 1}", {"properties_written": {"a", S}}),
    ("MATCH (n:Person), (m:Movie) SET n = m", {"properties_written": {S}}),
    ("MATCH (n:Person) SET n[$key] = 1", {"properties_written": {S}}),
    ("MATCH (n:Person) REMOVE n.born", {"properties_written": {"born"}}),
    # Setting a label writes it, and writes to the node (a Person).
    ("MATCH (n:Person) SET n:Actor:Star", {"labels_written": {"Actor", "Person", "Star"}}),
    ("MATCH (n:Person) REMOVE n:Actor", {"labels_written": {"Actor", "Person"}}),
    ("MATCH (n:Person) SET n:$($label)", {"labels_written": {S, "Person"}}),
    ("MATCH (n:Person) REMOVE n:$($label)", {"labels_written": {S, "Person"}}),
    ("MATCH (n:Person) WITH n AS b SET b.q = 1", {"labels_written": {"Person"}}),
    (
        "MATCH (n:Person) SET (CASE WHEN n.born > 1 THEN n END).x = 1",
        {"labels_written": {S}, "rel_types_written": {S}, "properties_written": {"x"}},
    ),
    (
        "MATCH (a:Person)-[r:ACTED_IN]->(m) SET r.x = 1",
        {"labels_written": set(), "rel_types_written": {"ACTED_IN"}},
    ),
    ("MATCH (a:Person)-[r]->() SET r.x = 1", {"rel_types_written": {S}}),
    ("MATCH ()-[r:ACTED_IN]->() SET r += $m", {"rel_types_written": {"ACTED_IN"}}),
    ("MATCH (a:Person)-[r:ACTED_IN]->(m) SET m.x = 1", {"labels_written": {S}}),
    (
        "MATCH (a:Person) OPTIONAL MATCH (a)-[:ACTED_IN]->(m:Movie) SET m.seen = true",
        {"labels_written": {"Movie"}},
    ),
    ("UNWIND $rows AS x SET x.y = 1", {"labels_written": {S}, "rel_types_written": {S}}),
    (
        "MATCH (n:`Odd Label`) SET n:`New Label`, n.`we ird` = 1",
        {
            "labels_read": {"Odd Label"},
            "labels_written": {"New Label", "Odd Label"},
            "properties_written": {"we ird"},
        },
    ),
    # CREATE and MERGE
    (
        "CREATE (n:Person:Actor {name: 'x'})",
        {
            "labels_written": {"Person", "Actor"},
            "labels_read": set(),
            "properties_written": {"name"},
        },
    ),
    ("CREATE (n)", {"labels_written": {S}}),
    ("CREATE ()-[:KNOWS]->()", {"labels_written": {S}, "rel_types_written": {"KNOWS"}}),
    ("CREATE (n:Person $props)", {"properties_written": {S}}),
    (
        "MATCH (a:Person {name: 'p1'}), (b:Person {name: 'p2'}) "
        "CREATE (a)-[:KNOWS {since: 1}]->(b)",
        {"labels_written": set(), "rel_types_written": {"KNOWS"}, "properties_written": {"since"}},
    ),
    ("CREATE (n:$($x))-[:$($t)]->(m:Movie)", {"labels_written": {S, "Movie"}}),
    ("CREATE (n:Person)-[:$($t)]->(m:Movie)", {"rel_types_written": {S}}),
    (
        "MERGE (n:Person {name: 'x'}) ON MATCH SET n:Seen ON CREATE SET n.c = 1",
        {"labels_written": {"Person", "Seen"}, "properties_written": {"name", "c"}},
    ),
    ("MERGE (n:Person {name: 'x'}) ON CREATE SET n += $m", {"properties_written": {"name", S}}),
    # A dynamic key prints as n.$k in MERGE's and FOREACH's details (it was unreadable).
    (
        "MERGE (n:Person {name: 'x'}) ON CREATE SET n[$k] = 1",
        {"labels_written": {"Person"}, "properties_written": {"name", S}, "unreadable": set()},
    ),
    (
        "MATCH (n:Person) FOREACH (x IN [n] | SET x[$k] = 1)",
        {"labels_written": {"Person"}, "properties_written": {S}, "unreadable": set()},
    ),
    # And a key from a variable prints as n.x, from a property as n.row.k, from a parameter's
    # as n.$m.k: each read as the static key x or k, so a grant of `title` let
    # FOREACH (title IN ['secret'] | SET m[title] = 1) write `secret`.
    (
        "MATCH (n:Person) FOREACH (x IN $keys | SET n[x] = 1)",
        {"labels_written": {"Person"}, "properties_written": {S}, "unreadable": set()},
    ),
    (
        "MATCH (n:Person) FOREACH (x IN $keys | REMOVE n[x])",
        {"labels_written": {"Person"}, "properties_written": {S}, "unreadable": set()},
    ),
    ("MATCH (n:Person) FOREACH (x IN $keys | SET n[x.k] = 1)", {"properties_written": {S}}),
    ("MATCH (n:Person) FOREACH (x IN $keys | SET n[$m.k] = 1)", {"properties_written": {S}}),
    (
        "MATCH (n:Person) FOREACH (x IN $keys | FOREACH (y IN x | SET n[y] = 1))",
        {"properties_written": {S}},
    ),
    (
        "UNWIND $keys AS k MERGE (n:Person {name: 'x'}) ON MATCH SET n[k] = 1",
        {"labels_written": {"Person"}, "properties_written": {"name", S}, "unreadable": set()},
    ),
    (
        "UNWIND $rows AS row MERGE (n:Person {name: row.name}) ON CREATE SET n[row.k] = 1",
        {"properties_written": {"name", S}, "unreadable": set()},
    ),
    ("MERGE (n:Person {name: 'x'}) ON MATCH SET n[$m.k] = 1", {"properties_written": {"name", S}}),
    # A static key that names no variable in scope stays itself (the ETL idiom).
    (
        "UNWIND $rows AS row MERGE (n:Person {name: row.name}) ON CREATE SET n.born = row.born "
        "ON MATCH SET n.seen = true",
        {"labels_written": {"Person"}, "properties_written": {"name", "born", "seen"}},
    ),
    (
        "MATCH (n:Person) FOREACH (x IN $keys | SET n.seen = x)",
        {"labels_written": {"Person"}, "properties_written": {"seen"}},
    ),
    # Nor does one named like a variable, where the statement subscripts nothing by that name
    # (found by review: naming a variable after the property it fills is the ETL idiom, and
    # was refused for a grant of that property); a subscript anywhere keeps it any key.
    (
        "WITH $name AS name, $born AS born MERGE (p:Person {name: name}) ON CREATE SET"
        " p.born = born",
        {"labels_written": {"Person"}, "properties_written": {"name", "born"}},
    ),
    (
        "UNWIND $rows AS row WITH row.name AS name, row.born AS born MERGE (p:Person {name: name})"
        " ON CREATE SET p.born = born ON MATCH SET p.born = born",
        {"properties_written": {"name", "born"}},
    ),
    (
        "MATCH (n:Person) FOREACH (title IN $titles | SET n.title = title)",
        {"properties_written": {"title"}},
    ),
    ("MATCH (n:Person) FOREACH (x IN $keys | SET n[(x)] = 1)", {"properties_written": {S}}),
    (
        "MATCH (n:Person) FOREACH (title IN $titles | SET n[ /* a key */ title ] = 1)",
        {"properties_written": {S}},
    ),
    # Items on another entity, or of another kind, print as SETs of their own (they were
    # unreadable: every such MERGE was refused, whatever the grant).
    (
        "MERGE (n:Person {name: 'x'}) ON MATCH SET n.seen = true, n:Seen",
        {
            "labels_written": {"Person", "Seen"},
            "properties_written": {"name", "seen"},
            "unreadable": set(),
        },
    ),
    (
        "MATCH (a:Person {name: 'p1'}) MERGE (a)-[r:ACTED_IN]->(m:Movie {title: 'm1'}) "
        "ON CREATE SET r.since = 1, m.seen = true ON MATCH SET r.seen = 2, m:Seen",
        {
            "labels_written": {"Movie", "Seen"},
            "rel_types_written": {"ACTED_IN"},
            "properties_written": {"title", "since", "seen"},
            "unreadable": set(),
        },
    ),
    (
        "MATCH (a:Person {name: 'p1'}), (b:Movie {title: 'm1'}) MERGE (a)-[r:ACTED_IN]->(b)",
        {"labels_written": set(), "rel_types_written": {"ACTED_IN"}},
    ),
    (
        "MERGE (a:Person {name: 'p1'})-[r:KNOWS]->(b:Person {name: 'p2'})",
        {"labels_written": {"Person"}, "rel_types_written": {"KNOWS"}},
    ),
    ("MERGE (n:$($x) {name: 'a'})", {"labels_written": {S}}),
    # FOREACH, CALL subqueries, IN TRANSACTIONS
    ("UNWIND [1, 2] AS i FOREACH (x IN [i] | CREATE (:Tag {v: x}))", {"labels_written": {"Tag"}}),
    # A created node and the relationship to it print as two items of one CREATE, the second
    # without the keyword (it was unreadable: the conditional-create idiom was always refused).
    (
        "MATCH (n:Person) FOREACH (x IN CASE WHEN n.born > 0 THEN [1] ELSE [] END | "
        "CREATE (n)-[:LIKES]->(:Thing {v: x}))",
        {
            "labels_written": {"Thing"},
            "rel_types_written": {"LIKES"},
            "properties_written": {"v"},
            "unreadable": set(),
        },
    ),
    (
        "MATCH (n:Person) FOREACH (x IN [1] | SET n:Tagged REMOVE n.born DELETE n)",
        {"labels_written": {"Tagged", "Person"}, "properties_written": {"born"}, "deletes": True},
    ),
    (
        "MATCH (n:Person) FOREACH (x IN [1] | MERGE (n)-[:LIKES]->(:Thing {v: x}))",
        {"labels_written": {"Thing"}, "rel_types_written": {"LIKES"}},
    ),
    (
        "MATCH (n:Person) FOREACH (x IN [1] | FOREACH (y IN [2] | CREATE (:Deep)))",
        {"labels_written": {"Deep"}},
    ),
    ("CALL { CREATE (n:Thing) }", {"labels_written": {"Thing"}}),
    (
        "MATCH (p:Person) CALL (p) { CREATE (p)-[:OWNS]->(:Car) }",
        {"labels_written": {"Car"}, "rel_types_written": {"OWNS"}},
    ),
    (
        "MATCH (p:Person) CALL (p) { SET p.z = 1 } IN TRANSACTIONS OF 10 ROWS",
        {"labels_written": {"Person"}, "properties_written": {"z"}},
    ),
    (
        "MATCH (p:Person) CALL (p) { CREATE (x:X) RETURN x } IN TRANSACTIONS RETURN x",
        {"labels_written": {"X"}},
    ),
    # LOAD CSV
    (
        "LOAD CSV FROM 'file:///x.csv' AS row CREATE (:Row {v: row[0]})",
        {"load_csv": ("file:///x.csv",), "labels_written": {"Row"}},
    ),
    (
        "LOAD CSV WITH HEADERS FROM $url AS row MERGE (p:Person {name: row.name})",
        {"load_csv": ("$url",), "labels_written": {"Person"}},
    ),
    ("LOAD CSV FROM 'https://x.test/a' + $x AS row RETURN row", {"load_csv": (DYNAMIC,)}),
    (
        "LOAD CSV FROM 'https://x.test/a.csv' AS row CALL (row) { CREATE (:Row) } IN TRANSACTIONS",
        {"load_csv": ("https://x.test/a.csv",), "labels_written": {"Row"}},
    ),
    # procedures, functions, commands
    ("CALL db.labels()", {"procedures": {"db.labels"}}),
    ("CALL db.labels() YIELD label RETURN label", {"procedures": {"db.labels"}}),
    ("CALL dbms.components()", {"procedures": {"dbms.components"}}),
    (
        "CALL db.ping() YIELD success RETURN success",
        {"procedures": {"db.ping"}, "labels_read": set(), "rel_types_read": set()},
    ),
    ("CALL db.labels()", {"labels_read": {S}, "rel_types_read": {S}}),
    ("CALL db.schema.visualization()", {"procedures": {"db.schema.visualization"}}),
    ("MATCH (n:Person) CALL db.createLabel(n.name)", {"procedures": {"db.createLabel"}}),
    ("USE system CALL dbms.showCurrentUser()", {"procedures": {"dbms.showCurrentUser"}}),
    ("SHOW PROCEDURES", {"procedures": set(), "labels_written": set()}),
    (
        "RETURN datetime.truncate('day', datetime()) AS d, point.distance(point({x: 1, y: 1}), "
        "point({x: 2, y: 2})) AS p",
        {"functions": set()},
    ),
    (
        "SHOW USERS",
        {
            "labels_written": {S},
            "properties_written": {S},
            "databases": {"system"},
            "commands": {"AdministrationCommand"},
        },
    ),
    (
        "CREATE USER eve SET PASSWORD 'a-long-password'",
        {"databases": {"system"}, "commands": {"AdministrationCommand"}},
    ),
    (
        "CREATE INDEX zz IF NOT EXISTS FOR (n:Zz) ON (n.a)",
        {"labels_written": {S}, "commands": {"CreateIndex", "DoNothingIfExists"}},
    ),
    (
        "TERMINATE TRANSACTIONS 'neo4j-transaction-999'",
        {"labels_written": {S}, "commands": {"TerminateTransactions"}, "databases": {"neo4j", S}},
    ),
    (
        "SHOW TRANSACTIONS",
        {
            "commands": {"ShowTransactions"},
            "databases": {"neo4j", S},
            "labels_read": {S},
            "rel_types_read": {S},
        },
    ),
    (
        "LOAD CSV FROM 'https://x.test/' + toUpper($x) AS row RETURN row",
        {"load_csv": (DYNAMIC,), "functions": set(), "unreadable": set()},
    ),
    # A command's own expressions (the settings or transactions it is about) are read.
    (
        "SHOW SETTINGS toString($s) YIELD name",
        {"commands": {"ShowSettings"}, "functions": set(), "unreadable": set()},
    ),
    (
        "SHOW TRANSACTIONS 'x' + toUpper($s) YIELD transactionId",
        {"commands": {"ShowTransactions"}, "unreadable": set()},
    ),
    (
        "TERMINATE TRANSACTIONS [$a, $b]",
        {"commands": {"TerminateTransactions"}, "unreadable": set()},
    ),
    (
        "SHOW SETTINGS YIELD name",
        {"commands": {"ShowSettings"}, "labels_read": set(), "unreadable": set()},
    ),
    (
        "CREATE INDEX zz_o IF NOT EXISTS FOR (n:Foo) ON (n.a)"
        " OPTIONS {indexProvider: toString('range-1.0')}",
        {"commands": {"CreateIndex", "DoNothingIfExists"}, "unreadable": set()},
    ),
    # Neo4j prints the strings there unquoted: a quote could hide a call (' + f() + ').
    (
        'SHOW SETTINGS "\'" + toString($s) + "\'" YIELD name',
        {"unreadable": {"ShowSettings"}},
    ),
    (
        "USE system CALL dbms.components() YIELD name RETURN name",
        {"procedures": {"dbms.components"}, "databases": {"system"}},
    ),
    (
        "MATCH (n:Person) CREATE (n)-[:KNOWS]->(:Person)",
        {"commands": set(), "databases": {"neo4j"}},
    ),
    # Least privilege that holds: a node found over a relationship is label-checked, and only
    # a positive test every row passes proves a label.
    ("MATCH (p:Person)-[:ACTED_IN]->(x) RETURN x", {"labels_read": {"Person", S}}),
    ("MATCH (p:Person)-[:ACTED_IN]->(m:Movie) RETURN m", {"labels_read": {"Person", "Movie"}}),
    (
        "MATCH (p:Person)-[:ACTED_IN]->(m) WITH m WHERE m:Movie RETURN m",
        {"labels_read": {"Person", "Movie"}},
    ),
    (
        "MATCH (a:Person)-[:ACTED_IN]->(m) WHERE m:Movie OR m.born = 1 RETURN m",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (
        "MATCH (p:Person) OPTIONAL MATCH (p)-[r]->(x) WHERE NOT r:ACTED_IN RETURN properties(x)",
        {"labels_read": {"Person", S}, "rel_types_read": {"ACTED_IN", S}},
    ),
    (
        "MATCH (x:Person)-[:ACTED_IN]->(m) WITH m OPTIONAL MATCH (m) WHERE m:Person "
        "SET m.pwned = true",
        {"labels_read": {"Person", S}, "labels_written": {S}},
    ),
    (
        "MATCH (p:Person)-[r]->(x:Movie) WHERE all(y IN [r] WHERE y:ACTED_IN) RETURN x",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN", S}},
    ),
    (
        "MATCH (p:Person)-[r]->(x:Movie) WHERE [r IN [r] WHERE r:ACTED_IN] <> [] RETURN x",
        {"rel_types_read": {"ACTED_IN", S}},
    ),
    ("MATCH (m:Movie) SET m:Person", {"labels_written": {"Movie", "Person"}}),
    ("MATCH (m:Movie) REMOVE m:Person", {"labels_written": {"Movie", "Person"}}),
    ("MATCH (n:Person), (m) RETURN count(*)", {"labels_read": {"Person", S}}),
    ("MATCH ()-[r:ACTED_IN]->(:Person) RETURN count(r)", {"labels_read": {"Person", S}}),
    (
        "MATCH (a:Person)-[:ACTED_IN*1..2147483646]->(b:Movie) RETURN b",
        {"labels_read": {"Person", "Movie", S}, "max_hops": 2147483646},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN*1..3]-(b) WHERE all(n IN nodes(p) WHERE n:Person|Movie) "
        "RETURN b",
        {"labels_read": {"Person", "Movie"}, "max_hops": 3},
    ),
    # A quantified path's every node said in WHERE: Neo4j plans a VarLengthExpand without a
    # predicate and tests the path in a Filter above it, which drops every path through any
    # other node before anything looks at it.
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WHERE all(n IN nodes(p) WHERE "
        "n:Person|Movie) RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie"}, "max_hops": 3},
    ),
    (
        "MATCH (a:Person) OPTIONAL MATCH p = (a)-[:ACTED_IN]-{1,3}(b:Movie) WHERE all(n IN "
        "nodes(p) WHERE n:Person|Movie) RETURN a.name AS n, count(p) AS c",
        {"labels_read": {"Person", "Movie"}},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{2,3}(b:Movie)-[:ACTED_IN]-{1,2}(c:Person) "
        "WHERE all(n IN nodes(p) WHERE n:Person) RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie", S}},  # a failing `IN` between the lists, first
    ),
    # ... but not a test that some rows escape, nor one after something looked at the rows.
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WHERE any(n IN nodes(p) WHERE "
        "n:Person|Movie) RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WHERE all(n IN nodes(p) WHERE "
        "n:Person|Movie) OR a.uid = 1 RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WHERE all(n IN nodes(p) WHERE "
        "NOT n:Secret) RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie", "Secret", S}},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WITH p, a LIMIT 10 WHERE all(n IN "
        "nodes(p) WHERE n:Person|Movie) RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (
        "MATCH p = (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WHERE all(n IN nodes(p) WHERE "
        "n:Person|Movie AND 1 / (n.uid - 9) > 0) RETURN count(*) AS c",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (  # a shortest path tested after it was chosen: the choice saw every node
        "MATCH p = SHORTEST 1 (a:Person)-[:ACTED_IN]-{1,3}(b:Movie) WHERE all(n IN nodes(p) "
        "WHERE n:Person|Movie) RETURN length(p) AS c",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (
        "MATCH p = shortestPath((a:Person)-[:ACTED_IN*..3]-(b:Person)) "
        "WHERE all(n IN nodes(p) WHERE n:Person) RETURN p",
        {"labels_read": {"Person"}, "max_hops": 3},
    ),
    (
        "MATCH p = shortestPath((a:Person)-[:ACTED_IN*..3]-(b:Person)) RETURN p",
        {"labels_read": {"Person", S}},
    ),
    (
        "MATCH (a:Person) ((x:Person)-[:ACTED_IN]->(y:Movie)){1,3} (b) RETURN b",
        {"labels_read": {"Person", "Movie"}, "max_hops": 3},
    ),
    (
        "MATCH (a:Person) ((x)-[:ACTED_IN]->(y)){1,3} (b:Movie) RETURN b",
        {"labels_read": {"Person", "Movie", S}},
    ),
    (
        "MATCH p = SHORTEST 1 (a:Person) ((x:Person|Movie)-[:ACTED_IN]-(y:Person|Movie)){1,3} "
        "(b:Movie) RETURN p",
        {"labels_read": {"Person", "Movie"}, "rel_types_read": {"ACTED_IN"}, "max_hops": 3},
    ),
    (
        "MATCH (a:Person) CALL () { MATCH (b:Movie) RETURN b } RETURN a, b",
        {"operators": {"CartesianProduct"}},
    ),
    (
        "MATCH (a:Person) CALL (a) { MATCH (a)-[:ACTED_IN]->(b:Movie) RETURN b } RETURN a, b",
        {"operators": set()},
    ),
    (
        "MATCH (a:Person) WHERE EXISTS { (a)-[:ACTED_IN]->() } RETURN a.name",
        {"labels_read": {"Person", S}},
    ),
    ("MATCH (a:Person) RETURN COUNT { (a)-[:ACTED_IN]->() } AS c", {"labels_read": {"Person", S}}),
    # Names Neo4j prints ambiguously make the plan unreadable, not misread.
    (
        "MATCH (anon_0:Person) RETURN anon_0",
        {"unreadable": {"variable named like a generated one"}},
    ),
    ("MATCH (n:Person) WHERE n.`a] AND m:Movie` = 1 RETURN n", {"unreadable": {"ambiguous name"}}),
    # A count with no grouping key answers a row even when its filter let nothing through: the
    # subquery's argument goes on as it came in, not as the filter narrowed it (found by review)
    (
        "MATCH (m) CALL (m) { WITH m WHERE m:Person RETURN count(*) AS c } SET m.pwned = 1",
        {"labels_written": {S}},
    ),
    (
        "MATCH ()-[r]->() CALL (r) { WITH r WHERE r:ACTED_IN RETURN count(*) AS c } SET r.p = 1",
        {"rel_types_written": {S}},
    ),
    (
        "MATCH (m) WITH m, count(*) AS c WHERE m:Person SET m.pwned = 1",
        {"labels_written": {"Person"}},
    ),
    ("MATCH (`a  b`:Person) RETURN `a  b`", {"unreadable": {"ambiguous name"}}),
    ("MATCH (n:Person) SET n.`we:ird` = 1", {"unreadable": {"ambiguous name"}}),
    ("MATCH (n:Person) RETURN n.`x)-->(y` AS v", {"unreadable": {"ambiguous name"}}),
    # getDegree() prints its types unquoted: this read as ACTED_IN with an inline WHERE.
    (
        "MATCH (m:Movie) RETURN COUNT { (m)-[:`ACTED_IN WHERE true`]->() } AS c",
        {"unreadable": {"ambiguous name"}},
    ),
    ("MATCH (m:Movie)-[:`x is typed INTEGER`]->() RETURN 1", {"unreadable": {"ambiguous name"}}),
    ("MATCH (m:`Big Movie`)-[:`PLAYED BY`]->() RETURN 1", {"unreadable": set()}),
    ("CYPHER debug=tostring MATCH (n:Person) RETURN n", {"unreadable": {"CYPHER option debug"}}),
    ("CYPHER runtime=slotted MATCH (n:Person) RETURN n", {"unreadable": set()}),
    ("MATCH (n:Person) RETURN n", {"unreadable": set()}),
]


@pytest.mark.integration
@pytest.mark.parametrize(("statement", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_facts_of_real_plans(plan_driver: Driver, statement: str, expected: dict[str, Any]) -> None:
    facts = explain(plan_driver, statement)
    for name, value in expected.items():
        got = getattr(facts, name)
        assert (set(got) if isinstance(got, frozenset) else got) == value, name


def op(
    op_type: str, details: str | None = None, *children: dict[str, Any], ids: str = ""
) -> dict[str, Any]:
    """A hand-made plan operator in the driver's shape."""
    args = {} if details is None else {"Details": details}
    return {
        "operatorType": f"{op_type}@neo4j",
        "args": args,
        "identifiers": ids.split(),
        "children": list(children),
    }


def test_unknown_operator_that_looks_like_a_write_writes_anything() -> None:
    plan = op(
        "ProduceResults",
        "",
        op("SetSomethingNew", "n.x = 1", op("NodeByLabelScan", "n:Person", ids="n")),
    )
    facts = read_plan(plan)
    assert facts.labels_written == facts.rel_types_written == facts.properties_written == {ANY}
    assert facts.labels_read == {"Person", ANY}  # an operator it cannot read reads anything
    assert facts.unreadable == {"SetSomethingNew"}


def test_unknown_delete_and_load_operators_are_not_ignored() -> None:
    facts = read_plan(op("FancyDetachDeleteAll", None, op("LoadJSON", "row", ids="row")))
    assert facts.deletes
    assert facts.labels_written == {ANY}
    assert facts.load_csv == (DYNAMIC,)


def test_unknown_read_operator_forgets_what_it_binds() -> None:
    # A leaf this module does not know may rebind `n`; the outer knowledge must not leak in.
    plan = op(
        "DetachDelete",
        "n",
        op(
            "Apply",
            None,
            op("NodeByLabelScan", "n:Person", ids="n"),
            op("MysteryScan", "n", ids="n"),
        ),
    )
    assert read_plan(plan).labels_written == {ANY}


def test_administration_and_system_procedure_plans() -> None:
    admin = read_plan(
        {"operatorType": "AdministrationCommand@system", "args": {}, "identifiers": []}
    )
    assert admin.labels_written == {ANY}
    system = read_plan({"operatorType": "dbms.showCurrentUser@system", "args": {}})
    assert system.procedures == {"dbms.showCurrentUser"}


def test_arguments_key_and_user_defined_functions() -> None:
    plan = {
        "operatorType": "Projection",
        "arguments": {"Details": "apoc.text.join($l, $s) AS j, datetime.truncate($u, $d) AS t"},
        "children": [
            {"operatorType": "ProcedureCall", "arguments": {"Details": "my.proc(x.y()) :: ()"}}
        ],
    }
    facts = read_plan(plan)
    assert facts.functions == {"apoc.text.join", "x.y"}
    assert facts.procedures == {"my.proc"}


def test_a_function_in_a_commands_expression_is_called() -> None:
    """SHOW SETTINGS, SHOW and TERMINATE TRANSACTIONS take an expression (the names or ids they
    are about), which Neo4j prints in the command's details: a user-defined function there
    (a plugin's ``apoc.cypher.runFirstColumnSingle`` runs any read) is a call like any other."""
    udf = "apoc.cypher.runFirstColumnSingle($q, {})"
    for command, details in (
        ("ShowSettings", f"settings({udf}), columns(name)"),
        ("ShowTransactions", f"defaultColumns, transactions({udf})"),
        ("TerminateTransactions", f"defaultColumns, transactions({udf})"),
    ):
        plan = op("ProduceResults", "name", op(command, details, ids="name"), ids="name")
        facts = read_plan(plan)
        assert facts.functions == {"apoc.cypher.runFirstColumnSingle"}, command
        assert facts.commands == {command}
        hidden = details.replace(udf, f"' + {udf} + '")  # printed from "'" + f() + "'"
        plan = op("ProduceResults", "name", op(command, hidden, ids="name"), ids="name")
        assert read_plan(plan).unreadable == {command}
    # An index's or a constraint's OPTIONS map, printed last, is evaluated too.
    for command, details in (
        ("CreateIndex", "RANGE INDEX i FOR (:Foo) ON (a)"),
        ("CreateConstraint", "CONSTRAINT c FOR (a:Foo) REQUIRE (a.x) IS UNIQUE"),
    ):
        options = f"{details} OPTIONS {{indexProvider: {udf}}}"
        facts = read_plan(op(command, options))
        assert facts.functions == {"apoc.cypher.runFirstColumnSingle"}, command
        assert read_plan(op(command, details)).functions == set()


def test_a_function_in_a_load_csv_source_is_called() -> None:
    """Neo4j's plan never prints a LOAD CSV source: a plugin's function called in one (to put
    what it reads in the URL) is read from the statement's text."""
    plan = op("ProduceResults", "row", op("LoadCSV", "row", ids="row"), ids="row")
    statement = "LOAD CSV FROM 'https://x.test/' + apoc.text.clean(datetime.truncate('day', $d))"
    facts = read_plan(plan, statement=statement + " AS row RETURN row")
    assert facts.load_csv == (DYNAMIC,)
    assert facts.functions == {"apoc.text.clean"}
    literal = read_plan(plan, statement="LOAD CSV FROM 'https://x.test/a.csv' AS row RETURN row")
    assert literal.functions == set()
    # Found by review: Neo4j calls a registered function by its whole name in one pair of
    # backticks too (`vector.similarity.cosine`(...) runs), which no namespace then showed.
    for called in ("`apoc.text.clean`($x)", "`apoc.text`.clean($x)", "`apoc.text.clean` ($x)"):
        hidden = read_plan(plan, statement=f"LOAD CSV FROM {called} AS row RETURN row")
        assert hidden.functions == {"apoc.text.clean"}, called


def test_load_csv_sources_come_from_the_text_only_when_they_match_the_plan() -> None:
    plan = op("LoadCSV", "row", ids="row")
    assert read_plan(plan).load_csv == (DYNAMIC,)  # no statement: the plan hides the source
    text = (
        "// LOAD CSV FROM 'file:///decoy' AS x\nLOAD CSV FROM 'file:///real.csv' AS row RETURN row"
    )
    assert read_plan(plan, statement=text).load_csv == ("file:///real.csv",)
    # Neo4j replaces unicode escapes before it reads the statement: so does the scanner.
    escaped = r"LOAD CSV FROM 'file:\u002f\u002f/etc/passwd' AS row RETURN row"
    assert read_plan(plan, statement=escaped).load_csv == ("file:///etc/passwd",)
    backslash = r"LOAD CSV FROM 'file:///etc\\passwd' AS row RETURN row"
    assert read_plan(plan, statement=backslash).load_csv == (DYNAMIC,)
    two = "LOAD CSV FROM 'a' AS r LOAD CSV FROM 'b' AS s RETURN r"
    counted = read_plan(plan, statement=two)  # counts disagree: no guess, and something hides
    assert counted.load_csv == (DYNAMIC, DYNAMIC)
    assert counted.unreadable == {"LOAD CSV the plan does not show"}


def test_filter_with_or_does_not_prove_a_label() -> None:
    plan = op(
        "Delete",
        "n",
        op("Filter", "n:Person OR n.x = $a", op("AllNodesScan", "n", ids="n"), ids="n"),
        ids="n",
    )
    facts = read_plan(plan)
    assert facts.labels_written == {ANY}
    assert facts.labels_read == {ANY, "Person"}


def test_only_a_type_in_literals_proves_a_relationship_type() -> None:
    """Neo4j tests the types of a relationship it found by its id as ``type(r) IN "T"``: that
    proves T, as ``r:T`` would; a CONTAINS or a parameter proves nothing."""
    seek = "(a)-[r]->(b) WHERE elementId(r) = $id"
    for test, types in (
        ('type(r) IN "ACTED_IN"', {"ACTED_IN"}),
        ("type(r) IN ['ACTED_IN', 'DIRECTED']", {"ACTED_IN", "DIRECTED"}),
        ('type(r) CONTAINS "ACTED_IN"', {ANY}),
        ("type(r) IN $types", {ANY}),
        ('NOT type(r) IN "ACTED_IN"', {ANY}),
        ('type(r) IN "ACTED_IN" OR a.x = 1', {ANY}),
        # A failing conjunct sees r before the type test proves anything: Neo4j may order a
        # function call after it (found by review).
        ('type(r) IN "ACTED_IN" AND 1 / r.x = 1', {ANY}),
    ):
        filtered = op(
            "Filter",
            f"({test}) AND (a:Person AND b:Movie)",
            op("DirectedRelationshipByElementIdSeek", seek, ids="r a b"),
            ids="r a b",
        )
        facts = read_plan(op("ProduceResults", "r", filtered, ids="r a b"))
        assert facts.rel_types_read == types, test
        assert facts.labels_read == {"Person", "Movie"}, test


def test_a_type_test_proves_nothing_of_what_may_be_a_node() -> None:
    """type(x) = "T" of a procedure's yield (a node or anything) narrows nothing: a node there
    fails only as the other conjuncts decide (found by review: it was read as a T)."""
    filtered = op(
        "Filter",
        'type(x) = "KNOWS" AND 1 / x.secret = 1',
        op("ProcedureCall", "my.things() :: (x :: ANY)", ids="x"),
        ids="x",
    )
    facts = read_plan(op("ProduceResults", "x", filtered, ids="x"))
    assert ANY in facts.labels_read


def test_what_a_written_dynamic_label_evaluates_is_read() -> None:
    """``SET n:$(expr)``, ``CREATE (m:$(expr))`` and ``-[:$(expr)]->``: expr is evaluated, so a
    label test in it reads that label and a function in it is a call (found by review: the
    write paths skipped it, so SET n:$(CASE WHEN n:Secret ...) told of an unreadable label)."""
    scan = op("NodeByLabelScan", "n:Person", ids="n")
    secret = 'n:$(CASE WHEN n:Secret THEN "Yes" ELSE "No" END)'
    for write in ("SetLabels", "RemoveLabels"):
        facts = read_plan(op("ProduceResults", "n", op(write, secret, scan, ids="n"), ids="n"))
        assert "Secret" in facts.labels_read, write
    called = op("SetLabels", "n:$(my.secretFn(n.name))", scan, ids="n")
    assert read_plan(op("ProduceResults", "n", called, ids="n")).functions == {"my.secretFn"}
    for details in ("(m:$(my.secretFn($x)))", "(n)-[r:$(my.secretFn($x))]->(n)"):
        created = op("Create", details, scan, ids="n m r")
        facts = read_plan(op("ProduceResults", "n", created, ids="n m r"))
        assert facts.functions == {"my.secretFn"}, details
    merged = op("Merge", "CREATE (m:$(my.secretFn($x)))", op("Argument", None), ids="m")
    assert read_plan(op("ProduceResults", "m", merged, ids="m")).functions == {"my.secretFn"}


def test_malformed_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Neo4j plan"):
        read_plan({"args": {}})
    with pytest.raises(ValueError, match="not a Neo4j plan"):
        read_plan(op("Union", None, op("Argument"), op("Argument"), op("AllNodesScan", "n")))


def test_a_load_the_plan_does_not_show_makes_the_plan_unreadable() -> None:
    """A LOAD CSV in the text but not in the plan is hidden where the reader did not look."""
    facts = read_plan(
        op("Projection", "$autoint_0 AS x", ids="x"),
        statement=(
            "RETURN head(COLLECT { LOAD CSV FROM 'file:///etc/passwd' AS r RETURN r }) AS x"
        ),
    )
    assert facts.load_csv == (DYNAMIC,)
    assert facts.unreadable == {"LOAD CSV the plan does not show"}


def test_only_neo4js_cached_property_form_is_one_token() -> None:
    plan = op("Projection", "cachex[size(COLLECT { MATCH (x:Secret) RETURN x.c })] AS ch")
    assert read_plan(plan).unreadable == {"Projection"}
    hidden = op("Projection", "cache[n.a] AND m:Movie AND x[0]] AS ch")
    assert read_plan(hidden).unreadable == {"Projection"}


def test_a_lock_list_without_its_end_is_unreadable_not_a_hang() -> None:
    merge = op("LockingMerge", "CREATE (m:Movie), LOCK(p, q", op("Argument", "p", ids="p"))
    assert read_plan(merge).unreadable == {"LockingMerge"}


def test_a_repeat_is_read_by_its_tokens() -> None:
    step = op(
        "Filter",
        "y:Movie",
        op("Expand(All)", "(x)-[r:ACTED_IN]->(y)", op("Argument", "x", ids="x")),
    )
    repeat = op(
        "Repeat(Trail)", "(s) (...){1, 3} (t)", op("NodeByLabelScan", "s:Person", ids="s"), step
    )
    assert read_plan(repeat).max_hops == 3
    # An end variable whose name looks like more details is one name: the bound is still 3.
    odd = op("Repeat(Trail)", "(s) (...){1, 3} (`t) (...){1, } (u`)", op("Argument"), step)
    assert read_plan(odd).max_hops == 3 and not read_plan(odd).unreadable
