"""Run in a fresh interpreter of ``.venv-airflow`` by tests/airflow/test_imports.py: import every
module of the provider, as a worker would, and print what got imported.

Every module under ``proxy/airflow`` (the example DAGs too), and every module that
``get_provider_info`` names (hooks, operators, sensors, connection types' hook classes).
Prints ``{"imported": [...], "modules": [...]}``: the modules asked for, then ``sys.modules``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys


def provider_modules() -> list[str]:
    import proxy.airflow

    walked = [m.name for m in pkgutil.walk_packages(proxy.airflow.__path__, "proxy.airflow.")]
    info = proxy.airflow.get_provider_info()
    listed = [
        module
        for kind in ("hooks", "operators", "sensors")
        for entry in info.get(kind, [])
        for module in entry["python-modules"]
    ]
    listed += [c["hook-class-name"].rpartition(".")[0] for c in info["connection-types"]]
    return sorted({"proxy.airflow", *walked, *listed})


def main() -> None:
    imported = provider_modules()
    for name in imported:
        importlib.import_module(name)
    print(json.dumps({"imported": imported, "modules": sorted(sys.modules)}))


if __name__ == "__main__":
    main()
