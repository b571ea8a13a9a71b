"""Dataset naming of :mod:`proxy.lineage`: what the README promises, and refusals of bad shapes."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.lineage import Lineage, LineageError, Touched, namespace, namespace_of

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
    ("uri", "space"),
    [
        ("bolt://127.0.0.1:7688", "neo4j://127.0.0.1:7688"),
        ("neo4j+s://Graph.Example.com", "neo4j://graph.example.com:7687"),
        ("bolt://[::1]:7690", "neo4j://[::1]:7690"),
    ],
)
def test_the_gateway_names_its_server_by_its_uri(uri: str, space: str) -> None:
    assert namespace_of(uri) == space


def test_a_uri_without_a_host_is_refused() -> None:
    with pytest.raises(LineageError):
        namespace_of("bolt://")


def test_an_answers_lineage_round_trips() -> None:
    lineage = Lineage("req-1", "neo4j://127.0.0.1:7687", Touched.from_analysis("neo4j", ANALYSIS))
    document = lineage.document()
    assert document["request_id"] == "req-1"
    assert document["namespace"] == "neo4j://127.0.0.1:7687"
    assert Lineage.from_document(document) == lineage


@pytest.mark.parametrize(
    "changed",
    [{"request_id": ""}, {"request_id": None}, {"namespace": "bolt://x:1"}, {"namespace": 7}],
)
def test_an_answers_lineage_of_another_shape_is_refused(changed: dict[str, Any]) -> None:
    touched = Touched.from_analysis("neo4j", ANALYSIS)
    document = Lineage("req-1", "neo4j://h:1", touched).document() | changed
    with pytest.raises(LineageError):
        Lineage.from_document(document)


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
