"""Bundle mode on the real OPA and moto's S3: signed bundles, named by a revision, refused when
signed by another key, unsigned or altered, while the last good bundle keeps serving.

CI's side is ``cyphergate policy build``; the bucket, its publisher and OPA's read-only user are
the devstack's (proxy/devstack/aws.py). OPA here is a private one, configured as the README's
bundle mode says, polling every second or two.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from proxy.app import open_policy
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.bundles import build_bundle, opa_bundle_config
from proxy.devstack import aws
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.devstack.stack import DevStack
from proxy.devstack.state import POLICY_BUCKET, StackState
from proxy.opa_server import configured_opa
from proxy.policy import Decision
from proxy.settings import OPASettings
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = "cyphergate.tar.gz"
PREFLIGHT = {"version": 3, "principal": {"dag": "bundle_dag"}, "request": {"database": "neo4j"}}


def key_pair(folder: Path, name: str) -> tuple[Path, str]:
    """A new RSA private key file, and its public key as PEM text."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


class Bundles:
    """A policy folder to edit, build and publish, and the OPA that serves its bundles."""

    def __init__(self, stack: DevStack, folder: Path) -> None:
        self.state = StackState.load(stack.state_file)
        self.folder = folder
        self.policies = shutil.copytree(REPO / "policies", folder / "policies")
        self.signing_key, self.public_key = key_pair(folder, "release")
        self.other_key, _ = key_pair(folder, "other")
        self.opa = ensure_opa(default_cache_dir())
        self.log = folder / "opa.log"
        self.settings: OPASettings | None = None

    def grant(self, dag: str) -> None:
        data_file = self.policies / "data.json"
        data = json.loads(data_file.read_text(encoding="utf-8"))
        data["cyphergate"]["grants"]["dags"][dag] = {"databases": {"neo4j": {}}}
        data_file.write_text(json.dumps(data, indent=2), encoding="utf-8")

    def build(self, revision: str, *, key: Path | None) -> bytes:
        output = self.folder / f"{revision}.tar.gz"
        build_bundle(self.opa, self.policies, output, revision=revision, signing_key=key)
        return output.read_bytes()

    def publish(self, bundle: bytes) -> None:
        aws.publish_bundle(self.state, bundle, KEY)

    def config(self) -> dict[str, Any]:
        return opa_bundle_config(
            service_url=self.state.sts_url() + POLICY_BUCKET,
            resource=KEY,
            s3=True,
            public_key=self.public_key,
        )

    def preflight(self) -> Decision:
        settings = self.settings
        assert settings is not None

        async def go() -> Decision:
            async with open_policy(settings) as engine:
                return (await engine.preflight(PREFLIGHT)).decision

        return asyncio.run(go())

    def errors(self, offset: int = 0) -> list[str]:
        """OPA's error lines, from ``offset`` bytes into its log on."""
        with self.log.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        return [line for line in lines if '"level":"error"' in line]


@pytest.fixture(scope="module")
def bundles(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundles]:
    lab = Bundles(stack, tmp_path_factory.mktemp("bundles"))
    lab.publish(lab.build("rev-1", key=lab.signing_key))
    env = aws.opa_bundle_env(lab.state)
    with configured_opa(lab.opa, lab.config(), env=env, log=lab.log) as settings:
        lab.settings = settings
        yield lab


def until_revision(bundles: Bundles, revision: str, seconds: float = 10.0) -> Decision:
    deadline = time.monotonic() + seconds
    while True:
        decision = bundles.preflight()
        if decision.revision == revision or time.monotonic() > deadline:
            return decision
        time.sleep(0.2)


def refused(bundles: Bundles, bundle: bytes, why: str) -> None:
    """Publish ``bundle``; return once OPA has logged refusing it for ``why`` (or fail)."""
    offset = bundles.log.stat().st_size
    bundles.publish(bundle)
    deadline = time.monotonic() + 15
    while not any(why in line for line in bundles.errors(offset)):
        assert time.monotonic() < deadline, f"OPA never refused the bundle for {why!r}:\n" + (
            "\n".join(bundles.errors(offset)[-5:])
        )
        time.sleep(0.2)


