package cyphergate.authz_test

import data.cyphergate.authz

nothing := {
	"query_type": "r",
	"labels": {"read": [], "write": []},
	"relationship_types": {"read": [], "write": []},
	"properties_written": [],
	"procedures": [],
	"functions": [],
	"load_csv": [],
	"operators": [],
	"deletes": false,
	"databases": ["neo4j"],
	"commands": [],
	"max_hops": null,
	"unreadable": [],
}

# An input document for `dag` on `database`; `facts` overrides fields of the empty analysis.
request(dag, database, facts) := {
	"version": 3,
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
	"analysis": object.union(nothing, facts),
}

decide(dag, facts) := d if {
	d := authz.decision with input as request(dag, "neo4j", facts)
}

test_reader_may_read if {
	d := decide("demo_reader", {"labels": {"read": ["*"], "write": []}, "operators": ["AllNodesScan"]})
	d.allow
	d.reasons == []
	d.shadow == false
	d.constraints == {"access_mode": "READ", "timeout_ms": 30000, "row_limit": null, "row_limit_action": "error"}
}

test_reader_may_not_write if {
	d := decide("demo_reader", {"query_type": "w", "labels": {"read": [], "write": ["Person"]}})
	not d.allow
	d.reasons == ["write_not_granted"]
}

test_reader_may_not_read_write if {
	d := decide("demo_reader", {"query_type": "rw"})
	d.reasons == ["write_not_granted"]
}

test_writer_may_write_anything if {
	d := decide("demo_writer", {
		"query_type": "rw",
		"labels": {"read": ["*"], "write": ["*"]},
		"relationship_types": {"read": ["*"], "write": ["*"]},
		"properties_written": ["*"],
		"deletes": true,
	})
	d.allow
	d.constraints.access_mode == "WRITE"
}

test_writer_calls_no_procedure if {
	d := decide("demo_writer", {"procedures": ["db.labels"], "functions": ["apoc.text.join"]})
	d.reasons == ["function_not_granted:apoc.text.join", "procedure_not_granted:db.labels"]
}

test_labels_dag_reads_its_labels if {
	d := decide("demo_labels", {
		"labels": {"read": ["Movie", "Person"], "write": []},
		"relationship_types": {"read": ["ACTED_IN"], "write": []},
	})
	d.allow
	d.constraints.row_limit == 1000
}

test_labels_dag_may_not_read_other_labels if {
	d := decide("demo_labels", {
		"labels": {"read": ["Account", "Person"], "write": []},
		"relationship_types": {"read": ["OWNS"], "write": []},
	})
	d.reasons == ["label_not_granted:Account", "relationship_type_not_granted:OWNS"]
}

test_any_label_needs_a_wildcard_grant if {
	d := decide("demo_labels", {"labels": {"read": ["*"], "write": []}})
	d.reasons == ["label_not_granted:*"]
}

test_labels_dag_writes_only_person if {
	ok := decide("demo_labels", {"query_type": "w", "labels": {"read": [], "write": ["Person"]}, "properties_written": ["name"]})
	ok.allow
	ok.constraints.access_mode == "WRITE"
	d := decide("demo_labels", {
		"query_type": "rw",
		"labels": {"read": ["Person"], "write": ["Movie", "Person"]},
		"relationship_types": {"read": [], "write": ["ACTED_IN"]},
		"deletes": true,
	})
	d.reasons == [
		"delete_not_granted",
		"label_write_not_granted:Movie",
		"relationship_type_write_not_granted:ACTED_IN",
	]
}

test_labels_dag_guardrails if {
	d := decide("demo_labels", {
		"labels": {"read": ["Person"], "write": []},
		"operators": ["AllNodesScan", "CartesianProduct", "Eager"],
		"max_hops": 11,
	})
	d.reasons == ["guardrail:cartesian_product", "guardrail:full_scan", "guardrail:unbounded_expand"]
}

test_unbounded_expand_counts_hops if {
	ten := decide("demo_labels", {"labels": {"read": ["Person"], "write": []}, "max_hops": 10})
	ten.allow
	unbounded := decide("demo_labels", {"labels": {"read": ["Person"], "write": []}, "max_hops": 2147483647})
	unbounded.reasons == ["guardrail:unbounded_expand"]
	grants := {"dags": {"etl": {"databases": {"neo4j": {
		"read": {"labels": ["*"], "relationship_types": ["*"]},
		"guardrails": ["unbounded_expand"],
		"max_hops": 3,
	}}}}}
	four := authz.decision with input as request("etl", "neo4j", {"max_hops": 4})
		with data.cyphergate.grants as grants
	four.reasons == ["guardrail:unbounded_expand"]
	three := authz.decision with input as request("etl", "neo4j", {"max_hops": 3})
		with data.cyphergate.grants as grants
	three.allow
}

