"""``cyphergate audit ...``: verify, query, export and archive the audit log (printing only)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.audit.checkpoint import load_public_key
from proxy.audit.reader import AuditReader, DamagedLog, NotAnAuditLog, RecordFilter
from proxy.audit.record import EVENT_KINDS, ChainProblem, flat_record, utc_timestamp, visible
from proxy.chains import replica_chains
from proxy.cli import arguments
from proxy.settings import ArchiveSettings, AuditSettings, load_settings

# A log this long gets a progress line on stderr every so many records.
PROGRESS_EVERY = 100_000


def register(commands: Any) -> None:
    """Add the ``audit`` command and its actions to the top-level subparsers."""
    audit = commands.add_parser("audit", help="verify and query the audit log")
    audit_commands = audit.add_subparsers(required=True, metavar="ACTION")
    verify = audit_commands.add_parser("verify", help="check the hash chain of the audit log")
    arguments.log_source_options(verify)
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
    verify.add_argument(
        "--chain",
        help="the chain id the log's checkpoints must name (by default the configured one's;"
        " with --log, whichever its first checkpoint names)",
    )
    verify.add_argument(
        "--sealed-within",
        type=arguments.seconds,
        metavar="SECONDS",
        help="with a key, fail on any record older than this that no checkpoint covers (with"
        " --config, by default twice its audit.checkpoint_interval_s; with --log, not checked"
        " unless given: give twice the gateway's interval; 0: do not check). A running writer"
        " signs its tail within its interval, idle or not, and a restarted one at once: older"
        " unsigned records were rewritten, or their writer was killed. Verifying a copy taken"
        " from a running gateway, add the copy's age",
    )
    verify.add_argument(
        "--unanswered-after",
        type=arguments.minutes,
        default=5.0,
        metavar="MINUTES",
        help="report decisions written ahead of execution at least this long ago that have no"
        " outcome record (default 5; such a statement may have run, its outcome unrecorded)",
    )
    verify.add_argument(
        "--format", choices=("text", "json"), default="text", help="a sentence, or one JSON object"
    )
    verify.set_defaults(handler=_audit_verify)
    archive = audit_commands.add_parser(
        "archive", help="ship sealed segments to the S3 archive (Object Lock, compliance mode)"
    )
    archive.add_argument("--config", type=Path, required=True, help="the gateway's configuration")
    archive.set_defaults(handler=_audit_archive)
    exporter = audit_commands.add_parser("export", help="export records for a SIEM")
    arguments.log_source_options(exporter)
    exporter.add_argument("--out", type=Path, required=True, help="the file to write")
    exporter.add_argument(
        "--format",
        choices=("jsonl", "parquet"),
        default="jsonl",
        help="JSON lines, or Parquet (needs the parquet extra)",
    )
    arguments.add_window(exporter, "records")
    exporter.add_argument("--dag", help="only this DAG")
    exporter.set_defaults(handler=_audit_export)
    query = audit_commands.add_parser("query", help="list audit records")
    arguments.log_source_options(query)
    query.add_argument("--dag", help="only this DAG")
    query.add_argument("--decision", choices=("allow", "deny"), help="only allowed or denied")
    query.add_argument(
        "--database", help="only this database (in any case: Neo4j's names are case-insensitive)"
    )
    arguments.add_window(query, "records")
    query.add_argument("--event", choices=EVENT_KINDS, help="only this kind of record")
    query.add_argument(
        "--request-id",
        help="only this request's records (the X-CypherGate-Request-ID of its answer, the"
        " '(request ...)' of a refusal's text)",
    )
    query.add_argument("--principal", help="only this subject (token sub or IAM role ARN)")
    query.add_argument("--reason", help="only records with this denial or error reason")
    query.add_argument("--text", help="only statements containing this text")
    query.add_argument("--label", help="only statements whose plan reads or writes this label")
    query.add_argument("--limit", type=arguments.count, help="at most this many records")
    query.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="an aligned table, one JSON object per line, or CSV",
    )
    query.add_argument(
        "--follow", action="store_true", help="keep printing new records as they are written"
    )
    query.set_defaults(handler=_audit_query)


def _audit_path(args: argparse.Namespace) -> Path:
    """The one log a command reads (export reads one log at a time)."""
    sources = arguments.log_sources(args)
    if len(sources) != 1:
        raise SystemExit("this command reads one log: give one --config or --log")
    return sources[0][0]


def _audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 if every log verifies, 1 if one does not, 2 if one cannot be read (said on
    standard error as the command line says it; the logs after it are verified still)."""
    failed = unreadable = False
    for path, audit in arguments.log_sources(args):
        try:
            failed |= not _verify_one(args, path, audit)
        except (NotAnAuditLog, FileNotFoundError) as error:
            if isinstance(error, FileNotFoundError) and error.filename != str(path):
                raise  # another file (a key): the command's own problem
            missing = isinstance(error, FileNotFoundError)
            print(f"cyphergate: {f'no such file: {path}' if missing else error}", file=sys.stderr)
            unreadable = True
    return 2 if unreadable else 1 if failed else 0