def tampered(bundle: bytes) -> bytes:
    """``bundle`` with a grant slipped into its data.json, the signature untouched. (OPA hashes
    JSON files by their parsed value, so only a change of meaning is a change.)"""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            content = source.extractfile(member)
            data = content.read() if content is not None else b""
            if member.name.endswith("data.json"):
                grants = json.loads(data)
                grants["cyphergate"]["grants"]["dags"]["intruder"] = {"databases": {"neo4j": {}}}
                data = json.dumps(grants).encode()
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    return out.getvalue()


def test_a_new_signed_bundle_is_active_within_the_polling_interval(bundles: Bundles) -> None:
    first = bundles.preflight()
    assert first.revision == "rev-1" and not first.allow
    assert first.reasons == ("dag_not_granted",)
    bundles.grant("bundle_dag")
    published = time.monotonic()
    bundles.publish(bundles.build("rev-2", key=bundles.signing_key))
    second = until_revision(bundles, "rev-2")
    assert second.revision == "rev-2", "the new bundle was not activated"
    assert time.monotonic() - published < 5  # polling every 1-2 s, plus the download
    assert second.allow


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("other-key", "failed to verify JWT signature"),
        ("unsigned", "bundle missing .signatures.json"),
        ("tampered", "data.json: digest mismatch"),
    ],
)
def test_a_bundle_not_signed_by_the_release_key_is_refused(
    bundles: Bundles, kind: str, why: str
) -> None:
    until_revision(bundles, "rev-2")
    if kind == "other-key":
        bad = bundles.build(f"rev-{kind}", key=bundles.other_key)
    elif kind == "unsigned":
        bad = bundles.build(f"rev-{kind}", key=None)
    else:
        bad = tampered(bundles.build(f"rev-{kind}", key=bundles.signing_key))
    refused(bundles, bad, why)
    kept = bundles.preflight()
    assert (kept.revision, kept.allow) == ("rev-2", True)  # the previous bundle keeps serving


def test_the_gateways_decision_records_name_the_bundle_revision(
    stack: DevStack, bundles: Bundles
) -> None:
    bundles.publish(bundles.build("rev-3", key=bundles.signing_key))
    assert until_revision(bundles, "rev-3").revision == "rev-3"
    assert bundles.settings is not None
    url = bundles.settings.url
    gateway = SecondGateway(
        stack, bundles.folder / "gateway", "bundles", lambda c: c["opa"].update(url=url)
    )
    gateway.start()
    try:
        response = httpx.post(
            f"{gateway.url}/db/neo4j/query/v2",
            json={"statement": "RETURN 1 AS one"},
            headers={"Authorization": stack.auth_header("demo_reader")},
            timeout=30,
        )
    finally:
        gateway.stop()
    assert response.status_code == 202
    with AuditReader(gateway.audit) as reader:
        (record,) = reader.query(
            RecordFilter(request_id=response.headers["X-CypherGate-Request-ID"], event="decision")
        )
    assert record["decision"]["policy_revision"] == "rev-3"
    opa_log = bundles.log.read_text(encoding="utf-8", errors="replace")
    assert record["decision"]["decision_id"] in opa_log


def test_policy_build_names_the_commit_and_refuses_uncommitted_changes(tmp_path: Path) -> None:
    policies = shutil.copytree(REPO / "policies", tmp_path / "policies")

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *arguments],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=ci", "-c", "user.email=ci@example.com", "commit", "-qm", "policies")
    output = tmp_path / "bundle.tar.gz"
    key, _ = key_pair(tmp_path, "release")

    def build() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "proxy", "policy", "build", "--policies", str(policies)]
        command += ["--output", str(output), "--signing-key", str(key)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    built = build()
    assert built.returncode == 0, built.stderr
    with tarfile.open(output, "r:gz") as bundle:
        names = {member.name.lstrip("/") for member in bundle.getmembers()}
        manifest_file = bundle.extractfile(next(m for m in bundle if m.name.endswith(".manifest")))
        assert manifest_file is not None
        manifest = json.loads(manifest_file.read())
    assert manifest["revision"] == git("rev-parse", "HEAD")
    assert ".signatures.json" in names and "data.json" in names
    assert not any("schemas" in name or name.endswith("_test.rego") for name in names)
    (policies / "authz.rego").write_text("package changed\n", encoding="utf-8")
    output.unlink()
    refused_build = build()
    assert refused_build.returncode == 1 and "uncommitted changes" in refused_build.stderr
    assert not output.exists()
