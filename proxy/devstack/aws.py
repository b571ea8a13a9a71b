"""The stack's AWS, in moto: IAM users and roles, the archive bucket, the Neo4j secrets, and
what the stack's tools sign with (an IAM proof for a DAG, the gateway's environment)."""

from __future__ import annotations

import json
from typing import Any, Literal

import boto3
import httpx

from proxy.client import iam_authorization
from proxy.devstack.state import (
    ADMIN_SECRET,
    ARCHIVE_BUCKET,
    AWS_ACCOUNT,
    AWS_REGION,
    GATEWAY_NEO4J_USER,
    GATEWAY_SECRET,
    POLICY_BUCKET,
    SERVER_ID,
    StackState,
    role_arn,
)

Service = Literal["iam", "s3", "secretsmanager", "sts"]


def _client(state: StackState, service: Service, keys: dict[str, str]) -> Any:
    """A boto3 client of moto's ``service``, signing with ``keys`` (an access key's ``id`` and
    ``secret``)."""
    return boto3.client(
        service,
        endpoint_url=state.sts_url(),
        region_name=AWS_REGION,
        aws_access_key_id=keys["id"],
        aws_secret_access_key=keys["secret"],
    )


def set_up_aws(state: StackState) -> None:
    """IAM in moto: a worker user that may assume one role per demo DAG, the audit archive's
    bucket and user, the Neo4j credentials in Secrets Manager and the gateway's user that may
    read and rotate them; then moto checks signatures, as AWS does."""
    endpoint = state.sts_url()

    def bootstrap(service: Service) -> Any:
        # moto accepts any key until auth is switched on at the end of this method.
        return _client(state, service, {"id": "bootstrap", "secret": "bootstrap"})

    iam = bootstrap("iam")

    def document(statement: dict[str, Any]) -> str:
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    def user_with(name: str, policy: str, actions: list[str], resource: Any) -> dict[str, str]:
        """An IAM user allowed ``actions`` on ``resource``, and its access key."""
        iam.create_user(UserName=name)
        allow = {"Effect": "Allow", "Action": actions, "Resource": resource}
        iam.put_user_policy(UserName=name, PolicyName=policy, PolicyDocument=document(allow))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    # The Airflow worker may assume one role per demo DAG.
    worker = user_with(
        "airflow-worker", "assume-dag-roles", ["sts:AssumeRole", "sts:GetCallerIdentity"], "*"
    )
    trust = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{AWS_ACCOUNT}:user/airflow-worker"},
        "Action": "sts:AssumeRole",
    }
    whoami = {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}
    for dag in state.dags():
        role = role_arn(dag).rsplit("/", 1)[1]
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=document(trust))
        iam.put_role_policy(RoleName=role, PolicyName="whoami", PolicyDocument=document(whoami))
    # The audit archive: a bucket with Object Lock, and a user that may only write and read it.
    bootstrap("s3").create_bucket(Bucket=ARCHIVE_BUCKET, ObjectLockEnabledForBucket=True)
    archiver = user_with(
        "audit-archiver",
        "archive",
        [
            "s3:PutObject",
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:ListBucket",
            "s3:ListBucketVersions",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
        ],
        [f"arn:aws:s3:::{ARCHIVE_BUCKET}", f"arn:aws:s3:::{ARCHIVE_BUCKET}/*"],
    )
    # Policy bundles: CI publishes them, OPA may only read them.
    bootstrap("s3").create_bucket(Bucket=POLICY_BUCKET)
    bundles = f"arn:aws:s3:::{POLICY_BUCKET}/*"
    publisher = user_with("policy-publisher", "publish", ["s3:PutObject"], bundles)
    opa_reader = user_with("opa-bundles", "read", ["s3:GetObject"], bundles)
    # The Neo4j credentials, in Secrets Manager; the gateway's user may read and rotate them.
    secrets_manager = bootstrap("secretsmanager")
    for name, user, password in (
        (GATEWAY_SECRET, GATEWAY_NEO4J_USER, state.gateway_password),
        (ADMIN_SECRET, "neo4j", state.neo4j_password),
    ):
        secrets_manager.create_secret(
            Name=name, SecretString=json.dumps({"username": user, "password": password})
        )
    gateway = user_with(
        "cyphergate-gateway",
        "neo4j-secrets",
        [
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:ListSecretVersionIds",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:DescribeSecret",
            # Tests give second gateways secrets of their own, and scan all of them.
            "secretsmanager:CreateSecret",
            "secretsmanager:ListSecrets",
        ],
        "*",
    )
    # From here on moto checks every request's signature, as AWS does.
    httpx.post(endpoint + "moto-api/reset-auth", content=b"0", timeout=10).raise_for_status()
    state.aws_user_keys, state.archiver_keys, state.gateway_aws_keys = worker, archiver, gateway
    state.policy_publisher_keys, state.opa_bundle_keys = publisher, opa_reader


def iam_header(state: StackState, role: str, *, server_id: str = SERVER_ID) -> str:
    """An IAM proof signed with credentials from ``AssumeRole`` on ``role`` (moto's STS)."""
    sts = _client(state, "sts", state.aws_user_keys)
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="airflow-worker")["Credentials"]
    session = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=AWS_REGION,
    )
    return iam_authorization(
        session, server_id=server_id, sts_url=state.sts_url(), region=AWS_REGION
    )


def gateway_aws_env(state: StackState) -> dict[str, str]:
    """The environment of a process acting as the gateway towards AWS (moto)."""
    keys = state.gateway_aws_keys
    return {
        "AWS_ACCESS_KEY_ID": keys["id"],
        "AWS_SECRET_ACCESS_KEY": keys["secret"],
        "AWS_DEFAULT_REGION": AWS_REGION,
    }


def secret(state: StackState, name: str) -> dict[str, str]:
    """A Neo4j credential as Secrets Manager holds it now (AWSCURRENT)."""
    client = _client(state, "secretsmanager", state.gateway_aws_keys)
    # Name the stage: moto's default version does not follow update_secret_version_stage.
    answer = client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    value: dict[str, str] = json.loads(answer["SecretString"])
    return value


def publish_bundle(state: StackState, bundle: bytes, key: str) -> None:
    """Upload a policy bundle to the stack's bundle bucket, as CI's publisher."""
    s3 = _client(state, "s3", state.policy_publisher_keys)
    s3.put_object(Bucket=POLICY_BUCKET, Key=key, Body=bundle)


def opa_bundle_env(state: StackState) -> dict[str, str]:
    """The environment OPA's S3 signing reads: its read-only user of the bundle bucket."""
    keys = state.opa_bundle_keys
    return {
        "AWS_ACCESS_KEY_ID": keys["id"],
        "AWS_SECRET_ACCESS_KEY": keys["secret"],
        "AWS_REGION": AWS_REGION,
    }
