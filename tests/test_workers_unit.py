"""The parts of several processes that need no stack: the file lock, the shared schema epoch, the
names of each worker's chain and leases, and finding a replica's chains on disk.

Each cross-process property is checked with a second, real interpreter.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxy.analysis import Analysis, Analyzer
from proxy.audit.reader import RecordFilter
from proxy.audit.reading import AuditLogReading
from proxy.audit.record import AuditEvent
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.chains import replica_chains, worker_settings
from proxy.epoch import SharedEpoch
from proxy.errors import AuditChainNotFound, AuditChainTaken
from proxy.locks import ExclusiveFile, FileTaken
from proxy.plan import PlanFacts
from proxy.settings import Settings
from proxy.statement import QueryType

REPO = Path(__file__).resolve().parent.parent


def _holder(code: str, after: str = "") -> subprocess.Popen[str]:
    """A second interpreter that runs ``code``, prints ``ready``, waits for its stdin to close,
    then runs ``after``."""
    script = textwrap.dedent(code) + "\nprint('ready', flush=True)\nsys.stdin.read()\n"
    script += textwrap.dedent(after)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys\n" + script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _release(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    process.stdout.close()


def test_a_file_held_by_another_process_is_refused_until_it_ends(tmp_path: Path) -> None:
    guarded = tmp_path / "audit.sqlite3"
    other = _holder(
        f"""
        from pathlib import Path
        from proxy.locks import ExclusiveFile
        ExclusiveFile(Path({str(guarded)!r})).acquire()
        """
    )
    try:
        with pytest.raises(FileTaken) as taken:
            ExclusiveFile(guarded).acquire()
        assert taken.value.holder == other.pid
    finally:
        _release(other)
    mine = ExclusiveFile(guarded)  # the kernel dropped the lock with its process
    mine.acquire()
    mine.release()


def test_a_second_audit_writer_of_a_chain_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    other = _holder(
        f"""
        import asyncio
        from pathlib import Path
        from proxy.audit.sqlite import SQLiteAuditLog
        log = SQLiteAuditLog(Path({str(path)!r}))
        loop = asyncio.new_event_loop()
        loop.run_until_complete(log.open())
        """,
        after="loop.run_until_complete(log.close())\n",
    )

    async def second() -> None:
        await SQLiteAuditLog(path).open()

    try:
        with pytest.raises(AuditChainTaken) as refused:
            asyncio.run(second())
        assert f"is being written by gateway process {other.pid}" in refused.value.message
        assert refused.value.reason == "audit_chain_taken"
    finally:
        _release(other)


class _CountingExplainer:
    def __init__(self) -> None:
        self.explained = 0

    async def explain(self, database: str, statement: str) -> Analysis:
        del database
        self.explained += 1
        kind: QueryType = "s" if statement.startswith("CREATE INDEX") else "r"
        return Analysis(query_type=kind, facts=PlanFacts())


def test_a_schema_statement_in_one_process_empties_the_plan_cache_of_another(
    tmp_path: Path,
) -> None:
    epoch_file = tmp_path / "schema-epoch"
    SharedEpoch.create(epoch_file)
    epoch = SharedEpoch(epoch_file)
    explainer = _CountingExplainer()
    analyzer = Analyzer(explainer, max_entries=16, epoch=epoch)

    async def twice() -> None:
        await analyzer.analyse("neo4j", "MATCH (n) RETURN n")
        await analyzer.analyse("neo4j", "MATCH (n) RETURN n")

    asyncio.run(twice())
    assert explainer.explained == 1  # the second came from the cache
    other = _holder(
        f"""
        import asyncio
        from pathlib import Path
        from proxy.analysis import Analysis, Analyzer
        from proxy.epoch import SharedEpoch
        from proxy.plan import PlanFacts

        class Schema:
            async def explain(self, database, statement):
                return Analysis(query_type="s", facts=PlanFacts())

        analyzer = Analyzer(Schema(), max_entries=16, epoch=SharedEpoch(Path({str(epoch_file)!r})))
        asyncio.run(analyzer.analyse("neo4j", "CREATE INDEX i FOR (n:N) ON (n.x)"))
        """
    )
    _release(other)
    asyncio.run(twice())
    assert explainer.explained == 2  # planned afresh once, then cached again
    epoch.close()


def _settings(tmp_path: Path, workers: int) -> Settings:
    return Settings.model_validate(
        {
            "server": {"workers": workers},
            "neo4j": {
                "password": "a-real-password",
                "lease_user_prefix": "cg_r1_",
                "leases_path": str(tmp_path / "leases.sqlite3"),
            },
            "audit": {"path": str(tmp_path / "audit.sqlite3"), "chain_id": "r1"},
        }
    )


def test_each_worker_has_its_own_chain_leases_record_and_prefix(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 3)
    mine = [worker_settings(settings, i) for i in (1, 2, 3)]
    assert [s.audit.path.name for s in mine] == [
        "audit-w1.sqlite3",
        "audit-w2.sqlite3",
        "audit-w3.sqlite3",
    ]
    assert [s.audit.chain_id for s in mine] == ["r1-w1", "r1-w2", "r1-w3"]
    assert [s.neo4j.leases_path.name for s in mine] == [
        "leases-w1.sqlite3",
        "leases-w2.sqlite3",
        "leases-w3.sqlite3",
    ]
    prefixes = [s.neo4j.lease_user_prefix for s in mine]
    assert prefixes == ["cg_r1_w1_", "cg_r1_w2_", "cg_r1_w3_"]
    assert not any(a != b and b.startswith(a) for a in prefixes for b in prefixes)
    one = _settings(tmp_path, 1)
    assert worker_settings(one, 1) is one  # one worker keeps the names as configured
    with pytest.raises(ValueError, match="worker 4 of 3"):
        worker_settings(settings, 4)


def test_a_replica_s_chains_include_those_another_number_of_workers_left(tmp_path: Path) -> None:
    for name in ("audit.sqlite3", "audit-w3.sqlite3", "audit-wx.sqlite3", "other-w1.sqlite3"):
        (tmp_path / name).touch()
    chains = replica_chains(_settings(tmp_path, 2))
    assert [(c.path.name, c.chain_id) for c in chains] == [
        ("audit-w1.sqlite3", "r1-w1"),
        ("audit-w2.sqlite3", "r1-w2"),
        ("audit.sqlite3", "r1"),
        ("audit-w3.sqlite3", "r1-w3"),
    ]


def test_any_worker_reads_every_chain_of_its_replica(tmp_path: Path) -> None:
    async def write(path: Path, requests: list[str]) -> None:
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            for n, request in enumerate(requests):
                await log.append(
                    AuditEvent(event="decision", time=f"2026-11-30T00:00:0{n}Z", request_id=request)
                )
        finally:
            await log.close()

    asyncio.run(write(tmp_path / "audit-w1.sqlite3", ["a", "b"]))
    asyncio.run(write(tmp_path / "audit-w2.sqlite3", ["c"]))
    # Worker 2's view: its own file and chain id name the replica.
    reading = AuditLogReading(tmp_path / "audit-w2.sqlite3", "r1-w2")

    async def read() -> tuple[list[str], list[str], list[str], list[str]]:
        chains = await reading.chains()
        first = [r["request_id"] for r in await reading.query(RecordFilter())]
        second = [r["request_id"] for r in await reading.query(RecordFilter(), "r1-w2")]
        named = [r["request_id"] for r in await reading.query(RecordFilter(), "r1-w1")]
        return chains, first, second, named

    chains, default, second, first = asyncio.run(read())
    assert chains == ["r1-w1", "r1-w2"]
    assert default == first == ["a", "b"]  # the default is the replica's first chain
    assert second == ["c"]
    with pytest.raises(AuditChainNotFound):
        asyncio.run(reading.query(RecordFilter(), "r2"))


def test_only_one_worker_of_a_replica_rotates_the_gateway_s_password(tmp_path: Path) -> None:
    """The workers share one secret and start together: each rotating it on the same interval
    would rotate it several times at once, each rotation refusing the others' logins (towards
    Neo4j's login rate limit), and on Secrets Manager, which has no lock, one worker's staged
    value displaces another's, so a crash between that one's ALTER and its promotion leaves a
    password only Neo4j knows. Worker 1 rotates; the others follow the store."""
    settings = _settings(tmp_path, 3)
    settings = settings.model_copy(
        update={"neo4j": settings.neo4j.model_copy(update={"rotation_interval_s": 3600.0})}
    )
    intervals = [worker_settings(settings, i).neo4j.rotation_interval_s for i in (1, 2, 3)]
    assert intervals == [3600.0, 0.0, 0.0]


class _HeldExplainer:
    """Neo4j planning a statement that takes its time: ``MATCH`` statements wait for ``go``;
    ``plans`` says what schema each plan saw (``schema`` when it was made)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.schema = "before"
        self.explained = 0

    async def explain(self, database: str, statement: str) -> Analysis:
        del database
        self.explained += 1
        seen = self.schema
        if statement.startswith("MATCH"):
            await self.go.wait()
        labels = frozenset({seen})
        return Analysis(query_type="r", facts=PlanFacts(labels_read=labels))


def test_a_plan_made_across_a_schema_change_is_not_cached(tmp_path: Path) -> None:
    """A plan begun before a schema statement took effect and finished after it must not be
    cached, even when another lookup meanwhile emptied the cache for the new epoch."""
    epoch_file = tmp_path / "schema-epoch"
    SharedEpoch.create(epoch_file)
    epoch = SharedEpoch(epoch_file)
    explainer = _HeldExplainer()
    analyzer = Analyzer(explainer, max_entries=16, epoch=epoch)

    async def go() -> None:
        slow = asyncio.create_task(analyzer.analyse("neo4j", "MATCH (n) RETURN n"))
        await asyncio.sleep(0.01)  # planning, with the schema as it was
        explainer.schema = "after"
        analyzer.schema_changed()  # the schema statement has run (here or on another worker)
        await analyzer.analyse("neo4j", "RETURN 1")  # a lookup under the new epoch
        explainer.go.set()
        await slow
        again = await analyzer.analyse("neo4j", "MATCH (n) RETURN n")
        assert again.facts.labels_read == {"after"}, "a plan from before the change was cached"

    asyncio.run(go())
    epoch.close()
