"""The words both sides of the HTTP door agree on: header names and the IAM proof's fixed parts.

Standard library only, and importing nothing of ``proxy``: the caller's side
(:mod:`proxy.client`, and through it the Airflow provider on every worker) takes them from here
without importing a line of the server.
"""

from __future__ import annotations

# Every answer of the HTTP door carries it, refusals included; it is the id of the request's
# audit records (``cyphergate audit query --request-id``).
REQUEST_ID_HEADER = "X-CypherGate-Request-ID"
# The IAM proof: ``Authorization: CypherGate-AWS-IAM <proof>``, a signed GetCallerIdentity with
# exactly this body, signed over the gateway's server id (see proxy/auth/aws_iam.py).
IAM_SCHEME = "CypherGate-AWS-IAM"
SERVER_ID_HEADER = "X-CypherGate-Server-ID"
GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
