package cyphergate.authz_test

import data.cyphergate.authz

request(dag, database, query_type) := {
	"version": 1,
	"principal": {
		"method": "oidc", "issuer": "https://issuer.test", "subject": dag, "dag": dag,
		"task": "t", "run": "manual__2026-01-01T00:00:00+00:00", "try_number": 1,
	},
	"request": {
		"database": database,
		"statement": "RETURN 1",
		"parameter_names": [],
		"access_mode": null,
	},
	"analysis": {"query_type": query_type},
}

test_reader_may_read if {
	d := authz.decision with input as request("demo_reader", "neo4j", "r")
	d.allow
	d.reasons == []
	d.constraints.access_mode == "READ"
	d.constraints.timeout_ms == 30000
}

test_reader_may_not_write if {
	d := authz.decision with input as request("demo_reader", "neo4j", "w")
	not d.allow
	d.reasons == ["write_not_granted"]
}

test_reader_may_not_read_write if {
	d := authz.decision with input as request("demo_reader", "neo4j", "rw")
	not d.allow
	d.reasons == ["write_not_granted"]
}

test_writer_may_write if {
	d := authz.decision with input as request("demo_writer", "neo4j", "rw")
	d.allow
	d.constraints.access_mode == "WRITE"
}

test_schema_needs_its_own_grant if {
	d := authz.decision with input as request("demo_writer", "neo4j", "s")
	not d.allow
	d.reasons == ["schema_not_granted"]
}

test_schema_grant_allows_schema if {
	grants := {"dags": {"ops": {"databases": {"neo4j": {"write": true, "schema": true}}}}}
	d := authz.decision with input as request("ops", "neo4j", "s")
		with data.cyphergate.grants as grants
	d.allow
	d.constraints.timeout_ms == 30000
}

test_unknown_dag_denied if {
	d := authz.decision with input as request("someone_else", "neo4j", "r")
	not d.allow
	d.reasons == ["dag_not_granted"]
}

test_other_database_denied if {
	d := authz.decision with input as request("demo_writer", "system", "r")
	not d.allow
	d.reasons == ["database_not_granted:system"]
}

test_unknown_query_type_denied if {
	d := authz.decision with input as request("demo_writer", "neo4j", "x")
	not d.allow
	"unknown_query_type" in d.reasons
}

test_empty_input_denied if {
	d := authz.decision with input as {}
	not d.allow
}
