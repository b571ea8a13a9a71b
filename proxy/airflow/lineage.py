"""``CypherGateOperator``'s OpenLineage: the datasets its statement touched, and the gateway's
request ids that find the statement in the audit log.

Imported only when ``apache-airflow-providers-openlineage`` asks an operator for its facets, so
the provider works without it. Datasets are named by :mod:`proxy.lineage` (namespace
``neo4j://<host>:<port>`` of the Neo4j server as the gateway reports it, name
``<database>.<Label>`` or ``<database>.[:TYPE]``), as the gateway's own run events name them,
so that both sources of lineage meet on the same datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attr
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import RunFacet

from proxy.lineage import Lineage

# The run facet's key in an event's run.facets (the gateway's own run events have "cyphergate",
# one request each).
FACET = "cyphergateRequests"
# The $id of facets/CypherGateRequestsRunFacet.json, shipped beside this module (an identifier:
# nothing fetches it, as OpenLineage consumers do not dereference _schemaURL).
SCHEMA_URL = "urn:cyphergate:openlineage:facets:CypherGateRequestsRunFacet:1-0-0"


@attr.define
class CypherGateRequestsRunFacet(RunFacet):
    """The request ids the gateway gave the task's statements: ``cyphergate audit query
    --request-id`` (or the audit log's ``request_id``) finds each one's records."""

    requestIds: list[str]  # OpenLineage's field style (camelCase)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL


def operator_lineage(answered: Sequence[Lineage]) -> Any:
    """The ``OperatorLineage`` of the statements ``answered``: each label or relationship type
    read an input, each written an output (once each), and the request ids as a run facet.
    Nothing answered (a refused statement) gives no dataset and no facet."""
    inputs: dict[tuple[str, str], Any] = {}
    outputs: dict[tuple[str, str], Any] = {}
    for lineage in answered:
        space = lineage.namespace
        for name in lineage.touched.inputs():
            inputs.setdefault((space, name), InputDataset(namespace=space, name=name))
        for name in lineage.touched.outputs():
            outputs.setdefault((space, name), OutputDataset(namespace=space, name=name))
    facets: dict[str, Any] = {}
    if answered:
        facets[FACET] = CypherGateRequestsRunFacet(requestIds=[a.request_id for a in answered])
    return OperatorLineage(
        inputs=list(inputs.values()), outputs=list(outputs.values()), run_facets=facets
    )
