"""The ``cyphergate`` command line: parsing and printing only; the work is library code."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from proxy.audit.checkpoint import load_public_key
from proxy.audit.record import ChainProblem
from proxy.audit.review import flat_record
from proxy.audit.sqlite import AuditReader, RecordFilter
from proxy.settings import ArchiveSettings, AuditSettings, OPASettings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cyphergate`` script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cyphergate", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(handler=_serve)

    audit = commands.add_parser("audit", help="verify and query the audit log")
    audit_commands = audit.add_subparsers(required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="check the hash chain of the audit log")
    _log_source(verify)
    verify.add_argument(
        "--public-key",
        type=Path,
        help="Ed25519 public key (PEM) that checks the checkpoints' signatures; by default the"
        " public half of the configured signing key",
    )
    verify.add_argument(
        "--archive",
        action="store_true",
        help="also check the log against its S3 archive (audit.archive in the configuration)",
    )
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(handler=_audit_verify)
    archive = audit_commands.add_parser(
        "archive", help="ship sealed segments to the S3 archive (Object Lock, compliance mode)"
    )
    archive.add_argument("--config", type=Path, required=True, help="the gateway's configuration")
    archive.set_defaults(handler=_audit_archive)
    exporter = audit_commands.add_parser("export", help="export records for a SIEM")
    _log_source(exporter)
    exporter.add_argument("--out", type=Path, required=True, help="the file to write")
    exporter.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    exporter.add_argument("--since", help="records at or after this UTC time (ISO 8601)")
    exporter.add_argument("--until", help="records before this UTC time (ISO 8601)")
    exporter.add_argument("--dag", help="only this DAG")
    exporter.set_defaults(handler=_audit_export)
    query = audit_commands.add_parser("query", help="list audit records")
    _log_source(query)
    query.add_argument("--dag", help="only this DAG")
    query.add_argument("--decision", choices=("allow", "deny"), help="only allowed or denied")
    query.add_argument("--database", help="only this database")
    query.add_argument("--since", help="records at or after this UTC time (ISO 8601)")
    query.add_argument("--until", help="records before this UTC time (ISO 8601)")
    query.add_argument(
        "--event", choices=("decision", "outcome", "access"), help="only this kind of record"
    )
    query.add_argument("--principal", help="only this subject (token sub or IAM role ARN)")
    query.add_argument("--reason", help="only records with this denial or error reason")
    query.add_argument("--text", help="only statements containing this text")
    query.add_argument("--label", help="only statements whose plan reads or writes this label")
    query.add_argument("--limit", type=int, help="at most this many records")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument(
        "--follow", action="store_true", help="keep printing new records as they are written"
    )
    query.set_defaults(handler=_audit_query)

    policy = commands.add_parser("policy", help="explain and replay policy decisions")
    policy_commands = policy.add_subparsers(required=True, metavar="ACTION")
    explain = policy_commands.add_parser(
        "explain", help="the analysis, input document and decision for one statement"
    )
    explain.add_argument("--config", type=Path, required=True, help="the gateway's configuration")
    explain.add_argument("--dag", required=True, help="decide as this DAG")
    explain.add_argument("--database", default="neo4j")
    explain.add_argument(
        "--parameter", action="append", default=[], help="a parameter name the statement uses"
    )
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.add_argument("statement", help="the Cypher statement (it is planned, never run)")
    explain.set_defaults(handler=_policy_explain)
    replay = policy_commands.add_parser(
        "replay", help="re-decide recorded requests with proposed policies; print what changes"
    )
    _log_source(replay)
    replay.add_argument("--policies", type=Path, required=True, help="the proposed policy folder")
    replay.add_argument("--since", help="decisions at or after this UTC time (ISO 8601)")
    replay.add_argument("--until", help="decisions before this UTC time (ISO 8601)")
    replay.add_argument("--dag", help="only this DAG")
    replay.add_argument(
        "--opa", type=Path, help="the opa binary (default: opa on PATH, else the devstack's)"
    )
    replay.add_argument("--format", choices=("table", "json"), default="table")
    replay.add_argument(
        "--fail-on-change", action="store_true", help="exit 1 if any decision would change"
    )
    replay.set_defaults(handler=_policy_replay)

    creds = commands.add_parser("creds", help="the gateway's own Neo4j credential")
    creds_commands = creds.add_subparsers(required=True, metavar="ACTION")
    rotate_root = creds_commands.add_parser(
        "rotate-root",
        help="rotate the gateway's Neo4j password in Neo4j and its secret store (never printed)",
    )
    rotate_root.add_argument("--config", type=Path, required=True, help="the gateway's config")
    rotate_root.set_defaults(handler=_creds_rotate_root)

    devstack = commands.add_parser("devstack", help="the local stack of real services")
    devstack_commands = devstack.add_subparsers(required=True, metavar="ACTION")
    for name, help_text in (
        ("install", "install Neo4j, OPA and the OIDC provider into the cache"),
        ("up", "start the stack (and with --with-gateway, the gateway)"),
        ("down", "stop everything the stack started"),
        ("status", "describe the running stack"),
        ("token", "print a fresh access token for a demo DAG"),
        ("auth-header", "print a complete Authorization header value for a demo DAG"),
    ):
        sub = devstack_commands.add_parser(name, help=help_text)
        _stack_options(sub)
        sub.set_defaults(handler=_devstack, action=name)
        if name == "up":
            sub.add_argument("--with-gateway", action="store_true")
        if name == "status":
            sub.add_argument("--format", choices=("text", "json"), default="text")
        if name in ("token", "auth-header"):
            sub.add_argument("--dag", required=True)
        if name == "auth-header":
            sub.add_argument("--method", choices=("oidc", "iam"), default="oidc")

    demo = commands.add_parser("demo", help="start the stack and walk through the request path")
    _stack_options(demo)
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    demo.set_defaults(handler=_demo)
    return parser


def _log_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        action="append",
        help="a gateway's configuration file (repeat it for several replicas)",
    )
    source.add_argument(
        "--log", type=Path, action="append", help="an audit log file (repeat it for several)"
    )


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path(".devstack"), help="run folder")
    parser.add_argument("--policies", type=Path, default=Path("policies"), help="policy folder")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import create_app

    settings = load_settings(args.config)
    # The gateway's own events (rotations, leases, policy revisions) at INFO; never secrets.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0


def _sources(args: argparse.Namespace) -> list[tuple[Path, AuditSettings | None]]:
    """Each log to read, with its gateway's audit settings when a configuration named it."""
    if args.log is not None:
        return [(Path(log), None) for log in args.log]
    audits = [load_settings(config).audit for config in args.config]
    return [(audit.path, audit) for audit in audits]


