"""The Helm chart's checkers, installed into the cache like the stack's components, and the checks.

* ``helm``: ``go install helm.sh/helm/v3/cmd/helm@<version>`` (lint and template);
* ``kubeconform``: ``go install github.com/yannh/kubeconform/cmd/kubeconform@<version>`` (the
  rendered objects against Kubernetes' own schemas, strict: an unknown field is an error);
* the schemas: kubeconform fetches them from GitHub by default, which this project's machines
  cannot reach, so they come from PyPI instead: the ``kubernetes-validate`` wheel carries the JSON
  schemas of every Kubernetes minor version it supports; only the versions checked are unpacked.
  Two edits make them kubeconform's: their references to ``/api/_definitions.json`` (a path its
  own resolver maps) become relative to the file, and their ``$schema`` goes, as in kubeconform's
  own schemas (with one, its compiler asks the network for the meta-schema, fails, and reports
  every kind as having no schema).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from proxy.devstack.install import (
    InstallError,
    Progress,
    building,
    require_tools,
    run_tool,
    to_stderr,
)

HELM_VERSION = "v3.22.0"
KUBECONFORM_VERSION = "v0.8.0"
SCHEMAS_PACKAGE = "kubernetes-validate"
SCHEMAS_PACKAGE_VERSION = "1.37.0"
# The wheel as first downloaded: a different file under the same version is refused.
SCHEMAS_WHEEL_SHA256 = "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
# The chart's floor (Chart.yaml kubeVersion) and the newest the schema package carries.
KUBERNETES_VERSIONS = ("1.28.0", "1.37.0")
_SCHEMA_ROOT = "kubernetes_validate/kubernetes-json-schema/"
_ABSOLUTE_REF = '"$ref": "/api/_definitions.json#'
_RELATIVE_REF = '"$ref": "_definitions.json#'
_PIP_DOWNLOAD = (
    *(sys.executable, "-m", "pip", "download"),
    *("--quiet", "--no-deps", "--only-binary=:all:"),
)


class ChartError(Exception):
    """The chart failed a check; the message is the checker's own output."""


@dataclass(frozen=True, slots=True)
class ChartTools:
    """Where the chart's checkers are."""

    helm: Path
    kubeconform: Path
    schemas: Path

    def schema_location(self) -> str:
        """kubeconform's ``-schema-location`` template over the unpacked schemas."""
        return str(
            self.schemas
            / "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
            / "{{ .ResourceKind }}{{ .KindSuffix }}.json"
        )


def ensure_chart_tools(cache: Path, progress: Progress = to_stderr) -> ChartTools:
    """Install (or find in the cache) helm, kubeconform and the schemas."""
    return ChartTools(
        helm=_go_install(cache, "helm", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}", progress),
        kubeconform=_go_install(
            cache,
            "kubeconform",
            f"github.com/yannh/kubeconform/cmd/kubeconform@{KUBECONFORM_VERSION}",
            progress,
        ),
        schemas=ensure_kubernetes_schemas(cache, progress),
    )


def _go_install(cache: Path, name: str, module: str, progress: Progress) -> Path:
    version = module.rpartition("@")[2]
    target = cache / name / version
    with building(target, progress, f"{name} {version} (go install)") as work:
        if work is not None:
            require_tools("go")
            env = {**os.environ, "GOBIN": str(work), "CGO_ENABLED": "0"}
            run_tool(["go", "install", module], f"building {name} with go install", env=env)
    return target / name


def ensure_kubernetes_schemas(cache: Path, progress: Progress = to_stderr) -> Path:
    """A folder of ``v<version>-local-strict/<kind>-<group>-<version>.json`` schemas."""
    # The key changes with the versions unpacked and with the edits made to them.
    edits = f"{' '.join(KUBERNETES_VERSIONS)} {_ABSOLUTE_REF} {_RELATIVE_REF} -$schema"
    key = hashlib.sha256(edits.encode()).hexdigest()[:8]
    target = cache / "kubernetes-schemas" / f"{SCHEMAS_PACKAGE_VERSION}-{key}"
    label = f"Kubernetes schemas ({SCHEMAS_PACKAGE} {SCHEMAS_PACKAGE_VERSION}, PyPI)"
    with building(target, progress, label) as work:
        if work is not None:
            with tempfile.TemporaryDirectory(dir=work.parent) as download:
                wheel = _download_wheel(Path(download))
                _unpack_schemas(wheel, work)
    return target


def _download_wheel(folder: Path) -> Path:
    requirement = f"{SCHEMAS_PACKAGE}=={SCHEMAS_PACKAGE_VERSION}"
    run_tool(
        [*_PIP_DOWNLOAD, "--dest", str(folder), requirement],
        f"downloading {requirement} with pip",
    )
    wheels = list(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"pip download {requirement} left {len(wheels)} wheels, not one")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != SCHEMAS_WHEEL_SHA256:
        raise InstallError(
            f"{wheels[0].name} has sha256 {digest}, not the pinned {SCHEMAS_WHEEL_SHA256}"
        )
    return wheels[0]


def _unpack_schemas(wheel: Path, into: Path) -> None:
    wanted = tuple(f"{_SCHEMA_ROOT}v{version}-local-strict/" for version in KUBERNETES_VERSIONS)
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.startswith(wanted)]
        missing = [p for p in wanted if not any(name.startswith(p) for name in members)]
        if missing:
            raise InstallError(f"{wheel.name} has no schemas under {', '.join(missing)}")
        for name in members:
            relative = name.removeprefix(_SCHEMA_ROOT)
            if name.endswith("/") or ".." in Path(relative).parts:
                continue
            text = archive.read(name).decode("utf-8").replace(_ABSOLUTE_REF, _RELATIVE_REF)
            document = json.loads(text)
            document.pop("$schema", None)
            destination = into / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(json.dumps(document), encoding="utf-8")


def lint(tools: ChartTools, chart: Path, values: Path) -> str:
    """``helm lint --strict`` with one values file; its output."""
    return _run([str(tools.helm), "lint", "--strict", str(chart), "--values", str(values)])


def render(tools: ChartTools, chart: Path, values: Path, *extra: str) -> str:
    """``helm template`` with one values file (and ``extra`` flags): the manifests."""
    command = [str(tools.helm), "template", "cyphergate", str(chart), "--values", str(values)]
    return _run([*command, "--kube-version", KUBERNETES_VERSIONS[-1], *extra])


def validate(tools: ChartTools, manifests: str, kubernetes_version: str) -> str:
    """Every object of ``manifests`` against that version's schemas, strictly; the summary."""
    return _run(
        [
            str(tools.kubeconform),
            *("-strict", "-summary", "-output", "text"),
            *("-kubernetes-version", kubernetes_version),
            *("-schema-location", tools.schema_location(), "-"),
        ],
        stdin=manifests,
    )


def _run(command: list[str], stdin: str | None = None) -> str:
    # helm keeps a cache and configuration of its own; point them at a throwaway folder so a
    # check neither reads the operator's repositories nor writes into their home.
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
        }
        completed = subprocess.run(  # noqa: S603 - our installed tools, arguments we built
            command, input=stdin, env=env, capture_output=True, text=True, check=False
        )
    output = (completed.stdout + completed.stderr).strip()
    if completed.returncode != 0:
        raise ChartError(output)
    return output
