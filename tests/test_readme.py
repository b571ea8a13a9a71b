"""A newcomer's check: every command block of the README that names the devstack runs as
printed, from a shell, against the real devstack.

The blocks run in a scratch folder that links to everything in the checkout but ``.devstack``,
which is the session's stack, so ``cyphergate devstack ...`` finds it where the README says,
with ``.venv/bin`` first on ``PATH``. A block that runs Airflow needs the Airflow
virtualenv and is marked ``airflow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.devstack.stack import DevStack
from tests.conftest import REPO

pytestmark = pytest.mark.integration

_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def devstack_blocks() -> list[tuple[int, str]]:
    """``(line, text)`` of each bash block of the README that names the devstack."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return [
        (readme.count("\n", 0, match.start()) + 1, match.group(1))
        for match in _BLOCK.finditer(readme)
        if "devstack" in match.group(1)
    ]


def test_the_readme_has_devstack_blocks_to_check() -> None:
    blocks = devstack_blocks()
    assert len(blocks) >= 2
    assert any('eval "$(cyphergate devstack env)"' in text for _, text in blocks)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(text, id=f"README.md:{line}", marks=[pytest.mark.airflow])
        if re.search(r"^airflow |&& airflow ", text, re.MULTILINE)
        else pytest.param(text, id=f"README.md:{line}")
        for line, text in devstack_blocks()
    ],
)
def test_a_readme_block_runs_as_printed(stack: DevStack, tmp_path: Path, text: str) -> None:
    # A checkout, as the README assumes (proxy/airflow/example_dags, policies/, ...), whose
    # .devstack is the session's stack.
    for entry in REPO.iterdir():
        if entry.name != ".devstack":
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / ".devstack").symlink_to(stack.run_dir)
    paths = [Path(sys.executable).parent, REPO / ".venv-airflow" / "bin"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CYPHERGATE_"))},
        "PATH": os.pathsep.join([*map(str, paths), os.environ["PATH"]]),
        # Airflow's own files (its database) outside the checkout and the user's ~/airflow.
        "AIRFLOW_HOME": str(tmp_path.parent / f"{tmp_path.name}-airflow"),
        # A block's mktemp files (a token) stay with the test, not in the machine's /tmp.
        "TMPDIR": str(tmp_path.parent / f"{tmp_path.name}-tmp"),
    }
    Path(env["TMPDIR"]).mkdir()
    # -e and pipefail: a failing command fails the block; curl -f makes an HTTP error one.
    script = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n' + text
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    documented = next((why for marker, why in DOCUMENTED_FAILURES.items() if marker in text), None)
    if documented is None:
        assert done.returncode == 0, output
        assert "Traceback" not in done.stderr
        return
    # The block ends as the README says it does: each task as documented, so the run fails.
    assert done.returncode != 0, output
    for task, shown in documented.items():
        begin = output.index(f"[DAG TEST] starting task_id={task} ")
        end = output.index(f"[DAG TEST] end task task_id={task} ", begin)
        assert shown in output[begin:end], output


# Blocks whose last command fails by design, as the text after them says: per Airflow task,
# what its part of the output shows.
DOCUMENTED_FAILURES = {
    # count_nodes runs; sneak_a_write, a write the policy does not grant, fails its task.
    "airflow dags test cyphergate_example_neo4j": {
        "count_nodes": "Task instance in success state",
        "sneak_a_write": "Denied by policy: write_not_granted. (request ",
    },
}