def _audit_path(args: argparse.Namespace) -> Path:
    """The one log a command reads (export reads one log at a time)."""
    sources = _sources(args)
    if len(sources) != 1:
        raise SystemExit("this command reads one log: give one --config or --log")
    return sources[0][0]


def _audit_verify(args: argparse.Namespace) -> int:
    failed = False
    for path, audit in _sources(args):
        failed |= not _verify_one(args, path, audit)
    return 1 if failed else 0


def _verify_one(args: argparse.Namespace, path: Path, audit: AuditSettings | None) -> bool:
    key_file = args.public_key
    if key_file is None and audit is not None:
        key_file = audit.signing_key_file
    public_key = load_public_key(key_file) if key_file is not None else None
    with AuditReader(path) as reader:
        total = reader.count()
        checkpoints = len(reader.checkpoints())
        checked = 0
        problem: ChainProblem | None = None
        for step in reader.verify(public_key):
            if isinstance(step, ChainProblem):
                problem = step
                break
            checked += 1
            if args.format == "text" and total >= 100_000 and checked % 100_000 == 0:
                print(f"  verified {checked:,} of {total:,} records", file=sys.stderr)
        if problem is None and args.archive:
            problem = _archive_problem(audit, reader, public_key)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "log": str(path),
                    "ok": problem is None,
                    "records": total,
                    "verified": checked,
                    "checkpoints": checkpoints,
                    "signatures_checked": public_key is not None,
                    "problem": None
                    if problem is None
                    else {"seq": problem.seq, "why": problem.why},
                }
            )
        )
    elif problem is None:
        signatures = "signatures checked" if public_key is not None else "signatures NOT checked"
        print(
            f"OK: {checked} records, hash chain intact, {checkpoints} checkpoints"
            f" ({signatures}) ({path})"
        )
    else:
        print(f"FAILED: {problem} ({checked} records verified before it; {path})")
    return problem is None


