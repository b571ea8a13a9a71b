"""The Airflow provider: connection type ``cyphergate``, ``CypherGateHook``, ``CypherGateOperator``,
``CypherGateSensor``.

Installed with ``pip install 'cyphergate[airflow]'``; Airflow finds it through the
``apache_airflow_provider`` entry point, which calls :func:`get_provider_info`.
"""

from __future__ import annotations

from typing import Any

from proxy import __version__


def get_provider_info() -> dict[str, Any]:
    """The provider's description, in the form Airflow's providers manager reads."""
    return {
        "package-name": "cyphergate",
        "name": "CypherGate",
        "description": "Run Cypher on Neo4j through CypherGate, the identity-aware Cypher proxy.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "CypherGate", "tags": ["service"]},
        ],
        "hooks": [
            {"integration-name": "CypherGate", "python-modules": ["proxy.airflow.hooks"]},
        ],
        "operators": [
            {"integration-name": "CypherGate", "python-modules": ["proxy.airflow.operators"]},
        ],
        "sensors": [
            {"integration-name": "CypherGate", "python-modules": ["proxy.airflow.sensors"]},
        ],
        "connection-types": [
            {
                "connection-type": "cyphergate",
                "hook-class-name": "proxy.airflow.hooks.CypherGateHook",
                "hook-name": "CypherGate",
                "conn-fields": {
                    "auth_method": {
                        "label": "Authentication",
                        "description": "oidc_client_credentials, token_file or aws_iam",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "oidc_client_credentials",
                            "enum": ["oidc_client_credentials", "token_file", "aws_iam"],
                        },
                    },
                    "token_url": {
                        "label": "OIDC token endpoint",
                        "schema": {"type": ["string", "null"]},
                    },
                    "audience": {
                        "label": "Gateway audience (resource indicator)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "scope": {"label": "OAuth scope", "schema": {"type": ["string", "null"]}},
                    "token_file": {
                        "label": "Token file (e.g. a projected service-account token)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "aws_sts_url": {
                        "label": "STS endpoint the gateway trusts",
                        "schema": {"type": ["string", "null"]},
                    },
                    "aws_server_id": {
                        "label": "Gateway server id (X-CypherGate-Server-ID)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "aws_region": {"label": "AWS region", "schema": {"type": ["string", "null"]}},
                    "aws_role_arn": {
                        "label": "IAM role to assume first (optional)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "aws_conn_id": {
                        "label": "Airflow AWS connection to sign with (optional)",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["extra"],
                    "relabeling": {
                        "host": "Gateway URL",
                        "schema": "Database",
                        "login": "OIDC client id",
                        "password": "OIDC client secret",
                    },
                    "placeholders": {
                        "host": "https://cyphergate.example.com",
                        "schema": "neo4j",
                    },
                },
            }
        ],
    }
