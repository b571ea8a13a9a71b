"""The Helm chart (deploy/helm/cyphergate): lint, render, Kubernetes' own schemas, and the
gateway's own settings and command line, with the real helm and kubeconform (installed into the
cache by proxy.devstack.chart). Broken values must fail each check that guards them."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from proxy.api.operations import router
from proxy.cli import _parser
from proxy.devstack.chart import (
    KUBERNETES_VERSIONS,
    ChartError,
    ChartTools,
    ensure_chart_tools,
    lint,
    render,
    validate,
)
from proxy.devstack.install import OPA_VERSION, default_cache_dir
from proxy.settings import Settings, load_settings

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "cyphergate"
VALUES = {path.stem: path for path in sorted((CHART / "ci").glob("*-values.yaml"))}
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def tools() -> ChartTools:
    return ensure_chart_tools(default_cache_dir())


@pytest.fixture(scope="module")
def rendered(tools: ChartTools) -> dict[str, str]:
    return {name: render(tools, CHART, path) for name, path in VALUES.items()}


def objects(manifests: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(manifests) if doc]


def one(manifests: str, kind: str) -> Manifest:
    found = [doc for doc in objects(manifests) if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def render_over_defaults(tools: ChartTools, tmp_path: Path, text: str) -> str:
    """The chart rendered with the CI defaults and ``text`` merged over them, as helm merges a
    second ``--values``."""
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return render(tools, CHART, VALUES["default-values"], "--values", str(path))


def test_there_are_values_to_check() -> None:
    assert set(VALUES) == {"default-values", "full-values"}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_the_chart_lints_clean(tools: ChartTools, name: str) -> None:
    output = lint(tools, CHART, VALUES[name])
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_object_matches_the_kubernetes_schema(
    tools: ChartTools, rendered: dict[str, str], name: str, version: str
) -> None:
    summary = validate(tools, rendered[name], version)
    count = len(objects(rendered[name]))
    assert f"{count} resources found" in summary
    assert f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0" in summary


def test_the_full_values_render_every_kind(rendered: dict[str, str]) -> None:
    kinds = sorted(doc["kind"] for doc in objects(rendered["full-values"]))
    # Three pods: a CronJob each, and one for the retired ordinal 3.
    assert kinds == sorted(
        ["ConfigMap", "PodDisruptionBudget", "Service", "Service", "ServiceAccount"]
        + ["StatefulSet"]
        + ["CronJob"] * 4
    )


def container(pod_spec: Manifest, name: str) -> Manifest:
    found: Manifest = next(c for c in pod_spec["containers"] if c["name"] == name)
    return found


def environment(spec: Manifest, pod: str) -> dict[str, str]:
    """A container's plain variables as the kubelet sets them for ``pod`` ($(VAR) expanded)."""
    env = {"POD_NAME": pod, "POD_INDEX": pod.rpartition("-")[2]}
    for variable in spec["env"]:
        if "value" in variable:
            env[variable["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env[m.group(1)], variable["value"]
            )
    return env


def unknown_keys(model: type[BaseModel], values: dict[str, Any], where: str = "") -> list[str]:
    """Keys of ``values`` that ``model`` has no field for, at any depth. (The sections of
    Settings ignore unknown keys today, so loading alone would let a misspelt one pass.)"""
    found = []
    for key, value in values.items():
        field = model.model_fields.get(key)
        if field is None:
            found.append(f"{where}{key}")
            continue
        inner = [
            t for t in get_args(field.annotation) or (field.annotation,) if isinstance(t, type)
        ]
        nested = [t for t in inner if issubclass(t, BaseModel)]
        items = value if isinstance(value, list) else [value]
        for item in items if nested else []:
            if isinstance(item, dict):
                found += unknown_keys(nested[0], item, f"{where}{key}.")
    return found


def gateway_settings(
    manifests: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    config = tmp_path / "gateway.toml"
    config.write_text(one(manifests, "ConfigMap")["data"]["gateway.toml"])
    assert not unknown_keys(Settings, tomllib.loads(config.read_text()))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(config)


@pytest.mark.parametrize("name", sorted(VALUES))
def test_the_gateway_accepts_its_rendered_configuration(
    rendered: dict[str, str], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway refuses unknown keys at start: the chart's file and variables load."""
    statefulset = one(rendered[name], "StatefulSet")
    gateway = container(statefulset["spec"]["template"]["spec"], "gateway")
    pod = f"{statefulset['metadata']['name']}-1"
    settings = gateway_settings(rendered[name], environment(gateway, pod), tmp_path, monkeypatch)
    assert settings.audit.chain_id == pod
    assert settings.neo4j.lease_user_prefix == "cg_1_"
    data = next(m["mountPath"] for m in gateway["volumeMounts"] if m["name"] == "audit")
    assert settings.audit.path.parent == settings.neo4j.leases_path.parent == Path(data)
    opa = container(statefulset["spec"]["template"]["spec"], "opa")
    address = next(arg for arg in opa["args"] if arg.startswith("--addr="))
    assert settings.opa.url == f"http://{address.removeprefix('--addr=')}"
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}
    assert (settings.server.port, settings.server.bolt_port) == (ports["http"], ports["bolt"])
    assert settings.profile == "production"


def test_a_misspelt_setting_is_caught() -> None:
    values = {"server": {"portt": 1}, "auth": {"oidc": [{"issuer": "i", "audiencez": []}]}}
    assert unknown_keys(Settings, values) == ["server.portt", "auth.oidc.audiencez"]


def test_no_two_pods_share_a_chain_or_a_lease_prefix(rendered: dict[str, str]) -> None:
    statefulset = one(rendered["full-values"], "StatefulSet")
    gateway = container(statefulset["spec"]["template"]["spec"], "gateway")
    pods = [f"{statefulset['metadata']['name']}-{i}" for i in range(12)]
    envs = [environment(gateway, pod) for pod in pods]
    prefixes = [env["CYPHERGATE_NEO4J__LEASE_USER_PREFIX"] for env in envs]
    assert len({env["CYPHERGATE_AUDIT__CHAIN_ID"] for env in envs}) == len(pods)
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]


def test_probes_ask_the_gateway_s_own_routes(rendered: dict[str, str]) -> None:
    spec = one(rendered["default-values"], "StatefulSet")["spec"]["template"]["spec"]
    gateway = container(spec, "gateway")
    routes = {getattr(route, "path", None) for route in router.routes}
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= routes


def test_every_pod_and_container_runs_unprivileged(rendered: dict[str, str]) -> None:
    pod_specs = [
        doc["spec"]["template"]["spec"]
        for doc in objects(rendered["full-values"])
        if doc["kind"] == "StatefulSet"
    ] + [
        doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        for doc in objects(rendered["full-values"])
        if doc["kind"] == "CronJob"
    ]
    for spec in pod_specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
        for each in spec["containers"]:
            assert each["securityContext"]["readOnlyRootFilesystem"] is True
            assert each["securityContext"]["allowPrivilegeEscalation"] is False
            assert each["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert each["resources"]["requests"] and each["resources"]["limits"]


def archive_jobs(manifests: str) -> Iterator[Manifest]:
    for doc in objects(manifests):
        if doc["kind"] == "CronJob":
            yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_each_archive_job_ships_its_own_pod_s_chain(
    rendered: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered["full-values"]
    statefulset = one(manifests, "StatefulSet")
    claim = statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    for ordinal, spec in enumerate(archive_jobs(manifests)):
        pod = f"{statefulset['metadata']['name']}-{ordinal}"
        job = container(spec, "archive")
        args = _parser().parse_args([*job["command"][1:], *job["args"]])
        assert job["command"][0] == "cyphergate"
        assert args.handler.__name__ == "_audit_archive"
        volume = next(v for v in spec["volumes"] if v["name"] == "audit")
        assert volume["persistentVolumeClaim"]["claimName"] == f"{claim}-{pod}"
        settings = gateway_settings(manifests, environment(job, pod), tmp_path, monkeypatch)
        assert settings.audit.chain_id == pod
        assert settings.audit.archive is not None
        affinity = spec.get("affinity", {}).get("podAffinity")
        if ordinal < statefulset["spec"]["replicas"]:  # a running pod holds the volume
            term = affinity["requiredDuringSchedulingIgnoredDuringExecution"][0]
            assert term["labelSelector"]["matchLabels"] == {
                "statefulset.kubernetes.io/pod-name": pod
            }
        else:  # a retired ordinal: no pod, no constraint
            assert affinity is None


def test_no_archive_job_without_an_archive(rendered: dict[str, str]) -> None:
    assert not list(archive_jobs(rendered["default-values"]))


def test_the_opa_sidecar_is_the_opa_the_tests_run() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["opa"]["image"]["tag"].split("-")[0] == OPA_VERSION.removeprefix("v")


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ('config:\n  neo4j:\n    password: "a-long-secret"\n', "config.neo4j.password"),
        ("config:\n  neo4j:\n    secret:\n      source: env\n", "config.neo4j.secret"),
        ("config:\n  audit:\n    chain_id: one-for-all\n", "config.audit.chain_id is set by"),
        ("config:\n  server:\n    port: 9000\n", "config.server.port is set by"),
        ("config:\n  neo4j:\n    rotation_interval_s: 3600\n", "every pod would rotate"),
        ("config:\n  profile: development\n", "at '/config/profile'"),
        ("replica: 3\n", "additional properties 'replica' not allowed"),
        ("leaseUserPrefix: cg-\n", "at '/leaseUserPrefix'"),
        ("secrets:\n  existingSecret: ''\n", "secrets.existingSecret"),
        (
            "config:\n  audit:\n    archive: {bucket: b}\narchive:\n  retiredOrdinals: [1]\n",
            "archive.retiredOrdinals: pod 1 still runs",
        ),
    ],
    ids=[
        *("password", "env-secret", "chain-id", "port", "rotation", "profile", "typo", "prefix"),
        *("no-secret", "retired-but-running"),
    ],
)
def test_unsafe_or_wrong_values_do_not_render(
    tools: ChartTools, tmp_path: Path, broken: str, reason: str
) -> None:
    with pytest.raises(ChartError, match=re.escape(reason)):
        render_over_defaults(tools, tmp_path, broken)


def test_a_field_kubernetes_does_not_know_fails_the_schema_check(
    tools: ChartTools, tmp_path: Path
) -> None:
    """helm renders any map under resources; kubeconform (strict) names the stray field."""
    manifests = render_over_defaults(tools, tmp_path, "resources:\n  limitz: {memory: 1Gi}\n")
    with pytest.raises(ChartError, match="limitz"):
        validate(tools, manifests, KUBERNETES_VERSIONS[-1])
