"""The chart's OPA sidecar over a ConfigMap volume, with the real OPA and the chart's own
arguments: the kubelet lays a ConfigMap out as hidden ``..<time>`` folders behind a ``..data``
link, and swaps that link to publish a change. OPA must load each policy once, and pick a change
up without a restart (the security team's "no restart to apply a policy")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.devstack.chart import ChartTools, ensure_chart_tools, render
from proxy.devstack.install import default_cache_dir, ensure_opa
from proxy.ports import free_ports

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "cyphergate"
POLICIES = Path(__file__).resolve().parents[2] / "policies"
WAIT_S = 20.0


@pytest.fixture(scope="module")
def opa_args() -> list[str]:
    """The OPA container's arguments, from the chart rendered with its CI defaults."""
    tools: ChartTools = ensure_chart_tools(default_cache_dir())
    manifests = render(tools, CHART, CHART / "ci" / "default-values.yaml")
    statefulset = next(
        doc for doc in yaml.safe_load_all(manifests) if doc and doc["kind"] == "StatefulSet"
    )
    opa = next(
        c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "opa"
    )
    args: list[str] = opa["args"]
    return args


def publish(mount: Path, files: dict[str, str], version: str) -> None:
    """What the kubelet does for a ConfigMap volume: a new hidden folder, ``..data`` swapped to
    it in one rename, a link per key, the old folder removed."""
    folder = mount / f"..{version}"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    (mount / "..data_tmp").symlink_to(folder.name)
    (mount / "..data_tmp").rename(mount / "..data")
    for name in files:
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(mount / old)


def configmap_files() -> dict[str, str]:
    """``kubectl create configmap --from-file=policies/``: the folder's files, not its folders."""
    return {path.name: path.read_text() for path in sorted(POLICIES.iterdir()) if path.is_file()}


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    publish(folder, configmap_files(), "2026_11_30_10_00_00.1")
    return folder


def sidecar_command(args: list[str], mount: Path, api: int, diagnostic: int) -> list[str]:
    """The chart's arguments, on free loopback ports, over ``mount`` instead of /policies."""
    command = [str(ensure_opa(default_cache_dir()))]
    for arg in args:
        if arg.startswith("--addr="):
            arg = f"--addr=127.0.0.1:{api}"
        elif arg.startswith("--diagnostic-addr="):
            arg = f"--diagnostic-addr=127.0.0.1:{diagnostic}"
        elif arg == "/policies":
            arg = str(mount)
        command.append(arg)
    return command


@pytest.fixture
def sidecar(opa_args: list[str], mount: Path, tmp_path: Path) -> Iterator[str]:
    api, diagnostic = free_ports(2)
    log = (tmp_path / "opa.log").open("w")
    process = subprocess.Popen(  # the cached OPA, arguments we built
        sidecar_command(opa_args, mount, api, diagnostic), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{diagnostic}/health"), process, tmp_path)
        yield f"http://127.0.0.1:{api}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(ready: Any, process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("OPA exited: " + (tmp_path / "opa.log").read_text()[-2000:])
        if ready():
            return
        time.sleep(0.2)
    pytest.fail(f"not within {WAIT_S} s: " + (tmp_path / "opa.log").read_text()[-2000:])


def dags(url: str) -> set[str]:
    answer = httpx.get(f"{url}/v1/data/cyphergate/grants/dags", timeout=2.0).json()
    return set(answer.get("result", {}))


def test_the_sidecar_loads_a_configmap_and_reloads_it_when_the_kubelet_swaps_it(
    sidecar: str, mount: Path, opa_args: list[str]
) -> None:
    assert "--watch" in opa_args
    before = dags(sidecar)
    assert "demo_reader" in before
    files = configmap_files()
    data = json.loads(files["data.json"])
    data["cyphergate"]["grants"]["dags"]["k8s_rollout"] = {"databases": {}}
    files["data.json"] = json.dumps(data)
    publish(mount, files, "2026_11_30_10_05_00.2")
    deadline = time.monotonic() + WAIT_S
    while "k8s_rollout" not in dags(sidecar) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dags(sidecar) == before | {"k8s_rollout"}


def test_without_ignoring_the_hidden_folders_opa_loads_each_file_twice_and_stops(
    opa_args: list[str], mount: Path, tmp_path: Path
) -> None:
    """Why the chart passes --ignore=.*: the same test fails without it."""
    api, diagnostic = free_ports(2)
    command = [a for a in sidecar_command(opa_args, mount, api, diagnostic) if a != "--ignore=.*"]
    completed = subprocess.run(  # the cached OPA, arguments we built
        command, capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert completed.returncode != 0
    assert "..data" in completed.stdout + completed.stderr
