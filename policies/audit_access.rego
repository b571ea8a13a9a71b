# METADATA
# title: CypherGate audit access
# description: |
#   Decides who may read the audit log through the gateway's HTTP API and web page. Deny by
#   default: only identities listed as reviewers in data.json. A reviewer entry matches when
#   every field it names equals the caller's; pin "issuer" in production.
# schemas:
#   - input: schema.audit_input
package cyphergate.audit_access

default allow := false

matches(entry) if {
	every field, value in entry {
		input.identity[field] == value
	}
}

allow if {
	some entry in data.cyphergate.reviewers
	count(entry) > 0
	matches(entry)
}

reasons contains "not_a_reviewer" if not allow

decision := {"allow": allow, "reasons": sort(reasons)}