test_an_unreadable_plan_is_refused_whatever_the_grant if {
	d := decide("demo_writer", {"unreadable": ["Frobnicate"]})
	d.reasons == ["plan_not_understood:Frobnicate"]
	not d.allow
	grants := {"dags": {"rollout": {"mode": "shadow", "databases": {"neo4j": {"read": {"labels": ["*"]}}}}}}
	shadow := authz.decision with input as request("rollout", "neo4j", {"unreadable": ["Frobnicate"]})
		with data.cyphergate.grants as grants
	not shadow.shadow
}

test_load_csv_by_prefix if {
	grants := {"dags": {"etl": {"databases": {"neo4j": {
		"read": {"labels": ["*"]},
		"load_csv": ["https://data.example.com/exports/"],
	}}}}}
	ok := authz.decision with input as request("etl", "neo4j", {"load_csv": ["https://data.example.com/exports/a.csv"]})
		with data.cyphergate.grants as grants
	ok.allow
	d := authz.decision with input as request("etl", "neo4j", {"load_csv": ["file:///etc/passwd", "$url"]})
		with data.cyphergate.grants as grants
	d.reasons == ["load_csv_not_granted:$url", "load_csv_not_granted:file:///etc/passwd"]
	none := decide("demo_writer", {"load_csv": ["https://data.example.com/exports/a.csv"]})
	none.reasons == ["load_csv_not_granted:https://data.example.com/exports/a.csv"]
}

test_db_ping_needs_no_grant if {
	d := decide("demo_writer", {"procedures": ["db.ping"]})
	d.allow
	d.reasons == []
}

test_procedure_namespaces if {
	grants := {"dags": {"ops": {"databases": {"neo4j": {"procedures": ["db.labels", "db.schema.*"]}}}}}
	ok := authz.decision with input as request("ops", "neo4j", {"procedures": ["db.labels", "db.schema.visualization"]})
		with data.cyphergate.grants as grants
	ok.allow
	d := authz.decision with input as request("ops", "neo4j", {"procedures": ["dbms.components", "db.labelsX"]})
		with data.cyphergate.grants as grants
	d.reasons == ["procedure_not_granted:db.labelsX", "procedure_not_granted:dbms.components"]
}

test_no_grant_lets_a_statement_replace_the_gateway_s_transaction_metadata if {
	grants := {"dags": {
		"ops": {"databases": {"neo4j": {"procedures": ["*"], "schema": true}}},
		"new": {"mode": "shadow", "databases": {"neo4j": {"procedures": ["tx.*"]}}},
	}}
	d := authz.decision with input as request("ops", "neo4j", {"procedures": ["tx.setMetaData"]})
		with data.cyphergate.grants as grants
	not d.allow
	d.reasons == ["procedure_not_grantable:tx.setMetaData"]
	s := authz.decision with input as request("new", "neo4j", {"procedures": ["tx.setMetaData"]})
		with data.cyphergate.grants as grants
	not s.allow
	s.shadow == false
}

test_shadow_mode_reports_but_does_not_allow if {
	grants := {"dags": {"new": {"mode": "shadow", "databases": {"neo4j": {"read": {"labels": ["Person"]}}}}}}
	d := authz.decision with input as request("new", "neo4j", {"labels": {"read": ["Account"], "write": []}})
		with data.cyphergate.grants as grants
	not d.allow
	d.shadow
	d.reasons == ["label_not_granted:Account"]
}

test_row_limit_and_action if {
	grants := {"dags": {"etl": {"databases": {"neo4j": {"row_limit": 10, "row_limit_action": "truncate"}}}}}
	d := authz.decision with input as request("etl", "neo4j", {})
		with data.cyphergate.grants as grants
	d.allow
	d.constraints.row_limit == 10
	d.constraints.row_limit_action == "truncate"
}

test_schema_needs_its_own_grant if {
	d := decide("demo_writer", {"query_type": "s"})
	d.reasons == ["schema_not_granted"]
}

test_schema_grant_allows_schema if {
	grants := {"dags": {"ops": {"databases": {"neo4j": {"schema": true}}}}}
	d := authz.decision with input as request("ops", "neo4j", {"query_type": "s"})
		with data.cyphergate.grants as grants
	d.allow
	d.constraints.timeout_ms == 30000
}

