"""Helpers for callers: how a worker proves its AWS identity to CypherGate.

Usage from any boto3 session (an Airflow worker's instance role, an IRSA pod, a profile)::

    from proxy.client import iam_authorization
    header = iam_authorization(boto3.Session(), server_id="cyphergate-prod")
    httpx.post(url, json=body, headers={"Authorization": header})
"""

from __future__ import annotations

import base64
import json

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from proxy.auth.aws_iam import GET_CALLER_IDENTITY_BODY, SCHEME, SERVER_ID_HEADER

DEFAULT_STS_URL = "https://sts.amazonaws.com/"


def iam_authorization(
    session: boto3.Session,
    *,
    server_id: str,
    sts_url: str = DEFAULT_STS_URL,
    region: str = "us-east-1",
) -> str:
    """An ``Authorization`` header value proving who ``session`` is; valid for minutes."""
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("the boto3 session has no credentials")
    request = AWSRequest(
        method="POST",
        url=sts_url,
        data=GET_CALLER_IDENTITY_BODY,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            SERVER_ID_HEADER: server_id,
        },
    )
    SigV4Auth(credentials.get_frozen_credentials(), "sts", region).add_auth(request)
    proof = {
        "method": "POST",
        "url": sts_url,
        "body": base64.b64encode(GET_CALLER_IDENTITY_BODY.encode()).decode("ascii"),
        "headers": {name: str(value) for name, value in request.headers.items()},
    }
    return f"{SCHEME} " + base64.b64encode(json.dumps(proof).encode()).decode("ascii")
