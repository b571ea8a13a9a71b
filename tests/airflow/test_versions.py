"""The Airflow versions the ``airflow`` extra accepts start at the one the tests run."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from tests.airflow.runner import REPO


def airflow_under_test() -> Version:
    """The apache-airflow that .ci/bootstrap installs into .venv-airflow."""
    bootstrap = (REPO / ".ci" / "bootstrap").read_text(encoding="utf-8")
    constraints = (REPO / ".ci" / "airflow-constraints-3.11.txt").read_text(encoding="utf-8")
    (installed,) = re.findall(r"'apache-airflow==([0-9.]+)'", bootstrap)
    (pinned,) = re.findall(r"^apache-airflow==([0-9.]+)$", constraints, re.MULTILINE)
    assert installed == pinned, "bootstrap and the constraints file name different Airflows"
    return Version(installed)


def test_the_extra_starts_at_the_airflow_under_test() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (extra,) = [
        Requirement(line)
        for line in project["optional-dependencies"]["airflow"]
        if Requirement(line).name == "apache-airflow"
    ]
    tested = airflow_under_test()
    assert tested in extra.specifier
    assert str(extra.specifier) == f">={tested.major}.{tested.minor}"
