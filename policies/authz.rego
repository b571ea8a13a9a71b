# METADATA
# title: CypherGate authorization
# description: |
#   Decides whether a DAG may run a Cypher statement on a database. Deny by default: a
#   request is allowed only when the DAG's grant for the database covers everything Neo4j's
#   EXPLAIN plan says the statement touches: labels and relationship types read and written,
#   properties set, deletes, procedures and functions called, LOAD CSV sources, and the
#   plan guardrails. This file is the engine; the grants are data (data.json) that a security
#   team edits without writing Rego. In an analysis, "*" means "could be any": it is covered
#   only by a grant of "*".
# schemas:
#   - input: schema.input
package cyphergate.authz

default_timeout_ms := 30000

# The unbounded_expand guardrail's limit on the hops of a variable-length pattern, unless the
# grant sets its own max_hops.
default_max_hops := 10

# Guardrail name -> the plan operators it refuses (unbounded_expand looks at max_hops instead).
guardrail_operators := {
	"full_scan": {"AllNodesScan", "AllRelationshipsScan"},
	"cartesian_product": {"CartesianProduct"},
	"eager": {"Eager"},
}

known_guardrails := {name | some name, _ in guardrail_operators} | {"unbounded_expand"}

grant := data.cyphergate.grants.dags[input.principal.dag]

database_grant := grant.databases[input.request.database]

analysis := input.analysis

writes if analysis.query_type in {"w", "rw"}

# Whatever Neo4j's query type says, a plan that writes anything writes (TERMINATE TRANSACTIONS,
# for one, plans as "r").
writes if count(analysis.labels.write) + count(analysis.relationship_types.write) > 0

writes if count(analysis.properties_written) > 0

writes if analysis.deletes

write_grant := database_grant.write

granted_list(path) := object.get(database_grant, path, [])

# A name is covered by a list of grants when the list holds it or "*".
covered(grants, _) if "*" in grants

covered(grants, name) if name in grants

# Procedure and function grants may end in ".*" to cover a namespace ("db.*").
covered_call(grants, name) if covered(grants, name)

covered_call(grants, name) if {
	some pattern in grants
	endswith(pattern, ".*")
	startswith(name, trim_suffix(pattern, "*"))
}

reasons contains "dag_not_granted" if not grant

# Preflight: asked before the statement is planned, on the principal and the database alone, so
# that a DAG with no grant for the database learns nothing from Neo4j's planning errors (whether
# the database, a label or a procedure exists). It also says whether the DAG may call any
# procedure or user-defined function at all: if not, a planning error about an unknown one is
# answered as a refusal, like a call to a known one would be.
preflight_reasons contains "dag_not_granted" if not grant

preflight_reasons contains sprintf("database_not_granted:%s", [input.request.database]) if {
	grant
	not database_grant
}

default may_call_procedures := false

may_call_procedures if count(granted_list(["procedures"])) > 0

default may_call_functions := false

may_call_functions if count(granted_list(["functions"])) > 0

# Whether any statement of the DAG on the database may write: an explicit transaction it opens
# is begun WRITE then, even if its first statement only reads (the next may write, and Neo4j
# cannot change a transaction's mode); READ otherwise, so that Neo4j refuses a write as well. A
# granted procedure or command, or a schema grant, may write; shadow mode runs what the policy
# refuses.
default may_write := false

may_write if write_grant

may_write if database_grant.schema

may_write if count(granted_list(["commands"])) > 0

may_write if may_call_procedures

may_write if grant.mode == "shadow"

preflight := {
	"allow": count(preflight_reasons) == 0,
	"reasons": sort(preflight_reasons),
	"procedures": may_call_procedures,
	"functions": may_call_functions,
	"writes": may_write,
}

# Every database the statement reaches needs a grant: the one in the URL, and every one the
# plan runs on (Neo4j routes administration commands and `USE system CALL ...` to system).
databases_reached contains input.request.database

databases_reached contains name if some name in analysis.databases

reasons contains sprintf("database_not_granted:%s", [name]) if {
	grant
	some name in databases_reached
	not grant.databases[name]
}

# Commands and procedures, likewise, need a grant on every database reached (CREATE USER
# sent to /db/neo4j runs on system).

calls_granted(kind, name) if {
	every db in databases_reached {
		covered_call(object.get(object.get(grant.databases, db, {}), kind, []), name)
	}
}

reasons contains sprintf("command_not_granted:%s", [name]) if {
	database_grant
	some name in analysis.commands
	not calls_granted("commands", name)
}

reasons contains "unknown_query_type" if not analysis.query_type in {"r", "rw", "w", "s"}

# Something in the plan the gateway could not read (an operator it does not know, details in an
# unknown form, a name Neo4j prints ambiguously): whatever the grant, it is refused.
reasons contains sprintf("plan_not_understood:%s", [what]) if {
	some what in analysis.unreadable
}

reasons contains "schema_not_granted" if {
	database_grant
	analysis.query_type == "s"
	not database_grant.schema
}

reasons contains "write_not_granted" if {
	database_grant
	writes
	not write_grant
}

