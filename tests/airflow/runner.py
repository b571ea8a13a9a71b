"""A real Airflow 3 from ``.venv-airflow``, run as a command with an environment of its own.

``bash .ci/bootstrap`` installs it; without it the tests that need it fail rather than pass
silently.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = REPO / ".venv-airflow" / "bin" / "airflow"
PYTHON = REPO / ".venv-airflow" / "bin" / "python"
DAGS = REPO / "proxy" / "airflow" / "example_dags"


@dataclass
class Airflow:
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AIRFLOW), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(AIRFLOW), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def migrated_airflow(tmp_path_factory: pytest.TempPathFactory, settings: dict[str, str]) -> Airflow:
    """An Airflow home of its own over the example DAGs, its database made, with ``settings``
    (``AIRFLOW_*`` variables) and none of the caller's Airflow or AWS environment."""
    assert AIRFLOW.exists(), "no .venv-airflow: run bash .ci/bootstrap"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))},
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **settings,
    }
    instance = Airflow(env)
    migrated = instance.run("db", "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return instance


def records(stack: DevStack, dag: str) -> list[dict[str, Any]]:
    """The audit records of ``dag``, oldest first."""
    with AuditReader(stack.audit_path) as reader:
        return list(reader.query(RecordFilter(dag=dag)))


@functools.cache
def canned_answers() -> dict[str, Any]:
    """What tests/airflow/canned_answers.py prints: the sensor's pokes and the operator's
    results on canned answers, in real Airflow (one interpreter for all of them)."""
    assert PYTHON.exists(), "no .venv-airflow: run bash .ci/bootstrap"
    done = subprocess.run(
        [str(PYTHON), str(REPO / "tests" / "airflow" / "canned_answers.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    answers: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answers