# A schema command's plan writes any label, type and property ("*": the gateway does not read
# which an index or constraint is on, and DROP ... name names none): a schema grant beside a
# write grant of some labels only allows none of them.
test_schema_grant_is_no_wider_than_the_write_grant if {
	grants := {"dags": {"ops": {"databases": {"neo4j": {
		"schema": true,
		"commands": ["CreateConstraint", "DropConstraint"],
		"write": {"labels": ["Person"], "relationship_types": [], "properties": ["*"]},
	}}}}}
	drop := {
		"query_type": "s", "commands": ["DropConstraint"],
		"labels": {"read": [], "write": ["*"]}, "relationship_types": {"read": [], "write": ["*"]},
		"properties_written": ["*"],
	}
	d := authz.decision with input as request("ops", "neo4j", drop) with data.cyphergate.grants as grants
	not d.allow
	d.reasons == ["label_write_not_granted:*", "relationship_type_write_not_granted:*"]
}

test_unknown_dag_denied if {
	d := decide("someone_else", {})
	d.reasons == ["dag_not_granted"]
	d.shadow == false
}

test_other_database_denied if {
	d := authz.decision with input as request("demo_writer", "system", {})
	d.reasons == ["database_not_granted:system"]
}

test_unknown_query_type_denied if {
	d := decide("demo_writer", {"query_type": "x"})
	not d.allow
	"unknown_query_type" in d.reasons
}

test_empty_input_denied if {
	d := authz.decision with input as {}
	not d.allow
}

test_commands_need_a_grant if {
	d := decide("demo_reader", {"commands": ["ShowTransactions"]})
	d.reasons == ["command_not_granted:ShowTransactions"]
	grants := {"dags": {"ops": {"databases": {"neo4j": {"commands": ["ShowTransactions", "ShowIndexes"]}}}}}
	ok := authz.decision with input as request("ops", "neo4j", {"commands": ["ShowIndexes"]})
		with data.cyphergate.grants as grants
	ok.allow
}

test_routed_to_the_system_database if {
	d := decide("demo_writer", {"query_type": "s", "databases": ["system"], "commands": ["AdministrationCommand"]})
	d.reasons == ["command_not_granted:AdministrationCommand", "database_not_granted:system", "schema_not_granted"]
}

test_a_plan_that_writes_writes_whatever_its_query_type if {
	d := decide("demo_reader", {"query_type": "r", "labels": {"read": [], "write": ["*"]}, "commands": ["TerminateTransactions"]})
	"write_not_granted" in d.reasons
	d.constraints.access_mode == "WRITE"
}

test_a_misspelt_guardrail_refuses if {
	grants := {"dags": {"etl": {"databases": {"neo4j": {"guardrails": ["fullscan"]}}}}}
	d := authz.decision with input as request("etl", "neo4j", {})
		with data.cyphergate.grants as grants
	d.reasons == ["unknown_guardrail:fullscan"]
}

test_shadow_mode_never_excuses_another_database_or_a_command if {
	grants := {"dags": {"new": {"mode": "shadow", "databases": {"neo4j": {"read": {"labels": ["*"]}}}}}}
	d := authz.decision with input as request("new", "neo4j", {"query_type": "s", "databases": ["system"], "commands": ["AdministrationCommand"]})
		with data.cyphergate.grants as grants
	not d.allow
	d.shadow == false
}

test_shadow_mode_never_excuses_a_load_csv_source_or_a_function if {
	grants := {"dags": {"new": {"mode": "shadow", "databases": {"neo4j": {"read": {"labels": ["*"]}}}}}}
	load := authz.decision with input as request("new", "neo4j", {"load_csv": ["file:///etc/passwd"]})
		with data.cyphergate.grants as grants
	load.reasons == ["load_csv_not_granted:file:///etc/passwd"]
	load.shadow == false
	call := authz.decision with input as request("new", "neo4j", {"functions": ["apoc.text.join"]})
		with data.cyphergate.grants as grants
	call.reasons == ["function_not_granted:apoc.text.join"]
	call.shadow == false
}

test_commands_need_a_grant_on_every_database_reached if {
	grants := {"dags": {"ops": {"databases": {
		"neo4j": {"commands": ["*"]},
		"system": {},
	}}}}
	d := authz.decision with input as request("ops", "neo4j", {"databases": ["system"], "commands": ["AdministrationCommand"]})
		with data.cyphergate.grants as grants
	d.reasons == ["command_not_granted:AdministrationCommand"]
}