def _verify_one(args: argparse.Namespace, path: Path, audit: AuditSettings | None) -> bool:
    key_file = args.public_key
    if key_file is None and audit is not None:
        key_file = audit.signing_key_file
    public_key = load_public_key(key_file) if key_file is not None else None
    with AuditReader(path) as reader:
        total = reader.count()
        try:
            signed = reader.checkpoints()
        except DamagedLog:  # verify() below names it as the chain's problem
            signed = []
        checkpoints = len(signed)
        checked = 0
        problem: ChainProblem | None = None
        started = time.monotonic()
        chain = args.chain or (audit.chain_id if audit is not None else None)
        # What the checkpoints must name (with --log and no --chain, whatever the first does):
        # said on the OK line, so that another worker's or replica's log shows as such.
        sealed_chain = chain or (signed[0].chain if signed else None)
        window = args.sealed_within
        if window is None and audit is not None:
            window = 2 * audit.checkpoint_interval_s
        sealed_before = utc_timestamp(time.time() - window) if window else None
        for step in reader.verify(public_key, chain=chain, sealed_before=sealed_before):
            if isinstance(step, ChainProblem):
                problem = step
                break
            checked += 1
            if args.format == "text" and total >= PROGRESS_EVERY and checked % PROGRESS_EVERY == 0:
                print(
                    f"  verified {checked:,} of {total:,} records ({checked / total:.0%})"
                    f" in {time.monotonic() - started:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
        archived: int | None = None  # the last record the archive holds, with --archive
        if problem is None and args.archive:
            problem, archived = _archive_problem(audit, reader, public_key)
        before = utc_timestamp(time.time() - args.unanswered_after * 60)
        unanswered, examples = reader.unanswered(before, limit=10)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "log": str(path),
                    "ok": problem is None,
                    "records": total,
                    "verified": checked,
                    "checkpoints": checkpoints,
                    "chain": sealed_chain,
                    "signatures_checked": public_key is not None,
                    "sealed_before": sealed_before if public_key is not None else None,
                    "archived_through": archived,
                    "problem": None
                    if problem is None
                    else {"seq": problem.seq, "why": problem.why},
                    "unanswered": unanswered,
                    "unanswered_examples": [
                        {
                            "seq": r.get("seq"),
                            "request_id": r.get("request_id"),
                            "time": r.get("time"),
                        }
                        for r in examples
                    ],
                }
            )
        )
    elif problem is None:
        signatures = "signatures checked" if public_key is not None else "signatures NOT checked"
        if public_key is not None and sealed_before is None:
            signatures += ", unsigned tail not looked for (--sealed-within)"
        elif public_key is not None and not checkpoints:  # a writer's first records
            signatures = "signatures checked: none yet, every record within --sealed-within"
        of_chain = f" of chain {sealed_chain!r}" if sealed_chain and checkpoints else ""
        said = f"{checked} records, hash chain intact, {checkpoints} checkpoints{of_chain}"
        if total == 0:  # one emptied looks the same
            said = "0 records: nothing written to this chain yet, so nothing to verify"
            signatures = "a log emptied looks the same: --archive compares it with the archive"
        print(f"OK: {said} ({signatures}) ({path})")
        if archived is not None:  # how far the archive anchors the log: nothing past it
            print(
                f"archive: records 1 to {archived} of {total} archived and compared"
                if archived
                else f"archive: empty (none of {total} records is archived yet)"
            )
    else:
        print(f"FAILED: {problem} ({checked} records verified before it; {path})")
    if unanswered and args.format == "text":
        print(
            f"WARNING: {unanswered} decision(s) written ahead of execution more than"
            f" {args.unanswered_after:g} minutes ago have no outcome record (the statement may"
            " have run): "
            + ", ".join(f"record {r.get('seq')} ({r.get('request_id')})" for r in examples)
        )
    return problem is None