reasons contains sprintf("label_not_granted:%s", [label]) if {
	database_grant
	some label in analysis.labels.read
	not covered(granted_list(["read", "labels"]), label)
}

reasons contains sprintf("relationship_type_not_granted:%s", [rel_type]) if {
	database_grant
	some rel_type in analysis.relationship_types.read
	not covered(granted_list(["read", "relationship_types"]), rel_type)
}

reasons contains sprintf("label_write_not_granted:%s", [label]) if {
	write_grant
	some label in analysis.labels.write
	not covered(granted_list(["write", "labels"]), label)
}

reasons contains sprintf("relationship_type_write_not_granted:%s", [rel_type]) if {
	write_grant
	some rel_type in analysis.relationship_types.write
	not covered(granted_list(["write", "relationship_types"]), rel_type)
}

reasons contains sprintf("property_write_not_granted:%s", [key]) if {
	write_grant
	some key in analysis.properties_written
	not covered(granted_list(["write", "properties"]), key)
}

reasons contains "delete_not_granted" if {
	write_grant
	analysis.deletes
	not write_grant.delete
}

# Procedures any DAG may call: they read nothing and change nothing. Clients call them to check
# a connection (cypher-shell runs db.ping() as it connects).
harmless_procedures := {"db.ping"}

reasons contains sprintf("procedure_not_granted:%s", [name]) if {
	database_grant
	some name in analysis.procedures
	not name in harmless_procedures
	not name in ungrantable_procedures
	not calls_granted("procedures", name)
}

# Procedures no grant covers: tx.setMetaData replaces the transaction's metadata, where the
# gateway puts the dag, task, run, request and decision ids that join Neo4j's own records of a
# transaction to the audit log (a caller's metadata goes in its BEGIN or RUN: it is kept beside
# the gateway's keys, never over them).
ungrantable_procedures := {"tx.setMetaData"}

reasons contains sprintf("procedure_not_grantable:%s", [name]) if {
	some name in analysis.procedures
	name in ungrantable_procedures
}

reasons contains sprintf("function_not_granted:%s", [name]) if {
	database_grant
	some name in analysis.functions
	not covered_call(granted_list(["functions"]), name)
}

reasons contains sprintf("load_csv_not_granted:%s", [source]) if {
	database_grant
	some source in analysis.load_csv
	not load_csv_granted(source)
}

load_csv_granted(source) if covered(granted_list(["load_csv"]), source)

# Only literal URLs can match; a URL from a parameter or expression needs "*". A prefix must
# end in "/" (so "https://data.example.com" cannot cover "https://data.example.com.evil.net"),
# and a source that could climb out of it ("..", or dots percent-encoded) never matches.
load_csv_granted(source) if {
	some prefix in granted_list(["load_csv"])
	endswith(prefix, "/")
	startswith(source, prefix)
	not contains(source, "..")
	not contains(lower(source), "%2e")
}

reasons contains sprintf("guardrail:%s", [name]) if {
	database_grant
	some name in granted_list(["guardrails"])
	some operator in analysis.operators
	operator in guardrail_operators[name]
}

max_hops := n if {
	n := database_grant.max_hops
} else := default_max_hops

reasons contains "guardrail:unbounded_expand" if {
	database_grant
	"unbounded_expand" in granted_list(["guardrails"])
	analysis.max_hops != null
	analysis.max_hops > max_hops
}

# A guardrail the engine does not know would silently guard nothing: refuse instead.
reasons contains sprintf("unknown_guardrail:%s", [name]) if {
	database_grant
	some name in granted_list(["guardrails"])
	not name in known_guardrails
}

default allow := false

allow if {
	database_grant
	count(reasons) == 0
}

# Shadow mode, for rolling out a policy: the gateway records the refusal and runs anyway,
# except for refusals no rollout excuses: another database (system, where users are
# administered), commands, procedures and user-defined functions (plugin code), LOAD CSV
# sources (Neo4j reads the file or fetches the URL: a way out of the graph, onto the server's
# disk or network) and statements of unknown type stay refused.
default shadow := false

shadow if {
	grant.mode == "shadow"
	not hard_refusal
}

hard_refusal if {
	some reason in reasons
	some kind in {
		"database_not_granted:", "command_not_granted:", "procedure_not_granted:",
		"function_not_granted:", "load_csv_not_granted:", "plan_not_understood:",
		"procedure_not_grantable:",
	}
	startswith(reason, kind)
}

hard_refusal if "unknown_query_type" in reasons

access_mode := "READ" if {
	analysis.query_type == "r"
	not writes
}

else := "WRITE"

timeout_ms := t if {
	t := database_grant.timeout_ms
} else := default_timeout_ms

row_limit := n if {
	n := database_grant.row_limit
} else := null

row_limit_action := a if {
	a := database_grant.row_limit_action
} else := "error"

decision := {
	"allow": allow,
	"reasons": sort(reasons),
	"shadow": shadow,
	"constraints": {
		"access_mode": access_mode,
		"timeout_ms": timeout_ms,
		"row_limit": row_limit,
		"row_limit_action": row_limit_action,
	},
}
