"""IAM proofs against a fake STS at the HTTP seam: what is forwarded, and how answers are read.

The real round trip through moto's STS, with signature checking on, is in test_identity.py and
test_hostile_credentials.py; a moto of its own here names roles with paths as IAM does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from proxy.auth.aws_iam import IAMAuthenticator
from proxy.client import iam_authorization
from proxy.errors import AuthenticationFailed, CypherGateError, IdentityProviderUnavailable
from proxy.principal import DagResolver, Identity
from proxy.settings import BindingSettings, IAMSettings

STS = "https://sts.example.test/"
SESSION = boto3.Session(
    aws_access_key_id="AKIAEXAMPLE",
    aws_secret_access_key="not-a-real-secret",
    region_name="us-east-1",
)


def answer(arn: str, account: str = "111122223333") -> bytes:
    return (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>X</UserId>"
        f"<Account>{account}</Account></GetCallerIdentityResult></GetCallerIdentityResponse>"
    ).encode()


def run(response: httpx.Response) -> tuple[list[httpx.Request], Identity | CypherGateError]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response

    auth = IAMAuthenticator(
        IAMSettings(sts_endpoints=[STS], server_id="gw"),
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        clock=time.time,
    )
    header = iam_authorization(SESSION, server_id="gw", sts_url=STS)
    result: Identity | CypherGateError
    try:
        result = asyncio.run(auth.authenticate(header.split(" ", 1)[1]))
    except (AuthenticationFailed, IdentityProviderUnavailable) as error:
        result = error
    return seen, result


def test_assumed_role_becomes_its_role_and_only_sts_is_called() -> None:
    seen, identity = run(
        httpx.Response(
            200, content=answer("arn:aws:sts::111122223333:assumed-role/etl-role/i-0123456789")
        )
    )
    assert isinstance(identity, Identity)
    assert identity.subject == "arn:aws:iam::111122223333:role/etl-role"
    assert identity.issuer == "aws:111122223333"
    (request,) = seen
    assert str(request.url) == STS and request.method == "POST"
    assert request.content == b"Action=GetCallerIdentity&Version=2011-06-15"
    assert request.headers["x-cyphergate-server-id"] == "gw"


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(403, content=b"<Error/>"), "iam_sts_rejected"),
        (httpx.Response(302, headers={"Location": "http://169.254.169.254/"}), "iam_sts_rejected"),
        (httpx.Response(200, content=b"not xml"), "iam_sts_malformed"),
        (
            httpx.Response(200, content=b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'),
            "iam_sts_malformed",
        ),
        (
            httpx.Response(200, content=answer("arn:aws:iam::111122223333:group/admins")),
            "iam_unsupported_principal",
        ),
        (
            httpx.Response(200, content=answer("arn:aws:iam::999999999999:role/r")),
            "iam_sts_malformed",
        ),
        (httpx.Response(500), "iam_sts_status_500"),
    ],
)
def test_sts_answers_that_do_not_prove_an_identity(response: httpx.Response, reason: str) -> None:
    seen, error = run(response)
    assert len(seen) == 1  # one call, redirects never followed
    assert isinstance(error, CypherGateError)
    assert error.reason == reason


def sts_error(
    code: str, namespace: str = ' xmlns="https://sts.amazonaws.com/doc/2011-06-15/"'
) -> bytes:
    return (
        f"<ErrorResponse{namespace}><Error><Type>Sender</Type><Code>{code}</Code>"
        "<Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    ).encode()


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(400, content=sts_error("Throttling")),
        httpx.Response(400, content=sts_error("Throttling", namespace="")),
        httpx.Response(400, content=sts_error("RequestLimitExceeded")),
        httpx.Response(429, content=b""),
    ],
)
def test_sts_throttling_the_gateway_is_unavailable_not_a_bad_proof(
    response: httpx.Response,
) -> None:
    """Found by review: STS answers a burst of GetCallerIdentity calls with 400 Throttling
    ("Rate exceeded"), and the gateway refused the caller's sound proof with 401
    (iam_sts_rejected): over Bolt, Unauthorized, which drivers do not retry, and an audit
    record that reads like a forged proof. It is STS that is unavailable: 503, retried."""
    seen, error = run(response)
    assert len(seen) == 1
    assert isinstance(error, IdentityProviderUnavailable), error
    assert error.reason == "iam_sts_throttled"


@pytest.mark.parametrize(
    "code", ["SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken", "AccessDenied"]
)
def test_sts_refusing_the_proof_is_a_bad_proof(code: str) -> None:
    for status in (400, 403):
        _, error = run(httpx.Response(status, content=sts_error(code)))
        assert isinstance(error, AuthenticationFailed) and error.reason == "iam_sts_rejected"


def test_proof_encoding_is_documented_json() -> None:
    header = iam_authorization(SESSION, server_id="gw", sts_url=STS)
    scheme, proof = header.split(" ", 1)
    assert scheme == "CypherGate-AWS-IAM"
    decoded = json.loads(base64.b64decode(proof))
    assert set(decoded) == {"method", "url", "body", "headers"}
    assert "x-cyphergate-server-id" in decoded["headers"]["Authorization"]


@pytest.mark.parametrize(("ahead_s", "reaches_sts"), [(30, True), (90, False), (290, False)])
def test_a_proof_signed_ahead_of_our_clock_is_refused_beyond_the_clock_skew(
    ahead_s: int, reaches_sts: bool
) -> None:
    """Dated 290 s ahead, a proof would be good (and remembered) for nearly twice the window."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=answer("arn:aws:iam::111122223333:role/etl"))

    auth = IAMAuthenticator(
        IAMSettings(sts_endpoints=[STS], server_id="gw"),
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        clock=lambda: time.time() - ahead_s,  # our clock behind the signer's
    )
    header = iam_authorization(SESSION, server_id="gw", sts_url=STS)
    try:
        asyncio.run(auth.authenticate(header.split(" ", 1)[1]))
    except AuthenticationFailed as error:
        assert error.reason == "iam_request_stale"
    assert bool(seen) == reaches_sts


