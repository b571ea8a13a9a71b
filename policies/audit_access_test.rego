package cyphergate.audit_access_test

import data.cyphergate.audit_access

caller(identity) := {"version": 1, "action": "audit.read", "identity": identity}

auditor := {"method": "oidc", "issuer": "https://idp", "subject": "demo_auditor", "client_id": "demo_auditor"}

test_listed_reviewer_may_read if {
	d := audit_access.decision with input as caller(auditor)
	d.allow
	d.reasons == []
}

test_dag_identity_may_not_read if {
	identity := {"method": "oidc", "issuer": "https://idp", "subject": "demo_reader", "client_id": "demo_reader"}
	d := audit_access.decision with input as caller(identity)
	not d.allow
	d.reasons == ["not_a_reviewer"]
}

test_pinned_issuer_must_match if {
	reviewers := [{"issuer": "https://trusted", "subject": "alice"}]
	identity := {"method": "oidc", "issuer": "https://other", "subject": "alice", "client_id": null}
	d := audit_access.decision with input as caller(identity) with data.cyphergate.reviewers as reviewers
	not d.allow
}

test_empty_entry_matches_nobody if {
	d := audit_access.decision with input as caller(auditor) with data.cyphergate.reviewers as [{}]
	not d.allow
}
