"""The development folder served as a bundle: rebuilt on edits, never a bundle whose revision
misnames its bytes, a broken edit not served, OPA's long poll answered at the change."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.bundle_server import RESOURCE, FolderBundles, FolderBundleServer
from proxy.bundles import folder_revision
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.ports import free_ports

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return shutil.copytree(REPO / "policies", tmp_path / "policies")


@pytest.fixture
def bundles(policies: Path, tmp_path: Path) -> FolderBundles:
    work = tmp_path / "work"
    work.mkdir()
    return FolderBundles(ensure_opa(default_cache_dir()), policies, work)


def manifest_and_data(content: bytes) -> tuple[dict[str, object], dict[str, object]]:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as bundle:
        files = {}
        for member in bundle.getmembers():
            extracted = bundle.extractfile(member)
            if extracted is not None:
                files[member.name.lstrip("/")] = extracted.read()
    return json.loads(files[".manifest"]), json.loads(files["data.json"])


def add_grant(policies: Path, dag: str) -> None:
    data_file = policies / "data.json"
    data = json.loads(data_file.read_text(encoding="utf-8"))
    data["cyphergate"]["grants"]["dags"][dag] = {"databases": {"neo4j": {}}}
    data_file.write_text(json.dumps(data, indent=2), encoding="utf-8")


def test_the_bundle_is_named_by_the_bytes_it_holds(bundles: FolderBundles, policies: Path) -> None:
    first = bundles.current()
    assert first is not None and first.revision == folder_revision(policies)
    assert bundles.current() is first  # nothing changed: nothing rebuilt
    add_grant(policies, "new_dag")
    second = bundles.current()
    assert second is not None and second.revision == folder_revision(policies) != first.revision
    manifest, data = manifest_and_data(second.content)
    assert manifest["revision"] == second.revision
    assert "new_dag" in data["cyphergate"]["grants"]["dags"]  # type: ignore[index]


def test_an_edit_that_does_not_build_is_not_served(
    bundles: FolderBundles, policies: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = bundles.current()
    data_file = policies / "data.json"
    data = json.loads(data_file.read_text(encoding="utf-8"))
    data["cyphergate"]["grants"]["dags"]["typo"] = {"databases": {"neo4j": {"raed": {}}}}
    data_file.write_text(json.dumps(data), encoding="utf-8")
    assert bundles.current() is good
    assert "does not match schemas/grants.json" in caplog.text
    (policies / "authz.rego").write_text("package cyphergate.authz\n\nnot rego\n", "utf-8")
    assert bundles.current() is good


def test_an_edit_hidden_from_the_timestamps_is_found_by_a_recheck(
    bundles: FolderBundles, policies: Path
) -> None:
    first = bundles.current()
    assert first is not None
    data_file = policies / "data.json"
    before = data_file.stat()
    text = data_file.read_text(encoding="utf-8")
    data_file.write_text(text.replace("demo_reader", "demo_rEader"), encoding="utf-8")
    os.utime(data_file, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same time
    assert bundles.current() is first
    rechecked = bundles.current(recheck=True)
    assert rechecked is not None and rechecked.revision == folder_revision(policies)
    assert rechecked.revision != first.revision


@pytest.fixture
def server(policies: Path) -> Iterator[FolderBundleServer]:
    (port,) = free_ports(1)
    served = FolderBundleServer(ensure_opa(default_cache_dir()), policies, port)
    served.start()
    try:
        yield served
    finally:
        served.close()


def test_a_long_poll_is_answered_when_the_folder_changes(
    server: FolderBundleServer, policies: Path
) -> None:
    url = server.url + RESOURCE
    first = httpx.get(url)
    assert first.status_code == 200
    assert first.headers["Content-Type"] == "application/vnd.openpolicyagent.bundles"
    etag = first.headers["ETag"]
    waiting = {"If-None-Match": etag, "Prefer": "modes=snapshot,delta;wait=1"}
    unchanged = httpx.get(url, headers=waiting, timeout=10)
    assert unchanged.status_code == 304 and unchanged.content == b""
    threading.Timer(0.3, add_grant, (policies, "while_waiting")).start()
    started = time.monotonic()
    waiting["Prefer"] = "modes=snapshot,delta;wait=20"
    changed = httpx.get(url, headers=waiting, timeout=30)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert time.monotonic() - started < 5
    manifest, _ = manifest_and_data(changed.content)
    assert changed.headers["ETag"] == f'"{manifest["revision"]}"'
    assert httpx.get(server.url + "/bundles/other.tar.gz").status_code == 404