@pytest.mark.parametrize("path", ["/", "/service-role/", "/airflow/etl/"])
def test_a_role_bound_by_the_arn_iam_gives_it_acts_as_its_dag(path: str) -> None:
    """Found by review: IAM names a role with its path (``role/service-role/etl``, as ``aws iam
    get-role`` and the console give it), STS names its sessions without it
    (``assumed-role/etl/worker``), so a binding written with the role's own ARN never matched
    and its DAG was refused (``identity_not_mapped``). Here moto's STS, in server mode, makes
    and answers the proof; a role's name is unique in its account, whatever its path."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}/"
        httpx.post(endpoint + "moto-api/reset").raise_for_status()  # moto's state is per process
        admin = boto3.Session(
            aws_access_key_id="admin", aws_secret_access_key="admin", region_name="us-east-1"
        )
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        iam = admin.client("iam", endpoint_url=endpoint)
        role = iam.create_role(RoleName="etl", Path=path, AssumeRolePolicyDocument=trust)
        arn = role["Role"]["Arn"]
        sts = admin.client("sts", endpoint_url=endpoint)
        keys = sts.assume_role(RoleArn=arn, RoleSessionName="etl-worker")["Credentials"]
        worker = boto3.Session(
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
            region_name="us-east-1",
        )
        header = iam_authorization(worker, server_id="gw", sts_url=endpoint)

        async def verified() -> Identity:
            async with httpx.AsyncClient() as http:
                auth = IAMAuthenticator(
                    IAMSettings(sts_endpoints=[endpoint], server_id="gw"), http, clock=time.time
                )
                return await auth.authenticate(header.split(" ", 1)[1])

        identity = asyncio.run(verified())
    finally:
        server.stop()
    resolver = DagResolver([BindingSettings(iam_role_arn=arn, dags=["etl"])])
    assert resolver.allowed_dags(identity) == {"etl"}, (arn, identity.subject)