def _s3_for(settings: ArchiveSettings) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)


def _archive_problem(
    audit: AuditSettings | None, reader: AuditReader, public_key: Any
) -> tuple[ChainProblem | None, int | None]:
    """The first problem the archive shows, and (with none) the last record it holds: an
    archive that is empty, or far behind, passes, and the reviewer must see how far it goes."""
    from proxy.audit.archive import last_archived_seq, verify_archive

    if audit is None:
        raise SystemExit("--archive needs --config (where audit.archive is set)")
    if audit.archive is None:
        raise SystemExit("audit.archive is not configured")
    s3, place = _s3_for(audit.archive), audit.archive
    problem = verify_archive(
        reader,
        s3,
        bucket=place.bucket,
        prefix=place.prefix,
        chain=audit.chain_id,
        public_key=public_key,
    )
    if problem is not None:
        return problem, None
    return None, last_archived_seq(s3, place.bucket, place.prefix, audit.chain_id)


def _audit_archive(args: argparse.Namespace) -> int:
    from proxy.audit.archive import ArchiveInconsistent, ship

    shipped = 0
    for audit in replica_chains(load_settings(args.config)):
        if audit.archive is None:
            raise SystemExit("audit.archive is not configured")
        key_file = audit.signing_key_file  # the writer's: its public half checks signatures
        public_key = load_public_key(key_file) if key_file is not None else None
        with AuditReader(audit.path) as reader:
            try:
                keys = ship(
                    reader,
                    _s3_for(audit.archive),
                    bucket=audit.archive.bucket,
                    prefix=audit.archive.prefix,
                    chain=audit.chain_id,
                    retention_days=audit.archive.retention_days,
                    public_key=public_key,
                )
            except ArchiveInconsistent as exc:
                raise SystemExit(f"audit archive: {exc}") from None
        for key in keys:
            print(f"archived s3://{audit.archive.bucket}/{key}")
        shipped += len(keys)
    if not shipped:
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
    said = sys.stdout if args.out.is_file() else sys.stderr  # not into /dev/stdout's records
    print(f"exported {count:,} {noun} to {args.out} ({args.format})", file=said)
    return 0


def _audit_query(args: argparse.Namespace) -> int:
    flt = RecordFilter(
        dag=args.dag,
        event=args.event,
        request_id=args.request_id,
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
    sources = arguments.log_sources(args)
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
        writer.writerows({k: _csv_cell(r.get(k)) for k in columns} for r in records)
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
            elif kind == "csv":  # quoted as the first page was, by the csv module
                csv.writer(sys.stdout).writerow(
                    [_csv_cell(flat.get(column)) for column in _TABLE_COLUMNS]
                )
                sys.stdout.flush()
            else:
                print("  ".join(_cell(flat.get(c)) for c in _TABLE_COLUMNS), flush=True)
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
        return visible(",".join(str(v) for v in value)) or "-"
    text = visible(" ".join(str(value).split()))
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


# What a spreadsheet reads as a formula at the start of a cell (and tab and carriage return,
# which some read past to one).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as the text it is: records hold what callers sent (a
    statement, a database name, even before any credential is checked), and ``=1+2`` or
    ``=HYPERLINK(...)`` must not run when a reviewer opens the export. Such a cell is written
    after a quote mark, as spreadsheets themselves write text that looks like a formula."""
    text = _cell(value, width=None)
    return "'" + text if text != "-" and text.startswith(_FORMULA_STARTS) else text