test_load_csv_prefixes_cannot_be_escaped if {
	grants := {"dags": {"etl": {"databases": {"neo4j": {"load_csv": [
		"https://data.example.com/exports/",
		"https://data.example.com",
		"https://files.example.com/one.csv",
	]}}}}}
	d := authz.decision with input as request("etl", "neo4j", {"load_csv": [
		"https://data.example.com/exports/../internal/x.csv",
		"https://data.example.com/exports/%2E%2E/internal/x.csv",
		"https://data.example.com.evil.net/x.csv",
	]})
		with data.cyphergate.grants as grants
	count(d.reasons) == 3
	ok := authz.decision with input as request("etl", "neo4j", {"load_csv": ["https://files.example.com/one.csv"]})
		with data.cyphergate.grants as grants
	ok.allow
}

preflight_request(dag, database) := {
	"version": 3,
	"principal": {"method": "oidc", "issuer": "https://issuer.test", "subject": dag, "dag": dag},
	"request": {"database": database},
}

test_preflight_needs_a_grant_for_the_database_only if {
	reader := authz.preflight with input as preflight_request("demo_reader", "neo4j")
	reader == {"allow": true, "reasons": [], "procedures": false, "functions": false, "writes": false}
	other := authz.preflight with input as preflight_request("demo_reader", "other")
	other.reasons == ["database_not_granted:other"]
	unlisted := authz.preflight with input as preflight_request("demo_unlisted", "neo4j")
	unlisted.reasons == ["dag_not_granted"]
	grants := {"dags": {"ops": {"databases": {"neo4j": {"procedures": ["db.labels"], "functions": ["apoc.*"]}}}}}
	ops := authz.preflight with input as preflight_request("ops", "neo4j") with data.cyphergate.grants as grants
	ops.procedures
	ops.functions
	ops.writes # a granted procedure may write
}

test_preflight_says_whether_any_statement_may_write if {
	writer := authz.preflight with input as preflight_request("demo_writer", "neo4j")
	writer.writes
	reader := authz.preflight with input as preflight_request("demo_reader", "neo4j")
	not reader.writes
	schema := {"dags": {"ops": {"databases": {"neo4j": {"schema": true}}}}}
	authz.preflight.writes with input as preflight_request("ops", "neo4j") with data.cyphergate.grants as schema
	commands := {"dags": {"ops": {"databases": {"neo4j": {"commands": ["ShowIndexes"]}}}}}
	authz.preflight.writes with input as preflight_request("ops", "neo4j") with data.cyphergate.grants as commands
	shadow := {"dags": {"ops": {"mode": "shadow", "databases": {"neo4j": {"read": {"labels": ["*"]}}}}}}
	authz.preflight.writes with input as preflight_request("ops", "neo4j") with data.cyphergate.grants as shadow
	unlisted := authz.preflight with input as preflight_request("demo_unlisted", "neo4j")
	not unlisted.writes
}

# Whatever Neo4j's query type says, a plan that sets a property or deletes writes.
test_a_plan_that_sets_a_property_writes_whatever_its_query_type if {
	d := decide("demo_reader", {"properties_written": ["name"]})
	not d.allow
	d.reasons == ["write_not_granted"]
	d.constraints.access_mode == "WRITE"
}

test_a_plan_that_deletes_writes_whatever_its_query_type if {
	d := decide("demo_reader", {"deletes": true})
	not d.allow
	d.reasons == ["write_not_granted"]
	d.constraints.access_mode == "WRITE"
}

test_a_property_outside_the_write_grant_is_refused if {
	grants := {"dags": {"etl": {"databases": {"neo4j": {
		"read": {"labels": ["Person"]},
		"write": {"labels": ["Person"], "properties": ["name"]},
	}}}}}
	d := authz.decision with input as request("etl", "neo4j", {"query_type": "w", "labels": {"read": ["Person"], "write": ["Person"]}, "properties_written": ["name", "salary"]})
		with data.cyphergate.grants as grants
	not d.allow
	d.reasons == ["property_write_not_granted:salary"]
}

test_shadow_mode_never_excuses_an_unknown_query_type if {
	grants := {"dags": {"new": {"mode": "shadow", "databases": {"neo4j": {"read": {"labels": ["*"]}}}}}}
	d := authz.decision with input as request("new", "neo4j", {"query_type": "x"})
		with data.cyphergate.grants as grants
	not d.allow
	d.reasons == ["unknown_query_type"]
	d.shadow == false
}