def _s3_for(settings: ArchiveSettings) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)


def _archive_problem(
    audit: AuditSettings | None, reader: AuditReader, public_key: Any
) -> ChainProblem | None:
    from proxy.audit.archive import verify_archive

    if audit is None:
        raise SystemExit("--archive needs --config (where audit.archive is set)")
    if audit.archive is None:
        raise SystemExit("audit.archive is not configured")
    return verify_archive(
        reader,
        _s3_for(audit.archive),
        bucket=audit.archive.bucket,
        prefix=audit.archive.prefix,
        chain=audit.chain_id,
        public_key=public_key,
    )


def _audit_archive(args: argparse.Namespace) -> int:
    from proxy.audit.archive import ship

    audit = load_settings(args.config).audit
    if audit.archive is None:
        raise SystemExit("audit.archive is not configured")
    with AuditReader(audit.path) as reader:
        keys = ship(
            reader,
            _s3_for(audit.archive),
            bucket=audit.archive.bucket,
            prefix=audit.archive.prefix,
            chain=audit.chain_id,
            retention_days=audit.archive.retention_days,
        )
    for key in keys:
        print(f"archived s3://{audit.archive.bucket}/{key}")
    if not keys:
        print("nothing new to archive (segments are shipped up to the last checkpoint)")
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from proxy.audit.export import export

    flt = RecordFilter(dag=args.dag, since=args.since, until=args.until)
    with AuditReader(_audit_path(args)) as reader:
        count = export(
            reader,
            flt,
            args.out,
            kind=args.format,
            progress=lambda n: print(f"  exported {n:,} records", file=sys.stderr),
        )
    noun = "record" if count == 1 else "records"
    print(f"exported {count:,} {noun} to {args.out} ({args.format})")
    return 0


def _audit_query(args: argparse.Namespace) -> int:
    flt = RecordFilter(
        dag=args.dag,
        event=args.event,
        verdict=args.decision,
        database=args.database,
        since=args.since,
        until=args.until,
        subject=args.principal,
        reason=args.reason,
        text=args.text,
        label=args.label,
        limit=args.limit,
    )
    sources = _sources(args)
    if len(sources) > 1:
        if args.follow:
            raise SystemExit("--follow reads one log at a time")
        _print_records(_merged(sources, flt), args.format, with_log=True)
        return 0
    with AuditReader(sources[0][0]) as reader:
        records = [flat_record(r) for r in reader.query(flt)]
        _print_records(records, args.format, with_log=False)
        if args.follow:
            _follow(reader, flt, records[-1]["seq"] if records else 0, args.format)
    return 0


def _merged(
    sources: list[tuple[Path, AuditSettings | None]], flt: RecordFilter
) -> list[dict[str, Any]]:
    """Records of several replicas' logs, each named by its log, in time order."""
    records: list[dict[str, Any]] = []
    for path, _ in sources:
        with AuditReader(path) as reader:
            records += [{**flat_record(r), "log": str(path)} for r in reader.query(flt)]
    records.sort(key=lambda r: (r["time"], r["log"], r["seq"]))
    return records[: flt.limit] if flt.limit is not None else records


def _print_records(records: list[dict[str, Any]], kind: str, *, with_log: bool) -> None:
    if kind == "json":
        for record in records:
            print(json.dumps(record), flush=True)
    columns = ("log", *_TABLE_COLUMNS) if with_log else _TABLE_COLUMNS
    if kind == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(r.get(k), width=None) for k in columns} for r in records)
    elif kind == "table":
        _print_table(records, columns)


def _follow(reader: AuditReader, flt: RecordFilter, last_seq: int, kind: str) -> None:
    """Print records written after ``last_seq`` as they come; stops on Ctrl-C."""
    while True:
        for record in reader.query(replace(flt, after_seq=last_seq, limit=None)):
            flat = flat_record(record)
            last_seq = int(flat["seq"])
            if kind == "json":
                print(json.dumps(flat), flush=True)
            else:
                cells = [_cell(flat.get(column)) for column in _TABLE_COLUMNS]
                print(("," if kind == "csv" else "  ").join(cells), flush=True)
        time.sleep(0.5)


_TABLE_COLUMNS = (
    "seq",
    "time",
    "event",
    "dag",
    "database",
    "decision",
    "status",
    "reasons",
    "statement",
)


