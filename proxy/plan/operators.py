"""The rule of every operator Neo4j 5.26 can put in a plan (see ``LogicalPlan2PlanDescription``).

An operator is looked up by its name with its mode (``VarLengthExpand(Pruning,BFS,All)``) and
then by its family (``VarLengthExpand``); one this table does not name is opaque to the reader.
"""

from __future__ import annotations

from proxy.plan import rows, traversals, writes
from proxy.plan.reader import Rule, Rules


def _each(rule: Rule, *names: str) -> dict[str, Rule]:
    return dict.fromkeys(names, rule)


def _partitioned(*names: str) -> tuple[str, ...]:
    """The names, and their parallel runtime's ``Partitioned`` forms."""
    return (*names, *("Partitioned" + name for name in names))


_NODE_SCANS = _partitioned(
    "AllNodesScan",
    "NodeByLabelScan",
    "UnionNodeByLabelsScan",
    "IntersectionNodeByLabelsScan",
    "SubtractionNodeByLabelsScan",
)
_NODE_INDEXES = _partitioned(
    "NodeIndexSeek",
    "NodeIndexSeekByRange",
    "NodeUniqueIndexSeek",
    "NodeUniqueIndexSeekByRange",
    "NodeIndexScan",
    "NodeIndexContainsScan",
    "NodeIndexEndsWithScan",
    "MultiNodeIndexSeek",
    "AssertingMultiNodeIndexSeek",
)
_RELATIONSHIP_LEAVES = _partitioned(
    *(
        direction + leaf
        for direction in ("Directed", "Undirected")
        for leaf in (
            "AllRelationshipsScan",
            "RelationshipTypeScan",
            "UnionRelationshipTypesScan",
            "RelationshipByIdSeek",
            "RelationshipByElementIdSeek",
            "RelationshipIndexSeek",
            "RelationshipIndexSeekByRange",
            "RelationshipUniqueIndexSeek",
            "RelationshipUniqueIndexSeekByRange",
            "RelationshipIndexScan",
            "RelationshipIndexContainsScan",
            "RelationshipIndexEndsWithScan",
        )
    )
)
_SEMI_APPLIES = (
    "SemiApply",
    "AntiSemiApply",
    "SelectOrSemiApply",
    "SelectOrAntiSemiApply",
    "LetSemiApply",
    "LetAntiSemiApply",
    "LetSelectOrSemiApply",
    "LetSelectOrAntiSemiApply",
)
_COMMANDS = (
    "CreateIndex",
    "CreateConstraint",
    "DropIndex",
    "DropConstraint",
    "DoNothingIfExists",
    "AdministrationCommand",
    "ShowIndexes",
    "ShowConstraints",
    "ShowProcedures",
    "ShowFunctions",
    "ShowTransactions",
    "TerminateTransactions",
    "ShowSettings",
)

RULES = Rules(
    rules={
        # rows
        **_each(rows.argument, "Argument"),
        **_each(rows.empty_row, "EmptyRow", "Input"),
        **_each(rows.filter_rows, "Filter"),
        **_each(rows.projection, "Projection"),
        **_each(rows.aggregation, "EagerAggregation", "OrderedAggregation"),
        **_each(rows.aggregation, "Distinct", "OrderedDistinct"),
        **_each(rows.observe, "Sort", "PartialSort", "Top", "Top1WithTies", "PartialTop"),
        **_each(rows.observe, "Limit", "ExhaustiveLimit", "Skip"),
        **_each(rows.cache_properties, "CacheProperties"),
        **_each(rows.observe, "EmptyResult", "NullifyMetadata", "PreserveOrder"),
        **_each(rows.observe, "ArgumentTracker", "NonFuseable"),
        **_each(rows.barrier, "Eager"),
        **_each(rows.produce, "ProduceResults"),
        **_each(rows.unwind, "Unwind", "PartitionedUnwind"),
        **_each(rows.load_csv, "LoadCSV"),
        **_each(rows.procedure, "ProcedureCall"),
        **_each(rows.optional, "Optional"),
        **_each(rows.anti, "Anti"),
        **_each(rows.command, *_COMMANDS),
        # finding nodes and relationships
        **_each(traversals.node_scan, *_NODE_SCANS, "NodeByIdSeek", "NodeByElementIdSeek"),
        **_each(traversals.node_index, *_NODE_INDEXES),
        **_each(traversals.relationship_leaf, *_RELATIONSHIP_LEAVES),
        **_each(traversals.count_store, "NodeCountFromCountStore"),
        **_each(traversals.count_store, "RelationshipCountFromCountStore"),
        **_each(traversals.expand, "Expand", "OptionalExpand", "VarLengthExpand"),
        **_each(traversals.expand, "ShortestPath", "ProjectEndpoints"),
        **_each(traversals.shortest, "StatefulShortestPath"),
        **_each(traversals.repeat, "Repeat"),
        # combining rows
        **_each(rows.apply, "Apply", "TransactionApply"),
        **_each(rows.semi_apply, *_SEMI_APPLIES),
        **_each(rows.conditional_apply, "ConditionalApply", "AntiConditionalApply"),
        **_each(rows.roll_up, "RollUpApply"),
        **_each(rows.foreach_apply, "SubqueryForeach", "TransactionForeach"),
        **_each(rows.join, "CartesianProduct", "NodeHashJoin", "ValueHashJoin"),
        **_each(rows.outer_join, "NodeLeftOuterHashJoin", "NodeRightOuterHashJoin"),
        **_each(rows.union, "Union", "OrderedUnion"),
        **_each(rows.assert_same, "AssertSameNode", "AssertSameRelationship"),
        **_each(rows.triadic, "TriadicSelection"),
        # writes
        **writes.RULES,
    },
    applies=frozenset(
        {*_SEMI_APPLIES, "Apply", "ConditionalApply", "AntiConditionalApply", "RollUpApply"}
        | {"TransactionApply", "SubqueryForeach", "TransactionForeach", "Repeat"}
        | {"TriadicSelection", "Foreach"}
    ),
    writes=writes.WRITES,
    arguments={"Repeat": traversals.repeat_arguments, "Foreach": rows.foreach_arguments},
)
