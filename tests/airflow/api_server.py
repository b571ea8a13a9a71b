"""Run by ``.venv-airflow``'s Python for tests/airflow/test_provider.py: Airflow's own API server
application (``create_app``, in process) answering ``POST /api/v2/connections/test``, the
request the UI's **Test** button sends, once for each connection body in ``argv[1]`` (a JSON
list). Prints the answers as one JSON list of ``{"status", "body"}``.

``[core] test_connection = Enabled`` and ``simple_auth_manager_all_admins`` come from the
environment the test gives it.
"""

from __future__ import annotations

import json
import sys

from airflow.api_fastapi.app import create_app
from starlette.testclient import TestClient


def main() -> None:
    answers = []
    with TestClient(create_app(apps="core")) as client:
        for body in json.loads(sys.argv[1]):
            response = client.post("/api/v2/connections/test", json=body)
            answers.append({"status": response.status_code, "body": response.json()})
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