def _print_table(records: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> None:
    rows = [[_cell(record.get(column)) for column in columns] for record in records]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no records)")


def _cell(value: Any, width: int | None = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    text = " ".join(str(value).split())
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _devstack(args: argparse.Namespace) -> int:
    from proxy.devstack.install import default_cache_dir
    from proxy.devstack.stack import DevStack

    stack = DevStack(args.dir, cache_dir=default_cache_dir(), policies_dir=args.policies)
    if args.action == "install":
        components = stack.install()
        print(
            json.dumps(
                {
                    "neo4j_classpath": components.neo4j_classpath,
                    "opa": str(components.opa),
                    "oidc": str(components.oidc_dir),
                }
            )
        )
    elif args.action == "up":
        status = stack.up(with_gateway=args.with_gateway)
        print(json.dumps(status, indent=2))
    elif args.action == "down":
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "status":
        status = stack.status()
        print(json.dumps(status, indent=None if args.format == "json" else 2))
    elif args.action == "token":
        print(stack.token(args.dag))
    elif args.action == "auth-header":
        print(stack.auth_header(args.dag, method=args.method))
    return 0


def _creds_rotate_root(args: argparse.Namespace) -> int:
    from proxy.credentials import rotate_root

    settings = load_settings(args.config)
    user = asyncio.run(rotate_root(settings.neo4j))
    print(f"rotated the Neo4j password of {user}; only the secret store holds the new one")
    return 0


def _policy_explain(args: argparse.Namespace) -> int:
    from proxy.replay import explain

    settings = load_settings(args.config)
    shown = asyncio.run(
        explain(
            settings,
            dag=args.dag,
            database=args.database,
            statement=args.statement,
            parameter_names=args.parameter,
        )
    )
    if args.format == "json":
        print(json.dumps(shown, indent=2, sort_keys=True))
        return 0
    decision = shown["decision"]
    verdict = "ALLOW" if decision["allow"] else "DENY"
    if decision["shadow"] and not decision["allow"]:
        verdict += " (shadow mode: it would run and be recorded)"
    print(f"{verdict} for DAG {args.dag} on {args.database}")
    for reason in decision["reasons"]:
        print(f"  reason: {reason}")
    print(f"  constraints: {json.dumps(decision['constraints'], sort_keys=True)}")
    print(f"  policy revision: {decision['policy_revision']}")
    print("analysis:")
    for key, value in shown["analysis"].items():
        print(f"  {key}: {json.dumps(value)}")
    return 0


def _policy_replay(args: argparse.Namespace) -> int:
    from proxy.replay import ReplaySummary, proposed_policy, replay

    flt = RecordFilter(event="decision", dag=args.dag, since=args.since, until=args.until)
    summary = ReplaySummary()
    changes: list[dict[str, Any]] = []

    async def run(opa: OPASettings) -> None:
        for path, _ in _sources(args):
            with AuditReader(path) as reader:
                async for change in replay(reader.query(flt), opa, summary):
                    changes.append({**asdict(change), "kind": change.kind, "log": str(path)})

    with proposed_policy(args.opa or _opa_binary(), args.policies) as opa:
        asyncio.run(run(opa))
    if args.format == "json":
        print(json.dumps({"summary": asdict(summary), "changes": changes}, indent=2))
    else:
        for change in changes:
            was = "allow" if change["was_allow"] else "deny " + ",".join(change["was_reasons"])
            now = "allow" if change["now_allow"] else "deny " + ",".join(change["now_reasons"])
            statement = (change["statement"] or "").replace("\n", " ")[:60]
            print(f"#{change['seq']} {change['time']} {change['dag']}: {was} -> {now}  {statement}")
        print(
            f"{summary.replayed} decisions replayed, {summary.changed} would change"
            f" ({summary.skipped} records without an analysis skipped)"
        )
    return 1 if args.fail_on_change and summary.changed else 0


def _opa_binary() -> Path:
    found = shutil.which("opa")
    if found:
        return Path(found)
    from proxy.devstack.install import default_cache_dir, ensure_opa

    return ensure_opa(default_cache_dir())


def _demo(args: argparse.Namespace) -> int:
    from proxy.devstack.demo import run_demo

    return run_demo(args.dir, args.policies, keep=args.keep)
