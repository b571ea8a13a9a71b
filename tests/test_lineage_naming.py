"""Dataset naming of :mod:`proxy.lineage`: what the README promises, and refusals of bad shapes."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.lineage import LineageError, Touched, namespace

ANALYSIS: dict[str, Any] = {
    "query_type": "rw",
    "labels": {"read": ["Person"], "write": ["Movie", "Person"]},
    "relationship_types": {"read": ["ACTED_IN"], "write": ["DIRECTED"]},
    "procedures": [],
}


def test_an_analysis_names_inputs_and_outputs_per_database() -> None:
    touched = Touched.from_analysis("films", ANALYSIS)
    assert touched.inputs() == ["films.Person", "films.[:ACTED_IN]"]
    assert touched.outputs() == ["films.Movie", "films.Person", "films.[:DIRECTED]"]


def test_the_document_round_trips_and_drops_what_lineage_does_not_name() -> None:
    touched = Touched.from_analysis("neo4j", ANALYSIS)
    document = touched.document()
    assert set(document) == {"database", "labels", "relationship_types"}
    assert Touched.from_document(document) == touched


def test_namespace_is_the_server_as_a_uri() -> None:
    assert namespace("127.0.0.1", 7687) == "neo4j://127.0.0.1:7687"
    assert namespace("::1", 7687) == "neo4j://[::1]:7687"


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"database": "", "labels": {}, "relationship_types": {}},
        {"database": "neo4j", "labels": [], "relationship_types": {}},
        {"database": "neo4j", "labels": {"read": "Person"}, "relationship_types": {}},
        {"database": "neo4j", "labels": {"read": [""]}, "relationship_types": {}},
        {"database": "neo4j", "labels": {"read": [1]}, "relationship_types": {}},
        {"database": "neo4j", "labels": {}},
    ],
)
def test_a_document_of_another_shape_is_refused(document: dict[str, Any]) -> None:
    with pytest.raises(LineageError):
        Touched.from_document(document)
