# METADATA
# title: CypherGate authorization
# description: |
#   Decides whether a DAG may run a Cypher statement on a database. Deny by default: a
#   request is allowed only when the DAG has a grant for the database that covers what
#   Neo4j's EXPLAIN says the statement does. Grants live in data.json, not here.
# schemas:
#   - input: schema.input
package cyphergate.authz

default_timeout_ms := 30000

grant := data.cyphergate.grants.dags[input.principal.dag]

database_grant := grant.databases[input.request.database]

writes if input.analysis.query_type in {"w", "rw"}

reasons contains "dag_not_granted" if not grant

reasons contains sprintf("database_not_granted:%s", [input.request.database]) if {
	grant
	not database_grant
}

reasons contains "write_not_granted" if {
	database_grant
	writes
	not database_grant.write
}

reasons contains "schema_not_granted" if {
	database_grant
	input.analysis.query_type == "s"
	not database_grant.schema
}

reasons contains "unknown_query_type" if not input.analysis.query_type in {"r", "rw", "w", "s"}

default allow := false

allow if {
	database_grant
	count(reasons) == 0
}

access_mode := "READ" if input.analysis.query_type == "r"

else := "WRITE"

timeout_ms := t if {
	t := database_grant.timeout_ms
} else := default_timeout_ms

decision := {
	"allow": allow,
	"reasons": sort(reasons),
	"constraints": {
		"access_mode": access_mode,
		"timeout_ms": timeout_ms,
	},
}
